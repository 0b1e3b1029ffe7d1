//! The source's TCP sockets between the dump and the end of a checkpoint
//! or move (see `tcp`): held through our pidfd_getfd(2) duplicates, in
//! repair mode, with the network lock over their connections. The caller
//! decides: resume the source ([`Held::resume`]: leave repair mode, lift
//! the lock) or let the copy take over ([`Held::release`]). The source's
//! sockets are never closed outside repair mode: tcp_disconnect() in
//! repair mode sends neither FIN nor RST (it only sets ECONNABORTED),
//! which is how the source's connections end silently.

use super::tcp::{Found, TcpConn};
use crate::error::{Error, Result};
use crate::netlock::Lock;
use crate::sys::sockopt;
use nix::errno::Errno;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

fn failed(f: &Found, what: &str, e: Errno) -> Error {
    Error::Invalid {
        what: format!("cannot checkpoint {}: {what}: {}", f.describe(), e.desc()),
    }
}

/// A source socket in our hands.
pub(crate) struct HeldSocket {
    pub(crate) found: Found,
    pub(crate) dup: OwnedFd,
    pub(crate) conn: TcpConn,
}

/// A listening socket, or a UDP socket bound to a port, of the source,
/// for a same-host move.
pub(crate) struct HeldListener {
    pid: i32,
    fd: i32,
    dup: OwnedFd,
    reuse: i32,
    udp: bool,
}

/// The source's sockets, in repair mode, and the lock over their
/// connections. Dropping it resumes the source (as [`Held::resume`]), so
/// no error path can leave a connection frozen.
pub struct Held {
    pub(crate) sockets: Vec<HeldSocket>,
    pub(crate) listeners: Vec<HeldListener>,
    pub(crate) lock: Option<Lock>,
    pub(crate) detached: bool,
    pub(crate) done: bool,
}

