//! The fd table: /proc/PID/fd/N (the link and, through it, the object's
//! type) and /proc/PID/fdinfo/N (offset, flags and per-kind details).

use super::procfs::parse_fdinfo;
use super::sockets::{self, SocketTable};
use super::{vanished, ProcDir};
use crate::error::Result;
use crate::model::{FdEntry, FdKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub fn dump(proc: &ProcDir) -> Result<Vec<FdEntry>> {
    let pid = proc.pid;
    let dir = proc.path("fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| vanished(pid, &dir, e))?;
    let mut fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let mut sockets: Option<SocketTable> = None;
    let mut out = Vec::with_capacity(fds.len());
    for fd in fds {
        // An fd closed between readdir and here is simply not in the image:
        // the process was stopped, so only a thread we failed to stop could
        // do that, and the freeze already ruled that out.
        let Ok(target) = std::fs::read_link(format!("{dir}/{fd}")) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target == "anon_inode:[timerfd]" {
            settle_timerfd(pid, fd);
        }
        let info = std::fs::read_to_string(proc.path(&format!("fdinfo/{fd}")))
            .map(|t| parse_fdinfo(&t))
            .unwrap_or_default();
        let meta = std::fs::metadata(format!("{dir}/{fd}")).ok();
        let mut kind = classify(&target, meta.as_ref());
        if let FdKind::Socket(slot) = &mut kind {
            let table = sockets.get_or_insert_with(|| sockets::load(&proc.path("net")));
            let ino = meta.as_ref().map_or(info.ino, MetadataExt::ino);
            *slot = table.get(&ino).cloned();
        }
        out.push(FdEntry {
            fd,
            ino: meta.as_ref().map_or(info.ino, MetadataExt::ino),
            target,
            pos: info.pos,
            flags: info.flags,
            mnt_id: info.mnt_id,
            kind,
            fdinfo_extra: info.extra,
        });
    }
    Ok(out)
}

/// Brings a periodic timerfd's count up to date before its fdinfo is
/// read. After its first expiry the kernel stops the timer and counts
/// the periods that passed only when the timer is next read or queried
/// (fs/timerfd.c: timerfd_read and timerfd_gettime call
/// hrtimer_forward_now), so until then fdinfo shows `ticks: 1` and no
/// remaining time. timerfd_gettime(2), run here on a duplicate of the fd
/// (pidfd_getfd(2): the same open file), does that accounting without
/// consuming anything. Best effort: without it the fdinfo is as it was.
fn settle_timerfd(pid: i32, fd: i32) {
    use std::os::fd::AsFd;
    let Ok(dup) = isotrace_tracer::sys::dup_remote_fd(pid, fd) else {
        return;
    };
    let _ = crate::sys::files::timerfd_settle(dup.as_fd());
}

/// The kind of an open file from its /proc link text and the stat of the
/// object it points to (proc(5), /proc/pid/fd: "type:[inode]" for pipes,
/// sockets and anonymous inodes).
pub fn classify(target: &str, meta: Option<&std::fs::Metadata>) -> FdKind {
    if target.starts_with("pipe:[") {
        return FdKind::Pipe;
    }
    if target.starts_with("socket:[") {
        return FdKind::Socket(None);
    }
    if let Some(name) = target.strip_prefix("anon_inode:") {
        return FdKind::AnonInode(name.to_owned());
    }
    if let Some(name) = target.strip_prefix("/memfd:") {
        let name = name.strip_suffix(" (deleted)").unwrap_or(name);
        return FdKind::Memfd(name.to_owned());
    }
    let Some(meta) = meta else {
        return FdKind::Other;
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        FdKind::Dir
    } else if ft.is_fifo() {
        FdKind::Fifo
    } else if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        // TTY_MAJOR 4, TTYAUX_MAJOR 5 (/dev/tty, ptmx), UNIX98 pty slaves
        // 136-143 (Documentation/admin-guide/devices.txt).
        if ft.is_char_device() && (major == 4 || major == 5 || (136..=143).contains(&major)) {
            FdKind::Tty
        } else {
            FdKind::Device { major, minor }
        }
    } else if ft.is_file() {
        FdKind::File {
            deleted: target.ends_with(" (deleted)"),
        }
    } else {
        FdKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_links() {
        assert_eq!(classify("pipe:[123]", None), FdKind::Pipe);
        assert_eq!(classify("socket:[9]", None), FdKind::Socket(None));
        assert_eq!(
            classify("anon_inode:[eventfd]", None),
            FdKind::AnonInode("[eventfd]".into())
        );
        assert_eq!(
            classify("/memfd:buf (deleted)", None),
            FdKind::Memfd("buf".into())
        );
        let null = std::fs::metadata("/dev/null").unwrap();
        assert_eq!(
            classify("/dev/null", Some(&null)),
            FdKind::Device { major: 1, minor: 3 }
        );
        let dir = std::fs::metadata("/").unwrap();
        assert_eq!(classify("/", Some(&dir)), FdKind::Dir);
    }
}
