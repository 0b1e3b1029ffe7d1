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

/// ptrace(2) requests the restore adds (<linux/ptrace.h>).
const PTRACE_SETREGSET: libc::c_uint = 0x4205;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;

/// Loads a whole XSAVE area into a stopped thread. The kernel only takes a
/// buffer of exactly its own regset size (arch/x86/kernel/fpu/regset.c,
/// xstateregs_set) and rejects feature bits outside XCR0 with EINVAL.
pub fn set_xstate(tid: Tid, xstate: &[u8]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr() as *mut libc::c_void,
        iov_len: xstate.len(),
    };
    // SAFETY: `iov` describes `xstate`, valid for reads of iov_len bytes for
    // the duration of the call; for a SET request the kernel only reads it.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_SETREGSET NT_X86_XSTATE", rc).map(drop)
}

/// struct ptrace_rseq_configuration from <linux/ptrace.h>.
#[repr(C)]
#[derive(Default)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// The thread's rseq registration (pointer, size, signature), if any
/// (PTRACE_GET_RSEQ_CONFIGURATION, Linux 5.13).
pub fn rseq_config(tid: Tid) -> Result<Option<(u64, u32, u32)>> {
    let mut conf = RseqConfiguration::default();
    // SAFETY: the kernel writes at most `addr` bytes (the struct's size)
    // into `conf`, a live local of that size.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<RseqConfiguration>() as *mut libc::c_void,
            &mut conf as *mut RseqConfiguration as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_GET_RSEQ_CONFIGURATION", rc)?;
    Ok((conf.rseq_abi_pointer != 0).then_some((
        conf.rseq_abi_pointer,
        conf.rseq_abi_size,
        conf.signature,
    )))
}

/// Sets one resource limit of another process (prlimit(2)).
pub fn prlimit(pid: Tid, resource: u32, soft: u64, hard: u64) -> Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a live struct the kernel only reads; the old-limit
    // pointer is null.
    let rc = unsafe {
        libc::prlimit64(
            pid,
            resource as libc::__rlimit_resource_t,
            &lim,
            std::ptr::null_mut(),
        )
    };
    check(pid, "prlimit", rc as libc::c_long).map(drop)
}

/// Forks a copy of this process that stops itself at once and never runs
/// our code again: the vessel a restore rebuilds by injected syscalls.
///
/// The child waits on a pipe until the parent has PTRACE_SEIZEd it with
/// PTRACE_O_EXITKILL (so it dies with the restorer), then raises SIGSTOP;
/// the parent sees that as a signal-delivery-stop. If the parent dies
/// before the seize, the child reads EOF without the go byte and exits.
pub fn fork_vessel() -> Result<Tid> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a live array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(Error::Setup {
            op: "pipe2".into(),
            errno: Errno::last(),
        });
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child calls only async-signal-safe functions (close,
    // read, getpid, kill, _exit), which is all fork(2) allows the child of
    // a multi-threaded process (signal-safety(7)); the restorer may be one.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: child side of fork, plain syscalls on our own fds.
        unsafe {
            libc::close(wr);
            let mut go = 0u8;
            let n = loop {
                let n = libc::read(rd, (&mut go as *mut u8).cast(), 1);
                if n != -1 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            if n == 1 {
                libc::kill(libc::getpid(), libc::SIGSTOP);
            }
            libc::_exit(127);
        }
    }
    let errno = Errno::last();
    // SAFETY: closing the read end we own.
    unsafe { libc::close(rd) };
    let close_wr = || {
        // SAFETY: closing the write end we own, once.
        unsafe { libc::close(wr) };
    };
    if pid == -1 {
        close_wr();
        return Err(Error::Setup {
            op: "fork".into(),
            errno,
        });
    }
    if let Err(e) = isotrace_tracer::sys::seize(pid, libc::PTRACE_O_EXITKILL) {
        close_wr();
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(e);
    }
    // SAFETY: writes one byte from a live local to the pipe we own.
    unsafe { libc::write(wr, b"g".as_ptr().cast(), 1) };
    close_wr();
    Ok(pid)
}

/// A thread's robust futex list head and length (get_robust_list(2));
/// needs ptrace read access to it. None if it registered none.
pub fn robust_list(tid: Tid) -> Result<Option<(u64, u64)>> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: the kernel writes one pointer and one size_t into live locals.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    check(tid, "get_robust_list", rc)?;
    Ok((head != 0).then_some((head, len as u64)))
}

/// PTRACE_GETSIGMASK, PTRACE_SETSIGMASK (<linux/ptrace.h>).
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;

/// A stopped tracee's own blocked-signal mask. In sigsuspend(2), pselect,
/// ppoll or epoll_pwait the kernel blocks a temporary set and keeps the
/// program's in saved_sigmask until the call returns; /proc's SigBlk shows
/// the temporary one, PTRACE_GETSIGMASK the program's (kernel/ptrace.c).
pub fn get_sigmask(tid: Tid) -> Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes `addr` (8) bytes into a live local u64.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            &mut mask as *mut u64 as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_GETSIGMASK", rc).map(|_| mask)
}

/// Sets a stopped tracee's blocked-signal mask without running it
/// (ptrace(2), PTRACE_SETSIGMASK; the kernel never blocks SIGKILL and
/// SIGSTOP whatever the mask says).
pub fn set_sigmask(tid: Tid, mask: u64) -> Result<()> {
    // SAFETY: the kernel reads `addr` (8) bytes from a live local u64.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_SETSIGMASK,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            &mask as *const u64 as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_SETSIGMASK", rc).map(drop)
}

/// Which CPUs the image's helper threads run on.
pub mod cpus;
/// timerfd, file handles and kcmp on files of ours.
pub mod files;
/// Processes and namespaces for a restore (clone3, the namespace's init).
mod ns;
/// Reading kernel objects without consuming them (pipes, sockets).
mod peek;
/// Socket calls on fds of ours (TCP repair, dump/tcp.rs).
pub mod sockopt;

pub use ns::{clone_ns_child, CloneArgs, NsChild, NsHandle};
pub use peek::{netlink_query, pipe_contents};

/// PTRACE_GET_SYSCALL_INFO (<linux/ptrace.h>, Linux 5.3).
const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;

/// What kind of syscall stop a stopped tracee is in, from the first byte
/// of struct ptrace_syscall_info: 0 none (not a syscall stop), 1 entry,
/// 2 exit, 3 seccomp. Tells syscall stops from a real SIGTRAP whether or
/// not the tracer set PTRACE_O_TRACESYSGOOD.
pub fn syscall_stop_kind(tid: Tid) -> Result<u8> {
    let mut info = [0u8; 88];
    // SAFETY: the kernel writes at most `addr` (info.len()) bytes into
    // the live local buffer.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GET_SYSCALL_INFO,
            tid,
            info.len() as *mut libc::c_void,
            info.as_mut_ptr() as *mut libc::c_void,
        )
    };
    check(tid, "PTRACE_GET_SYSCALL_INFO", rc)?;
    Ok(info[0])
}
