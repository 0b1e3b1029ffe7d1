//! A port shared between a group and its clone on the same host
//! (`isotrace clone --ports share`, README "Checkpoint, restore,
//! migration"): its TCP listeners and its UDP sockets bound to a port.
//! One network namespace holds two listeners (or two UDP sockets) of one
//! port only through SO_REUSEPORT (socket(7)): the option must be set on
//! every socket of the port, and they must all belong to one effective
//! uid (inet_csk_bind_conflict(), udp_lib_lport_inuse(): `sk_reuseport &&
//! sk2->sk_reuseport && uid_eq(uid, sk_uid(sk2))`). The kernel then
//! spreads new connections, and datagrams by their source address, over
//! the sockets (reuseport_select_sock()): that is the scale-out.
//!
//! The source's listeners are reached while the group is frozen, through
//! pidfd_getfd(2) duplicates: SO_REUSEPORT is set on the open file
//! description the source listens on, so the source sees it too. A
//! listener that is already listening may take the option: the copy's
//! listen(2) then makes a reuseport group of the two
//! (reuseport_add_sock() allocates one for the first socket). The restore
//! side is `restore::sockets` (a listener whose bind finds its port taken
//! tries again with SO_REUSEPORT; a UDP socket's queued datagrams stay
//! with the original, `restore::udp`).

use crate::error::{Error, Result};
use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::sys::sockopt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// One TCP listener, or UDP socket with a port, of the group: where it
/// listens, whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub pid: i32,
    pub fd: i32,
    pub ino: u64,
    /// ADDR:PORT as /proc/net/{tcp,udp}[6] shows it.
    pub local: String,
    /// "tcp", "tcp6", "udp" or "udp6".
    pub proto: String,
}

impl Listener {
    /// "TCP" or "UDP".
    pub fn kind(&self) -> &'static str {
        if self.proto.starts_with("udp") {
            "UDP"
        } else {
            "TCP"
        }
    }

    pub fn describe(&self) -> String {
        let what = if self.kind() == "UDP" {
            "socket"
        } else {
            "listener"
        };
        format!(
            "the {} {what} on {} (pid {} fd {})",
            self.kind(),
            self.local,
            self.pid,
            self.fd
        )
    }
}

/// Every TCP listening socket and every UDP socket bound to a port of
/// `tree` (a copy's would take the same port), once per socket (a socket
/// shared by fork is named after its first holder).
pub fn listeners(tree: &ProcessTree) -> Vec<Listener> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(Some(SocketInfo::Inet {
                proto,
                local,
                state,
                ..
            })) = &e.kind
            else {
                continue;
            };
            let listens = proto.starts_with("tcp") && state == "LISTEN";
            let bound = proto.starts_with("udp") && port_of(local) != "0";
            if (listens || bound) && seen.insert(e.ino) {
                out.push(Listener {
                    pid: p.pid,
                    fd: e.fd,
                    ino: e.ino,
                    local: local.clone(),
                    proto: proto.clone(),
                });
            }
        }
    }
    out
}

/// A source listener with SO_REUSEPORT set by us, and its old value.
struct Opened {
    listener: Listener,
    dup: OwnedFd,
    before: i32,
}

/// The source's listeners, opened to a copy. [`Shared::undo`] puts their
/// option back (the clone failed); [`Shared::keep`] leaves it (the copy
/// runs and shares the ports).
pub struct Shared {
    opened: Vec<Opened>,
}

fn refused(l: &Listener, why: String) -> Error {
    Error::Invalid {
        what: format!(
            "cannot share port {} with a copy on this host: {}: {why}",
            port_of(&l.local),
            l.describe()
        ),
    }
}

/// The port of ADDR:PORT (the whole text if it has none).
pub fn port_of(local: &str) -> &str {
    local.rsplit_once(':').map_or(local, |(_, p)| p)
}

