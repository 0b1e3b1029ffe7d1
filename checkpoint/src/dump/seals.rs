//! The seals of the image's memfds (section `seals.bin`, IMAGE.md), from
//! fcntl(2) F_GET_SEALS on a pidfd_getfd(2) duplicate of an fd of each.
//! A memfd made without MFD_ALLOW_SEALING has F_SEAL_SEAL from the start
//! (memfd_create(2)), so every memfd is recorded, sealed or not: a
//! restore makes each with MFD_ALLOW_SEALING and adds exactly the seals
//! recorded once its contents are back.
//!
//! A memfd some process maps shared gets its contents back through those
//! mappings (`restore::shm`): a restore maps it writable to fill it, and
//! F_SEAL_WRITE cannot be added while a writable shared mapping exists,
//! nor can F_SEAL_FUTURE_WRITE's object be mapped writable after it
//! (memfd_create(2), EBUSY and EPERM). Such a memfd sealed against
//! writing refuses the checkpoint, naming the pid, the fd and the memfd.

use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree};
use crate::sys::sockopt;
use crate::Image;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

/// The section's name.
pub const SECTION: &str = "seals.bin";

/// Memfd inode -> its seals (F_SEAL_* bits; 0: none, sealing allowed).
pub type Seals = BTreeMap<u64, u32>;

/// The seals that forbid writing.
pub const WRITE_SEALS: u32 = (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) as u32;

/// Reads the seals of every memfd of `tree` (stopped under the caller's
/// ptrace). Returns them and a refusal for each mapped memfd sealed
/// against writing. A memfd whose seals cannot be read is left out (made
/// as before, without MFD_ALLOW_SEALING).
pub fn capture(tree: &ProcessTree) -> (Seals, Vec<String>) {
    let mapped: BTreeSet<u64> = tree
        .processes
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| v.shared() && v.path.starts_with("/memfd:"))
        .map(|v| v.inode)
        .collect();
    let mut seals = Seals::new();
    let mut refusals = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            if !matches!(e.kind, FdKind::Memfd(_)) || seals.contains_key(&e.ino) {
                continue;
            }
            let Ok(dup) = isotrace_tracer::sys::dup_remote_fd(p.pid, e.fd) else {
                continue;
            };
            let Ok(s) = sockopt::seals(dup.as_fd()) else {
                continue;
            };
            if s & WRITE_SEALS != 0 && mapped.contains(&e.ino) {
                refusals.push(format!(
                    "cannot checkpoint pid {}: fd {} (memfd {}): mapped shared and sealed against writing (seals {s:#x}): its contents come back through its mappings, which the seal forbids",
                    p.pid, e.fd, e.target
                ));
            }
            seals.insert(e.ino, s);
        }
    }
    (seals, refusals)
}

/// Writes the seals of `tree`'s memfds into the image being written (no
/// section without memfds); returns the refusals (see [`capture`]).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<Vec<String>> {
    let (seals, refusals) = capture(tree);
    writer.write_optional(SECTION, &seals)?;
    Ok(refusals)
}

/// The memfd seals of an image (none without the section).
pub fn read(image: &Image) -> Result<Seals> {
    image.optional(SECTION)
}
