//! Socket lookups by inode in the target's network namespace:
//! /proc/PID/net/{unix,tcp,tcp6,udp,udp6} (proc(5)).

use crate::model::{FdKind, ProcessTree, SocketInfo};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

pub type SocketTable = HashMap<u64, SocketInfo>;

/// Every socket of a network namespace, from its /proc/.../net directory.
/// Missing files (no IPv6, no such protocol) are simply absent.
pub fn load(net_dir: &str) -> SocketTable {
    let mut table = SocketTable::new();
    let read = |name: &str| std::fs::read_to_string(format!("{net_dir}/{name}")).ok();
    if let Some(text) = read("unix") {
        parse_unix(&text, &mut table);
    }
    let ours = net_dir
        .strip_suffix("/net")
        .is_some_and(super::inet_diag::same_netns);
    for (proto, family, protocol) in [
        ("tcp", libc::AF_INET, libc::IPPROTO_TCP),
        ("tcp6", libc::AF_INET6, libc::IPPROTO_TCP),
        ("udp", libc::AF_INET, libc::IPPROTO_UDP),
        ("udp6", libc::AF_INET6, libc::IPPROTO_UDP),
    ] {
        // sock_diag where the namespace is ours (a netlink socket answers
        // for its own), which costs a fraction of a /proc/net read
        // (inet_diag.rs); /proc otherwise, or if the kernel lacks the
        // protocol's diag module.
        match ours.then(|| super::inet_diag::dump(family, protocol, u32::MAX)) {
            Some(Ok(socks)) => diag_inet(proto, &socks, &mut table),
            _ => {
                if let Some(text) = read(proto) {
                    parse_inet(proto, &text, &mut table);
                }
            }
        }
    }
    table
}

/// The sockets of a sock_diag dump, as [`parse_inet`] makes them of the
/// same sockets' /proc/net lines.
fn diag_inet(proto: &str, socks: &[super::inet_diag::Sock], table: &mut SocketTable) {
    for s in socks {
        let state = match (proto.starts_with("udp"), s.state) {
            (true, 7) => "UNCONNECTED",
            (_, st) => tcp_state(&format!("{st:02X}")),
        };
        table.insert(
            s.inode,
            SocketInfo::Inet {
                proto: proto.into(),
                local: s.local.to_string(),
                remote: s.remote.to_string(),
                state: state.into(),
            },
        );
    }
}

/// `Num RefCount Protocol Flags Type St Inode [Path]`.
pub fn parse_unix(text: &str, table: &mut SocketTable) {
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 7 {
            continue;
        }
        let Ok(ino) = cols[6].parse() else { continue };
        let flags = u32::from_str_radix(cols[3], 16).unwrap_or(0);
        let kind = match cols[4] {
            "0001" => "stream",
            "0002" => "dgram",
            "0005" => "seqpacket",
            _ => "unknown",
        };
        // __SO_ACCEPTCON in Flags marks a listening socket.
        let state = if flags & 0x1_0000 != 0 {
            "listen"
        } else {
            match cols[5] {
                "01" => "unconnected",
                "02" => "connecting",
                "03" => "connected",
                "04" => "disconnecting",
                _ => "unknown",
            }
        };
        let path = cols.get(7..).map(|p| p.join(" ")).unwrap_or_default();
        table.insert(
            ino,
            SocketInfo::Unix {
                kind: kind.into(),
                state: state.into(),
                path,
            },
        );
    }
}

/// include/net/tcp_states.h, the `st` column.
fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// `ADDR:PORT` with ADDR printed as host-order 32-bit words of the
/// network-order address (%08X each), PORT as %04X.
pub fn parse_addr(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    Some(match bytes.len() {
        4 => format!(
            "{}:{port}",
            Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
        ),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            format!("[{}]:{port}", Ipv6Addr::from(b))
        }
        _ => return None,
    })
}

