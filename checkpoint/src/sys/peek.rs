//! Reading what the kernel holds for a stopped process without consuming
//! it: a pipe's buffered bytes, a socket's queue, sock_diag answers. Part
//! of `sys`: `unsafe` lives here and in `sys.rs` only.

/// The bytes buffered in the pipe that `fd_path` (a /proc/PID/fd/N link
/// of either end) refers to, without consuming them: the pipe is opened
/// anew through the link (proc(5): opening the link opens the object
/// itself, here as a FIFO reader, fs/pipe.c fifo_open) and tee(2)d into
/// a private pipe of the same size, which duplicates the data and leaves
/// it in the source pipe. The pipe's writers must be stopped.
pub fn pipe_contents(fd_path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fd_path)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a live array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (mut rd, wr) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: fcntl on fds we own; F_GETPIPE_SZ/F_SETPIPE_SZ take an int.
    let size = unsafe { libc::fcntl(src.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size > 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    }
    // SAFETY: tee between two pipe fds we own; no memory is passed.
    let n = unsafe {
        libc::tee(
            src.as_raw_fd(),
            wr.as_raw_fd(),
            usize::MAX >> 1,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if n == -1 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    drop(wr);
    let mut out = Vec::with_capacity(n as usize);
    rd.read_to_end(&mut out)?;
    Ok(out)
}

/// Sends one netlink request (`req`, a whole nlmsghdr + payload) on a new
/// netlink socket of `protocol` and feeds each batch of answers to
/// `batch` until it returns true (it saw NLMSG_DONE).
pub fn netlink_query(
    protocol: libc::c_int,
    req: &[u8],
    mut batch: impl FnMut(&[u8]) -> std::io::Result<bool>,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the fd is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sends `req.len()` bytes from a live buffer to the kernel
    // (an unaddressed netlink send goes to pid 0).
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives at most buf.len() bytes into a live buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 || batch(&buf[..n as usize])? {
            return Ok(());
        }
    }
}
