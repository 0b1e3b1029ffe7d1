//! The peer's FIN, played again to a restored connection whose peer had
//! closed its side (CLOSE_WAIT when it was dumped).
//!
//! TCP repair makes an ESTABLISHED socket; no option says "the peer's FIN
//! came". So the connection is rebuilt as it was just before that FIN
//! (its receive sequence one short: the FIN takes a sequence number), and
//! once out of repair mode it is sent the FIN itself, from the peer's
//! address, over a raw socket: the kernel takes it as the peer's, moves
//! the socket to CLOSE_WAIT, and a read after the queued bytes sees the
//! end of the stream, as before the checkpoint. The segment carries
//! [`PASS_MARK`], which the connection's network lock lets through; the
//! socket's ACK of it is what the peer acknowledged long ago (it is held
//! by the lock, or taken by the peer as a duplicate). The segment is IPv4
//! for an IPv4 or IPv4-mapped IPv6 connection, IPv6 for an IPv6 one.
//! CRIU's libsoccr does the same with a packet built by libnet.

use crate::dump::inet_diag;
use crate::error::{Error, Result};
use crate::netlock::PASS_MARK;
use crate::sys::sockopt;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long the kernel may take to process the segment.
const TAKEN_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP_CLOSE_WAIT (include/net/tcp_states.h).
const TCP_CLOSE_WAIT: u8 = 8;
/// SO_MARK (<asm-generic/socket.h>).
const SO_MARK: i32 = 36;

/// An address as IPv4, if it is one (or IPv4-mapped).
fn v4(a: &SocketAddr) -> Option<SocketAddrV4> {
    let ip = match a.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped()?,
    };
    Some(SocketAddrV4::new(ip, a.port()))
}

/// Whether the FIN of a connection between these ends can be played:
/// both IPv4 (or IPv4-mapped), or both IPv6.
pub fn supported(local: &SocketAddr, remote: &SocketAddr) -> bool {
    v4(local).is_some() == v4(remote).is_some()
}

