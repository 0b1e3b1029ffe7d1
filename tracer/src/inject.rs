//! Running a syscall inside a stopped tracee.
//!
//! At a seccomp stop the tracee sits at syscall entry with rip just past its
//! `syscall` instruction. [`at_entry`] swaps in another syscall, lets it run
//! to its exit stop, reads the result, then rewinds rip over the `syscall`
//! instruction and puts back the original registers, so that when resumed the
//! tracee issues its own syscall again (and the filter traps it again). The
//! kernel re-runs the seccomp filter on a syscall the tracer changed and lets
//! a second RET_TRACE through (kernel/seccomp.c, recheck_after_trace).

use crate::error::Result;
use crate::sys::{self, Tid, WaitEvent};
use isotrace_arch::native::{Regs, SYSCALL_INSN_LEN};
use isotrace_arch::RegAccess;

/// What happened to the tracee while it ran the injected syscall.
pub enum Injected {
    /// The syscall returned this raw value; the tracee is back at its
    /// original syscall entry, ready to be resumed with PTRACE_CONT.
    Returned(i64),
    /// The tracee stopped for another reason or died; the raw wait status is
    /// handed back for the event loop to process as usual.
    Interrupted(i32),
}

/// Runs `nr(args)` in `tid`, which must be in a seccomp stop with registers
/// `saved`. On `Returned`, the original registers are restored with rip
/// rewound, so resuming re-executes the tracee's own syscall.
pub fn at_entry(tid: Tid, saved: &Regs, nr: u64, args: [u64; 6]) -> Result<Injected> {
    begin(tid, saved, nr, args)?;
    let status = sys::wait_tid(tid)?;
    if sys::decode_status(status) != WaitEvent::SyscallExit {
        return Ok(Injected::Interrupted(status));
    }
    let ret = sys::get_regs(tid)?.ret();
    rewind(tid, saved)?;
    Ok(Injected::Returned(ret))
}

/// Swaps `nr(args)` in for the syscall `tid` is stopped at (registers
/// `saved`) and resumes it to that syscall's exit stop. The caller waits
/// for the stop, here ([`at_entry`]) or in the event loop (an injection
/// that may block on the tracee's own threads: probe.rs).
pub fn begin(tid: Tid, saved: &Regs, nr: u64, args: [u64; 6]) -> Result<()> {
    let mut regs = *saved;
    regs.set_syscall_nr(nr);
    for (i, a) in args.iter().enumerate() {
        regs.set_arg(i, *a);
    }
    sys::set_regs(tid, &regs)?;
    sys::cont_syscall(tid, 0)
}

/// At the exit stop of an injected syscall: puts back the registers
/// `saved` at the original syscall's entry, with rip rewound over the
/// `syscall` instruction, so that resuming issues it again.
pub fn rewind(tid: Tid, saved: &Regs) -> Result<()> {
    let mut back = *saved;
    back.set_ip(saved.ip() - SYSCALL_INSN_LEN);
    // The syscall instruction reads its number from rax again.
    back.set_ret(saved.syscall_nr() as i64);
    sys::set_regs(tid, &back)
}
