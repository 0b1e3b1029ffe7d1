//! Queues that pass files (`dump::inflight`): each segment is sent again
//! by one sendmsg(2) through the pair's other end, in queue order, with
//! its files passed as SCM_RIGHTS. The files are the root vessel's own
//! objects made before (pipe ends, socket ends), or files opened again
//! by path for the send and closed after it: the message keeps them open
//! (a file in flight holds a reference, unix(7)).

use super::fds::{close, Shared};
use super::inject::Vessel;
use super::Options;
use crate::dump::inflight::{FlightFile, Queues, Segment};
use crate::dump::unix_pairs::Pairs;
use crate::error::{Error, Result};

/// Sends every queue of `queues` into its socket, through its peer's end
/// in `shared.sockets`.
pub fn refill(
    v: &Vessel,
    queues: &Queues,
    pairs: &Pairs,
    shared: &Shared,
    opts: &Options,
) -> Result<()> {
    for (ino, segments) in queues {
        let bad = |what: String| Error::Invalid {
            what: format!("cannot restore the queue of unix socket {ino}: {what}"),
        };
        let peer = pairs
            .get(ino)
            .and_then(|p| shared.sockets.get(&p.peer))
            .ok_or_else(|| bad("its peer was not created".into()))?;
        for seg in segments {
            let mut opened = Vec::new();
            let mut fds = Vec::new();
            for f in &seg.files {
                match f {
                    FlightFile::Pipe { ino, write } => {
                        let ends = shared
                            .pipes
                            .get(ino)
                            .ok_or_else(|| bad(format!("pipe {ino} was not created")))?;
                        fds.push(ends[usize::from(*write)]);
                    }
                    FlightFile::Socket { ino } => fds.push(
                        *shared
                            .sockets
                            .get(ino)
                            .ok_or_else(|| bad(format!("socket {ino} was not created")))?,
                    ),
                    FlightFile::File { path, flags, pos } => {
                        let fd = open(v, &opts.path(path), *flags, *pos).map_err(&bad)?;
                        opened.push(fd);
                        fds.push(fd);
                    }
                    FlightFile::Nameless { ino, flags, pos } => {
                        let made = shared.nameless.get(ino).or_else(|| shared.shm.get(ino));
                        let made =
                            made.ok_or_else(|| bad(format!("nameless file {ino} was not made")))?;
                        let path = format!("/proc/self/fd/{made}");
                        let fd = open(v, &path, *flags, *pos).map_err(&bad)?;
                        opened.push(fd);
                        fds.push(fd);
                    }
                }
            }
            let sent = send(v, *peer, seg, &fds)?;
            for fd in opened {
                close(v, fd)?;
            }
            if sent != seg.data.len() as i64 {
                return Err(bad(format!(
                    "sendmsg of {} bytes with {} files: {}",
                    seg.data.len(),
                    fds.len(),
                    if sent < 0 {
                        nix::errno::Errno::from_raw(-sent as i32).to_string()
                    } else {
                        format!("{sent} bytes sent")
                    }
                )));
            }
        }
    }
    Ok(())
}

/// openat(2) of `path` with `flags` in the vessel, at `pos`.
fn open(v: &Vessel, path: &str, flags: i32, pos: u64) -> std::result::Result<u64, String> {
    let fail = |e: String| format!("reopening {path} to pass it: {e}");
    let at = v.stage_path(path).map_err(|e| fail(e.to_string()))?;
    let args = [libc::AT_FDCWD as u64, at, flags as u64, 0, 0, 0];
    let rc = v
        .raw(libc::SYS_openat, args)
        .map_err(|e| fail(e.to_string()))?;
    if rc < 0 {
        return Err(fail(nix::errno::Errno::from_raw(-rc as i32).to_string()));
    }
    let seek = [rc as u64, pos, libc::SEEK_SET as u64, 0, 0, 0];
    v.call("lseek", libc::SYS_lseek, seek)
        .map_err(|e| fail(e.to_string()))?;
    Ok(rc as u64)
}

