//! The data buffered in the pipes of an image, in its own section
//! (`pipes.bin`, IMAGE.md): a map from pipe inode to bytes, for every pipe
//! some process of the image holds that has data. Read at the freeze,
//! while every process of the image is stopped; a pipe whose other end
//! is held by a process outside the image may still change meanwhile.
//! FIFOs (named pipes) the same way, in `fifos.bin`, keyed by the FIFO's
//! inode on its filesystem (a different inode space from pipefs').

use crate::error::Result;
use crate::image::{codec, ImageWriter};
use crate::model::{FdKind, ProcessTree};
use crate::Image;
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "pipes.bin";
/// The FIFOs' section.
pub const FIFO_SECTION: &str = "fifos.bin";

/// Pipe inode -> its buffered bytes.
pub type PipeData = BTreeMap<u64, Vec<u8>>;

/// Reads every pipe (or FIFO: `kind`) of `tree` through the first fd
/// that holds it. One that cannot be read is left out, and the restore
/// rebuilds it empty. Opening a FIFO's /proc link for reading with
/// O_NONBLOCK never blocks (fifo(7)).
pub fn capture(tree: &ProcessTree, kind: FdKind) -> PipeData {
    let mut out = PipeData::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in &tree.processes {
        for e in p.fds.iter().filter(|e| e.kind == kind) {
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

/// Captures the pipes and FIFOs of `tree` into the image being written
/// (no section when none holds data).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    for (kind, section) in [(FdKind::Pipe, SECTION), (FdKind::Fifo, FIFO_SECTION)] {
        let data = capture(tree, kind);
        if !data.is_empty() {
            writer.write_section(section, &codec::encode(&data)?)?;
        }
    }
    Ok(())
}

/// The pipes' data of an image (empty for an image without the section).
pub fn read(image: &Image) -> Result<PipeData> {
    read_section(image, SECTION)
}

/// The FIFOs' data of an image (empty for an image without the section).
pub fn read_fifos(image: &Image) -> Result<PipeData> {
    read_section(image, FIFO_SECTION)
}

fn read_section(image: &Image, section: &str) -> Result<PipeData> {
    image.optional(section)
}
