//! Connected unix sockets between processes of an image (section
//! `sockets.bin`, IMAGE.md): each socket's peer, found by a
//! NETLINK_SOCK_DIAG dump (/proc/net/unix does not show peers, and a
//! socketpair has no name to match by), and for stream sockets the bytes
//! queued for reading, peeked through a duplicate of the fd
//! (pidfd_getfd(2)) without consuming them. A stream queue that passes
//! files (SCM_RIGHTS) is recorded in `inflight.bin` instead, with them.

use super::inflight::{carries_files, walk_stream, Pending};
use super::unix_diag;
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
    let diags = diags()?;
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

/// Every unix socket's peer and shutdown state, by inode.
fn diags() -> std::io::Result<BTreeMap<u64, Diag>> {
    let all = unix_diag::dump(unix_diag::SHOW_PEER)?;
    let mut out = BTreeMap::new();
    for (ino, attrs) in all {
        let mut d = Diag::default();
        for (kind, payload) in attrs {
            match kind {
                unix_diag::PEER => d.peer = unix_diag::u32_at(&payload, 0).map(u64::from),
                unix_diag::SHUTDOWN => d.shutdown = payload.first().copied().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(ino, d);
    }
    Ok(out)
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
        let diags = diags().unwrap();
        let (da, db) = (diags[&ino(&a)], diags[&ino(&b)]);
        assert_eq!((da.peer, da.shutdown), (Some(ino(&b)), 2), "SEND_SHUTDOWN");
        assert_eq!((db.peer, db.shutdown), (Some(ino(&a)), 1), "RCV_SHUTDOWN");
    }
}
