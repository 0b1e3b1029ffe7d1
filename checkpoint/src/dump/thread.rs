//! Per-thread state of a stopped thread: registers, XSAVE area, signals.

use super::attach::StoppedThread;
use super::procfs::{hex_field, parse_stat, parse_status};
use crate::error::{died, Result};
use crate::model::Thread;
use crate::sys;
use isotrace_arch::native::Regs;

/// Where the kernel puts XCR0 in an NT_X86_XSTATE regset: the first u64 of
/// the FXSAVE area's sw_reserved bytes (arch/x86/include/asm/user.h,
/// USER_XSTATE_XCR0_WORD; gdb's I386_LINUX_XSAVE_XCR0_OFFSET).
pub const XCR0_OFFSET: usize = 464;

pub fn xcr0_of(xstate: &[u8]) -> u64 {
    xstate
        .get(XCR0_OFFSET..XCR0_OFFSET + 8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// `user_regs_struct` in field order (model::REG_NAMES).
pub fn regs_to_array(r: &Regs) -> [u64; 27] {
    [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}

/// -ERESTARTNOINTR (include/linux/errno.h): "restart the call,
/// whatever happens", the code restore turns back into the call.
const ERESTARTNOINTR: i64 = -513;

pub fn dump(t: &StoppedThread) -> Result<Thread> {
    let (pid, tid) = (t.pid, t.tid);
    let mut regs = isotrace_tracer::sys::get_regs(tid).map_err(died(pid))?;
    if t.at_syscall_entry {
        // At a seccomp stop rax is -ENOSYS and orig_rax the call, which has
        // not run (seccomp(2), SECCOMP_RET_TRACE). Recorded as a call the
        // kernel was about to restart, a restore re-issues it.
        regs.rax = ERESTARTNOINTR as u64;
    }
    let xstate = sys::get_xstate(tid).map_err(died(pid))?;
    let siginfo = sys::peek_siginfo(tid, false).map_err(died(pid))?;
    let task = format!("/proc/{pid}/task/{tid}");
    let read = |name: &str| {
        let path = format!("{task}/{name}");
        std::fs::read_to_string(&path).map_err(|e| super::vanished(pid, &path, e))
    };
    let status = parse_status(&read("status")?);
    let comm = parse_stat(&read("stat")?)
        .map(|s| s.comm)
        .unwrap_or_default();
    Ok(Thread {
        tid,
        comm,
        state: t.state.clone(),
        stop: t.stop.clone(),
        regs: regs_to_array(&regs),
        xcr0: xcr0_of(&xstate),
        xstate,
        // The program's own mask, not a sigsuspend's temporary one.
        sig_blocked: sys::get_sigmask(tid).unwrap_or_else(|_| hex_field(&status, "SigBlk")),
        sig_pending: hex_field(&status, "SigPnd"),
        siginfo,
        // Unreadable without ptrace-read access on some kernels: optional.
        syscall: read("syscall")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    })
}
