//! Typed pointers into tracee memory and the readers built on them.
//!
//! A [`RemotePtr`] is an address in another process: it cannot be
//! dereferenced here, only handed to the functions below, which move bytes
//! with process_vm_readv (one syscall, no stop) or /proc/PID/mem.

use crate::error::{Error, Result};
use crate::sys::{self, Tid};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An address in a tracee's address space pointing at a `T`.
pub struct RemotePtr<T> {
    addr: u64,
    _t: PhantomData<*const T>,
}

impl<T> Clone for RemotePtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for RemotePtr<T> {}

impl<T> std::fmt::Debug for RemotePtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemotePtr({:#x})", self.addr)
    }
}

impl<T> RemotePtr<T> {
    pub fn new(addr: u64) -> Self {
        RemotePtr {
            addr,
            _t: PhantomData,
        }
    }
    pub fn addr(self) -> u64 {
        self.addr
    }
    pub fn is_null(self) -> bool {
        self.addr == 0
    }
}

/// Longest path the kernel accepts, including the NUL (limits.h PATH_MAX).
pub const PATH_MAX: usize = 4096;
const PAGE: u64 = isotrace_arch::native::PAGE_SIZE;
/// Bytes the first read of a string takes.
const FIRST_READ: usize = 256;

/// Reads a NUL-terminated string of at most `max` bytes (NUL excluded).
///
/// Reads page by page so that a string ending just before an unmapped page
/// is read whole, as the kernel's strncpy_from_user would. Returns EFAULT
/// for an unreadable start and ENAMETOOLONG when no NUL comes within `max`.
pub fn read_cstr(tid: Tid, ptr: RemotePtr<u8>, max: usize) -> Result<Vec<u8>> {
    read_cstr_with(tid, ptr, max, |addr, buf| sys::vm_read(tid, addr, buf))
}

/// [`read_cstr`] through the address space's open /proc/PID/mem (cheaper:
/// [`sys::mem_read`]). Unlike process_vm_readv, /proc/PID/mem reads with
/// FOLL_FORCE: a string in a PROT_NONE mapping is read where the kernel's
/// own copy would fail with EFAULT. For a path argument that only turns
/// that EFAULT into the call acting on the string; the string is resolved
/// in the view like any other.
///
/// A page that a userfaultfd leaves missing (a post-copy restore whose
/// pages are still coming) fails that read with EIO: /proc/PID/mem faults
/// pages in without FAULT_FLAG_ALLOW_RETRY, and handle_userfault() answers
/// such a fault with SIGBUS instead of waiting (fs/userfaultfd.c). Such a
/// read is done again with process_vm_readv, which waits for the fault to
/// be served, as the kernel's own copy of the string in the tracee does.
/// Only while a post-copy restore of this supervisor fills pages
/// ([`LazyFill`]): a program serving its own userfaultfd may serve it from
/// a thread that is itself waiting in a stop for this supervisor, and the
/// supervisor, blocked in that read, would never serve it (a deadlock of
/// the whole group, in state D). Such a path read fails with EFAULT
/// here; the supervisor then has the tracee fault the page in itself
/// (probe.rs).
pub fn read_cstr_in(mem: &MemFile, tid: Tid, ptr: RemotePtr<u8>, max: usize) -> Result<Vec<u8>> {
    read_cstr_with(tid, ptr, max, |addr, buf| {
        mem_read_waiting(mem, tid, addr, buf)
    })
}

/// [`read_bytes`] through the address space's open /proc/PID/mem, which
/// never waits for a userfaultfd the program serves itself (see
/// [`read_cstr_in`]).
pub fn read_bytes_in(mem: &MemFile, tid: Tid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let got = mem_read_waiting(mem, tid, addr, &mut buf)?;
    if got != len {
        return Err(fault(tid, "short read of tracee memory"));
    }
    Ok(buf)
}

/// pread of /proc/PID/mem; a page missing while a post-copy restore of this
/// supervisor fills pages is waited for with process_vm_readv.
fn mem_read_waiting(mem: &MemFile, tid: Tid, addr: u64, buf: &mut [u8]) -> Result<usize> {
    use std::os::fd::AsRawFd;
    sys::mem_read(mem.file.as_raw_fd(), tid, addr, buf).or_else(|e| match e.guest_errno() {
        nix::errno::Errno::EFAULT if LazyFill::active() => sys::vm_read(tid, addr, buf),
        _ => Err(e),
    })
}

/// Post-copy restores of this process still filling pages (checkpoint's
/// restore/lazy): while one is, a tracee page that a userfaultfd holds
/// missing is one the supervisor's own fault server will fill.
static LAZY_FILLS: AtomicUsize = AtomicUsize::new(0);

/// Held by a post-copy fault server for as long as it serves: tracee
/// memory the supervisor finds missing is then waited for
/// ([`read_cstr_in`], [`MemFile::write`]) rather than failed.
pub struct LazyFill(());

impl LazyFill {
    pub fn begin() -> LazyFill {
        LAZY_FILLS.fetch_add(1, Ordering::SeqCst);
        LazyFill(())
    }

    /// Whether one is held anywhere in this process.
    pub fn active() -> bool {
        LAZY_FILLS.load(Ordering::SeqCst) > 0
    }
}

