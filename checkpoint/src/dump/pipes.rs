//! The data buffered in the pipes of an image, in its own section
//! (`pipes.bin`, IMAGE.md): a map from pipe inode to bytes, for every pipe
//! some process of the image holds that has data. Read at the freeze,
//! while every process of the image is stopped; a pipe whose other end
//! is held by a process outside the image may still change meanwhile.

use crate::error::Result;
use crate::image::{codec, ImageWriter};
use crate::model::{FdKind, ProcessTree};
use crate::Image;
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "pipes.bin";

/// Pipe inode -> its buffered bytes.
pub type PipeData = BTreeMap<u64, Vec<u8>>;

/// Reads every pipe of `tree` (through the first fd that holds it).
/// A pipe that cannot be read is left out, and the restore rebuilds it
/// empty.
pub fn capture(tree: &ProcessTree) -> PipeData {
    let mut out = PipeData::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in &tree.processes {
        for e in p.fds.iter().filter(|e| e.kind == FdKind::Pipe) {
            if !seen.insert(e.ino) {
                continue;
            }
            let link = format!("/proc/{}/fd/{}", p.pid, e.fd);
            if let Ok(data) = crate::sys::pipe_contents(&link) {
                if !data.is_empty() {
                    out.insert(e.ino, data);
                }
            }
        }
    }
    out
}

/// Captures the pipes of `tree` into the image being written (no section
/// when no pipe holds data).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let data = capture(tree);
    if data.is_empty() {
        return Ok(());
    }
    writer.write_section(SECTION, &codec::encode(&data)?)
}

/// The pipes' data of an image (empty for an image without the section).
pub fn read(image: &Image) -> Result<PipeData> {
    if image.manifest.section(SECTION).is_none() {
        return Ok(PipeData::new());
    }
    let path = image.dir.join(SECTION);
    let bytes = std::fs::read(&path).map_err(|e| crate::Error::io(path, e))?;
    codec::decode(SECTION, &bytes)
}