/// Sets SO_REUSEPORT on each of `listeners` (the group is frozen under
/// our ptrace). `copy_uid` is the effective uid the copy's sockets will
/// have: the restorer creates them before it gives the processes their
/// ids (restore::tasks::set_ids), so it is the restorer's. A listener of
/// another uid cannot share its port with them: refused, naming the
/// port. On any error the options already set are put back.
pub fn share(listeners: &[Listener], copy_uid: u32) -> Result<Shared> {
    let mut shared = Shared { opened: Vec::new() };
    for l in listeners {
        let dup = isotrace_tracer::sys::dup_remote_fd(l.pid, l.fd)
            .map_err(|e| refused(l, e.to_string()))?;
        // A socket's inode belongs to the fsuid that created it, which is
        // also its sk_uid (sock_alloc(), sock_init_data()).
        let owner = dup
            .try_clone()
            .and_then(|d| std::fs::File::from(d).metadata())
            .map(|m| m.uid())
            .map_err(|e| refused(l, format!("fstat: {e}")))?;
        if owner != copy_uid {
            return Err(refused(
                l,
                format!(
                    "it belongs to uid {owner} and the copy's would belong to uid {copy_uid}; \
                     SO_REUSEPORT shares a port only between sockets of one effective uid \
                     (clone it to another host, or stop the group and restore it instead)"
                ),
            ));
        }
        let (sol, reuseport) = (libc::SOL_SOCKET, libc::SO_REUSEPORT);
        let before = sockopt::get_int(dup.as_fd(), sol, reuseport)
            .map_err(|e| refused(l, format!("getsockopt SO_REUSEPORT: {}", e.desc())))?;
        sockopt::set(dup.as_fd(), sol, reuseport, &1i32.to_ne_bytes())
            .map_err(|e| refused(l, format!("setsockopt SO_REUSEPORT: {}", e.desc())))?;
        shared.opened.push(Opened {
            listener: l.clone(),
            dup,
            before,
        });
    }
    Ok(shared)
}

impl Shared {
    /// The sockets opened, for the report.
    pub fn ports(&self) -> Vec<Listener> {
        self.opened.iter().map(|o| o.listener.clone()).collect()
    }

    /// The copy runs and listens beside the source: the option stays.
    pub fn keep(mut self) {
        self.opened.clear();
    }

    /// The clone failed: each listener gets its option back. Returns what
    /// could not be put back.
    pub fn undo(mut self) -> Vec<String> {
        self.put_back()
    }

    fn put_back(&mut self) -> Vec<String> {
        let mut lost = Vec::new();
        for o in self.opened.drain(..) {
            let val = o.before.to_ne_bytes();
            if let Err(e) = sockopt::set(o.dup.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, &val)
            {
                lost.push(format!(
                    "{}: SO_REUSEPORT: {}",
                    o.listener.describe(),
                    e.desc()
                ));
            }
        }
        lost
    }
}

impl Drop for Shared {
    /// Neither kept nor undone (an error path): undone.
    fn drop(&mut self) {
        for why in self.put_back() {
            tracing::warn!("a listening socket keeps SO_REUSEPORT: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FdEntry, Process};

    fn sock(fd: i32, ino: u64, proto: &str, local: &str, state: &str) -> FdEntry {
        FdEntry {
            fd,
            ino,
            kind: FdKind::Socket(Some(SocketInfo::Inet {
                proto: proto.into(),
                local: local.into(),
                remote: "0.0.0.0:0".into(),
                state: state.into(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn listeners_and_bound_udp_sockets_are_found_once_each() {
        let mut tree = ProcessTree::default();
        let mut p = Process {
            pid: 10,
            ..Default::default()
        };
        p.fds = vec![
            sock(3, 100, "tcp", "0.0.0.0:8000", "LISTEN"),
            sock(4, 101, "tcp6", "[::]:8000", "LISTEN"),
            sock(5, 102, "tcp", "127.0.0.1:8000", "ESTABLISHED"),
            sock(6, 103, "udp", "0.0.0.0:53", "UNCONNECTED"),
            sock(7, 104, "udp", "0.0.0.0:0", "UNCONNECTED"),
        ];
        let mut child = p.clone();
        child.pid = 11;
        tree.processes = vec![p, child];
        let found = listeners(&tree);
        let got: Vec<(i32, i32, &str)> = found
            .iter()
            .map(|l| (l.pid, l.fd, l.local.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 3, "0.0.0.0:8000"),
                (10, 4, "[::]:8000"),
                (10, 6, "0.0.0.0:53")
            ]
        );
        assert_eq!(port_of(&found[1].local), "8000");
        assert_eq!(
            found[2].describe(),
            "the UDP socket on 0.0.0.0:53 (pid 10 fd 6)"
        );
        assert_eq!(
            found[0].describe(),
            "the TCP listener on 0.0.0.0:8000 (pid 10 fd 3)"
        );
    }
}
