//! Datagrams queued on the image's UDP sockets (`dump::udp`), sent again
//! in order from the rebuilt socket that first sent each, to the
//! receiving socket's address (the loopback address of its family when
//! it was bound to the unspecified one), once every socket exists. The
//! receiver gets its SO_RCVBUF back first (SO_RCVBUFFORCE, or SO_RCVBUF
//! within net.core.rmem_max without CAP_NET_ADMIN), so the queue fits as
//! it did. The queue is then read back through a pidfd_getfd(2)
//! duplicate and compared: a datagram the kernel dropped fails the
//! restore rather than go missing.
//!
//! A socket that joined a port still held on this host (a same-host
//! clone's copy, `sockets::bind`) gets no copy of them: the original
//! still holds them and answers them, and a datagram sent to the shared
//! port could reach either socket (reuseport_select_sock() picks by the
//! addresses). A note says how many stayed with the original.

use super::fds::Shared;
use super::inject::Vessel;
use crate::dump::udp::{walk, UdpQueues};
use crate::error::{Error, Result};
use crate::model::Process;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

/// Sends every queue of `queues` again (see the module doc); returns
/// notes on the queues left to the original.
pub fn refill(
    v: &Vessel,
    queues: &UdpQueues,
    procs: &[&Process],
    shared: &Shared,
) -> Result<Vec<String>> {
    let locals = super::sockets::inet_sockets(procs);
    let mut notes = Vec::new();
    for (ino, q) in queues {
        if shared.joined.contains(ino) {
            let port = locals.get(ino).map_or(0, |s| s.local.port());
            notes.push(format!(
                "UDP socket {ino}: its {} queued datagram(s) stay with the original, \
                 which shares port {port} with this copy",
                q.datagrams.len()
            ));
            continue;
        }
        let bad = |why: String| Error::Invalid {
            what: format!("cannot restore the datagrams queued on UDP socket {ino}: {why}"),
        };
        let to = locals
            .get(ino)
            .map(|s| s.local)
            .ok_or_else(|| bad("it is not rebuilt".into()))?;
        let to = match to.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), to.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), to.port())
            }
            _ => to,
        };
        let fd = *shared
            .sockets
            .get(ino)
            .ok_or_else(|| bad("it was not created".into()))?;
        set_rcvbuf(v, fd, q.rcvbuf)?;
        for d in &q.datagrams {
            let from = *shared
                .sockets
                .get(&d.from)
                .ok_or_else(|| bad(format!("its sender, socket {}, was not created", d.from)))?;
            let rc = send_to(v, from, &d.data, &to)?;
            if rc != d.data.len() as i64 {
                return Err(bad(format!("sendto {to} returned {rc}")));
            }
        }
        // Read back what arrived (loopback delivers before sendto returns).
        let dup = isotrace_tracer::sys::dup_remote_fd(v.pid, fd as i32)
            .map_err(|e| bad(format!("pidfd_getfd: {e}")))?;
        let mut buf = vec![0u8; 65536];
        let got = walk(dup.as_fd(), &mut buf).map_err(&bad)?;
        let want: Vec<&[u8]> = q.datagrams.iter().map(|d| &d.data[..]).collect();
        let have: Vec<&[u8]> = got.iter().map(|(_, d)| &d[..]).collect();
        if have != want {
            return Err(bad(format!(
                "{} of {} datagrams arrived as they were",
                have.iter().zip(&want).take_while(|(a, b)| a == b).count(),
                want.len()
            )));
        }
    }
    Ok(notes)
}

/// SO_RCVBUF of the vessel's `fd` back to `doubled` (as getsockopt gave
/// it): setsockopt takes half (socket(7)).
fn set_rcvbuf(v: &Vessel, fd: u64, doubled: i32) -> Result<()> {
    let half = (doubled / 2).max(1);
    let at = v.stage(0, &half.to_ne_bytes())?;
    let sol = libc::SOL_SOCKET as u64;
    let force = [fd, sol, libc::SO_RCVBUFFORCE as u64, at, 4, 0];
    if v.raw(libc::SYS_setsockopt, force)? == 0 {
        return Ok(());
    }
    let plain = [fd, sol, libc::SO_RCVBUF as u64, at, 4, 0];
    v.call("setsockopt SO_RCVBUF", libc::SYS_setsockopt, plain)
        .map(drop)
}

/// sendto(2) of `data` on the vessel's `fd` to `to`, from a scratch
/// mapping; the raw result.
fn send_to(v: &Vessel, fd: u64, data: &[u8], to: &SocketAddr) -> Result<i64> {
    let sa = super::sockets::sockaddr(to);
    let len = ((128 + data.len()) as u64).next_multiple_of(crate::PAGE_SIZE);
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let at = v.call(
        "mmap a scratch area for a datagram",
        libc::SYS_mmap,
        [0, len, prot, flags, u64::MAX, 0],
    )?;
    v.poke(at, &sa)?;
    v.poke(at + 128, data)?;
    let args = [fd, at + 128, data.len() as u64, 0, at, sa.len() as u64];
    let rc = v.raw(libc::SYS_sendto, args)?;
    v.call("munmap", libc::SYS_munmap, [at, len, 0, 0, 0, 0])?;
    Ok(rc)
}
