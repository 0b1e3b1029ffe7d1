//! Established TCP connections rebuilt from an image's `tcp.bin` (see
//! `dump::tcp`), with TCP repair mode (net/ipv4/tcp.c, TCP_REPAIR):
//!
//! 1. socket(2), TCP_REPAIR on. Repair mode sets sk_reuse to
//!    SK_FORCE_REUSE, so the bind below succeeds even though a listening
//!    socket of the image holds the port (inet_csk_get_port).
//! 2. TCP_QUEUE_SEQ of both queues, at the START of their recorded bytes
//!    (refilling a queue advances its sequence past them).
//! 3. IP_TRANSPARENT, so that bind and connect work before the address
//!    is on this host (a move across hosts: FLOWI_FLAG_ANYSRC in the
//!    route lookup), then bind(2) to the local address and connect(2) to
//!    the remote one: in repair mode connect sends no SYN and the socket
//!    is ESTABLISHED at once (tcp_connect -> tcp_finish_connect).
//! 4. TCP_REPAIR_OPTIONS (MSS, window scales, SACK, timestamps: what the
//!    handshake negotiated), TCP_TIMESTAMP (this socket's clock offset).
//! 5. The receive queue (TCP_REPAIR_QUEUE = TCP_RECV_QUEUE: send(2) puts
//!    bytes into the receive queue, tcp_send_rcvq) and the send queue
//!    (TCP_SEND_QUEUE: queued as already sent, so the retransmit timer
//!    sends what the peer did not acknowledge). The send queue must go in
//!    before repair mode ends, or it would be sent as new data.
//! 6. TCP_REPAIR_WINDOW (after the receive queue: rcv_wup may not be
//!    after rcv_nxt), TCP_REPAIR off (a window probe tells the peer we
//!    are back), IP_TRANSPARENT off, and the carried socket options.
//!
//! The same steps run injected into a restored process ([`create`]) or
//! on a socket of the supervisor's own ([`establish_local`]: a source put
//! back in place after a failed move).

use super::fds::{close, dup_above};
use super::inject::Vessel;
use crate::dump::tcp::{
    TcpConn, TcpImage, TCP_QUEUE_SEQ, TCP_RECV_QUEUE, TCP_REPAIR, TCP_REPAIR_OPTIONS,
    TCP_REPAIR_QUEUE, TCP_REPAIR_WINDOW, TCP_SEND_QUEUE, TCP_TIMESTAMP,
};
use crate::error::{Error, Result};
use crate::model::{FdKind, Process, SocketInfo};
use crate::sys::sockopt;
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

/// tcpi_options bits (<linux/tcp.h>) and TCP option kinds (RFC 9293).
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// <linux/in6.h>.
const IPV6_TRANSPARENT: i32 = 75;
/// Bytes per send(2) when refilling (the vessel's data page holds 2 KiB
/// below its path area).
const CHUNK: usize = 2048;

/// The few socket calls a repair needs, wherever the socket is. Each
/// returns the raw result: negative is -errno.
trait SockCalls {
    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<i64>;
    fn bind(&self, sa: &[u8]) -> Result<i64>;
    fn connect(&self, sa: &[u8]) -> Result<i64>;
    fn send(&self, bytes: &[u8]) -> Result<i64>;
    fn shutdown_write(&self) -> Result<i64>;
}

/// A socket of a stopped vessel, driven by injected syscalls.
struct Injected<'a> {
    v: &'a Vessel,
    fd: u64,
}