/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`.
pub fn parse_inet(proto: &str, text: &str, table: &mut SocketTable) {
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 {
            continue;
        }
        let (Some(local), Some(remote), Ok(ino)) =
            (parse_addr(cols[1]), parse_addr(cols[2]), cols[9].parse())
        else {
            continue;
        };
        let state = match (proto.starts_with("udp"), cols[3]) {
            (true, "07") => "UNCONNECTED",
            (_, st) => tcp_state(st),
        };
        table.insert(
            ino,
            SocketInfo::Inet {
                proto: proto.into(),
                local,
                remote,
                state: state.into(),
            },
        );
    }
}

/// A refusal for each socket of `tree` a restore would not rebuild
/// (`restore::sockets::rebuilt`: pairs, inet sockets, TCP connections,
/// unix listeners, unconnected unix datagram sockets, waiting
/// connections' clients) and would therefore fail on after the
/// checkpoint ended the group: a unix socket connected to a peer outside
/// the group, a socket of a family the dump does not read (netlink,
/// packet...) or an inet socket that was never bound (in no /proc/net
/// table). Sockets at fd 0-2 are exempt: a restore gives them its own
/// stdio (`restore::fdplan`).
pub fn unrebuilt(
    tree: &ProcessTree,
    pairs: &super::unix_pairs::Pairs,
    embryos: &super::embryos::Embryos,
) -> Vec<String> {
    let procs: Vec<&crate::model::Process> = tree.processes.iter().collect();
    let rebuilt = crate::restore::sockets::rebuilt(&procs, pairs, embryos);
    let mut out = Vec::new();
    for p in &tree.processes {
        for e in &p.fds {
            let FdKind::Socket(info) = &e.kind else {
                continue;
            };
            if e.fd <= 2 || rebuilt.contains(&e.ino) {
                continue;
            }
            let what = match info {
                Some(SocketInfo::Unix { kind, state, .. }) if state == "connected" => {
                    format!("a unix {kind} socket connected to a peer outside the group")
                }
                Some(SocketInfo::Unix { kind, state, .. }) => format!("a unix {kind} socket ({state})"),
                Some(SocketInfo::Inet { proto, local, state, .. }) => {
                    format!("a {proto} socket on {local} ({state})")
                }
                None => "a socket in no /proc/net table (netlink, packet, or an inet socket never bound)"
                    .to_string(),
            };
            out.push(format!(
                "cannot checkpoint pid {}: fd {} (socket {}): {what}, which a restore cannot rebuild",
                p.pid, e.fd, e.target
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own sockets of each kind: sock_diag and /proc/self/net give
    /// the same table entries.
    #[test]
    fn sock_diag_agrees_with_proc_net() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let ino = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let v = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        v.connect(u.local_addr().unwrap()).unwrap();
        let mut inos = vec![
            ino(l.as_raw_fd()),
            ino(c.as_raw_fd()),
            ino(a.as_raw_fd()),
            ino(u.as_raw_fd()),
            ino(v.as_raw_fd()),
        ];
        let six = std::net::TcpListener::bind("[::1]:0");
        if let Ok(six) = &six {
            inos.push(ino(six.as_raw_fd()));
        }
        let diag = load("/proc/self/net");
        let mut proc = SocketTable::new();
        for proto in ["tcp", "tcp6", "udp", "udp6"] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{proto}")) {
                parse_inet(proto, &text, &mut proc);
            }
        }
        for i in inos {
            assert!(proc.contains_key(&i), "socket {i} in /proc/self/net");
            assert_eq!(diag.get(&i), proc.get(&i), "socket {i}");
        }
    }

    #[test]
    fn unix_table() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1001 /run/a b.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 1002\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 1003 @abstract\n";
        let mut t = SocketTable::new();
        parse_unix(text, &mut t);
        let unix = |ino| match &t[&ino] {
            SocketInfo::Unix { kind, state, path } => (kind.clone(), state.clone(), path.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            unix(1001),
            ("stream".into(), "listen".into(), "/run/a b.sock".into())
        );
        assert_eq!(unix(1002), ("stream".into(), "connected".into(), "".into()));
        assert_eq!(
            unix(1003),
            ("dgram".into(), "unconnected".into(), "@abstract".into())
        );
    }

    #[test]
    fn inet_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0 100 0 0 10 0\n";
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000000000000000000001000000:0016 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 2002 1\n";
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2003 2 0 0\n";
        let mut t = SocketTable::new();
        parse_inet("tcp", tcp, &mut t);
        parse_inet("tcp6", tcp6, &mut t);
        parse_inet("udp", udp, &mut t);
        let inet = |ino| match &t[&ino] {
            SocketInfo::Inet {
                local,
                remote,
                state,
                ..
            } => (local.clone(), remote.clone(), state.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            inet(2001),
            ("127.0.0.1:8080".into(), "0.0.0.0:0".into(), "LISTEN".into())
        );
        assert_eq!(
            inet(2002),
            (
                "[::1]:22".into(),
                "[::1]:54321".into(),
                "ESTABLISHED".into()
            )
        );
        assert_eq!(
            inet(2003),
            (
                "0.0.0.0:68".into(),
                "0.0.0.0:0".into(),
                "UNCONNECTED".into()
            )
        );
    }
}
