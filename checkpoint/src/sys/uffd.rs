//! The userfaultfd(2) ioctls of the copy-before-write snapshot
//! (dump/wp/) that pre-copy does not need: registration in missing and
//! write-protect mode at once, UFFDIO_ZEROPAGE and UFFDIO_WAKE. Part of
//! `sys`: `unsafe` lives here and in `sys.rs` only. The numbers are from
//! include/uapi/linux/userfaultfd.h; errors keep their errno (EEXIST,
//! EAGAIN and ENOENT mean different things to the caller).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// _IOC(dir, 0xAA, nr, size) of include/uapi/asm-generic/ioctl.h.
const fn uffdio(dir: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | (0xAA << 8) | nr
}

const READ_WRITE: u64 = 3;
const READ: u64 = 2;
const UFFDIO_REGISTER: u64 = uffdio(READ_WRITE, 0x00, 32);
const UFFDIO_WAKE: u64 = uffdio(READ, 0x02, 16);
const UFFDIO_ZEROPAGE: u64 = uffdio(READ_WRITE, 0x04, 32);
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;

fn ioctl<T>(fd: &OwnedFd, req: u64, arg: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct of
    // exactly the size encoded in `req`, which the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[repr(C)]
struct Register {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// UFFDIO_REGISTER [start, start+len) in write-protect mode, and with
/// `missing` in missing mode too: then every fault on a page not mapped
/// yet (PTE none) waits for [`zeropage`] (anonymous mappings; shmem
/// reports only pages not in its page cache).
pub fn register(uffd: &OwnedFd, start: u64, len: u64, missing: bool) -> io::Result<()> {
    let mut r = Register {
        start,
        len,
        mode: UFFDIO_REGISTER_MODE_WP
            | if missing {
                UFFDIO_REGISTER_MODE_MISSING
            } else {
                0
            },
        ioctls: 0,
    };
    ioctl(uffd, UFFDIO_REGISTER, &mut r).map(drop)
}

#[repr(C)]
struct Zeropage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

/// UFFDIO_ZEROPAGE: maps the zero page at [start, start+len) and wakes
/// the threads whose faults waited there. EEXIST when a page is mapped
/// there already (nobody is woken: see [`wake`]), EAGAIN while one of the
/// process's mmap changes is being reported.
pub fn zeropage(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut z = Zeropage {
        start,
        len,
        mode: 0,
        zeropage: 0,
    };
    ioctl(uffd, UFFDIO_ZEROPAGE, &mut z).map(drop)
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

/// UFFDIO_WAKE: wakes the threads whose faults wait in [start, start+len).
pub fn wake(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut r = Range { start, len };
    ioctl(uffd, UFFDIO_WAKE, &mut r).map(drop)
}
