//! Connections waiting in the accept queue of the image's unix listeners
//! (section `embryos.bin`, IMAGE.md). A connect(2) to a unix stream or
//! seqpacket listener makes a new socket, the embryo, connected to the
//! client and queued on the listener until accept(2) hands it out
//! (net/unix/af_unix.c, unix_stream_connect). No fd leads to an embryo,
//! but a NETLINK_SOCK_DIAG dump shows a listener's queue as the inodes
//! of the embryos' peers, in queue order (UNIX_DIAG_ICONS). An embryo is
//! in no socket table, so what its client sent is seen from the client:
//! UNIX_DIAG_RQLEN's write queue of a connected socket is the memory its
//! sent skbs still hold (unix_outq_len, sk_wmem_alloc), 0 once its peer
//! has read everything.
//!
//! A connection is carried when its client is a socket of the image and
//! its embryo holds no data: a restore connects the client again to the
//! rebuilt listener, in queue order, and the program accepts it as it
//! would have. One whose client is outside the group, or whose embryo
//! holds bytes the program has not read (they cannot be peeked without
//! accepting), refuses the checkpoint, naming the pid, the fd and the
//! listener.

use super::unix_diag;
use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use crate::Image;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

/// The section's name.
pub const SECTION: &str = "embryos.bin";

/// Listener inode -> the inodes of the clients of the connections
/// waiting in its accept queue, oldest first.
pub type Embryos = BTreeMap<u64, Vec<u64>>;

/// What sock_diag says of one unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diag {
    /// A listener's queue: its embryos' peers (0: the client is gone).
    pub icons: Vec<u64>,
    /// Bytes queued for reading (a listener: connections).
    pub rqueue: u32,
    /// Memory of what it sent that its peer has not read (a listener:
    /// its backlog).
    pub wqueue: u32,
}

/// Reads the accept queues of `tree`'s unix listeners (stopped under the
/// caller's ptrace). Returns what can be carried and a refusal for each
/// listener with a connection that cannot.
pub fn capture(tree: &ProcessTree) -> (Embryos, Vec<String>) {
    let held: BTreeSet<u64> = tree
        .processes
        .iter()
        .flat_map(|p| &p.fds)
        .map(|e| e.ino)
        .collect();
    let mut out = Embryos::new();
    let mut refusals = Vec::new();
    let mut diags: Option<std::io::Result<BTreeMap<u64, Diag>>> = None;
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(Some(SocketInfo::Unix { state, .. })) = &e.kind else {
                continue;
            };
            if state != "listen" || out.contains_key(&e.ino) {
                continue;
            }
            // poll(2): a listener is readable when a connection waits.
            let waiting = isotrace_tracer::sys::dup_remote_fd(p.pid, e.fd)
                .ok()
                .is_some_and(|dup| sockopt::readable(dup.as_fd()).unwrap_or(false));
            if !waiting {
                continue;
            }
            let refuse = |why: String| {
                format!(
                    "cannot checkpoint pid {}: fd {} (socket {}): a listening socket with connections waiting in its accept queue: {why}",
                    p.pid, e.fd, e.target
                )
            };
            let all = match diags.get_or_insert_with(dump) {
                Ok(all) => all,
                Err(err) => {
                    refusals.push(refuse(format!("sock_diag: {err}")));
                    continue;
                }
            };
            match clients(all, e.ino, &held) {
                Ok(clients) => {
                    out.insert(e.ino, clients);
                }
                Err(why) => refusals.push(refuse(why)),
            }
        }
    }
    (out, refusals)
}

/// The clients of listener `ino`'s waiting connections, or why one of
/// them cannot be carried.
fn clients(
    all: &BTreeMap<u64, Diag>,
    ino: u64,
    held: &BTreeSet<u64>,
) -> std::result::Result<Vec<u64>, String> {
    let icons = all.get(&ino).map(|d| d.icons.clone()).unwrap_or_default();
    if icons.is_empty() {
        return Err("sock_diag shows none of them".into());
    }
    for &client in &icons {
        if client == 0 {
            return Err("one whose client has closed its end".into());
        }
        if !held.contains(&client) {
            return Err(format!("one from socket {client}, outside the group"));
        }
        if all.get(&client).is_some_and(|d| d.wqueue > 0) {
            return Err(format!(
                "one holding data its client (socket {client}) sent, unread until accepted: not carried"
            ));
        }
    }
    Ok(icons)
}

/// Every unix socket of the network namespace, by inode.
fn dump() -> std::io::Result<BTreeMap<u64, Diag>> {
    let all = unix_diag::dump(unix_diag::SHOW_ICONS | unix_diag::SHOW_RQLEN)?;
    let mut out = BTreeMap::new();
    for (ino, attrs) in all {
        let mut d = Diag::default();
        for (kind, payload) in attrs {
            match kind {
                unix_diag::ICONS => {
                    d.icons = payload
                        .chunks_exact(4)
                        .filter_map(|c| unix_diag::u32_at(c, 0).map(u64::from))
                        .collect();
                }
                unix_diag::RQLEN => {
                    d.rqueue = unix_diag::u32_at(&payload, 0).unwrap_or(0);
                    d.wqueue = unix_diag::u32_at(&payload, 4).unwrap_or(0);
                }
                _ => {}
            }
        }
        out.insert(ino, d);
    }
    Ok(out)
}

/// Captures the accept queues of `tree`'s unix listeners into the image
/// being written (no section when none waits); returns them and the
/// refusals.
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<(Embryos, Vec<String>)> {
    let (embryos, refusals) = capture(tree);
    writer.write_optional(SECTION, &embryos)?;
    Ok((embryos, refusals))
}

/// The waiting connections of an image (none without the section).
pub fn read(image: &Image) -> Result<Embryos> {
    image.optional(SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn ino(fd: &impl std::os::fd::AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    /// The kernel lists a listener's waiting connections by their clients,
    /// in order, and the data one of them sent shows on its embryo.
    #[test]
    fn sees_waiting_connections_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let l = UnixListener::bind(&path).unwrap();
        let a = UnixStream::connect(&path).unwrap();
        let b = UnixStream::connect(&path).unwrap();
        use std::io::Write;
        (&b).write_all(b"xyz").unwrap();
        let all = dump().unwrap();
        assert_eq!(all[&ino(&l)].icons, vec![ino(&a), ino(&b)]);
        let held: BTreeSet<u64> = [ino(&a), ino(&b)].into();
        let why = clients(&all, ino(&l), &held).unwrap_err();
        assert!(why.contains("holding data"), "{why}");
        let only_a: BTreeSet<u64> = [ino(&a)].into();
        assert!(clients(&all, ino(&l), &only_a)
            .unwrap_err()
            .contains("outside the group"));
    }
}
