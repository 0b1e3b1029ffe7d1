//! What waits to be read that a checkpoint does not carry, found before
//! anything is changed, each refusing the checkpoint with the pid, the fd
//! and the file (the group runs on, its queues untouched: everything here
//! is looked at through a pidfd_getfd(2) duplicate, without reading):
//!
//! - connections waiting in a TCP listener's accept queue: one the
//!   program has not accepted has no fd to read in repair mode. poll(2)
//!   says whether the queue holds one, and struct tcp_info's
//!   `tcpi_unacked` is the queue's length on a listener (net/ipv4/tcp.c,
//!   tcp_get_info: sk_ack_backlog). A unix listener's are carried or
//!   refused by `embryos`;
//! - events queued on an inotify fd (FIONREAD, inotify(7)): a new
//!   instance cannot be given events that did not happen to it.

use crate::error::{Error, Result};
use crate::model::{FdEntry, FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use std::os::fd::AsFd;

/// Offset of `tcpi_unacked` in struct tcp_info (<linux/tcp.h>): eight
/// u8 fields, then the u32s rto, ato, snd_mss, rcv_mss.
const TCPI_UNACKED: usize = 24;

/// The first fd of `tree` with something waiting that cannot be
/// carried, as an error.
pub fn refuse_waiting(tree: &ProcessTree) -> Result<()> {
    for p in &tree.processes {
        for e in &p.fds {
            if let Some(why) = waiting(p.pid, e) {
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

/// What waits on fd `e` of `pid` that cannot be carried, if anything.
fn waiting(pid: i32, e: &FdEntry) -> Option<String> {
    enum Look {
        Listener,
        Inotify,
    }
    let look = match &e.kind {
        FdKind::Socket(Some(SocketInfo::Inet { proto, state, .. })) if proto.starts_with("tcp") => {
            if state != "LISTEN" {
                return None;
            }
            Look::Listener
        }
        FdKind::AnonInode(name) if name == "inotify" => Look::Inotify,
        _ => return None,
    };
    let dup = isotrace_tracer::sys::dup_remote_fd(pid, e.fd).ok()?;
    let fd = dup.as_fd();
    match look {
        Look::Listener => {
            if !sockopt::readable(fd).unwrap_or(false) {
                return None;
            }
            let count = sockopt::get(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 104)
                .ok()
                .and_then(|b| {
                    Some(u32::from_ne_bytes(
                        b.get(TCPI_UNACKED..TCPI_UNACKED + 4)?.try_into().ok()?,
                    ))
                });
            let waiting = match count {
                Some(1) => "1 connection".to_string(),
                Some(n) => format!("{n} connections"),
                None => "connections".to_string(),
            };
            Some(format!(
                "a listening socket with {waiting} waiting in its accept queue (not accepted yet: a TCP connection without an fd cannot be carried)"
            ))
        }
        Look::Inotify => {
            let bytes = sockopt::ioctl_int(fd, libc::FIONREAD).unwrap_or(0);
            (bytes > 0).then(|| {
                format!("an inotify fd with {bytes} bytes of events queued (a new instance cannot be given them: not carried)")
            })
        }
    }
}
