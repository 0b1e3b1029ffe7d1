//! Whose credentials the supervisor's own file operations use.
//!
//! Some calls are carried out by the supervisor, not by the kernel in the
//! tracee: unlink/rmdir (a whiteout must hide the host object) and the
//! fd-based metadata calls on host files (chmod/chown/utimes of the
//! private copy). The kernel would have checked the tracee's fsuid, fsgid
//! and groups; a root supervisor must not do for a tracee that dropped
//! privileges what the tracee could not do itself. So those operations run
//! under the tracee's file-system credentials (`with_fs_creds`, one thread
//! only), and the one rule a whiteout cannot get from the kernel, the
//! sticky directory's (inode(7), S_ISVTX), is checked here.
//!
//! Credentials are read from /proc/TID/status and kept per thread until
//! the thread calls a set*id function or capset (trapped under isolation
//! for this), execs (set-user-ID programs), or ends.

use isotrace_tracer::sys::FsCreds;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One thread's credentials as far as file access goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracee {
    pub fs: FsCreds,
    /// CAP_FOWNER in the effective set: exempt from the sticky rule.
    pub fowner: bool,
}

pub struct Creds {
    /// The supervisor thread's own, to tell when a switch is needed.
    own: Option<Tracee>,
    by_tid: HashMap<i32, Tracee>,
}

const CAP_FOWNER: u32 = 3;

impl Creds {
    pub fn new() -> Creds {
        Creds {
            own: read("/proc/thread-self/status"),
            by_tid: HashMap::new(),
        }
    }

    /// The thread's credentials (None if /proc cannot tell: it is gone).
    pub fn of(&mut self, tid: i32) -> Option<&Tracee> {
        match self.by_tid.entry(tid) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                Some(v.insert(read(&format!("/proc/{tid}/status"))?))
            }
        }
    }

    /// Whether the supervisor must switch to `t`'s credentials.
    pub fn differ(&self, t: &Tracee) -> bool {
        self.own.as_ref().is_none_or(|own| own.fs != t.fs)
    }

    pub fn forget(&mut self, tid: i32) {
        self.by_tid.remove(&tid);
    }
}

/// An O_PATH fd on `path`, opened with the supervisor's own rights, and
/// the /proc/thread-self/fd link that names it. An operation done under a
/// tracee's credentials goes through that link, so that the kernel checks
/// the object itself and not the way to it: the store's directories are
/// the supervisor's, and a tracee that dropped privileges may not search
/// them. The link may be followed under any fsuid by the process itself
/// (fs/proc/fd.c, proc_fd_permission).
pub fn via_fd(path: &Path) -> Result<(std::os::fd::OwnedFd, std::path::PathBuf), i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let fd: std::os::fd::OwnedFd = file.into();
    let link = std::path::PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
    Ok((fd, link))
}

/// The sticky rule for removing `object` from `parent` (both real paths):
/// in a directory with S_ISVTX only the object's owner, the directory's
/// owner or a holder of CAP_FOWNER may remove or rename it.
pub fn sticky_denies(t: &Tracee, parent: &Path, object: &Path) -> bool {
    if t.fowner {
        // Exempt (root, mostly): no stat on this path of every unlink.
        return false;
    }
    let (Ok(dir), Ok(obj)) = (
        std::fs::symlink_metadata(parent),
        std::fs::symlink_metadata(object),
    ) else {
        return false;
    };
    dir.mode() & libc::S_ISVTX != 0 && !t.fowner && t.fs.uid != obj.uid() && t.fs.uid != dir.uid()
}

/// Parses the Uid/Gid/Groups/CapEff lines of a /proc status file: the
/// fourth Uid and Gid fields are the file-system ids (proc(5)).
fn read(path: &str) -> Option<Tracee> {
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text)
}

fn parse(text: &str) -> Option<Tracee> {
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
    let fourth =
        |name: &str| -> Option<u32> { field(name)?.split_whitespace().nth(3)?.parse().ok() };
    let groups = field("Groups:")?
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    let caps = u64::from_str_radix(field("CapEff:")?.trim(), 16).ok()?;
    Some(Tracee {
        fs: FsCreds {
            uid: fourth("Uid:")?,
            gid: fourth("Gid:")?,
            groups,
        },
        fowner: caps & (1 << CAP_FOWNER) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t50\t51\t52\t53\nGroups:\t4 24 \nCapEff:\t0000000000000008\n";
        let t = parse(text).unwrap();
        assert_eq!(t.fs.uid, 1003);
        assert_eq!(t.fs.gid, 53);
        assert_eq!(t.fs.groups, vec![4, 24]);
        assert!(t.fowner);
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\t0\n";
        let t = parse(none).unwrap();
        assert!(t.fs.groups.is_empty() && !t.fowner);
    }
}
