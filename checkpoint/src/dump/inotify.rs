//! The watches of inotify fds (section `inotify.bin`, IMAGE.md). An
//! inotify fd's fdinfo lists each watch by its descriptor, mask, and
//! the watched inode as device, inode number and file handle (proc(5),
//! "inotify": `inotify wd:1 ino:3c4a7 sdev:fe00000 mask:300 ...
//! f_handle:a7c4...`), not by path. The path a restore watches again is
//! found here: by open_by_handle_at(2) where we may (it needs
//! CAP_DAC_READ_SEARCH), else among the paths the process shows (its cwd,
//! root, exe, open files and mappings), their parents and the entries of
//! both. A watch found by neither refuses the checkpoint. Events queued
//! and not read are not recorded.

use super::procfs::{FdInfo, Watch};
use crate::error::{Error, Result};
use crate::image::ImageWriter;
use crate::model::{FdKind, Process, ProcessTree};
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The section's name.
pub const SECTION: &str = "inotify.bin";

/// One watch as a restore adds it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchPath {
    pub wd: i32,
    pub mask: u32,
    pub path: String,
}

/// (pid, fd) -> its watches, by descriptor. Every inotify instance has
/// the same (anonymous) inode, so each fd is keyed by itself.
pub type Watches = BTreeMap<(i32, i32), Vec<WatchPath>>;

/// Resolves every watch of every inotify fd of `tree` and writes them
/// (no section when there is no inotify fd).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let mut out = Watches::new();
    for p in &tree.processes {
        let mut candidates = None;
        for e in &p.fds {
            if e.kind != FdKind::AnonInode("inotify".into()) {
                continue;
            }
            let mut watches = Vec::new();
            for w in FdInfo::watches(&e.fdinfo_extra) {
                let path = by_handle(&w).or_else(|| {
                    let c = candidates.get_or_insert_with(|| candidate_paths(p));
                    by_search(&w, c)
                });
                let path = path.ok_or_else(|| Error::Invalid {
                    what: format!(
                        "cannot checkpoint pid {}: fd {} (inotify): the path of watch {} \
                         (inode {} on device {:#x}) cannot be found",
                        p.pid, e.fd, w.wd, w.ino, w.sdev
                    ),
                })?;
                watches.push(WatchPath {
                    wd: w.wd,
                    mask: w.mask,
                    path,
                });
            }
            out.insert((p.pid, e.fd), watches);
        }
    }
    writer.write_optional(SECTION, &out)
}

/// The watches of an image (none without the section).
pub fn read(image: &Image) -> Result<Watches> {
    image.optional(SECTION)
}

/// The userspace dev_t of fdinfo's `sdev`, which is the kernel's
/// internal encoding: major in the top 12 bits, minor in the low 20
/// (include/linux/kdev_t.h, MINORBITS).
fn user_dev(sdev: u64) -> u64 {
    libc::makedev((sdev >> 20) as u32, (sdev & 0xfffff) as u32)
}

fn matches(path: &Path, w: &Watch) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == w.ino && m.dev() == user_dev(w.sdev))
}

/// open_by_handle_at(2) on a mount of the watch's filesystem (from
/// /proc/self/mountinfo), then the path of what it opened. None without
/// CAP_DAC_READ_SEARCH (EPERM) or when anything else fails.
fn by_handle(w: &Watch) -> Option<String> {
    use std::os::fd::{AsFd, AsRawFd};
    let want = format!("{}:{}", w.sdev >> 20, w.sdev & 0xfffff);
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mountpoint ...
    let mount = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&want.as_str())).then(|| f.get(4).map(|m| m.to_string()))?
    })?;
    let dir = std::fs::File::open(&mount).ok()?;
    // struct file_handle: u32 handle_bytes, int handle_type, then the bytes.
    let mut fh = (w.handle.len() as u32).to_ne_bytes().to_vec();
    fh.extend(w.handle_type.to_ne_bytes());
    fh.extend(&w.handle);
    let fd = crate::sys::files::open_by_handle(dir.as_fd(), &fh).ok()?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    matches(&path, w).then(|| path.to_string_lossy().into_owned())
}

/// Paths the process shows, their parents, and the entries of both.
fn candidate_paths(p: &Process) -> Vec<PathBuf> {
    let mut shown: BTreeSet<PathBuf> = BTreeSet::new();
    let named = [&p.cwd, &p.root, &p.exe].into_iter().flatten().cloned();
    let fds = p.fds.iter().map(|e| e.target.clone());
    let maps = p.vmas.iter().map(|v| v.path.clone());
    for s in named.chain(fds).chain(maps).filter(|s| s.starts_with('/')) {
        let path = PathBuf::from(s.trim_end_matches(" (deleted)"));
        if let Some(parent) = path.parent() {
            shown.insert(parent.to_owned());
        }
        shown.insert(path);
    }
    let mut out: Vec<PathBuf> = shown.iter().cloned().collect();
    for dir in &shown {
        if let Ok(entries) = std::fs::read_dir(dir) {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

fn by_search(w: &Watch, candidates: &[PathBuf]) -> Option<String> {
    candidates
        .iter()
        .find(|c| matches(c, w))
        .map(|c| c.to_string_lossy().into_owned())
}