impl Held {
    /// The lock's name, for an image whose group is stopped.
    pub fn lock_name(&self) -> Option<String> {
        self.lock.as_ref().map(|l| l.name.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Takes the source's sockets out of the way of a copy in the same
    /// network namespace: each connection is disconnected in repair mode
    /// (connect(AF_UNSPEC): tcp_disconnect() sends nothing in repair mode
    /// and unhashes the socket, so the copy's connect() finds the 4-tuple
    /// free), and each of `listeners` (see [`super::tcp::listeners`]) is shut down after
    /// SO_REUSEADDR is set on it (a listener closed by shutdown(2) stays
    /// bound, and only two sockets with SO_REUSEADDR, neither listening,
    /// may share a port: inet_bind_conflict()). Each of `udp` (see
    /// [`super::tcp::bound_udp`]) gets SO_REUSEADDR only: two UDP sockets
    /// with it may bind one address (udp_lib_lport_inuse()), and a
    /// datagram goes to the one bound last of those that match it equally
    /// (udp4_lib_lookup2() keeps the first of equal scores, and a bind
    /// adds its socket at the head of its slot): the copy's. The frozen
    /// source's socket keeps its queue, and is never shut down (a UDP
    /// socket's shutdown(2) cannot be undone). [`Held::resume`] undoes
    /// all of it.
    pub fn detach(&mut self, listeners: &[(i32, i32, u64)], udp: &[(i32, i32, u64)]) -> Result<()> {
        self.detached = true;
        for s in &self.sockets {
            let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
            let mut sa = unspec.to_vec();
            sa.resize(16, 0);
            sockopt::connect(s.dup.as_fd(), &sa)
                .map_err(|e| failed(&s.found, "disconnect in repair mode", e))?;
        }
        let all = listeners.iter().map(|l| (l, false));
        for (&(pid, fd, _), udp) in all.chain(udp.iter().map(|u| (u, true))) {
            let kind = if udp { "UDP" } else { "listening" };
            let what = |e: &dyn std::fmt::Display| Error::Invalid {
                what: format!("cannot move the {kind} socket of pid {pid} fd {fd}: {e}"),
            };
            let dup = isotrace_tracer::sys::dup_remote_fd(pid, fd).map_err(|e| what(&e))?;
            let b = dup.as_fd();
            let reuse =
                sockopt::get_int(b, libc::SOL_SOCKET, libc::SO_REUSEADDR).map_err(|e| what(&e))?;
            let one = 1i32.to_ne_bytes();
            sockopt::set(b, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one).map_err(|e| what(&e))?;
            // Pushed before the shutdown: an error after it is undone too.
            self.listeners.push(HeldListener {
                pid,
                fd,
                dup,
                reuse,
                udp,
            });
            if !udp {
                let b = self
                    .listeners
                    .last()
                    .map(|l| l.dup.as_fd())
                    .expect("pushed");
                sockopt::shutdown(b, libc::SHUT_RDWR).map_err(|e| what(&e))?;
            }
        }
        Ok(())
    }

    /// The source runs on: its connections leave repair mode (re-made in
    /// place first if [`Held::detach`]ed), its listeners listen again, and
    /// the lock is lifted. Returns what could not be put back.
    pub fn resume(mut self) -> Vec<String> {
        self.done = true;
        self.undo()
    }

    fn undo(&mut self) -> Vec<String> {
        let mut lost = Vec::new();
        for s in &self.sockets {
            let back = if self.detached {
                reattach(s)
            } else {
                crate::restore::tcp::leave_repair_local(&s.dup, &s.conn)
            };
            if let Err(e) = back {
                lost.push(format!("{}: {e}", s.found.describe()));
            }
        }
        for l in &self.listeners {
            let b = l.dup.as_fd();
            let again = if l.udp { Ok(()) } else { relisten(l) };
            let back = again.and_then(|()| {
                sockopt::set(
                    b,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    &l.reuse.to_ne_bytes(),
                )
            });
            if let Err(e) = back {
                let kind = if l.udp { "UDP" } else { "listening" };
                lost.push(format!("{kind} socket of pid {} fd {}: {e}", l.pid, l.fd));
            }
        }
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.unlock() {
                lost.push(e.to_string());
            }
        }
        lost
    }

    /// The copy took over: the source's connections are disconnected in
    /// repair mode (silently) and our duplicates closed. With `unlock`
    /// the lock is lifted too (the copy's sockets exist); without, it
    /// stays until `isotrace restore` lifts it (see [`TcpImage::lock`]).
    pub fn release(mut self, unlock: bool) -> Result<()> {
        self.done = true;
        if !self.detached {
            for s in &self.sockets {
                let mut sa = (libc::AF_UNSPEC as u16).to_ne_bytes().to_vec();
                sa.resize(16, 0);
                // A failure leaves the socket to die with the source, in
                // repair mode: still silent.
                let _ = sockopt::connect(s.dup.as_fd(), &sa);
            }
        }
        self.sockets.clear();
        self.listeners.clear();
        match self.lock.take() {
            Some(lock) if unlock => lock.unlock(),
            Some(lock) => lock.persist(),
            None => Ok(()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.done {
            for why in self.undo() {
                tracing::warn!("a TCP connection could not be resumed: {why}");
            }
        }
    }
}

/// Re-makes a detached source connection in place. The copy that was to
/// take it over may still hold its 4-tuple: a copy restored but not yet
/// killed by its receiver, or one killed whose socket lingers in
/// FIN_WAIT1 (closed outside repair mode, its FIN dropped by our lock).
/// Either makes connect() fail with EADDRNOTAVAIL
/// (__inet_check_established), so that socket is destroyed first
/// (SOCK_DESTROY, tcp_abort(): its RST is dropped by the lock), again
/// until the copy is gone.
fn reattach(s: &HeldSocket) -> Result<()> {
    let busy = Errno::EADDRNOTAVAIL.desc();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let _ = destroy(s.found.local, s.found.remote);
        match crate::restore::tcp::establish_local(&s.dup, &s.conn) {
            Err(e) if e.to_string().contains(busy) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// listen(2) again on a source's listener shut down by [`Held::detach`].
/// The copy's listener holds the port (EADDRINUSE, inet_csk_get_port)
/// until its receiver has killed it: try again meanwhile.
fn relisten(l: &HeldListener) -> std::result::Result<(), Errno> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sockopt::listen(l.dup.as_fd(), libc::SOMAXCONN) {
            Err(Errno::EADDRINUSE) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// SOCK_DESTROY of the hashed TCP socket whose local end is `local` and
/// remote end `remote` (<linux/inet_diag.h>; needs CAP_NET_ADMIN and
/// CONFIG_INET_DIAG_DESTROY). Our own detached socket is not hashed, so
/// it is never the one found.
fn destroy(local: SocketAddr, remote: SocketAddr) -> std::io::Result<()> {
    let req = destroy_request(local, remote);
    crate::sys::netlink_query(libc::NETLINK_SOCK_DIAG, &req, |b| {
        // The answer is one NLMSG_ERROR: 0 is the ack.
        let errno = b
            .get(16..20)
            .map_or(0, |e| i32::from_ne_bytes(e.try_into().unwrap_or([0; 4])));
        match errno {
            0 => Ok(true),
            e => Err(std::io::Error::from_raw_os_error(-e)),
        }
    })
}

/// nlmsghdr + inet_diag_req_v2 with the socket's 4-tuple (`idiag_src` is
/// the local end, as inet_diag_find_one_icsk looks it up) and no cookie.
fn destroy_request(local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    const SOCK_DESTROY: u16 = 21;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let addr = |a: SocketAddr| -> [u8; 16] {
        let mut out = [0u8; 16];
        match a.ip() {
            IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out = v6.octets(),
        }
        out
    };
    let mut req = Vec::with_capacity(72);
    req.extend(72u32.to_ne_bytes());
    req.extend(SOCK_DESTROY.to_ne_bytes());
    req.extend(NLM_F_REQUEST_ACK.to_ne_bytes());
    req.extend(1u32.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend([family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend(u32::MAX.to_ne_bytes());
    req.extend(local.port().to_be_bytes());
    req.extend(remote.port().to_be_bytes());
    req.extend(addr(local));
    req.extend(addr(remote));
    req.extend(0u32.to_ne_bytes());
    req.extend([0xffu8; 8]);
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel destroys a connected socket of ours by its 4-tuple: the
    /// next read fails with ECONNABORTED (tcp_abort()).
    #[test]
    fn sock_destroy_aborts_the_socket_of_a_4_tuple() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let (local, remote) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        assert_eq!(destroy_request(local, remote).len(), 72);
        destroy(local, remote).unwrap();
        // tcp_abort() closed it: the error, or not connected once read.
        let e = c.read(&mut [0u8; 1]).unwrap_err().raw_os_error();
        assert!(
            matches!(e, Some(libc::ECONNABORTED | libc::ENOTCONN)),
            "{e:?}"
        );
        // Not connected any more: it is gone from the tables.
        assert!(c.peer_addr().is_err());
    }
}
