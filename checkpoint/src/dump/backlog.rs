//! Connections waiting in a listener's accept queue: a checkpoint does
//! not carry them (a TCP connection the program has not accepted has no
//! fd to read in repair mode; a unix one is an embryo socket only the
//! listener holds), so a listener with any refuses the checkpoint,
//! naming the pid, the fd and the listener, before anything is changed.
//! Each listener is looked at through a pidfd_getfd(2) duplicate: poll(2)
//! says whether its queue holds a connection, and for TCP, struct
//! tcp_info's `tcpi_unacked` is the queue's length on a listener
//! (net/ipv4/tcp.c, tcp_get_info: sk_ack_backlog).

use crate::error::{Error, Result};
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use std::os::fd::AsFd;

/// Offset of `tcpi_unacked` in struct tcp_info (<linux/tcp.h>): eight
/// u8 fields, then the u32s rto, ato, snd_mss, rcv_mss.
const TCPI_UNACKED: usize = 24;

/// The first listener of `tree` with connections in its accept queue,
/// as an error.
pub fn refuse_waiting(tree: &ProcessTree) -> Result<()> {
    for p in &tree.processes {
        for e in &p.fds {
            let tcp = match &e.kind {
                FdKind::Socket(Some(SocketInfo::Unix { state, .. })) if state == "listen" => false,
                FdKind::Socket(Some(SocketInfo::Inet { proto, state, .. }))
                    if proto.starts_with("tcp") && state == "LISTEN" =>
                {
                    true
                }
                _ => continue,
            };
            let Ok(dup) = isotrace_tracer::sys::dup_remote_fd(p.pid, e.fd) else {
                continue;
            };
            if !sockopt::readable(dup.as_fd()).unwrap_or(false) {
                continue;
            }
            let waiting = if tcp {
                sockopt::get(dup.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, 104)
                    .ok()
                    .and_then(|b| b.get(TCPI_UNACKED..TCPI_UNACKED + 4).map(|v| v.to_vec()))
                    .map(|v| u32::from_ne_bytes(v.try_into().expect("4 bytes")))
                    .map_or("connections".into(), |n| {
                        format!("{n} connection{}", if n == 1 { "" } else { "s" })
                    })
            } else {
                "connections".into()
            };
            return Err(Error::Invalid {
                what: format!(
                    "cannot checkpoint pid {}: fd {} ({} {}): a listening socket with {waiting} waiting in its accept queue (not accepted yet: they cannot be carried)",
                    p.pid,
                    e.fd,
                    e.kind.name(),
                    e.target
                ),
            });
        }
    }
    Ok(())
}