impl SockCalls for Injected<'_> {
    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<i64> {
        let at = self.v.stage(0, val)?;
        let args = [self.fd, level as u64, name as u64, at, val.len() as u64, 0];
        self.v.raw(libc::SYS_setsockopt, args)
    }
    fn bind(&self, sa: &[u8]) -> Result<i64> {
        let at = self.v.stage(0, sa)?;
        self.v
            .raw(libc::SYS_bind, [self.fd, at, sa.len() as u64, 0, 0, 0])
    }
    fn connect(&self, sa: &[u8]) -> Result<i64> {
        let at = self.v.stage(0, sa)?;
        self.v
            .raw(libc::SYS_connect, [self.fd, at, sa.len() as u64, 0, 0, 0])
    }
    fn send(&self, bytes: &[u8]) -> Result<i64> {
        let at = self.v.stage(0, bytes)?;
        let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64;
        let args = [self.fd, at, bytes.len() as u64, 0, 0, 0];
        self.v
            .raw(libc::SYS_sendto, [args[0], args[1], args[2], flags, 0, 0])
    }
    fn shutdown_write(&self) -> Result<i64> {
        let how = libc::SHUT_WR as u64;
        self.v.raw(libc::SYS_shutdown, [self.fd, how, 0, 0, 0, 0])
    }
}

/// A socket of ours.
struct Local<'a>(&'a OwnedFd);

fn raw<T>(r: std::result::Result<T, Errno>, ok: impl Fn(T) -> i64) -> Result<i64> {
    Ok(r.map_or_else(|e| -(e as i64), ok))
}

impl SockCalls for Local<'_> {
    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<i64> {
        raw(sockopt::set(self.0.as_fd(), level, name, val), |()| 0)
    }
    fn bind(&self, sa: &[u8]) -> Result<i64> {
        raw(sockopt::bind(self.0.as_fd(), sa), |()| 0)
    }
    fn connect(&self, sa: &[u8]) -> Result<i64> {
        raw(sockopt::connect(self.0.as_fd(), sa), |()| 0)
    }
    fn send(&self, bytes: &[u8]) -> Result<i64> {
        raw(sockopt::send(self.0.as_fd(), bytes), |n| n as i64)
    }
    fn shutdown_write(&self) -> Result<i64> {
        raw(sockopt::shutdown(self.0.as_fd(), libc::SHUT_WR), |()| 0)
    }
}

