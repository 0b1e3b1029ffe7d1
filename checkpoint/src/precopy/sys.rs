//! The system calls and ioctls of pre-copy, of the restore's fill and of
//! the copy-before-write snapshot (dump/wp/), the only `unsafe` of them:
//! pidfd_open(2)/pidfd_getfd(2), the userfaultfd(2) ioctls (UFFDIO_API,
//! UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_WRITEPROTECT, UFFDIO_COPY,
//! with which a restore fills memory, UFFDIO_ZEROPAGE and UFFDIO_WAKE),
//! poll(2) of a userfaultfd and PAGEMAP_SCAN (ioctl_pagemap_scan(2),
//! Linux 6.7). The constants are from include/uapi/linux/userfaultfd.h
//! and include/uapi/linux/fs.h; the installed headers may predate them.
//! Errors keep their kind (EEXIST is AlreadyExists, EAGAIN WouldBlock).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// _IOWR(type, nr, size) of include/uapi/asm-generic/ioctl.h.
const fn iowr(ty: u64, nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (ty << 8) | nr
}

const UFFD_API: u64 = 0xAA;
const UFFDIO_API: u64 = iowr(0xAA, 0x3F, 24);
const UFFDIO_REGISTER: u64 = iowr(0xAA, 0x00, 32);
const UFFDIO_UNREGISTER: u64 = (2 << 30) | (16 << 16) | (0xAA << 8) | 0x01;
const UFFDIO_WRITEPROTECT: u64 = iowr(0xAA, 0x06, 24);
const UFFDIO_COPY: u64 = iowr(0xAA, 0x03, 40);
const UFFDIO_ZEROPAGE: u64 = iowr(0xAA, 0x04, 32);
/// _IOR(0xAA, 0x02, struct uffdio_range).
const UFFDIO_WAKE: u64 = (2 << 30) | (16 << 16) | (0xAA << 8) | 0x02;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// UFFDIO_COPY: do not wake threads waiting on the range (there are none
/// while a restore fills a process that has not run yet).
const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// Write faults are resolved by the kernel itself, which only records
/// that the page was written (cleared PTE uffd-wp bit): nobody has to
/// read fault messages, and the tracee never blocks.
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// Write-protection also applies to pages never touched yet (a PTE marker
/// is installed), so a first write to them is seen as well.
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// Non-cooperative events (Documentation/admin-guide/mm/userfaultfd.rst):
/// the process's mremap(2), madvise(MADV_DONTNEED/REMOVE) and munmap(2)
/// of registered ranges are reported, and the calling thread waits until
/// the message is read.
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// fork(2) of a process whose registered ranges are copied reports a new
/// userfaultfd for the child's mm (installed in the reader's fd table);
/// without it the child's copies of the ranges are simply unregistered.
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
/// Write-protection of shmem and hugetlbfs (PTE markers).
pub const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
/// struct uffd_msg's event numbers and pagefault flags.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
/// sizeof(struct uffd_msg).
pub const UFFD_MSG_SIZE: usize = 32;
/// userfaultfd(2) flag: handle user-mode faults only, what an unprivileged
/// process may ask for when vm.unprivileged_userfaultfd is 0.
pub const UFFD_USER_MODE_ONLY: u64 = 1;

const PAGEMAP_SCAN: u64 = iowr(b'f' as u64, 16, 96);
/// Write-protect the pages that matched (atomically with reporting them).
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// Fail (EPERM) on a page not under async write-protection.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
/// The page was written since it was last write-protected.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// The page is in RAM, or in swap.
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;

