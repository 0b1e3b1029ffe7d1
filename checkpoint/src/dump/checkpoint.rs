//! The dump of a group its supervisor holds at the freeze barrier (#5).
//!
//! The threads are the supervisor's own tracees, already in ptrace-stops:
//! nothing is seized, interrupted or detached here, and the caller resumes
//! (or kills) them afterwards. The image has the snapshot's format with
//! `"kind": "checkpoint"` (IMAGE.md), so `isotrace restore` reads it.

use super::tcp::{self, Held, TcpPolicy};
use super::{attach::StoppedThread, Dumped, Frozen};
use crate::error::{Error, Result};
use crate::image::{ImageWriter, Kind};
use crate::model::{FdEntry, FdKind, ProcessTree};
use std::path::Path;

/// Anonymous-inode files whose state the dump records (fdinfo) and that a
/// restore can rebuild from it.
const KNOWN_ANON: &[&str] = &[
    "[eventfd]",
    "[eventpoll]",
    "[timerfd]",
    "[signalfd]",
    "inotify",
    "[pidfd]",
    "[pidfd:]",
];

/// Dumps the stopped `threads` of processes `pids` (`root` first) into a
/// new image at `dir`, not yet committed. Refuses, naming the pid, the fd
/// and its kind, an fd that cannot be checkpointed; on any error nothing is
/// left at `dir`.
pub fn dump(root: i32, pids: Vec<i32>, threads: Vec<StoppedThread>, dir: &Path) -> Result<Dumped> {
    // Dropping the sockets held resumes the group's connections.
    dump_tcp(root, pids, threads, dir, TcpPolicy::Repair, false).map(|(dumped, _)| dumped)
}

/// [`dump`], carrying the established TCP connections as `policy` says
/// (`tcp`). The returned [`Held`] keeps the source's connections in
/// repair mode and locked until the caller resumes or releases them.
/// `runs_on`: the group is resumed before the commit (`--leave-running`),
/// so the image's disk writes are left to the commit
/// ([`ImageWriter::no_early_writeback`]).
pub fn dump_tcp(
    root: i32,
    pids: Vec<i32>,
    threads: Vec<StoppedThread>,
    dir: &Path,
    policy: TcpPolicy,
    runs_on: bool,
) -> Result<(Dumped, Held)> {
    let mut writer = ImageWriter::create(dir)?;
    if runs_on {
        writer.no_early_writeback();
    }
    dump_with(writer, root, pids, threads, policy)
}

/// [`dump_tcp`] at the freeze of a pre-copied migration: the pages `held`
/// names (pid to page addresses), which the receiver holds, are not read;
/// the image's sections leave them as holes (IMAGE.md, `held`).
pub fn dump_tcp_holding(
    root: i32,
    pids: Vec<i32>,
    threads: Vec<StoppedThread>,
    dir: &Path,
    policy: TcpPolicy,
    held: crate::precopy::group::Held,
) -> Result<(Dumped, Held)> {
    let mut writer = ImageWriter::create(dir)?;
    for (pid, pages) in held {
        writer.hold_pages(pid, pages);
    }
    dump_with(writer, root, pids, threads, policy)
}

/// The dump of [`dump_tcp`] and [`dump_tcp_holding`] into `writer`.
fn dump_with(
    writer: ImageWriter,
    root: i32,
    pids: Vec<i32>,
    threads: Vec<StoppedThread>,
    policy: TcpPolicy,
) -> Result<(Dumped, Held)> {
    // Before anything is read: a page still to come by post-copy would be
    // dumped as never touched, i.e. restored as zeroes.
    crate::restore::lazy::refuse_dump()?;
    let frozen = Frozen::adopt(pids, threads);
    super::inject_fault(root);
    let mut dumped = Dumped::new(&frozen, root, writer, Kind::Checkpoint)?;
    refuse_unsupported(dumped.tree())?;
    if let Some(why) = dumped.refusals().first() {
        return Err(Error::Invalid { what: why.clone() });
    }
    super::unread::refuse_waiting(dumped.tree())?;
    let udp = super::udp::capture(dumped.tree())?;
    if !udp.is_empty() {
        let bytes = crate::image::codec::encode(&udp)?;
        dumped.write_section(super::udp::SECTION, &bytes)?;
    }
    let (mut conns, held) = tcp::capture(dumped.tree(), policy)?;
    if !conns.sockets.is_empty() {
        conns.lock = held.lock_name();
        dumped.write_section(tcp::SECTION, &crate::image::codec::encode(&conns)?)?;
        let fin = conns.fins();
        if fin != tcp::TcpFins::default() {
            dumped.write_section(tcp::FIN_SECTION, &crate::image::codec::encode(&fin)?)?;
        }
    }
    Ok((dumped, held))
}

