//! Established TCP connections of a frozen group (section `tcp.bin`,
//! IMAGE.md "TCP connections"), read with TCP repair mode (net/ipv4/tcp.c,
//! TCP_REPAIR; the mechanism CRIU's soccr uses).
//!
//! Each socket is pulled into the supervisor with pidfd_getfd(2): socket
//! options act on the socket, not on the fd, so a duplicate of ours
//! reaches the same `struct sock` as the tracee's fd, and reading it takes
//! plain syscalls of our own rather than a dozen syscalls injected into a
//! stopped tracee (each a register swap) per connection. The tracee must
//! be stopped under our ptrace (pidfd_getfd needs PTRACE_MODE_ATTACH).
//!
//! The duplicates stay open in a [`Held`] (`tcp_held`) until the caller
//! decides what becomes of the source's connections.

pub use super::tcp_held::Held;
use super::tcp_held::HeldSocket;
use crate::error::{Error, Result};

use crate::model::{FdKind, ProcessTree, SocketInfo};
use crate::netlock::{self, Lock};
use crate::sys::sockopt;
use crate::Image;
use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

/// The section's name.
pub const SECTION: &str = "tcp.bin";
/// The half-closed connections ([`TcpFins`]). A section of its own so
/// that `tcp.bin` keeps its layout; an image without it has none.
pub const FIN_SECTION: &str = "tcp_fin.bin";

/// [`FIN_SECTION`]: socket inodes of `tcp.bin`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFins {
    /// The peer closed its side (CLOSE_WAIT).
    pub peer: BTreeSet<u64>,
    /// This side closed (shutdown SHUT_WR: FIN_WAIT1, FIN_WAIT2).
    pub own: BTreeSet<u64>,
}

/// <linux/tcp.h>.
pub const TCP_REPAIR: i32 = 19;
pub const TCP_REPAIR_QUEUE: i32 = 20;
pub const TCP_QUEUE_SEQ: i32 = 21;
pub const TCP_REPAIR_OPTIONS: i32 = 22;
pub const TCP_TIMESTAMP: i32 = 24;
pub const TCP_REPAIR_WINDOW: i32 = 29;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;
/// SIOCOUTQ (= TIOCOUTQ): bytes not yet acknowledged.
const SIOCOUTQ: libc::c_ulong = 0x5411;

/// Socket options carried with a connection, read before repair mode (it
/// forces SO_REUSEADDR) and set again after it: (level, name).
pub const CARRIED: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE),
    (libc::SOL_SOCKET, libc::SO_PRIORITY),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
];

/// What to do with established connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpPolicy {
    /// Carry them with TCP repair (needs CAP_NET_ADMIN).
    #[default]
    Repair,
    /// `--tcp-close`: record them as closed; the copy gets a socket that
    /// is not connected (reads fail with ENOTCONN, writes with EPIPE).
    Close,
}

/// One established connection as the kernel had it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConn {
    pub local: String,
    pub remote: String,
    /// False for a connection recorded closed (`--tcp-close`).
    pub repaired: bool,
    /// TCP_QUEUE_SEQ of the send queue (write_seq) and of the receive
    /// queue (rcv_nxt), each at the END of its queue's bytes.
    pub send_seq: u32,
    pub recv_seq: u32,
    /// Sent-or-not data not yet acknowledged, and data received, not read.
    pub send_queue: Vec<u8>,
    pub recv_queue: Vec<u8>,
    /// TCP_MAXSEG, struct tcp_info's tcpi_options and wscales.
    pub mss: u32,
    pub tcpi_options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// TCP_TIMESTAMP (the timestamp clock plus this socket's offset).
    pub timestamp: u32,
    /// struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd,
    /// rcv_wup.
    pub window: Vec<u32>,
    /// (level, name, value) of [`CARRIED`].
    pub options: Vec<(i32, i32, i32)>,
    /// The peer's FIN was received (CLOSE_WAIT): `recv_seq` counts it.
    /// Carried in [`FIN_SECTION`], not in `tcp.bin`.
    #[serde(skip)]
    pub peer_fin: bool,
    /// This side's FIN was sent (FIN_WAIT1, FIN_WAIT2): `send_seq` counts
    /// it, `send_queue` holds only data. In [`FIN_SECTION`] too.
    #[serde(skip)]
    pub own_fin: bool,
}

/// The section: connections by socket inode, and the network lock left in
/// place by a checkpoint that stopped its group (`isotrace restore` lifts
/// it once the connections exist again).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpImage {
    pub sockets: BTreeMap<u64, TcpConn>,
    pub lock: Option<String>,
}