impl Drop for LazyFill {
    fn drop(&mut self) {
        LAZY_FILLS.fetch_sub(1, Ordering::SeqCst);
    }
}

fn read_cstr_with(
    tid: Tid,
    ptr: RemotePtr<u8>,
    max: usize,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<usize>,
) -> Result<Vec<u8>> {
    if ptr.is_null() {
        return Err(fault(tid, "NULL string pointer"));
    }
    let mut addr = ptr.addr();
    // Most paths are short: the first read takes 256 bytes (copying a
    // whole page costs more than the path) into a small buffer, the next
    // ones the rest of their page (a page-sized buffer is zeroed only for
    // a path that needs it).
    let mut small = [0u8; FIRST_READ];
    let want = ((PAGE - addr % PAGE) as usize)
        .min(FIRST_READ)
        .min(max.saturating_add(1));
    let got = read(addr, &mut small[..want])?;
    if let Some(nul) = small[..got].iter().position(|&b| b == 0) {
        return Ok(small[..nul].to_vec());
    }
    if got < want {
        return Err(fault(tid, "string runs into unmapped memory"));
    }
    let mut out = small[..got].to_vec();
    addr += got as u64;
    let mut buf = vec![0u8; PAGE as usize];
    while out.len() <= max {
        let room = (PAGE - addr % PAGE) as usize;
        let want = room.min(max + 1 - out.len());
        let got = read(addr, &mut buf[..want])?;
        if let Some(nul) = buf[..got].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..nul]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..got]);
        if got < want {
            return Err(fault(tid, "string runs into unmapped memory"));
        }
        addr += got as u64;
    }
    Err(Error::Sys {
        tid,
        op: "read path",
        errno: nix::errno::Errno::ENAMETOOLONG,
    })
}

/// Where a string at `ptr` stops being readable through `mem`: an 8-aligned
/// address in the first page whose read fails, before a NUL or `max + 1`
/// bytes. `None` when the string reads whole (or runs too long), or the
/// pointer is NULL. Used after [`read_cstr_in`] failed with EFAULT, to have
/// the tracee fault that page in itself (probe.rs).
pub fn unreadable_at(mem: &MemFile, tid: Tid, ptr: RemotePtr<u8>, max: usize) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut at = None;
    // The same page-by-page walk as the read that failed, noting where a
    // read fails or comes back short.
    let read = read_cstr_with(tid, ptr, max, |addr, buf| {
        let r = sys::mem_read(mem.file.as_raw_fd(), tid, addr, buf);
        match &r {
            Err(_) => at = Some(addr & !7),
            Ok(n) if *n < buf.len() => at = Some((addr + *n as u64) & !7),
            Ok(_) => {}
        }
        r
    });
    // Read whole now (or too long): nothing to fault in.
    at.filter(|_| read.is_err_and(|e| e.guest_errno() == nix::errno::Errno::EFAULT))
}

/// Where `len` bytes at `addr` stop being readable through `mem`: an
/// 8-aligned address in the first page whose read fails (see
/// [`unreadable_at`]). `None` when they read whole.
pub fn unreadable_bytes_at(mem: &MemFile, tid: Tid, addr: u64, len: usize) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let end = addr.checked_add(len as u64)?;
    let mut at = addr;
    let mut one = [0u8; 1];
    while at < end {
        match sys::mem_read(mem.file.as_raw_fd(), tid, at, &mut one) {
            Ok(1) => {}
            _ => return Some(at & !7),
        }
        at = (at / PAGE + 1) * PAGE;
    }
    None
}

/// Reads exactly `len` bytes.
pub fn read_bytes(tid: Tid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let got = sys::vm_read(tid, addr, &mut buf)?;
    if got != len {
        return Err(fault(tid, "short read of tracee memory"));
    }
    Ok(buf)
}

fn fault(tid: Tid, what: &str) -> Error {
    Error::Tracee {
        tid,
        what: what.to_string(),
    }
}

/// An open /proc/PID/mem of one address space, for writes that must go
/// through page protections (FOLL_FORCE). Must be reopened after exec: the
/// file keeps pointing at the old mm.
pub struct MemFile {
    file: std::fs::File,
}

impl MemFile {
    pub fn open(pid: Tid) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|e| {
                Error::from_errno(
                    pid,
                    "open /proc/PID/mem",
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
        Ok(MemFile { file })
    }

    /// Writes `data` at `addr`. A page a userfaultfd holds missing (a
    /// post-copy restore, see [`read_cstr_in`]) fails the write with EIO:
    /// it is then read in with process_vm_readv, which waits for the fault
    /// to be served, and written again (only while a [`LazyFill`] lives,
    /// as for reads).
    pub fn write(&self, tid: Tid, addr: u64, data: &[u8]) -> Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        match sys::mem_write(fd, tid, addr, data) {
            Err(e) if e.guest_errno() == nix::errno::Errno::EIO && LazyFill::active() => {
                let mut buf = vec![0u8; data.len()];
                sys::vm_read(tid, addr, &mut buf)?;
                sys::mem_write(fd, tid, addr, data)
            }
            r => r,
        }
    }
}
