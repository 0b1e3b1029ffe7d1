//! Connections waiting in the accept queues of a group's TCP listeners,
//! found before a dump. Such a connection has no fd, so no image can hold
//! it (`unread` refuses the checkpoint); a migration therefore drains the
//! queues first: it drops new connections' SYNs to the listening
//! addresses (`netlock`, clients send them again: RFC 6298 5.7), lets the
//! group run until it has accepted what waits, and freezes it again.
//!
//! The count is cheap to read without the group's cooperation: for a
//! listening socket, sock_diag's `idiag_rqueue` (and the `rx_queue`
//! column of /proc/net/tcp[6]) is its accept queue's length
//! (inet_diag_msg_common_fill / get_tcp4_sock: sk_ack_backlog for
//! TCP_LISTEN). A sock_diag dump asking for listeners only walks the
//! listening hash; /proc/net/tcp walks every bucket of the established
//! hash too, about 7 ms per read on this VM with six sockets in all, and
//! this runs inside the downtime of every migration. /proc is read only
//! when the group lives in another network namespace than ours (a netlink
//! socket answers for the namespace it was made in).

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// One listener with connections waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub ino: u64,
    pub local: SocketAddr,
    pub count: u32,
}

/// The socket inodes the fd tables of `pids` hold.
fn socket_inodes(pids: &[i32]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            let Ok(link) = std::fs::read_link(e.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if let Some(ino) = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                out.insert(ino);
            }
        }
    }
    out
}

/// `(inode, local address, accept queue length)` of each listening socket
/// in a /proc/net/tcp[6] text.
pub fn parse_listeners(text: &str) -> Vec<(u64, SocketAddr, u32)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 || cols[3] != "0A" {
            continue;
        }
        let queue = cols[4]
            .split_once(':')
            .and_then(|(_, rx)| u32::from_str_radix(rx, 16).ok());
        let local = super::sockets::parse_addr(cols[1]).and_then(|a| a.parse().ok());
        if let (Some(queue), Some(local), Ok(ino)) = (queue, local, cols[9].parse()) {
            out.push((ino, local, queue));
        }
    }
    out
}

/// The listeners of `pids` (in the network namespace of `root`) with
/// connections waiting to be accepted. It runs at every freeze of a
/// checkpoint or migration, so the group's fd tables are read only when
/// some listener of the namespace has a queue at all.
pub fn waiting(root: i32, pids: &[i32]) -> Vec<Waiting> {
    let mut out: Vec<Waiting> = listeners(root)
        .into_iter()
        .filter(|&(_, _, count)| count > 0)
        .map(|(ino, local, count)| Waiting { ino, local, count })
        .collect();
    if !out.is_empty() {
        let mine = socket_inodes(pids);
        out.retain(|w| mine.contains(&w.ino));
    }
    out
}

/// How many connections still wait on the listeners `inos` (in the
/// network namespace of `root`).
pub fn still_waiting(root: i32, inos: &[u64]) -> u32 {
    listeners(root)
        .into_iter()
        .filter(|(ino, _, _)| inos.contains(ino))
        .map(|(_, _, c)| c)
        .sum()
}

/// `(inode, local address, accept queue length)` of every TCP listener in
/// the network namespace of `root`: by sock_diag when that is ours, else
/// (or if sock_diag fails) from /proc/ROOT/net/tcp[6].
fn listeners(root: i32) -> Vec<(u64, SocketAddr, u32)> {
    if super::inet_diag::same_netns(&format!("/proc/{root}")) {
        if let Ok(found) = super::inet_diag::tcp_listeners() {
            return found;
        }
    }
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{root}/net/{proto}")) {
            out.extend(parse_listeners(&text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listeners_queue_is_its_rx_column() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            parse_listeners(text),
            vec![(4242, "127.0.0.1:8080".parse().unwrap(), 3)]
        );
    }

    #[test]
    fn a_real_listener_shows_what_waits() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id() as i32;
        assert!(waiting(me, &[me])
            .iter()
            .all(|w| w.local != l.local_addr().unwrap()));
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _d = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let found = waiting(me, &[me]);
        let w = found
            .iter()
            .find(|w| w.local == l.local_addr().unwrap())
            .expect("the listener with two waiting");
        assert_eq!(w.count, 2);
        let _ = l.accept().unwrap();
        assert_eq!(still_waiting(me, &[w.ino]), 1);
    }
}