impl TcpImage {
    /// The half-closed connections ([`FIN_SECTION`]).
    pub fn fins(&self) -> TcpFins {
        let with = |f: fn(&TcpConn) -> bool| {
            self.sockets
                .iter()
                .filter(|(_, c)| f(c))
                .map(|(&ino, _)| ino)
                .collect()
        };
        TcpFins {
            peer: with(|c| c.peer_fin),
            own: with(|c| c.own_fin),
        }
    }
}

/// The states a connection may be carried in: established; with the
/// peer's side closed (CLOSE_WAIT: the restore plays the peer's FIN to the
/// new socket, see `restore::tcp_fin`); with this side closed (FIN_WAIT1,
/// FIN_WAIT2: the restore shuts the new socket down in repair mode).
fn carried_state(f: &Found) -> std::result::Result<(), String> {
    match f.state.as_str() {
        "ESTABLISHED" | "FIN_WAIT1" | "FIN_WAIT2" => Ok(()),
        "CLOSE_WAIT" if crate::restore::tcp_fin::supported(&f.local, &f.remote) => Ok(()),
        "CLOSE_WAIT" => Err(
            "the connection is in state CLOSE_WAIT (its peer closed its side) \
             between an IPv4 and an IPv6 address"
                .into(),
        ),
        state => Err(format!(
            "the connection is in state {state}; only ESTABLISHED, CLOSE_WAIT, FIN_WAIT1 \
             and FIN_WAIT2 connections can be carried"
        )),
    }
}

/// A connection of the tree: who holds it, and its ends.
#[derive(Clone, Debug)]
pub struct Found {
    pub pid: i32,
    pub fd: i32,
    pub ino: u64,
    pub state: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Found {
    pub fn describe(&self) -> String {
        format!(
            "pid {} fd {} (tcp {} -> {})",
            self.pid, self.fd, self.local, self.remote
        )
    }
}

/// The connected TCP sockets of `tree` (/proc/net/tcp[6] states other than
/// LISTEN and CLOSE), once each.
pub fn connections(tree: &ProcessTree) -> Vec<Found> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(Some(SocketInfo::Inet {
                proto,
                local,
                remote,
                state,
            })) = &e.kind
            else {
                continue;
            };
            let connected = !matches!(state.as_str(), "LISTEN" | "CLOSE");
            if !proto.starts_with("tcp") || !connected || !seen.insert(e.ino) {
                continue;
            }
            if let (Ok(l), Ok(r)) = (local.parse(), remote.parse()) {
                out.push(Found {
                    pid: p.pid,
                    fd: e.fd,
                    ino: e.ino,
                    state: state.clone(),
                    local: l,
                    remote: r,
                });
            }
        }
    }
    out
}

/// The addresses the TCP sockets of `tree` listen on.
pub fn listening_addrs(tree: &ProcessTree) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = tree
        .processes
        .iter()
        .flat_map(|p| &p.fds)
        .filter_map(|e| match &e.kind {
            FdKind::Socket(Some(SocketInfo::Inet {
                proto,
                local,
                state,
                ..
            })) if proto.starts_with("tcp") && state == "LISTEN" => local.parse().ok(),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The listening TCP sockets of `tree`: (pid, fd, inode).
pub fn listeners(tree: &ProcessTree) -> Vec<(i32, i32, u64)> {
    sockets_where(tree, |proto, local, state| {
        proto.starts_with("tcp") && state == "LISTEN" && !local.is_empty()
    })
}

/// The UDP sockets of `tree` bound to a port: (pid, fd, inode).
pub fn bound_udp(tree: &ProcessTree) -> Vec<(i32, i32, u64)> {
    sockets_where(tree, |proto, local, _| {
        proto.starts_with("udp") && local.rsplit_once(':').is_some_and(|(_, p)| p != "0")
    })
}

/// The inet sockets of `tree` that `pick` (proto, local, state) takes,
/// once per socket: (pid, fd, inode) of its first holder.
fn sockets_where(
    tree: &ProcessTree,
    pick: impl Fn(&str, &str, &str) -> bool,
) -> Vec<(i32, i32, u64)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            if let FdKind::Socket(Some(SocketInfo::Inet {
                proto,
                local,
                state,
                ..
            })) = &e.kind
            {
                if pick(proto, local, state) && seen.insert(e.ino) {
                    out.push((p.pid, e.fd, e.ino));
                }
            }
        }
    }
    out
}

fn failed(f: &Found, what: &str, e: Errno) -> Error {
    Error::Invalid {
        what: format!("cannot checkpoint {}: {what}: {}", f.describe(), e.desc()),
    }
}