/// The first fd of the tree that a checkpoint cannot carry, as an error.
pub fn refuse_unsupported(tree: &ProcessTree) -> Result<()> {
    for p in &tree.processes {
        for e in &p.fds {
            if let Some(why) = unsupported(e) {
                return Err(Error::Invalid {
                    what: format!(
                        "cannot checkpoint pid {}: fd {} ({} {}): {why}",
                        p.pid,
                        e.fd,
                        e.kind.name(),
                        e.target
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Why one fd cannot be checkpointed, if it cannot.
pub fn unsupported(e: &FdEntry) -> Option<&'static str> {
    match &e.kind {
        FdKind::AnonInode(name) if name == "[io_uring]" => {
            Some("io_uring rings live in the kernel and cannot be dumped")
        }
        FdKind::AnonInode(name) if name == "[userfaultfd]" => {
            Some("userfaultfd state cannot be dumped")
        }
        FdKind::AnonInode(name) if !KNOWN_ANON.contains(&name.as_str()) => {
            Some("this kind of anonymous-inode file cannot be dumped")
        }
        // The memory devices (null, zero, full, random, urandom: major 1)
        // have no state; any other device has state we cannot see.
        FdKind::Device { major, .. } if *major != 1 => Some("a device"),
        FdKind::Other => Some("an fd of unknown kind"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SocketInfo;

    fn entry(kind: FdKind) -> FdEntry {
        FdEntry {
            fd: 5,
            target: "x".into(),
            kind,
            ..Default::default()
        }
    }

    #[test]
    fn refuses_what_cannot_be_carried() {
        let refused = |k: FdKind| unsupported(&entry(k)).is_some();
        assert!(refused(FdKind::AnonInode("[io_uring]".into())));
        assert!(refused(FdKind::AnonInode("[userfaultfd]".into())));
        assert!(refused(FdKind::Device {
            major: 10,
            minor: 200
        }));
        assert!(!refused(FdKind::Device { major: 1, minor: 3 }));
        assert!(!refused(FdKind::AnonInode("[eventfd]".into())));
        assert!(!refused(FdKind::File { deleted: false }));
        assert!(!refused(FdKind::Pipe));
        let tcp = |state: &str| {
            FdKind::Socket(Some(SocketInfo::Inet {
                proto: "tcp".into(),
                local: "127.0.0.1:80".into(),
                remote: "0.0.0.0:0".into(),
                state: state.into(),
            }))
        };
        assert!(!refused(tcp("LISTEN")));
        assert!(!refused(tcp("ESTABLISHED")));
        let udp = FdKind::Socket(Some(SocketInfo::Inet {
            proto: "udp".into(),
            local: "127.0.0.1:53".into(),
            remote: "127.0.0.1:5353".into(),
            state: "ESTABLISHED".into(),
        }));
        assert!(!refused(udp), "connected again at restore");
    }

    #[test]
    fn the_error_names_pid_fd_and_kind() {
        let mut tree = ProcessTree::default();
        tree.processes.push(crate::model::Process {
            pid: 42,
            fds: vec![entry(FdKind::AnonInode("[io_uring]".into()))],
            ..Default::default()
        });
        let e = refuse_unsupported(&tree).unwrap_err().to_string();
        assert!(
            e.contains("pid 42") && e.contains("fd 5") && e.contains("anon_inode"),
            "{e}"
        );
    }
}