/// One connection being rebuilt, for error messages.
struct Job<'a> {
    s: &'a dyn SockCalls,
    conn: &'a TcpConn,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Job<'_> {
    fn check(&self, what: &str, rc: i64) -> Result<i64> {
        if rc >= 0 {
            return Ok(rc);
        }
        Err(Error::Invalid {
            what: format!(
                "cannot restore the TCP connection {} -> {}: {what}: {}",
                self.local,
                self.remote,
                Errno::from_raw(-rc as i32).desc()
            ),
        })
    }

    fn opt(&self, what: &str, level: i32, name: i32, val: &[u8]) -> Result<()> {
        let rc = self.s.setsockopt(level, name, val)?;
        self.check(what, rc).map(drop)
    }

    fn int(&self, what: &str, level: i32, name: i32, val: i32) -> Result<()> {
        self.opt(what, level, name, &val.to_ne_bytes())
    }

    fn tcp(&self, what: &str, name: i32, val: i32) -> Result<()> {
        self.int(what, libc::IPPROTO_TCP, name, val)
    }

    fn transparent(&self, on: i32) -> Result<()> {
        if self.local.is_ipv4() {
            self.int("IP_TRANSPARENT", libc::SOL_IP, libc::IP_TRANSPARENT, on)
        } else {
            self.int("IPV6_TRANSPARENT", libc::SOL_IPV6, IPV6_TRANSPARENT, on)
        }
    }

    fn fill(&self, queue: i32, bytes: &[u8]) -> Result<()> {
        self.tcp("TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, queue)?;
        for chunk in bytes.chunks(CHUNK) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = self.check("refilling a queue", self.s.send(rest)?)? as usize;
                if n == 0 {
                    return self
                        .check("refilling a queue", -(libc::ENOBUFS as i64))
                        .map(drop);
                }
                rest = &rest[n.min(rest.len())..];
            }
        }
        Ok(())
    }

    fn repair_options(&self) -> Vec<u8> {
        let c = self.conn;
        let mut opts = vec![(TCPOPT_MSS, c.mss)];
        if c.tcpi_options & TCPI_OPT_WSCALE != 0 {
            let ws = u32::from(c.snd_wscale) | (u32::from(c.rcv_wscale) << 16);
            opts.push((TCPOPT_WINDOW, ws));
        }
        if c.tcpi_options & TCPI_OPT_SACK != 0 {
            opts.push((TCPOPT_SACK_PERM, 0));
        }
        if c.tcpi_options & TCPI_OPT_TIMESTAMPS != 0 {
            opts.push((TCPOPT_TIMESTAMP, 0));
        }
        opts.iter()
            .flat_map(|(code, val)| code.to_ne_bytes().into_iter().chain(val.to_ne_bytes()))
            .collect()
    }

    /// Steps 1-6 of the module's comment. `bound`: the socket may keep
    /// the port it had (a source re-made in place), EINVAL from bind is
    /// then no error.
    fn establish(&self, bound: bool) -> Result<()> {
        let c = self.conn;
        // A connection whose peer had closed is rebuilt as just before its
        // FIN, which is played to it afterwards (tcp_fin.rs); one whose
        // own side had closed, as just before its own FIN, which a
        // shutdown in repair mode then queues as sent.
        let recv_seq = c.recv_seq.wrapping_sub(u32::from(c.peer_fin));
        let send_seq = c.send_seq.wrapping_sub(u32::from(c.own_fin));
        self.tcp("TCP_REPAIR", TCP_REPAIR, 1)?;
        let start = |seq: u32, len: usize| seq.wrapping_sub(len as u32) as i32;
        self.tcp("TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)?;
        self.tcp(
            "TCP_QUEUE_SEQ",
            TCP_QUEUE_SEQ,
            start(send_seq, c.send_queue.len()),
        )?;
        self.tcp("TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)?;
        self.tcp(
            "TCP_QUEUE_SEQ",
            TCP_QUEUE_SEQ,
            start(recv_seq, c.recv_queue.len()),
        )?;
        self.transparent(1)?;
        let rc = self.s.bind(&super::sockets::sockaddr(&self.local))?;
        if !(bound && rc == -(libc::EINVAL as i64)) {
            self.check(&format!("bind to {}", self.local), rc)?;
        }
        let rc = self.s.connect(&super::sockets::sockaddr(&self.remote))?;
        self.check("connect in repair mode", rc)?;
        let opts = self.repair_options();
        self.opt(
            "TCP_REPAIR_OPTIONS",
            libc::IPPROTO_TCP,
            TCP_REPAIR_OPTIONS,
            &opts,
        )?;
        self.tcp("TCP_TIMESTAMP", TCP_TIMESTAMP, c.timestamp as i32)?;
        self.fill(TCP_RECV_QUEUE, &c.recv_queue)?;
        self.fill(TCP_SEND_QUEUE, &c.send_queue)?;
        if c.own_fin {
            // With the send queue selected, the FIN is queued as sent, not
            // sent (tcp_write_xmit in repair mode); the retransmission
            // timer sends it again if the peer had not acknowledged it.
            let rc = self.s.shutdown_write()?;
            self.check("shutdown(SHUT_WR) in repair mode", rc)?;
        }
        if c.window.len() == 5 {
            let mut window = c.window.clone();
            // rcv_wup may not be after rcv_nxt (tcp_repair_set_window).
            if c.peer_fin && window[4] == c.recv_seq {
                window[4] = recv_seq;
            }
            let win: Vec<u8> = window.iter().flat_map(|w| w.to_ne_bytes()).collect();
            self.opt(
                "TCP_REPAIR_WINDOW",
                libc::IPPROTO_TCP,
                TCP_REPAIR_WINDOW,
                &win,
            )?;
        }
        self.leave_repair()?;
        self.transparent(0)?;
        if c.peer_fin {
            let acked = send_seq.wrapping_sub(c.send_queue.len() as u32);
            let wscale = u32::from(c.snd_wscale).min(14);
            let window = c
                .window
                .get(1)
                .map_or(u16::MAX, |w| (w >> wscale).min(u32::from(u16::MAX)) as u16);
            super::tcp_fin::play(self.local, self.remote, recv_seq, acked, window)?;
        }
        Ok(())
    }

    /// TCP_REPAIR off, then the carried options (leaving repair mode
    /// resets SO_REUSEADDR).
    fn leave_repair(&self) -> Result<()> {
        self.tcp("TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, 0)?;
        self.tcp("TCP_REPAIR off", TCP_REPAIR, 0)?;
        for &(level, name, val) in &self.conn.options {
            self.int(&format!("socket option {level}/{name}"), level, name, val)?;
        }
        Ok(())
    }
}

fn job<'a>(s: &'a dyn SockCalls, conn: &'a TcpConn) -> Result<Job<'a>> {
    let parse = |a: &str| {
        a.parse::<SocketAddr>().map_err(|_| Error::Invalid {
            what: format!("the image's TCP connection has a bad address {a:?}"),
        })
    };
    Ok(Job {
        s,
        conn,
        local: parse(&conn.local)?,
        remote: parse(&conn.remote)?,
    })
}

/// Re-makes a source's connection in place on its own socket (after
/// `Held::detach` disconnected it): the steps of [`create`], on an fd of
/// ours.
pub fn establish_local(fd: &OwnedFd, conn: &TcpConn) -> Result<()> {
    job(&Local(fd), conn)?.establish(true)
}

/// Takes a source's socket, never disconnected, out of repair mode.
pub fn leave_repair_local(fd: &OwnedFd, conn: &TcpConn) -> Result<()> {
    job(&Local(fd), conn)?.leave_repair()
}

/// Lifts the network lock a checkpoint that stopped its group left over
/// the image's connections (`netlock`), once they exist again. Only the
/// restore of a checkpoint does this: in a migration the source holds the
/// lock and lifts it when the copy runs.
pub fn unlock(image: &crate::Image) -> Result<()> {
    match crate::dump::tcp::read(image)?.lock {
        Some(name) => crate::netlock::unlock_named(&name),
        None => Ok(()),
    }
}

/// The connected TCP sockets of `procs`, by inode: the restore makes them
/// here (`sockets::rebuilt`).
pub fn connected(procs: &[&Process]) -> BTreeSet<u64> {
    procs
        .iter()
        .flat_map(|p| &p.fds)
        .filter(|e| {
            matches!(&e.kind, FdKind::Socket(Some(SocketInfo::Inet { proto, state, .. }))
                if proto.starts_with("tcp") && !matches!(state.as_str(), "LISTEN" | "CLOSE"))
        })
        .map(|e| e.ino)
        .collect()
}

/// Makes each connected TCP socket of `procs` in the root vessel, above
/// `line`, and adds it to `fds` (socket inode -> vessel fd). A connection
/// recorded closed gets a socket of its family that is not connected.
pub fn create(
    v: &Vessel,
    procs: &[&Process],
    image: &TcpImage,
    line: u64,
    fds: &mut BTreeMap<u64, u64>,
) -> Result<()> {
    for ino in connected(procs) {
        let conn = image.sockets.get(&ino).ok_or_else(|| Error::Invalid {
            what: format!(
                "cannot restore TCP socket {ino}: the image does not hold its connection \
                 (it was checkpointed by an isotrace without TCP support)"
            ),
        })?;
        let v6 = conn.local.starts_with('[');
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u64;
        let ty = libc::SOCK_STREAM as u64;
        let fd = v.call("socket", libc::SYS_socket, [family, ty, 0, 0, 0, 0])?;
        if conn.repaired {
            job(&Injected { v, fd }, conn)?.establish(false)?;
        }
        let high = dup_above(v, fd, line)?;
        close(v, fd)?;
        fds.insert(ino, high);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_options_follow_what_was_negotiated() {
        let conn = TcpConn {
            local: "10.0.0.1:80".into(),
            remote: "10.0.0.2:5000".into(),
            mss: 1460,
            tcpi_options: TCPI_OPT_WSCALE | TCPI_OPT_SACK,
            snd_wscale: 7,
            rcv_wscale: 9,
            ..Default::default()
        };
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let l = Local(&fd);
        let j = job(&l, &conn).unwrap();
        let o = j.repair_options();
        let words: Vec<u32> = o
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, vec![2, 1460, 3, 7 | (9 << 16), 4, 0]);
    }
}