/// Puts `fd` into repair mode; EPERM is the missing capability.
fn repair_on(f: &Found, fd: &OwnedFd) -> Result<()> {
    let on = 1i32.to_ne_bytes();
    match sockopt::set(fd.as_fd(), libc::IPPROTO_TCP, TCP_REPAIR, &on) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => Err(Error::Invalid {
            what: format!(
                "cannot checkpoint {}: carrying a TCP connection needs TCP_REPAIR, which needs \
                 CAP_NET_ADMIN (run the group as root, or checkpoint with --tcp-close to close \
                 its connections)",
                f.describe()
            ),
        }),
        Err(e) => Err(failed(f, "TCP_REPAIR", e)),
    }
}

/// Reads one queue: its sequence number and bytes (repair mode). A FIN
/// this side sent and the peer has not acknowledged (FIN_WAIT1) counts in
/// the send queue's length (SIOCOUTQ: write_seq - snd_una) but has no
/// byte to peek.
fn queue(f: &Found, fd: &OwnedFd, which: i32) -> Result<(u32, Vec<u8>)> {
    let sel = which.to_ne_bytes();
    let fd = fd.as_fd();
    sockopt::set(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &sel)
        .map_err(|e| failed(f, "TCP_REPAIR_QUEUE", e))?;
    let seq = sockopt::get_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)
        .map_err(|e| failed(f, "TCP_QUEUE_SEQ", e))? as u32;
    let req = if which == TCP_SEND_QUEUE {
        SIOCOUTQ
    } else {
        libc::FIONREAD
    };
    let mut len = sockopt::ioctl_int(fd, req).map_err(|e| failed(f, "queue length", e))?;
    if which == TCP_SEND_QUEUE && f.state == "FIN_WAIT1" && len > 0 {
        len -= 1;
    }
    let bytes = sockopt::peek(fd, len.max(0) as usize).map_err(|e| failed(f, "peek", e))?;
    if bytes.len() != len.max(0) as usize {
        return Err(Error::Invalid {
            what: format!(
                "cannot checkpoint {}: peeked {} of {len} queued bytes",
                f.describe(),
                bytes.len()
            ),
        });
    }
    Ok((seq, bytes))
}

/// Everything of one socket in repair mode.
fn read_conn(f: &Found, fd: &OwnedFd, options: Vec<(i32, i32, i32)>) -> Result<TcpConn> {
    let (send_seq, send_queue) = queue(f, fd, TCP_SEND_QUEUE)?;
    let (recv_seq, recv_queue) = queue(f, fd, TCP_RECV_QUEUE)?;
    let b = fd.as_fd();
    let none = 0i32.to_ne_bytes();
    sockopt::set(b, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &none)
        .map_err(|e| failed(f, "TCP_REPAIR_QUEUE", e))?;
    let mss = sockopt::get_int(b, libc::IPPROTO_TCP, libc::TCP_MAXSEG)
        .map_err(|e| failed(f, "TCP_MAXSEG", e))? as u32;
    // struct tcp_info: byte 5 tcpi_options, byte 6 snd_wscale:4 and
    // rcv_wscale:4 (bitfields, low nibble first on little-endian).
    let info = sockopt::get(b, libc::IPPROTO_TCP, libc::TCP_INFO, 104)
        .map_err(|e| failed(f, "TCP_INFO", e))?;
    let (opts, ws) = (
        info.get(5).copied().unwrap_or(0),
        info.get(6).copied().unwrap_or(0),
    );
    let timestamp = sockopt::get_int(b, libc::IPPROTO_TCP, TCP_TIMESTAMP)
        .map_err(|e| failed(f, "TCP_TIMESTAMP", e))? as u32;
    let win = sockopt::get(b, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)
        .map_err(|e| failed(f, "TCP_REPAIR_WINDOW", e))?;
    let window = win
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap_or([0; 4])))
        .collect();
    Ok(TcpConn {
        local: f.local.to_string(),
        remote: f.remote.to_string(),
        repaired: true,
        send_seq,
        recv_seq,
        send_queue,
        recv_queue,
        mss,
        tcpi_options: opts,
        snd_wscale: ws & 0xf,
        rcv_wscale: ws >> 4,
        timestamp,
        window,
        options,
        peer_fin: f.state == "CLOSE_WAIT",
        own_fin: matches!(f.state.as_str(), "FIN_WAIT1" | "FIN_WAIT2"),
    })
}

/// [`CARRIED`] options of a socket that exist on it.
pub fn carried(fd: &OwnedFd) -> Vec<(i32, i32, i32)> {
    CARRIED
        .iter()
        .filter_map(|&(level, name)| {
            let v = sockopt::get_int(fd.as_fd(), level, name).ok()?;
            Some((level, name, v))
        })
        .collect()
}

