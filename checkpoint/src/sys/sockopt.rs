//! Socket calls on an fd of ours (a pidfd_getfd(2) duplicate of a
//! tracee's socket, or one the supervisor rebuilds in place): raw
//! get/setsockopt, peeking a queue, bind/connect/send. Part of `sys`:
//! `unsafe` lives here and in `sys.rs` only. Every call returns the
//! kernel's errno untouched; callers add the pid, fd and connection.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn rc(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// getsockopt(2) into a buffer of `len` bytes; returns what the kernel
/// wrote (it may be shorter, e.g. struct tcp_info from an older kernel).
pub fn get(fd: BorrowedFd<'_>, level: i32, name: i32, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let mut got = len as libc::socklen_t;
    // SAFETY: the kernel writes at most `got` bytes into a live buffer of
    // that size and updates `got`, a live local.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut got,
        )
    };
    rc(ret as libc::c_long)?;
    buf.truncate(got as usize);
    Ok(buf)
}

/// An int socket option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<i32, Errno> {
    let b = get(fd, level, name, 4)?;
    Ok(b.get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i32::from_ne_bytes))
}

/// setsockopt(2) with the option value as bytes.
pub fn set(fd: BorrowedFd<'_>, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `val.len()` bytes from a live slice.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    rc(ret as libc::c_long).map(drop)
}

/// An ioctl(2) that writes one int (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD).
pub fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: the ioctls used here write one int into a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) };
    rc(ret as libc::c_long)?;
    Ok(v)
}

/// recv(2) with MSG_PEEK|MSG_DONTWAIT of up to `len` bytes: in TCP repair
/// mode, of the queue TCP_REPAIR_QUEUE selects (net/ipv4/tcp.c,
/// tcp_recvmsg_locked: tcp_peek_sndq for the send queue).
pub fn peek(fd: BorrowedFd<'_>, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: receives at most buf.len() bytes into a live buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    let n = rc(n as libc::c_long)?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// recv(2) of the next datagram with MSG_PEEK|MSG_DONTWAIT|MSG_TRUNC into
/// `buf`: the message's real length, which is more than `buf.len()` when
/// it did not fit. With SO_PEEK_OFF set, each call peeks the next one.
#[cfg(test)]
pub fn peek_message(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: receives at most buf.len() bytes into a live buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    rc(n as libc::c_long).map(|n| n as usize)
}

/// The most fds one SCM_RIGHTS message carries (SCM_MAX_FD,
/// include/net/scm.h).
pub const MAX_FDS: usize = 253;

/// What [`peek_with_fds`] saw: the length (the whole message's with
/// MSG_TRUNC on a datagram), the files passed with it, now fds of ours,
/// and whether the kernel had to cut the control data (MSG_CTRUNC).
pub struct Peeked {
    pub len: usize,
    pub fds: Vec<std::os::fd::OwnedFd>,
    pub ctrunc: bool,
}

/// recvmsg(2) with MSG_PEEK and room for SCM_RIGHTS: a peek copies the
/// files of the message it shows into the reader's table as new fds
/// (net/unix/af_unix.c, unix_peek_fds; scm_recv), close-on-exec here,
/// and leaves them in flight on the queue. `trunc` adds MSG_TRUNC.
pub fn peek_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8], trunc: bool) -> Result<Peeked, Errno> {
    use std::os::fd::FromRawFd;
    let space = {
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        unsafe { libc::CMSG_SPACE((MAX_FDS * 4) as u32) as usize }
    };
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() * 8;
    let mut flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    if trunc {
        flags |= libc::MSG_TRUNC;
    }
    // SAFETY: the kernel writes at most iov_len bytes into `buf` and
    // msg_controllen bytes into `control`, both live for the call.
    let n = rc(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) } as libc::c_long)?;
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* walk stays inside msg_controllen bytes of
    // `control`, as the kernel filled them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    // Installed in our table by this call: ours alone.
                    fds.push(std::os::fd::OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Peeked {
        len: n as usize,
        fds,
        ctrunc: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// bind(2) to a raw struct sockaddr.
pub fn bind(fd: BorrowedFd<'_>, sa: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `sa.len()` bytes of a live sockaddr buffer.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            sa.as_ptr().cast(),
            sa.len() as libc::socklen_t,
        )
    };
    rc(ret as libc::c_long).map(drop)
}

/// connect(2) to a raw struct sockaddr (AF_UNSPEC: disconnect).
pub fn connect(fd: BorrowedFd<'_>, sa: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `sa.len()` bytes of a live sockaddr buffer.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            sa.as_ptr().cast(),
            sa.len() as libc::socklen_t,
        )
    };
    rc(ret as libc::c_long).map(drop)
}

/// socket(2), close-on-exec.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: integer-only syscall.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    let fd = rc(fd as libc::c_long)? as i32;
    // SAFETY: socket(2) just returned this fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// sendto(2) of `bytes` to a raw struct sockaddr, without blocking.
