//! Sockets rebuilt in the root vessel before any other process is cloned
//! from it, so each process inherits the ones it held (like pipes, see
//! `fds::prepare`): unix socketpairs between processes of the image, given
//! back the bytes that were queued for reading on each end, and TCP/UDP
//! sockets that were listening or bound but not connected, bound again
//! to their address, and connected UDP sockets, connected again.

use super::fds::{close, dup_above, write_all};
use super::inject::Vessel;
use crate::dump::unix_pairs::Pairs;
use crate::error::{Error, Result};
use crate::model::{FdKind, Process, SocketInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// socket(2) type of a /proc/net/unix type name.
fn sock_type(kind: &str) -> Option<u64> {
    match kind {
        "stream" => Some(libc::SOCK_STREAM as u64),
        "dgram" => Some(libc::SOCK_DGRAM as u64),
        "seqpacket" => Some(libc::SOCK_SEQPACKET as u64),
        _ => None,
    }
}

/// Creates one socketpair per pair of `pairs` held in `procs`, both
/// ends above `line`, and refills each end's receive queue by writing
/// its bytes into the other end. Returns socket inode -> vessel fd.
pub fn create(
    v: &Vessel,
    procs: &[&Process],
    pairs: &Pairs,
    line: u64,
) -> Result<BTreeMap<u64, u64>> {
    let mut kinds = BTreeMap::new();
    for e in procs.iter().flat_map(|p| &p.fds) {
        if let FdKind::Socket(Some(SocketInfo::Unix { kind, .. })) = &e.kind {
            kinds.insert(e.ino, kind.as_str());
        }
    }
    let mut fds = BTreeMap::new();
    for (&ino, sock) in pairs {
        if fds.contains_key(&ino) || !kinds.contains_key(&ino) {
            continue;
        }
        let kind = kinds[&ino];
        let ty = sock_type(kind).ok_or_else(|| Error::Invalid {
            what: format!("cannot restore unix socket {ino}: type {kind}"),
        })?;
        let at = v.stage(0, &[0u8; 8])?;
        let domain = libc::AF_UNIX as u64;
        v.call(
            "socketpair",
            libc::SYS_socketpair,
            [domain, ty, 0, at, 0, 0],
        )?;
        let mut raw = [0u8; 8];
        v.peek(at, &mut raw)?;
        let mut ends = [0u64; 2];
        for (i, end) in ends.iter_mut().enumerate() {
            let fd = u32::from_ne_bytes(raw[i * 4..i * 4 + 4].try_into().expect("4")) as u64;
            *end = dup_above(v, fd, line)?;
            close(v, fd)?;
        }
        fds.insert(ino, ends[0]);
        fds.insert(sock.peer, ends[1]);
        // What `ino` had queued was written by its peer: write it into
        // the peer's end; and the other way round.
        write_all(v, ends[1], &sock.queued)?;
        if let Some(back) = pairs.get(&sock.peer) {
            write_all(v, ends[0], &back.queued)?;
        }
    }
    for (ino, sock) in pairs {
        if let Some(&fd) = fds.get(ino) {
            shutdown(v, fd, sock.shutdown)?;
        }
    }
    Ok(fds)
}

/// Applies sk_shutdown bits with shutdown(2), once the queues are
/// refilled (a write after SHUT_WR fails). Shutting one end for reading
/// shuts its peer for writing and the other way round (net/unix/af_unix.c,
/// unix_shutdown), so doing it for both ends of a pair is idempotent.
fn shutdown(v: &Vessel, fd: u64, bits: u8) -> Result<()> {
    const RCV_SHUTDOWN: u8 = 1;
    const SEND_SHUTDOWN: u8 = 2;
    let how = match (bits & RCV_SHUTDOWN != 0, bits & SEND_SHUTDOWN != 0) {
        (false, false) => return Ok(()),
        (true, false) => libc::SHUT_RD,
        (false, true) => libc::SHUT_WR,
        (true, true) => libc::SHUT_RDWR,
    };
    v.call("shutdown", libc::SYS_shutdown, [fd, how as u64, 0, 0, 0, 0])
        .map(drop)
}

/// One inet socket a restore rebuilds (see [`inet_sockets`]).
pub struct InetSocket {
    pub proto: String,
    pub local: SocketAddr,
    /// A connected UDP socket's peer, connected to again.
    pub peer: Option<SocketAddr>,
}

/// The inet sockets of `procs` a restore rebuilds: TCP listening or not
/// yet connected, UDP bound or connected (/proc/net/{tcp,udp}[6]
/// states), by inode. A UDP connect(2) only sets the default destination
/// and the only source datagrams are taken from (udp(7)): no packet is
/// exchanged, so a restore connects again without the peer noticing.
pub fn inet_sockets(procs: &[&Process]) -> BTreeMap<u64, InetSocket> {
    let mut out = BTreeMap::new();
    for e in procs.iter().flat_map(|p| &p.fds) {
        let FdKind::Socket(Some(SocketInfo::Inet {
            proto,
            local,
            remote,
            state,
        })) = &e.kind
        else {
            continue;
        };
        let unconnected = matches!(state.as_str(), "LISTEN" | "CLOSE" | "UNCONNECTED");
        let udp_connected = proto.starts_with("udp") && state == "ESTABLISHED";
        let peer = if udp_connected {
            match remote.parse::<SocketAddr>() {
                Ok(peer) => Some(peer),
                Err(_) => continue,
            }
        } else {
            None
        };
        if let (true, Ok(addr)) = (unconnected || udp_connected, local.parse::<SocketAddr>()) {
            let proto = proto.clone();
            out.insert(
                e.ino,
                InetSocket {
                    proto,
                    local: addr,
                    peer,
                },
            );
        }
    }
    out
}

/// Every socket inode a restore rebuilds: socketpairs, inet sockets,
/// TCP connections (`tcp`), unix datagram sockets with no pair, unix
/// listeners and the clients of their waiting connections (`unix_dgram`).
pub fn rebuilt(
    procs: &[&Process],
    pairs: &Pairs,
    embryos: &crate::dump::embryos::Embryos,
) -> BTreeSet<u64> {
    pairs
        .keys()
        .copied()
        .chain(inet_sockets(procs).into_keys())
        .chain(super::tcp::connected(procs))
        .chain(super::unix_dgram::unpaired(procs, pairs).into_keys())
        .chain(super::unix_dgram::listening(procs).into_keys())
        .chain(embryos.values().flatten().copied())
        .collect()
}

/// Makes each inet socket of [`inet_sockets`] above `line` (see
/// [`inet_socket`]) and adds them to `fds`. Returns the inodes of those
/// that joined a port held on this host (see [`bind`]).
pub fn create_inet(
    v: &Vessel,
    procs: &[&Process],
    line: u64,
    fds: &mut BTreeMap<u64, u64>,
) -> Result<BTreeSet<u64>> {
    let mut joined = BTreeSet::new();
    let listening: BTreeSet<u64> = procs
        .iter()
        .flat_map(|p| &p.fds)
        .filter(|e| {
            matches!(&e.kind, FdKind::Socket(Some(SocketInfo::Inet { state, .. })) if state == "LISTEN")
        })
        .map(|e| e.ino)
        .collect();
    let all = inet_sockets(procs);
    for (&ino, sock) in &all {
        let (proto, addr) = (&sock.proto, &sock.local);
        // An IPv6 socket shares its port with IPv4 unless IPV6_V6ONLY
        // (ipv6(7)); the image does not record the option, but a v6
        // socket whose port an IPv4 socket of the image also had must
        // have had it, or the original could not have bound both.
        let v6only = addr.is_ipv6()
            && addr.port() != 0
            && all.values().any(|o| {
                o.local.is_ipv4()
                    && o.local.port() == addr.port()
                    && o.proto.get(..3) == proto.get(..3)
            });
        let (fd, shares) = inet_socket(v, proto, addr, v6only, listening.contains(&ino))?;
        if shares {
            joined.insert(ino);
        }
        if let Some(peer) = &sock.peer {
            connect(v, fd, proto, addr, peer)?;
        }
        let high = dup_above(v, fd, line)?;
        close(v, fd)?;
        fds.insert(ino, high);
    }
    Ok(joined)
}

/// socket(2), SO_REUSEADDR (the original's connections may linger in
/// TIME_WAIT), IPV6_V6ONLY if `v6only`, bind(2) to `addr` if it has a
/// port, and listen(2) if `listen`, with SOMAXCONN's backlog (/proc does
/// not show the original's). Returns the fd, and whether its port is
/// shared with sockets of this host ([`bind`]).
fn inet_socket(
    v: &Vessel,
    proto: &str,
    addr: &SocketAddr,
    v6only: bool,
    listen: bool,
) -> Result<(u64, bool)> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty = if proto.starts_with("udp") {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let fd = v.call(
        "socket",
        libc::SYS_socket,
        [family as u64, ty as u64, 0, 0, 0, 0],
    )?;
    let one = v.stage(0, &1i32.to_ne_bytes())?;
    let (sol, reuse) = (libc::SOL_SOCKET as u64, libc::SO_REUSEADDR as u64);
    v.call(
        "setsockopt SO_REUSEADDR",
        libc::SYS_setsockopt,
        [fd, sol, reuse, one, 4, 0],
    )?;
    if v6only {
        let (ip6, only) = (libc::IPPROTO_IPV6 as u64, libc::IPV6_V6ONLY as u64);
        v.call(
            "setsockopt IPV6_V6ONLY",
            libc::SYS_setsockopt,
            [fd, ip6, only, one, 4, 0],
        )?;
    }
    if !addr.ip().is_unspecified() {
        // IP_FREEBIND / IPV6_FREEBIND (ip(7), ipv6(7)): bind to an address
        // this host does not have yet, as after a move across hosts whose
        // action script brings the service address only before the copy
        // runs (dump/tcp.rs, README "TCP connections").
        let (level, name) = match addr {
            SocketAddr::V4(_) => (libc::SOL_IP as u64, libc::IP_FREEBIND as u64),
            SocketAddr::V6(_) => (libc::SOL_IPV6 as u64, 78),
        };
        v.call(
            "setsockopt IP_FREEBIND",
            libc::SYS_setsockopt,
            [fd, level, name, one, 4, 0],
        )?;
    }
    let shares = addr.port() != 0 && bind(v, fd, proto, addr, listen)?;
    if listen {
        let backlog = libc::SOMAXCONN as u64;
        v.call("listen", libc::SYS_listen, [fd, backlog, 0, 0, 0, 0])?;
    }
    Ok((fd, shares))
}

/// bind(2) of a rebuilt socket to `addr`. A TCP listener or a UDP socket
/// whose port is taken (EADDRINUSE) tries once more with SO_REUSEPORT:
/// it then joins the sockets of that port that opted into sharing it, as
/// the source of a same-host `isotrace clone` does (dump::tcp_share), and
/// the kernel spreads new connections, or datagrams by their addresses,
/// over them. A port whose sockets did not opt in, or belong to another
/// uid, stays refused (inet_csk_bind_conflict(), udp_lib_lport_inuse()),
/// and the error names the port. A socket whose port was free never gets
/// the option, so an ordinary restore is faithful. Returns whether the
/// socket joined a port held on this host.
fn bind(v: &Vessel, fd: u64, proto: &str, addr: &SocketAddr, listen: bool) -> Result<bool> {
    let sa = sockaddr(addr);
    let at = v.stage(0, &sa)?;
    let mut rc = v.raw(libc::SYS_bind, [fd, at, sa.len() as u64, 0, 0, 0])?;
    let in_use = -rc == libc::EADDRINUSE as i64;
    let udp = proto.starts_with("udp");
    let may_share = udp || (proto.starts_with("tcp") && listen);
    if in_use && may_share {
        let one = v.stage(0, &1i32.to_ne_bytes())?;
        let (sol, reuseport) = (libc::SOL_SOCKET as u64, libc::SO_REUSEPORT as u64);
        v.call(
            "setsockopt SO_REUSEPORT",
            libc::SYS_setsockopt,
            [fd, sol, reuseport, one, 4, 0],
        )?;
        let at = v.stage(0, &sa)?;
        rc = v.raw(libc::SYS_bind, [fd, at, sa.len() as u64, 0, 0, 0])?;
    }
    if rc == 0 {
        return Ok(in_use);
    }
    let errno = nix::errno::Errno::from_raw(-rc as i32);
    let why = if in_use && may_share {
        let holder = if udp { "a UDP socket" } else { "a listener" };
        format!(
            "{errno}: port {} is held on this host by {holder} that does not share it \
             (SO_REUSEPORT must be set on every socket of a port, all of one effective uid: \
             socket(7)); stop the other {}, or restore in another network namespace",
            addr.port(),
            if udp { "socket" } else { "listener" }
        )
    } else {
        errno.to_string()
    };
    Err(Error::Invalid {
        what: format!("cannot restore the {proto} socket on {addr}: bind: {why}"),
    })
}

/// connect(2) of a rebuilt UDP socket (bound to `local`) to `peer`.
fn connect(v: &Vessel, fd: u64, proto: &str, local: &SocketAddr, peer: &SocketAddr) -> Result<()> {
    let sa = sockaddr(peer);
    let at = v.stage(0, &sa)?;
    let rc = v.raw(libc::SYS_connect, [fd, at, sa.len() as u64, 0, 0, 0])?;
    if rc == 0 {
        return Ok(());
    }
    Err(Error::Invalid {
        what: format!(
            "cannot restore the {proto} socket on {local}: connect to {peer}: {}",
            nix::errno::Errno::from_raw(-rc as i32)
        ),
    })
}

/// struct sockaddr_in / sockaddr_in6 (ip(7), ipv6(7)): port and address
/// in network byte order.
pub(crate) fn sockaddr(addr: &SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    match addr {
        SocketAddr::V4(a) => {
            out.extend((libc::AF_INET as u16).to_ne_bytes());
            out.extend(a.port().to_be_bytes());
            out.extend(a.ip().octets());
            out.extend([0u8; 8]);
        }
        SocketAddr::V6(a) => {
            out.extend((libc::AF_INET6 as u16).to_ne_bytes());
            out.extend(a.port().to_be_bytes());
            out.extend(a.flowinfo().to_be_bytes());
            out.extend(a.ip().octets());
            out.extend(a.scope_id().to_ne_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_are_in_network_order() {
        let v4 = sockaddr(&"127.0.0.1:8080".parse().unwrap());
        assert_eq!(v4.len(), 16);
        assert_eq!(&v4[2..8], &[0x1f, 0x90, 127, 0, 0, 1]);
        let v6 = sockaddr(&"[::1]:443".parse().unwrap());
        assert_eq!(v6.len(), 28);
        assert_eq!(&v6[2..4], &[0x01, 0xbb]);
        assert_eq!(v6[23], 1);
    }
}