/// Reads the connections of `tree` (stopped under our ptrace) and returns
/// the section and the sockets held. With [`TcpPolicy::Repair`]: every
/// socket is put in repair mode first (so a missing capability is found
/// before anything changes), then the connections are locked, then read.
pub fn capture(tree: &ProcessTree, policy: TcpPolicy) -> Result<(TcpImage, Held)> {
    let found = connections(tree);
    let mut held = Held {
        sockets: Vec::new(),
        listeners: Vec::new(),
        lock: None,
        detached: false,
        done: false,
    };
    let mut image = TcpImage::default();
    if found.is_empty() {
        return Ok((image, held));
    }
    if policy == TcpPolicy::Close {
        for f in &found {
            let conn = TcpConn {
                local: f.local.to_string(),
                remote: f.remote.to_string(),
                ..Default::default()
            };
            image.sockets.insert(f.ino, conn);
        }
        return Ok((image, held));
    }
    // Each socket is held as soon as it is in repair mode: an error
    // anywhere below drops `held`, which takes them out of it again.
    for f in &found {
        if let Err(why) = carried_state(f) {
            return Err(Error::Invalid {
                what: format!(
                    "cannot checkpoint {}: {why} (or checkpoint with --tcp-close)",
                    f.describe()
                ),
            });
        }
        let dup = isotrace_tracer::sys::dup_remote_fd(f.pid, f.fd).map_err(|e| Error::Invalid {
            what: format!("cannot checkpoint {}: {e}", f.describe()),
        })?;
        let options = carried(&dup);
        repair_on(f, &dup)?;
        held.sockets.push(HeldSocket {
            found: f.clone(),
            dup,
            conn: TcpConn {
                options,
                ..Default::default()
            },
        });
    }
    let conns: Vec<_> = found.iter().map(|f| (f.local, f.remote)).collect();
    let listening = listening_addrs(tree);
    held.lock = Some(Lock::connections(
        &netlock::fresh_name(),
        &conns,
        &listening,
    )?);
    for s in &mut held.sockets {
        s.conn = read_conn(&s.found, &s.dup, s.conn.options.clone())?;
        image.sockets.insert(s.found.ino, s.conn.clone());
    }
    Ok((image, held))
}

/// The connections of an image (empty without the section), each with
/// which side had closed ([`FIN_SECTION`]).
pub fn read(image: &Image) -> Result<TcpImage> {
    let mut conns: TcpImage = image.optional(SECTION)?;
    let fins: TcpFins = image.optional(FIN_SECTION)?;
    let sides = [(&fins.peer, true), (&fins.own, false)];
    for (inos, peer) in sides {
        for ino in inos {
            let Some(c) = conns.sockets.get_mut(ino) else {
                let why = format!("socket {ino} has no connection in {SECTION}");
                return Err(Error::corrupt(FIN_SECTION, why));
            };
            if peer {
                c.peer_fin = true;
            } else {
                c.own_fin = true;
            }
        }
    }
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FdEntry, Process};

    fn sock(fd: i32, ino: u64, proto: &str, state: &str) -> FdEntry {
        FdEntry {
            fd,
            ino,
            target: format!("socket:[{ino}]"),
            kind: FdKind::Socket(Some(SocketInfo::Inet {
                proto: proto.into(),
                local: "[::1]:80".into(),
                remote: "[::1]:5000".into(),
                state: state.into(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn connections_are_the_connected_tcp_sockets_once_each() {
        let p = |pid, fds| Process {
            pid,
            fds,
            ..Default::default()
        };
        let tree = ProcessTree {
            root: 1,
            processes: vec![
                p(
                    1,
                    vec![
                        sock(3, 10, "tcp6", "LISTEN"),
                        sock(4, 11, "tcp6", "ESTABLISHED"),
                    ],
                ),
                // A child sharing the connection, a UDP socket, a closed one.
                p(
                    2,
                    vec![
                        sock(4, 11, "tcp6", "ESTABLISHED"),
                        sock(5, 12, "udp6", "ESTABLISHED"),
                    ],
                ),
                p(
                    3,
                    vec![
                        sock(6, 13, "tcp6", "CLOSE_WAIT"),
                        sock(7, 14, "tcp", "CLOSE"),
                    ],
                ),
            ],
        };
        let found = connections(&tree);
        let got: Vec<_> = found.iter().map(|f| (f.pid, f.fd, f.ino)).collect();
        assert_eq!(got, vec![(1, 4, 11), (3, 6, 13)]);
        assert_eq!(
            found[0].describe(),
            "pid 1 fd 4 (tcp [::1]:80 -> [::1]:5000)"
        );
        assert_eq!(listeners(&tree), vec![(1, 3, 10)]);
    }
}
