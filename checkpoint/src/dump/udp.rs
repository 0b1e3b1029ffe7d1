//! Datagrams queued on the image's UDP sockets (section `udp.bin`,
//! IMAGE.md). A datagram's sender is part of it (recvfrom(2) hands its
//! address to the reader, and a connected socket only takes its peer's,
//! udp(7)), so one is carried only when its sender is a UDP socket of
//! the image: a restore sends it again from that rebuilt socket. One
//! from anywhere else refuses the checkpoint, naming the pid, the fd, the
//! socket and the sender's address.
//!
//! The queue is walked without consuming it, through a pidfd_getfd(2)
//! duplicate with a peek offset (SO_PEEK_OFF: each MSG_PEEK starts past
//! the last, net/ipv4/udp.c, udp_recvmsg; empty datagrams included), and
//! the socket's peek offset is put back. SO_RCVBUF is kept so the queue
//! fits again.

use crate::error::{Error, Result};
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

/// The section's name.
pub const SECTION: &str = "udp.bin";

/// One queued datagram and the image's socket that sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    pub from: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpQueue {
    /// SO_RCVBUF as getsockopt(2) gives it (twice what was set, socket(7)).
    pub rcvbuf: i32,
    /// Oldest first.
    pub datagrams: Vec<Datagram>,
}

/// Receiving socket inode -> its queue.
pub type UdpQueues = BTreeMap<u64, UdpQueue>;

/// The largest datagram: a UDP payload is at most 65507 (IPv4) or 65527
/// bytes (IPv6 without jumbograms).
const MAX_DATAGRAM: usize = 65536;

/// The image's UDP sockets: inode -> local address.
fn locals(tree: &ProcessTree) -> BTreeMap<u64, SocketAddr> {
    let procs: Vec<&crate::model::Process> = tree.processes.iter().collect();
    crate::restore::sockets::inet_sockets(&procs)
        .into_iter()
        .filter(|(_, s)| s.proto.starts_with("udp"))
        .map(|(ino, s)| (ino, s.local))
        .collect()
}

/// The image's socket a datagram from `from` was sent by: the one bound
/// to that address, or to the unspecified address of its family and that
/// port.
pub fn sender(locals: &BTreeMap<u64, SocketAddr>, from: &SocketAddr) -> Option<u64> {
    let exact = locals.iter().find(|(_, a)| *a == from);
    let wildcard = || {
        locals.iter().find(|(_, a)| {
            a.port() == from.port() && a.ip().is_unspecified() && a.is_ipv4() == from.is_ipv4()
        })
    };
    exact.or_else(wildcard).map(|(ino, _)| *ino)
}

/// Reads the queue of every UDP socket of `tree` (stopped under the
/// caller's ptrace). A datagram whose sender is not in the image refuses
/// the checkpoint.
pub fn capture(tree: &ProcessTree) -> Result<UdpQueues> {
    let locals = locals(tree);
    let mut out = UdpQueues::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(Some(SocketInfo::Inet { proto, .. })) = &e.kind else {
                continue;
            };
            if !proto.starts_with("udp") || out.contains_key(&e.ino) {
                continue;
            }
            let Ok(dup) = isotrace_tracer::sys::dup_remote_fd(p.pid, e.fd) else {
                continue;
            };
            let refuse = |why: String| {
                Error::Invalid {
                what: format!(
                    "cannot checkpoint pid {}: fd {} (socket {}): a UDP socket with datagrams queued: {why}",
                    p.pid, e.fd, e.target
                ),
            }
            };
            let queued = walk(dup.as_fd(), &mut buf).map_err(&refuse)?;
            if queued.is_empty() {
                continue;
            }
            let mut datagrams = Vec::new();
            for (from, data) in queued {
                let Some(sender) = from.as_ref().and_then(|f| sender(&locals, f)) else {
                    let from = from.map_or("an unknown address".into(), |f| f.to_string());
                    return Err(refuse(format!(
                        "one from {from}, no socket of the group (its sender cannot be given back: not carried)"
                    )));
                };
                datagrams.push(Datagram { from: sender, data });
            }
            let rcvbuf = sockopt::get_int(dup.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF)
                .map_err(|e| refuse(format!("SO_RCVBUF: {e}")))?;
            out.insert(e.ino, UdpQueue { rcvbuf, datagrams });
        }
    }
    Ok(out)
}

/// A datagram as peeked: its sender's address (None: not an inet one)
/// and its bytes.
pub type Peeked = (Option<SocketAddr>, Vec<u8>);

/// Every datagram queued on `fd` with its sender, oldest first, peeked
/// with a peek offset that is put back; or why the queue cannot be read
/// whole.
pub fn walk(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::result::Result<Vec<Peeked>, String> {
    // Nothing queued (poll(2) shows an empty datagram too): no walk.
    if !sockopt::readable(fd).map_err(|e| format!("poll: {e}"))? {
        return Ok(Vec::new());
    }
    let old = sockopt::get_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let set = |v: i32| sockopt::set(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &v.to_ne_bytes());
    set(0).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let mut out = Vec::new();
    let walked = loop {
        match sockopt::peek_from(fd, buf) {
            Ok((n, _)) if n > buf.len() => break Err(format!("a datagram of {n} bytes")),
            Ok((n, from)) => out.push((from, buf[..n].to_vec())),
            Err(nix::errno::Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(format!("peek: {e}")),
        }
    };
    let _ = set(old);
    walked.map(|()| out)
}

/// The UDP queues of an image (none without the section).
pub fn read(image: &Image) -> Result<UdpQueues> {
    image.optional(SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Datagrams from two senders, an empty one among them, are walked
    /// in order with their senders, and stay queued.
    #[test]
    fn walks_a_queue_with_its_senders() {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("0.0.0.0:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = r.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(b"", to).unwrap();
        a.send_to(b"three", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let got = walk(r.as_fd(), &mut buf).unwrap();
        let data: Vec<&[u8]> = got.iter().map(|(_, d)| &d[..]).collect();
        assert_eq!(data, vec![&b"one"[..], b"", b"three"]);
        let locals: BTreeMap<u64, SocketAddr> =
            [(1, a.local_addr().unwrap()), (2, b.local_addr().unwrap())].into();
        let senders: Vec<Option<u64>> = got
            .iter()
            .map(|(f, _)| sender(&locals, f.as_ref().unwrap()))
            .collect();
        assert_eq!(senders, vec![Some(1), Some(2), Some(1)]);
        let mut first = [0u8; 8];
        assert_eq!(r.recv(&mut first).unwrap(), 3, "still queued");
    }
}