/// The bytes of a struct msghdr, its iovec and its SCM_RIGHTS control
/// data for a message staged at `base` (x86_64 layouts, <sys/socket.h>):
/// msghdr (56 bytes), iovec (16), cmsghdr (16) + fds padded to 8, data.
fn layout(base: u64, data_len: usize, fds: &[u64]) -> (Vec<u8>, u64) {
    let iov = base + 56;
    let cmsg = iov + 16;
    let cmsg_len = 16 + 4 * fds.len() as u64;
    let space = if fds.is_empty() {
        0
    } else {
        cmsg_len.next_multiple_of(8)
    };
    let data = cmsg + space;
    let mut b = Vec::with_capacity((data - base) as usize);
    b.extend(0u64.to_ne_bytes()); // msg_name
    b.extend(0u64.to_ne_bytes()); // msg_namelen + padding
    b.extend(iov.to_ne_bytes()); // msg_iov
    b.extend(1u64.to_ne_bytes()); // msg_iovlen
    b.extend((if fds.is_empty() { 0 } else { cmsg }).to_ne_bytes()); // msg_control
    b.extend(space.to_ne_bytes()); // msg_controllen
    b.extend(0u64.to_ne_bytes()); // msg_flags + padding
    b.extend(data.to_ne_bytes()); // iov_base
    b.extend((data_len as u64).to_ne_bytes()); // iov_len
    if !fds.is_empty() {
        b.extend(cmsg_len.to_ne_bytes());
        b.extend(libc::SOL_SOCKET.to_ne_bytes());
        b.extend(libc::SCM_RIGHTS.to_ne_bytes());
        for fd in fds {
            b.extend((*fd as i32).to_ne_bytes());
        }
        b.resize((data - base) as usize, 0);
    }
    (b, data)
}

/// sendmsg(2) of one segment on the vessel's `fd` with `fds`, from a
/// scratch mapping made for it; the raw result.
fn send(v: &Vessel, fd: u64, seg: &Segment, fds: &[u64]) -> Result<i64> {
    let head = 56 + 16 + 16 + 4 * seg.files.len() + 8;
    let len = ((head + seg.data.len()) as u64).next_multiple_of(crate::PAGE_SIZE);
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let at = v.call(
        "mmap a scratch area for a message",
        libc::SYS_mmap,
        [0, len, prot, flags, u64::MAX, 0],
    )?;
    let (header, data) = layout(at, seg.data.len(), fds);
    v.poke(at, &header)?;
    v.poke(data, &seg.data)?;
    let rc = v.raw(libc::SYS_sendmsg, [fd, at, 0, 0, 0, 0])?;
    v.call("munmap", libc::SYS_munmap, [at, len, 0, 0, 0, 0])?;
    Ok(rc)
}

#[cfg(test)]
mod tests {
    use super::layout;

    /// The layout matches libc's structs field by field.
    #[test]
    fn msghdr_layout_matches_libc() {
        assert_eq!(std::mem::size_of::<libc::msghdr>(), 56);
        assert_eq!(std::mem::size_of::<libc::iovec>(), 16);
        assert_eq!(std::mem::size_of::<libc::cmsghdr>(), 16);
        let (b, data) = layout(0x1000, 5, &[7, 9]);
        // CMSG_SPACE(8) and CMSG_LEN(8) on x86_64: a 16-byte header
        // and two ints, already a multiple of 8.
        let space = 24;
        assert_eq!(data, 0x1000 + 56 + 16 + space);
        assert_eq!(b.len() as u64, data - 0x1000);
        let at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(
            (at(16), at(24), at(32), at(40)),
            (0x1000 + 56, 1, 0x1000 + 72, space)
        );
        assert_eq!((at(56), at(64)), (data, 5));
        assert_eq!(at(72), 24);
        assert_eq!(&b[88..96], &[7, 0, 0, 0, 9, 0, 0, 0]);
    }
}