pub fn send_to(fd: BorrowedFd<'_>, bytes: &[u8], sa: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most bytes.len() bytes of a live slice
    // and sa.len() bytes of a live sockaddr buffer.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            sa.as_ptr().cast(),
            sa.len() as libc::socklen_t,
        )
    };
    rc(n as libc::c_long).map(|n| n as usize)
}

/// send(2) without blocking; returns the bytes taken.
pub fn send(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: the kernel reads at most bytes.len() bytes of a live slice.
    let n = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags) };
    rc(n as libc::c_long).map(|n| n as usize)
}

/// listen(2).
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    rc(ret as libc::c_long).map(drop)
}

/// shutdown(2).
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::shutdown(fd.as_raw_fd(), how) };
    rc(ret as libc::c_long).map(drop)
}

/// fcntl(2) F_GETFL: the open file's access mode and status flags.
pub fn fd_flags(fd: BorrowedFd<'_>) -> Result<i32, Errno> {
    // SAFETY: F_GETFL takes no argument and reads nothing of ours.
    rc(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } as libc::c_long).map(|f| f as i32)
}

/// The open file's offset (lseek(2) SEEK_CUR by 0 moves nothing).
pub fn fd_offset(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    // SAFETY: lseek passes no memory.
    rc(unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) } as libc::c_long).map(|p| p as u64)
}

/// sendmsg(2) of `bytes` with `fds` passed as SCM_RIGHTS (none: no
/// control data). Returns the bytes sent.
#[cfg(test)]
pub fn send_with_fds(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[i32]) -> Result<usize, Errno> {
    let mut control = vec![0u64; 64];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_* arithmetic and writes stay inside `control`
        // (64 u64s hold a header and up to 110 fds; tests pass a few).
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE((fds.len() * 4) as u32) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: the kernel reads the live buffers `msg` points to.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
    rc(n as libc::c_long).map(|n| n as usize)
}

/// How many bytes of whole skbs a stream peek copies into a buffer of
/// which only the first `room` bytes can be written: the copy of an skb
/// is all or nothing (skb_copy_datagram_msg fails with EFAULT on a short
/// copy, and unix_stream_read_generic then returns what the earlier
/// skbs gave, or EFAULT if none), so with `room` one less than a peek
/// that ended with an skb, the answer is where that skb begins. The
/// buffer ends at an inaccessible page.
pub fn peek_whole_skbs(fd: BorrowedFd<'_>, room: usize) -> Result<usize, Errno> {
    let page = 4096usize;
    let len = room.next_multiple_of(page) + page;
    // SAFETY: a new private anonymous mapping, unmapped below; nothing
    // else refers to it.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    let guard = len - page;
    // SAFETY: the last page of the mapping just made; the receive
    // below writes only into the mapping (room bytes before the guard),
    // and faults on the guard are reported as EFAULT by the kernel.
    let n = unsafe {
        let base = map.cast::<u8>();
        let r = libc::mprotect(base.add(guard).cast(), page, libc::PROT_NONE);
        let n = if r == 0 {
            libc::recv(
                fd.as_raw_fd(),
                base.add(guard - room).cast(),
                room + 1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        } else {
            -1
        };
        let e = Errno::last();
        libc::munmap(map, len);
        if n == -1 {
            Err(e)
        } else {
            Ok(n as usize)
        }
    };
    match n {
        Err(Errno::EFAULT) => Ok(0),
        other => other,
    }
}

/// Whether `fd` is readable now (poll(2) with no timeout). On a
/// listening socket: a connection waits in its accept queue (tcp_poll,
/// inet_csk_listen_poll; unix_poll: the queue of embryo sockets).
pub fn readable(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd; a zero timeout never blocks.
    let n = rc(unsafe { libc::poll(&mut p, 1, 0) } as libc::c_long)?;
    Ok(n > 0 && p.revents & libc::POLLIN != 0)
}

/// fcntl(2) F_GET_SEALS: a memfd's seals (memfd_create(2)).
pub fn seals(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    // SAFETY: F_GET_SEALS takes no argument and reads nothing of ours.
    rc(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) } as libc::c_long).map(|s| s as u32)
}

/// recvfrom(2) of the next datagram with MSG_PEEK|MSG_DONTWAIT|MSG_TRUNC
/// into `buf`: its real length and its sender's address (an inet socket;
/// None for another family). With SO_PEEK_OFF set, each call peeks the
/// next one.
pub fn peek_from(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Option<std::net::SocketAddr>), Errno> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: the kernel writes at most buf.len() bytes into `buf` and
    // at most `len` bytes into `ss`, both live.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    let n = rc(n as libc::c_long)? as usize;
    let from = match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET).
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6).
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    };
    Ok((n, from))
}
