//! Messages queued on the image's unix datagram and seqpacket sockets
//! (section `dgrams.bin`, IMAGE.md), one entry per message so a restore
//! keeps their boundaries. MSG_PEEK only ever shows the first message,
//! so each socket is read through a duplicate of its fd (pidfd_getfd(2))
//! with a peek offset: with SO_PEEK_OFF set, a MSG_PEEK read starts that
//! many bytes into the queue and moves the offset past what it returned
//! (socket(7); net/unix/af_unix.c, unix_dgram_recvmsg), so successive
//! peeks walk the queue without consuming it. The socket's own peek
//! offset is put back afterwards. A queue that passes files
//! (SCM_RIGHTS) is recorded in `inflight.bin` instead, with them
//! (`inflight`); credentials (SCM_CREDENTIALS) are not recorded.

use super::inflight::{carries_files, Pending, Raw};
use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use crate::Image;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

/// The section's name.
pub const SECTION: &str = "dgrams.bin";

/// Socket inode -> the messages waiting to be read on it, oldest first.
pub type Dgrams = BTreeMap<u64, Vec<Vec<u8>>>;

/// The largest message read: more than a unix socket's default send
/// buffer (net.core.wmem_default, 208 KiB), which bounds a datagram.
const MAX_MESSAGE: usize = 4 << 20;

/// Reads the queues of every unix datagram or seqpacket socket of
/// `tree`, which must be stopped under the caller's ptrace. A socket
/// that cannot be read is left out (restored with an empty queue); one
/// whose queue passes files goes to `pending`.
pub fn capture(tree: &ProcessTree, pending: &mut Pending) -> Dgrams {
    let mut out = Dgrams::new();
    let mut buf = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(Some(SocketInfo::Unix { kind, state, .. })) = &e.kind else {
                continue;
            };
            // A listener's queue holds connections (`embryos`), not data.
            let listening = state == "listen";
            if !matches!(kind.as_str(), "dgram" | "seqpacket")
                || listening
                || out.contains_key(&e.ino)
            {
                continue;
            }
            let Ok(dup) = isotrace_tracer::sys::dup_remote_fd(p.pid, e.fd) else {
                continue;
            };
            if buf.is_empty() {
                buf = vec![0u8; MAX_MESSAGE];
            }
            match peek_all(&dup, &mut buf) {
                Ok(raws) if !carries_files(&raws) => {
                    if !raws.is_empty() {
                        out.insert(e.ino, raws.into_iter().map(|r| r.data).collect());
                    }
                }
                raws => {
                    pending.insert(e.ino, (p.pid, e.fd, raws));
                }
            }
        }
    }
    out
}

fn peek_off(fd: &OwnedFd) -> Option<i32> {
    sockopt::get_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF).ok()
}

fn set_peek_off(fd: &OwnedFd, v: i32) -> bool {
    sockopt::set(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_PEEK_OFF,
        &v.to_ne_bytes(),
    )
    .is_ok()
}

/// Every message queued on `fd`, peeked in order with a peek offset,
/// with the files it passes (see `inflight`); or why the queue cannot
/// be read whole.
fn peek_all(fd: &OwnedFd, buf: &mut [u8]) -> std::result::Result<Vec<Raw>, String> {
    let mut out = Vec::new();
    let Some(old) = peek_off(fd) else {
        return Ok(out);
    };
    if !set_peek_off(fd, 0) {
        return Ok(out);
    }
    let mut whole = Ok(());
    loop {
        // With MSG_TRUNC the result is the message's real length; one
        // larger than the buffer cannot be recorded whole.
        let (n, fds) = match sockopt::peek_with_fds(fd.as_fd(), buf, true) {
            Ok(p) if p.ctrunc => {
                whole = Err("the kernel cut a message's files short (MSG_CTRUNC)".to_string());
                break;
            }
            Ok(p) if p.len > buf.len() => {
                whole = Err(format!("a message of {} bytes", p.len));
                break;
            }
            Ok(p) => (p.len, p.fds),
            // EAGAIN: the queue is done; ENOTCONN: a seqpacket socket
            // that was never connected has none.
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOTCONN) => break,
            Err(e) => {
                whole = Err(format!("peek: {e}"));
                break;
            }
        };
        out.push(Raw {
            data: buf[..n].to_vec(),
            fds,
        });
        // An empty message does not move the peek offset: the walk ends
        // there (what follows it is not recorded).
        if n == 0 {
            break;
        }
    }
    set_peek_off(fd, old);
    whole.map(|()| out)
}

/// Captures the datagram queues of `tree` into the image being written
/// (no section when every queue is empty).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter, pending: &mut Pending) -> Result<()> {
    let data = capture(tree, pending);
    writer.write_optional(SECTION, &data)
}

/// The datagram queues of an image (none without the section).
pub fn read(image: &Image) -> Result<Dgrams> {
    image.optional(SECTION)
}