/// The ones' complement sum of `bytes` (RFC 1071), not yet folded.
fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A TCP header with FIN and ACK from port `from` to port `to`: sequence
/// `seq`, acknowledging `ack`, advertising `window`, with its checksum
/// over `pseudo` (the IP pseudo-header: RFC 9293 3.1, RFC 8200 8.1) and
/// itself.
fn fin_header(from: u16, to: u16, seq: u32, ack: u32, window: u16, pseudo: &[u8]) -> Vec<u8> {
    const FIN_ACK: u8 = 0x11;
    let mut tcp = Vec::with_capacity(20);
    tcp.extend(from.to_be_bytes());
    tcp.extend(to.to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(ack.to_be_bytes());
    tcp.extend([5 << 4, FIN_ACK]);
    tcp.extend(window.to_be_bytes());
    tcp.extend([0, 0, 0, 0]); // checksum, urgent pointer
    let check = fold(sum(&tcp, sum(pseudo, 0)));
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    tcp
}

/// An IPv4 packet holding one TCP segment with FIN and ACK from `from`
/// to `to` ([`fin_header`]).
pub(crate) fn fin_segment(
    from: SocketAddrV4,
    to: SocketAddrV4,
    seq: u32,
    ack: u32,
    window: u16,
) -> Vec<u8> {
    let (src, dst) = (from.ip().octets(), to.ip().octets());
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend([0, libc::IPPROTO_TCP as u8, 0, 20]);
    let tcp = fin_header(from.port(), to.port(), seq, ack, window, &pseudo);
    let total = (20 + tcp.len()) as u16;
    let mut ip = Vec::with_capacity(total as usize);
    ip.extend([0x45, 0]);
    ip.extend(total.to_be_bytes());
    ip.extend([0, 0, 0x40, 0]); // id, DF
    ip.extend([64, libc::IPPROTO_TCP as u8, 0, 0]); // ttl, protocol, checksum
    ip.extend(src);
    ip.extend(dst);
    let check = fold(sum(&ip, 0));
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip.extend(tcp);
    ip
}

/// The same segment in an IPv6 packet.
pub(crate) fn fin_segment6(
    from: SocketAddrV6,
    to: SocketAddrV6,
    seq: u32,
    ack: u32,
    window: u16,
) -> Vec<u8> {
    let (src, dst) = (from.ip().octets(), to.ip().octets());
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend(20u32.to_be_bytes());
    pseudo.extend([0, 0, 0, libc::IPPROTO_TCP as u8]);
    let tcp = fin_header(from.port(), to.port(), seq, ack, window, &pseudo);
    let mut ip = Vec::with_capacity(40 + tcp.len());
    ip.extend([0x60, 0, 0, 0]); // version, traffic class, flow label
    ip.extend((tcp.len() as u16).to_be_bytes());
    ip.extend([libc::IPPROTO_TCP as u8, 64]); // next header, hop limit
    ip.extend(src);
    ip.extend(dst);
    ip.extend(tcp);
    ip
}

/// Sends the peer's FIN to the restored socket `local` <- `remote` (out
/// of repair mode) and waits for the kernel to take it: the socket is
/// then in CLOSE_WAIT.
pub fn play(local: SocketAddr, remote: SocketAddr, seq: u32, ack: u32, window: u16) -> Result<()> {
    let what = |why: String| {
        Error::Invalid {
        what: format!(
            "cannot restore the TCP connection {local} -> {remote} (its peer had closed its side): {why}"
        ),
    }
    };
    // An IPv4-mapped socket takes IPv4 segments, an IPv6 one IPv6
    // segments. IPPROTO_RAW: the header is ours (raw(7), ipv6(7)).
    let (family, packet, to) = match (v4(&local), v4(&remote), local, remote) {
        (Some(l), Some(r), _, _) => (
            libc::AF_INET,
            fin_segment(r, l, seq, ack, window),
            SocketAddr::V4(SocketAddrV4::new(*l.ip(), 0)),
        ),
        (None, None, SocketAddr::V6(l), SocketAddr::V6(r)) => (
            libc::AF_INET6,
            fin_segment6(r, l, seq, ack, window),
            SocketAddr::V6(SocketAddrV6::new(*l.ip(), 0, 0, l.scope_id())),
        ),
        _ => return Err(what("one end is IPv4, the other IPv6".into())),
    };
    let raw = sockopt::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)
        .map_err(|e| what(format!("raw socket: {}", e.desc())))?;
    let mark = PASS_MARK.to_ne_bytes();
    sockopt::set(raw.as_fd(), libc::SOL_SOCKET, SO_MARK, &mark)
        .map_err(|e| what(format!("SO_MARK: {}", e.desc())))?;
    let to = super::sockets::sockaddr(&to);
    sockopt::send_to(raw.as_fd(), &packet, &to)
        .map_err(|e| what(format!("sending its FIN: {}", e.desc())))?;
    let deadline = Instant::now() + TAKEN_TIMEOUT;
    while !in_close_wait(local, remote)? {
        if Instant::now() >= deadline {
            let why = format!("the kernel did not take its FIN within {TAKEN_TIMEOUT:?}");
            return Err(what(why));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Whether the socket `l` <- `r` is in CLOSE_WAIT (an IPv4-mapped
/// address is its IPv4 self).
fn in_close_wait(l: SocketAddr, r: SocketAddr) -> Result<bool> {
    let same = |a: &SocketAddr, b: &SocketAddr| match (v4(a), v4(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.ip() == b.ip() && a.port() == b.port(),
    };
    for family in [libc::AF_INET, libc::AF_INET6] {
        let socks = inet_diag::dump(family, libc::IPPROTO_TCP, 1 << TCP_CLOSE_WAIT)
            .map_err(|e| Error::io("sock_diag", e))?;
        if socks
            .iter()
            .any(|s| same(&s.local, &l) && same(&s.remote, &r))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_segment_checks_out() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
        let p = fin_segment(from, to, 0x0102_0304, 0x0a0b_0c0d, 512);
        assert_eq!(p.len(), 40);
        assert_eq!(&p[12..16], &[10, 0, 0, 2]);
        assert_eq!(&p[16..20], &[10, 0, 0, 1]);
        // A header with its checksum in sums to 0xffff: folded, 0.
        assert_eq!(fold(sum(&p[..20], 0)), 0);
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend([0, 6, 0, 20]);
        assert_eq!(fold(sum(&p[20..], sum(&pseudo, 0))), 0);
        assert_eq!(&p[20..24], &[0x13, 0x88, 0, 80]);
        assert_eq!(&p[24..28], &[1, 2, 3, 4]);
        assert_eq!(&p[28..32], &[10, 11, 12, 13]);
        assert_eq!(p[33], 0x11, "FIN|ACK");
        assert_eq!(&p[34..36], &[2, 0]);
    }

    #[test]
    fn the_ipv6_segment_checks_out() {
        let from: SocketAddrV6 = "[fe80::2]:5000".parse().unwrap();
        let to: SocketAddrV6 = "[fe80::1]:80".parse().unwrap();
        let p = fin_segment6(from, to, 7, 9, 100);
        assert_eq!(p.len(), 60);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(&p[4..8], &[0, 20, 6, 64]);
        assert_eq!(&p[8..24], &from.ip().octets());
        assert_eq!(&p[24..40], &to.ip().octets());
        let mut pseudo = p[8..40].to_vec();
        pseudo.extend([0, 0, 0, 20, 0, 0, 0, 6]);
        assert_eq!(fold(sum(&p[40..], sum(&pseudo, 0))), 0);
        assert_eq!(p[53], 0x11, "FIN|ACK");
    }

    #[test]
    fn both_ends_of_one_family() {
        let v4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(supported(&v4, &mapped));
        assert!(supported(&v6, &v6));
        assert!(!supported(&v6, &v4));
        assert!(!supported(&v4, &v6));
    }
}
