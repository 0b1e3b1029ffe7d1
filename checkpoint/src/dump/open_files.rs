//! Open files that more than one fd refers to (section `open_files.bin`,
//! IMAGE.md): dup(2)'d fds, `2>&1`, and fds inherited across fork(2) all
//! share one open file, hence one offset and one set of status flags
//! (open(2), "open file description"). A restore that reopened each fd by
//! path would give each its own offset, and two writers would overwrite
//! each other. kcmp(2) with KCMP_FILE tells whether two fds, in the same
//! process or not, are the same open file; only fds of one inode are
//! compared.

use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdEntry, FdKind, ProcessTree};
use crate::Image;
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "open_files.bin";

/// (pid, fd) -> the first (pid, fd) of the image, in process then fd
/// order, that holds the same open file. Only fds that share are listed,
/// the first of each group included (mapped to itself).
pub type Shared = BTreeMap<(i32, i32), (i32, i32)>;

/// The kinds a restore reopens by path or name, where sharing is lost
/// unless recorded (pipes, sockets and the like are made once and
/// inherited already).
fn reopened(e: &FdEntry) -> bool {
    matches!(
        e.kind,
        FdKind::File { .. } | FdKind::Dir | FdKind::Device { .. } | FdKind::Memfd(_)
    )
}

/// kcmp(2) KCMP_FILE: 0 when fd `a` of `pa` and fd `b` of `pb` are the
/// same open file.
fn same_file(pa: i32, a: i32, pb: i32, b: i32) -> bool {
    crate::sys::files::same_open_file(pa, a, pb, b)
}

/// Groups the fds of `tree` (stopped under the caller's ptrace, which
/// kcmp needs) by open file.
pub fn capture(tree: &ProcessTree) -> Shared {
    let mut by_ino: BTreeMap<(u64, &str), Vec<(i32, i32)>> = BTreeMap::new();
    for p in &tree.processes {
        for e in p.fds.iter().filter(|e| reopened(e)) {
            by_ino
                .entry((e.ino, e.kind.name()))
                .or_default()
                .push((p.pid, e.fd));
        }
    }
    let mut out = Shared::new();
    for fds in by_ino.values().filter(|f| f.len() > 1) {
        for (i, &(pid, fd)) in fds.iter().enumerate() {
            if out.contains_key(&(pid, fd)) {
                continue;
            }
            for &(qpid, qfd) in &fds[i + 1..] {
                if !out.contains_key(&(qpid, qfd)) && same_file(pid, fd, qpid, qfd) {
                    out.insert((qpid, qfd), (pid, fd));
                    out.insert((pid, fd), (pid, fd));
                }
            }
        }
    }
    out
}

/// Records the shared open files of `tree` (no section when none is).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let shared = capture(tree);
    writer.write_optional(SECTION, &shared)
}

/// The shared open files of an image (none without the section).
pub fn read(image: &Image) -> Result<Shared> {
    image.optional(SECTION)
}
