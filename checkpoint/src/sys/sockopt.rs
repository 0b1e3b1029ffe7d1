//! Socket calls on an fd of ours (a pidfd_getfd(2) duplicate of a
//! tracee's socket, or one the supervisor rebuilds in place): raw
//! get/setsockopt, peeking a queue, bind/connect/send. Part of `sys`:
//! `unsafe` lives here and in `sys.rs` only. Every call returns the
//! kernel's errno untouched; callers add the pid, fd and connection.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

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
pub fn peek_message(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: receives at most buf.len() bytes into a live buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    rc(n as libc::c_long).map(|n| n as usize)
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