fn check(what: &str, rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments.
    let fd = check("pidfd_open", unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid, 0)
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the pidfd's process has terminated: a pidfd polls readable
/// once it has (pidfd_open(2), "Use cases for PID file descriptors"), so a
/// pid reused by another process is never mistaken for the one tracked.
pub fn pidfd_exited(pidfd: &OwnedFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one live, exclusively borrowed pollfd; timeout 0.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    check("poll(pidfd)", rc as libc::c_long)?;
    Ok(p.revents & libc::POLLIN != 0)
}

/// pidfd_getfd(2): our own copy of fd `target` of the pidfd's process
/// (needs PTRACE_MODE_ATTACH_REALCREDS over it, which its tracer has).
pub fn pidfd_getfd(pidfd: &OwnedFd, target: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments.
    let fd = check("pidfd_getfd", unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0)
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// userfaultfd(2) in this process (tests; the tracee's is injected).
pub fn userfaultfd(flags: u64) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with an integer argument.
    let fd = check("userfaultfd", unsafe {
        libc::syscall(libc::SYS_userfaultfd, flags)
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ioctl<T>(fd: &OwnedFd, what: &str, req: u64, arg: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct of
    // exactly the size encoded in `req`, which the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    check(what, rc as libc::c_long)
}

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// UFFDIO_API with `features`; returns the features the kernel grants
/// (EINVAL if it lacks one asked for).
pub fn uffd_api(uffd: &OwnedFd, features: u64) -> io::Result<u64> {
    let mut a = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    ioctl(uffd, "UFFDIO_API", UFFDIO_API, &mut a)?;
    Ok(a.features)
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// UFFDIO_REGISTER [start, start+len) of the uffd's mm, in missing mode
/// when `missing` (a fault on a page not mapped there, PTE none, waits for
/// the uffd's owner: UFFDIO_COPY or UFFDIO_ZEROPAGE; shmem reports only
/// pages missing from its page cache) and in write-protect mode when `wp`.
pub fn uffd_register(
    uffd: &OwnedFd,
    start: u64,
    len: u64,
    missing: bool,
    wp: bool,
) -> io::Result<()> {
    let mode = |on: bool, bit: u64| if on { bit } else { 0 };
    let mut r = UffdioRegister {
        start,
        len,
        mode: mode(missing, UFFDIO_REGISTER_MODE_MISSING) | mode(wp, UFFDIO_REGISTER_MODE_WP),
        ioctls: 0,
    };
    ioctl(uffd, "UFFDIO_REGISTER", UFFDIO_REGISTER, &mut r).map(drop)
}

#[repr(C)]
struct UffdioZeropage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

/// UFFDIO_ZEROPAGE: maps the zero page at [start, start+len) and wakes
/// the threads whose faults waited there. AlreadyExists (EEXIST) when a
/// page is mapped there already (nobody is woken: see [`uffd_wake`]),
/// WouldBlock (EAGAIN) while one of the process's mmap changes is being
/// reported.
pub fn uffd_zeropage(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut z = UffdioZeropage {
        start,
        len,
        mode: 0,
        zeropage: 0,
    };
    ioctl(uffd, "UFFDIO_ZEROPAGE", UFFDIO_ZEROPAGE, &mut z).map(drop)
}

/// UFFDIO_WAKE: wakes the threads whose faults wait in [start, start+len).
pub fn uffd_wake(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRange { start, len };
    ioctl(uffd, "UFFDIO_WAKE", UFFDIO_WAKE, &mut r).map(drop)
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// UFFDIO_COPY: allocates pages at `dst` (page-aligned, in a range
/// registered in missing mode) and copies `src` (a whole number of pages)
/// into them, without zeroing them first as a fault would
/// (mm/userfaultfd.c, mfill_atomic_pte_copy). A copy the kernel cut short
/// (EAGAIN while an mmap change of the process is reported, or a partial
/// count) is resumed where it stopped; EEXIST means a page was there.
pub fn uffd_copy(uffd: &OwnedFd, dst: u64, src: &[u8]) -> io::Result<()> {
    let mut done = 0usize;
    while done < src.len() {
        let rest = &src[done..];
        let mut c = UffdioCopy {
            dst: dst + done as u64,
            src: rest.as_ptr() as u64,
            len: rest.len() as u64,
            mode: UFFDIO_COPY_MODE_DONTWAKE,
            copy: 0,
        };
        let rc = ioctl(uffd, "UFFDIO_COPY", UFFDIO_COPY, &mut c);
        if c.copy > 0 {
            done += c.copy as usize;
            continue;
        }
        match rc {
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "UFFDIO_COPY at {:#x}: the kernel copied nothing",
                    c.dst
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// UFFDIO_COPY that wakes the threads waiting on the range and gives up
/// at the first refusal: returns the bytes copied and, if it stopped
/// short, why (AlreadyExists: a page at `dst + copied` is mapped already;
/// WouldBlock: an mmap change of the process is being reported and must be
/// read first; ESRCH: the mm is gone). For a fault server that must read
/// the process's events before it can go on.
pub fn uffd_copy_wake(uffd: &OwnedFd, dst: u64, src: &[u8]) -> (u64, io::Result<()>) {
    let mut done = 0usize;
    while done < src.len() {
        let rest = &src[done..];
        let mut c = UffdioCopy {
            dst: dst + done as u64,
            src: rest.as_ptr() as u64,
            len: rest.len() as u64,
            mode: 0,
            copy: 0,
        };
        let rc = ioctl_raw(uffd, UFFDIO_COPY, &mut c);
        if c.copy > 0 {
            done += c.copy as usize;
            continue;
        }
        let why = match rc {
            Ok(()) => io::Error::other(format!(
                "UFFDIO_COPY at {:#x}: the kernel copied nothing",
                c.dst
            )),
            Err(e) => e,
        };
        return (done as u64, Err(why));
    }
    (done as u64, Ok(()))
}

/// UFFDIO_ZEROPAGE as [`uffd_zeropage`], the error being the bare errno
/// (ESRCH: the mm is gone; ENOENT: no registered mapping there).
pub fn uffd_zeropage_raw(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut z = UffdioZeropage {
        start,
        len,
        mode: 0,
        zeropage: 0,
    };
    ioctl_raw(uffd, UFFDIO_ZEROPAGE, &mut z)
}

/// [`ioctl`] whose error is the bare errno, for callers that tell ESRCH
/// and ENOENT apart.
fn ioctl_raw<T>(fd: &OwnedFd, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct of
    // exactly the size encoded in `req`, which the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The fd a UFFD_EVENT_FORK message names: the kernel installed it in our
/// fd table as it handed the message to read(2).
pub fn uffd_from_fork(fd: u32) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other(format!("fork event: bad fd {fd}")))?;
    // SAFETY: fcntl F_GETFD on an integer only checks that fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("fork event fd {fd}: {e}")));
    }
    // SAFETY: the kernel installed this fd for us while we read the event
    // (fs/userfaultfd.c, resolve_userfault_fork); nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// poll(2) for POLLIN on every fd of `fds` for at most `timeout_ms`: which
/// are readable or hung up (EINTR counts as none).
pub fn poll_many(fds: &[&OwnedFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live, exclusively borrowed array of p.len() pollfds.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
        return Ok(vec![false; p.len()]);
    }
    check("poll", rc as libc::c_long)?;
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

#[repr(C)]
struct UffdioWriteprotect {
    start: u64,
    len: u64,
    mode: u64,
}

/// UFFDIO_WRITEPROTECT: write-protects [start, start+len).
pub fn uffd_writeprotect(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut w = UffdioWriteprotect {
        start,
        len,
        mode: UFFDIO_WRITEPROTECT_MODE_WP,
    };
    ioctl(uffd, "UFFDIO_WRITEPROTECT", UFFDIO_WRITEPROTECT, &mut w).map(drop)
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// UFFDIO_UNREGISTER [start, start+len): clears the registration and the
/// write-protection, and wakes the threads waiting there.
pub fn uffd_unregister(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRange { start, len };
    ioctl(uffd, "UFFDIO_UNREGISTER", UFFDIO_UNREGISTER, &mut r).map(drop)
}

/// UFFDIO_WRITEPROTECT without MODE_WP: un-protects [start, start+len) and
/// wakes the threads whose writes waited there. EAGAIN while one of the
/// process's mmap changes is being reported (ctx->mmap_changing).
pub fn uffd_unprotect(uffd: &OwnedFd, start: u64, len: u64) -> io::Result<()> {
    let mut w = UffdioWriteprotect {
        start,
        len,
        mode: 0,
    };
    ioctl(uffd, "UFFDIO_WRITEPROTECT", UFFDIO_WRITEPROTECT, &mut w).map(drop)
}

/// poll(2) for POLLIN on one fd for at most `timeout_ms`: whether it is
/// readable (EINTR counts as not yet).
pub fn poll_in(fd: &OwnedFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one live, exclusively borrowed pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
        return Ok(false);
    }
    check("poll", rc as libc::c_long)?;
    Ok(p.revents & libc::POLLIN != 0)
}

/// Makes the calling thread SCHED_FIFO at priority 1 (sched(7)): it then
/// runs as soon as it wakes, ahead of every SCHED_OTHER thread. For a
/// thread that sleeps but for short bursts (a write-fault server): EPERM
/// without CAP_SYS_NICE (or an RLIMIT_RTPRIO), and the thread stays as it
/// was.
pub fn realtime_self() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a live sched_param the kernel only reads; pid 0
    // is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    check("sched_setscheduler", rc as libc::c_long).map(drop)
}

/// struct page_region.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// PAGEMAP_SCAN over [start, end) of the pagemap file's process: fills
/// `out` with regions whose categories include all of `mask`; returns how
/// many, and where the walk stopped (before `end` when `out` filled up).
pub fn pagemap_scan(
    pagemap: &OwnedFd,
    range: (u64, u64),
    flags: u64,
    mask: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    pagemap_scan_masks(pagemap, range, flags, (mask, 0), 0, out)
}

/// PAGEMAP_SCAN matching pages whose categories include all of `masks.0`
/// and at least one of `masks.1` (category_mask, category_anyof_mask);
/// the regions report those categories and `more` (regions split where
/// any of them changes).
pub fn pagemap_scan_masks(
    pagemap: &OwnedFd,
    (start, end): (u64, u64),
    flags: u64,
    (mask, anyof): (u64, u64),
    more: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags,
        start,
        end,
        walk_end: 0,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        max_pages: 0,
        category_inverted: 0,
        category_mask: mask,
        category_anyof_mask: anyof,
        return_mask: mask | anyof | more,
    };
    let n = ioctl(pagemap, "PAGEMAP_SCAN", PAGEMAP_SCAN, &mut arg)?;
    Ok((n as usize, arg.walk_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PAGE_SIZE;

    /// UFFDIO_COPY into a range of our own memory registered in missing
    /// mode: the pages hold the bytes copied, a second copy onto them is
    /// refused (EEXIST), and once unregistered a page never copied reads
    /// as zeroes. No page of the range is touched while it is registered
    /// (a fault there would wait for this very thread).
    #[test]
    fn copy_fills_missing_pages_once() {
        let uffd = match userfaultfd(UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as u64) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("skipped: userfaultfd: {e}");
                return;
            }
        };
        uffd_api(&uffd, 0).expect("UFFDIO_API");
        let page = PAGE_SIZE as usize;
        // Above glibc's largest mmap threshold (32 MiB), so calloc maps
        // it fresh and leaves it untouched: its pages are missing.
        let mem = vec![0u8; 40 << 20];
        let base = (mem.as_ptr() as u64).next_multiple_of(PAGE_SIZE) + 8 * PAGE_SIZE;
        let off = (base - mem.as_ptr() as u64) as usize;
        uffd_register(&uffd, base, 8 * PAGE_SIZE, true, false).expect("register");
        let src: Vec<u8> = (0..3 * page)
            .map(|i| (i / page * 31 + i % 251) as u8)
            .collect();
        uffd_copy(&uffd, base + PAGE_SIZE, &src).expect("copy");
        let again = uffd_copy(&uffd, base + PAGE_SIZE, &src[..page]).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
        uffd_unregister(&uffd, base, 8 * PAGE_SIZE).expect("unregister");
        let mem = std::hint::black_box(mem);
        assert_eq!(&mem[off + page..off + 4 * page], &src[..]);
        assert!(mem[off..off + page].iter().all(|&b| b == 0));
        assert!(mem[off + 4 * page..off + 8 * page].iter().all(|&b| b == 0));
    }
}
