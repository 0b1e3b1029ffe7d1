//! Where the source holds the image between the dump and the send: a
//! private directory on a tmpfs (memory, not a disk), removed when done.
//! /dev/shm is tmpfs on every mainstream distribution (shm_overview(7));
//! $XDG_RUNTIME_DIR is a tmpfs under systemd (pam_systemd(8)). Only when
//! neither is a tmpfs does it fall back to the temp directory, and the
//! result says so. A process killed while it staged leaves its directory
//! behind: the next staging in the same place removes those of processes
//! that no longer exist.

use nix::sys::statfs::{statfs, TMPFS_MAGIC};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub struct Staging {
    pub dir: PathBuf,
    /// Where, in words, for the result.
    pub medium: String,
}

fn is_tmpfs(p: &Path) -> bool {
    statfs(p).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC)
}

impl Staging {
    pub fn new() -> std::io::Result<Staging> {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let candidates = [Some(PathBuf::from("/dev/shm")), runtime];
        let (root, medium) = match candidates.into_iter().flatten().find(|p| is_tmpfs(p)) {
            Some(p) => (p.clone(), format!("{} (tmpfs)", p.display())),
            None => {
                let t = std::env::temp_dir();
                let m = format!(
                    "{} (no tmpfs found; the image touched this filesystem)",
                    t.display()
                );
                (t, m)
            }
        };
        sweep(&root);
        let mut n = 0;
        loop {
            let dir = root.join(format!("isotrace-migrate-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Staging { dir, medium }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", dir.display()),
                    ))
                }
            }
        }
    }
}

/// Removes `isotrace-migrate-PID-N` directories of ours whose PID is gone
/// (kill(2) with signal 0: ESRCH means no such process).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("isotrace-migrate-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let ours = e.metadata().is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == me
        });
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if ours && gone && pid > 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
