//! The ptrace requests the dump needs that `isotrace_tracer::sys` does not
//! have: PTRACE_GETREGSET for the XSAVE area and PTRACE_PEEKSIGINFO.
//!
//! This is the only file of the crate with `unsafe`. Everything else goes
//! through `isotrace_tracer::sys` (seize, interrupt, wait, regs, detach) or
//! plain file reads of /proc.

use isotrace_tracer::sys::Tid;
use isotrace_tracer::{Error, Result};
use nix::errno::Errno;

/// ptrace(2) request numbers from <linux/ptrace.h>.
const PTRACE_GETREGSET: libc::c_uint = 0x4204;
const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
/// PTRACE_PEEKSIGINFO flag: read the process-wide (shared) queue.
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// The regset of the full XSAVE area (<linux/elf.h>, NT_X86_XSTATE).
pub const NT_X86_XSTATE: u32 = 0x202;
/// Large enough for every XSAVE layout shipped so far (AMX tiles make it
/// about 11 KiB); the kernel tells us the real length in iov_len.
const XSTATE_MAX: usize = 16 * 1024;
/// sizeof(siginfo_t) on every Linux architecture.
pub const SIGINFO_SIZE: usize = 128;

fn check(tid: Tid, op: &'static str, rc: libc::c_long) -> Result<libc::c_long> {
    if rc == -1 {
        Err(Error::from_errno(tid, op, Errno::last()))
    } else {
        Ok(rc)
    }
}

/// The thread's XSAVE area, exactly as long as the kernel's regset.
pub fn get_xstate(tid: Tid) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` points at `buf`, which is valid for writes of iov_len
    // bytes and outlives the call; the kernel writes at most iov_len bytes
    // and stores the length it wrote back into iov_len.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_GETREGSET NT_X86_XSTATE", rc)?;
    buf.truncate(iov.iov_len.min(XSTATE_MAX));
    Ok(buf)
}

/// struct ptrace_peeksiginfo_args from <linux/ptrace.h>.
#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// The queued siginfos of a stopped tracee: its own queue, or the thread
/// group's shared one. Each entry is one raw 128-byte siginfo_t.
pub fn peek_siginfo(tid: Tid, shared: bool) -> Result<Vec<Vec<u8>>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BATCH * SIGINFO_SIZE];
    loop {
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        // SAFETY: `args` is a live, correctly laid out struct the kernel only
        // reads; `buf` has room for `nr` siginfo_t and outlives the call.
        let rc = unsafe {
            libc::ptrace(
                PTRACE_PEEKSIGINFO,
                tid,
                &args as *const PeekSiginfoArgs as *mut libc::c_void,
                buf.as_mut_ptr() as *mut libc::c_void,
            )
        };
        let n = check(tid, "PTRACE_PEEKSIGINFO", rc)? as usize;
        out.extend(buf.chunks(SIGINFO_SIZE).take(n).map(<[u8]>::to_vec));
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// waitpid(tid, __WALL | WNOHANG): the raw status word of the task's next
/// event, or None if it has none yet. (Raw, not nix's `WaitStatus`, which
/// cannot represent a stop by a realtime signal.)
pub fn wait_nohang(tid: Tid) -> std::result::Result<Option<i32>, Errno> {
    let mut status = 0;
    // SAFETY: waitpid writes one int through a pointer to a live local.
    let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        _ => Ok(Some(status)),
    }
}
