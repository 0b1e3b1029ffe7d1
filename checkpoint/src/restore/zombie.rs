//! Zombies of a restore (`dump::zombies`): a child that had exited but
//! was not reaped yet is cloned again by its parent's vessel (so it is
//! the parent's child, with its pid), left stopped while everything else
//! is rebuilt, and made to end with its recorded status once every
//! process is parked: exit_group(2) for an exit code, or its signal for
//! a death by signal. We reap the notice the kernel gives us as its
//! tracer; the kernel then hands the dead task to its real parent as a
//! zombie and sends that parent SIGCHLD (kernel/exit.c,
//! wait_task_zombie: a ptraced child whose tracer is not its parent).

use super::inject::Vessel;
use crate::dump::zombies::Zombie;
use crate::error::{Error, Result};
use isotrace_tracer::sys::{self as tsys, WaitEvent};

/// A zombie-to-be: its stopped task and the status it must end with.
pub struct Pending {
    pub vessel: Vessel,
    pub zombie: Zombie,
}

fn failed(z: &Zombie, why: impl std::fmt::Display) -> Error {
    Error::Invalid {
        what: format!("restoring zombie pid {}: {why}", z.pid),
    }
}

/// Ends every zombie-to-be with its status, in pid order. Returns notes.
pub fn finish(pending: Vec<Pending>) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for p in pending {
        let status = p.zombie.status;
        if libc::WIFSIGNALED(status) {
            if libc::WCOREDUMP(status) {
                notes.push(format!(
                    "zombie pid {}: its status no longer says it dumped core",
                    p.zombie.pid
                ));
            }
            die_by_signal(&p.vessel, &p.zombie, libc::WTERMSIG(status))?;
        } else {
            exit_with(&p.vessel, &p.zombie, libc::WEXITSTATUS(status))?;
        }
    }
    Ok(notes)
}

/// exit_group(code) from the gadget; the task never comes back.
fn exit_with(v: &Vessel, z: &Zombie, code: i32) -> Result<()> {
    let mut regs = tsys::get_regs(v.pid)?;
    regs.rax = libc::SYS_exit_group as u64;
    regs.rdi = code as u64;
    regs.rip = v.gadget();
    // No restart fixups on the way out of this stop (see inject.rs).
    regs.orig_rax = u64::MAX;
    tsys::set_regs(v.pid, &regs)?;
    tsys::cont(v.pid, 0)?;
    expect_end(v, z, WaitEvent::Exited(code))
}

/// Kills the task with `sig`: its disposition made SIG_DFL and the
/// signal unblocked, RLIMIT_CORE 0 so nothing is written, then an
/// injected getpid(2) stops at the gadget's int3 in a
/// signal-delivery-stop for SIGTRAP, and we resume it with `sig` instead
/// (ptrace(2), "Signal injection and suppression"), which it cannot
/// survive.
fn die_by_signal(v: &Vessel, z: &Zombie, sig: i32) -> Result<()> {
    // struct kernel_sigaction: handler 0 (SIG_DFL), flags, restorer, mask.
    let at = v.stage(0, &[0u8; 32])?;
    v.call(
        "rt_sigaction SIG_DFL",
        libc::SYS_rt_sigaction,
        [sig as u64, at, 0, 8, 0, 0],
    )?;
    let at = v.stage(64, &0u64.to_ne_bytes())?;
    let setmask = libc::SIG_SETMASK as u64;
    v.call(
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        [setmask, at, 0, 8, 0, 0],
    )?;
    crate::sys::prlimit(v.pid, libc::RLIMIT_CORE, 0, 0)?;
    v.call("getpid", libc::SYS_getpid, [0; 6])?;
    tsys::cont(v.pid, sig)?;
    expect_end(v, z, WaitEvent::Signaled { sig, core: false })
}

fn expect_end(v: &Vessel, z: &Zombie, want: WaitEvent) -> Result<()> {
    let got = tsys::decode_status(tsys::wait_tid(v.pid)?);
    if got != want {
        return Err(failed(z, format!("ended as {got:?}, not {want:?}")));
    }
    Ok(())
}
