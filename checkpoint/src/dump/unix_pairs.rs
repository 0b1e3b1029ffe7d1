//! Connected unix sockets between processes of an image (section
//! `sockets.bin`, IMAGE.md): each socket's peer, found by a
//! NETLINK_SOCK_DIAG dump (/proc/net/unix does not show peers, and a
//! socketpair has no name to match by), and for stream sockets the bytes
//! queued for reading, peeked through a duplicate of the fd
//! (pidfd_getfd(2)) without consuming them. A stream queue that passes
//! files (SCM_RIGHTS) is recorded in `inflight.bin` instead, with them.

use super::inflight::{carries_files, walk_stream, Pending};
use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "sockets.bin";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocket {
    /// The peer's inode.
    pub peer: u64,
    /// Stream sockets: the bytes queued for reading.
    pub queued: Vec<u8>,
    /// sk_shutdown: RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2) bits
    /// (include/net/sock.h), set by shutdown(2) on it or its peer.
    pub shutdown: u8,
}

/// What sock_diag says of one unix socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diag {
    pub peer: Option<u64>,
    pub shutdown: u8,
}

/// Socket inode -> its peer and queue, for unix sockets of the image
/// whose peer is in the image too.
pub type Pairs = BTreeMap<u64, UnixSocket>;

/// Reads the pairs of `tree`, whose processes must be stopped under the
/// caller's ptrace (pidfd_getfd needs ptrace access). Stream queues that
/// pass files go to `pending` (their `queued` stays empty).
pub fn capture(tree: &ProcessTree, pending: &mut Pending) -> std::io::Result<Pairs> {
    let mut held = BTreeMap::new();
    for p in &tree.processes {
        for e in &p.fds {
            if let FdKind::Socket(Some(SocketInfo::Unix { kind, .. })) = &e.kind {
                held.entry(e.ino).or_insert((p.pid, e.fd, kind.clone()));
            }
        }
    }
    if held.is_empty() {
        return Ok(Pairs::new());
    }
    let mut diags = BTreeMap::new();
    crate::sys::netlink_query(libc::NETLINK_SOCK_DIAG, &request(), |b| {
        parse(b, &mut diags)
    })?;
    let mut out = Pairs::new();
    for (ino, (pid, fd, kind)) in &held {
        let Some(diag) = diags.get(ino) else { continue };
        let Some(peer) = diag.peer.filter(|p| held.contains_key(p)) else {
            continue;
        };
        let raws = match kind.as_str() {
            "stream" => isotrace_tracer::sys::dup_remote_fd(*pid, *fd)
                .map_err(|e| format!("pidfd_getfd: {e}"))
                .and_then(|dup| walk_stream(&dup).map_err(|e| e.to_string())),
            _ => Ok(Vec::new()),
        };
        let queued = match raws {
            Ok(raws) if !carries_files(&raws) => raws.into_iter().flat_map(|r| r.data).collect(),
            raws => {
                pending.insert(*ino, (*pid, *fd, raws));
                Vec::new()
            }
        };
        let shutdown = diag.shutdown;
        out.insert(
            *ino,
            UnixSocket {
                peer,
                queued,
                shutdown,
            },
        );
    }
    Ok(out)
}

/// Captures the pairs of `tree` into the image being written, and
/// returns them. A failed netlink dump only leaves the section out (the
/// restore then refuses the sockets, naming them).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter, pending: &mut Pending) -> Result<Pairs> {
    let pairs = capture(tree, pending).unwrap_or_default();
    writer.write_optional(SECTION, &pairs)?;
    Ok(pairs)
}

/// The pairs of an image (empty without the section).
pub fn read(image: &Image) -> Result<Pairs> {
    image.optional(SECTION)
}

/// nlmsghdr + unix_diag_req (<linux/unix_diag.h>): every state, peers.
fn request() -> Vec<u8> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    const UDIAG_SHOW_PEER: u32 = 0x4;
    let mut req = Vec::with_capacity(40);
    req.extend(40u32.to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend(NLM_F_REQUEST_DUMP.to_ne_bytes());
    req.extend(1u32.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend([libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend(u32::MAX.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend(UDIAG_SHOW_PEER.to_ne_bytes());
    req.extend([0u8; 8]);
    req
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Adds the sockets of one batch of netlink messages; true at
/// NLMSG_DONE.
fn parse(mut buf: &[u8], diags: &mut BTreeMap<u64, Diag>) -> std::io::Result<bool> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const UNIX_DIAG_PEER: u16 = 2;
    const UNIX_DIAG_SHUTDOWN: u16 = 6;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad sock_diag message");
    while buf.len() >= 16 {
        let len = u32_at(buf, 0).ok_or_else(bad)? as usize;
        if len < 16 || len > buf.len() {
            return Err(bad());
        }
        match u16_at(buf, 4).ok_or_else(bad)? {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(buf, 16).ok_or_else(bad)? as i32;
                return Err(std::io::Error::from_raw_os_error(-errno));
            }
            _ => {}
        }
        // unix_diag_msg: family, type, state, pad, ino (u32), cookie[2];
        // then rtattrs (u16 len, u16 type, payload, 4-byte aligned).
        let msg = &buf[16..len];
        let ino = u32_at(msg, 4).ok_or_else(bad)? as u64;
        let diag = diags.entry(ino).or_default();
        let mut attrs = msg.get(16..).unwrap_or_default();
        while let (Some(alen), Some(atype)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
            let alen = alen as usize;
            if alen < 4 || alen > attrs.len() {
                break;
            }
            match atype {
                UNIX_DIAG_PEER => diag.peer = u32_at(attrs, 4).map(u64::from),
                UNIX_DIAG_SHUTDOWN => diag.shutdown = attrs.get(4).copied().unwrap_or(0),
                _ => {}
            }
            attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel answers with both ends of a socketpair of ours.
    #[test]
    fn finds_the_peer_of_a_socketpair() {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ino = |s: &std::os::unix::net::UnixStream| {
            use std::os::fd::AsRawFd;
            std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap()
                .ino()
        };
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut diags = BTreeMap::new();
        crate::sys::netlink_query(libc::NETLINK_SOCK_DIAG, &request(), |b| {
            parse(b, &mut diags)
        })
        .unwrap();
        let (da, db) = (diags[&ino(&a)], diags[&ino(&b)]);
        assert_eq!((da.peer, da.shutdown), (Some(ino(&b)), 2), "SEND_SHUTDOWN");
        assert_eq!((db.peer, db.shutdown), (Some(ino(&a)), 1), "RCV_SHUTDOWN");
    }
}
