//! Files that have no name to reopen them by (section `deleted.bin`
//! and one `deleted-INO.img` per file, IMAGE.md): a regular file
//! unlinked while open, and a memfd no process maps shared (a mapped one
//! is rebuilt from its mapping, `restore::shm`). Their contents go into
//! the image, read through /proc/PID/fd/N, which opens the file itself
//! even though no path leads to it (proc(5), /proc/pid/fd).

use crate::error::{Error, Result};
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree};
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// The metadata section's name.
pub const SECTION: &str = "deleted.bin";

/// What kind of nameless file, which decides how a restore makes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nameless {
    /// A regular file unlinked while open: `path` is the name it had (the
    /// /proc link without " (deleted)"); a restore makes an unnamed file
    /// in that directory (O_TMPFILE), so it is on the same filesystem.
    Unlinked { path: String },
    /// A memfd: made again with memfd_create(2) and this name.
    Memfd { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFile {
    pub kind: Nameless,
    /// st_mode's permission bits, st_uid and st_gid.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Its size; the bytes are the section [`DeletedFile::section`].
    pub size: u64,
}

impl DeletedFile {
    /// The section with the contents of the file of inode `ino`.
    pub fn section(ino: u64) -> String {
        format!("deleted-{ino}.img")
    }
}

/// Inode -> the nameless file (every fd of the image with that inode).
pub type Files = BTreeMap<u64, DeletedFile>;

/// The memfds some process of `tree` maps shared: those are rebuilt from
/// the mapping, not from here.
fn mapped(tree: &ProcessTree) -> BTreeSet<u64> {
    tree.processes
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| v.shared() && v.path.starts_with("/memfd:"))
        .map(|v| v.inode)
        .collect()
}

/// Writes the contents of every nameless file of `tree`, then their
/// metadata (no section when there is none). The processes are stopped,
/// so the contents do not change while they are read; a file another
/// program writes meanwhile is read as it is.
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let mapped = mapped(tree);
    let mut files = Files::new();
    for p in &tree.processes {
        for e in &p.fds {
            let kind = match &e.kind {
                FdKind::File { deleted: true } => Nameless::Unlinked {
                    path: e.target.trim_end_matches(" (deleted)").to_owned(),
                },
                FdKind::Memfd(name) if !mapped.contains(&e.ino) => {
                    Nameless::Memfd { name: name.clone() }
                }
                _ => continue,
            };
            if files.contains_key(&e.ino) {
                continue;
            }
            let link = format!("/proc/{}/fd/{}", p.pid, e.fd);
            let file = copy(&link, kind, &DeletedFile::section(e.ino), writer)?;
            files.insert(e.ino, file);
        }
    }
    writer.write_optional(SECTION, &files)
}

/// Streams the file behind `link` into section `name`.
fn copy(link: &str, kind: Nameless, name: &str, writer: &mut ImageWriter) -> Result<DeletedFile> {
    let mut src = std::fs::File::open(link).map_err(|e| Error::io(link, e))?;
    let meta = src.metadata().map_err(|e| Error::io(link, e))?;
    let mut section = writer.section(name)?;
    let mut size = 0u64;
    loop {
        let buf = section.spare(1 << 20)?;
        let n = src.read(buf).map_err(|e| Error::io(link, e))?;
        if n == 0 {
            break;
        }
        section.commit(n);
        size += n as u64;
    }
    writer.finish(section)?;
    Ok(DeletedFile {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
    })
}

/// The nameless files of an image (none without the section).
pub fn read(image: &Image) -> Result<Files> {
    image.optional(SECTION)
}
