//! The restored thread's own state: signal dispositions and mask, then
//! its registers and XSAVE area, set last.

use super::inject::Vessel;
use crate::dump::sigstate::Handler;
use crate::error::{Error, Result};
use crate::model::{Process, Thread};
use isotrace_arch::native::Regs;
use std::collections::BTreeMap;

/// Syscall-restart codes the kernel leaves in rax when a syscall was
/// interrupted (include/linux/errno.h); user space never sees them.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// `user_regs_struct` from the image's array (model::REG_NAMES order).
pub fn regs_from_array(a: &[u64; 27]) -> Regs {
    let [r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs] =
        *a;
    Regs {
        r15,
        r14,
        r13,
        r12,
        rbp,
        rbx,
        r11,
        r10,
        r9,
        r8,
        rax,
        rcx,
        rdx,
        rsi,
        rdi,
        orig_rax,
        rip,
        cs,
        eflags,
        rsp,
        ss,
        fs_base,
        gs_base,
        ds,
        es,
        fs,
        gs,
    }
}

/// The registers to resume with. A thread stopped while the kernel was
/// about to restart its interrupted syscall (orig_rax >= 0 and rax an
/// -ERESTART* code) keeps both: every restored task leaves its final
/// ptrace-stop inside get_signal() (inject.rs, `park`), so the kernel then
/// applies the same rule it would have (arch/x86/kernel/signal.c): with no
/// signal to handle it rewinds over the `syscall` instruction and issues
/// the call again; with a handler to run, -ERESTARTNOHAND (and
/// -ERESTARTSYS without SA_RESTART) returns EINTR instead. So a signal sent
/// while the restore holds the task interrupts its sigsuspend or read as
/// it would have, instead of running its handler and sleeping again.
/// -ERESTART_RESTARTBLOCK is the exception, rewound here to the original
/// call with orig_rax -1: its restart_syscall(2) state lived in the dumped
/// task and is gone, and in a new task restart_syscall only returns EINTR.
/// For a relative sleep this sleeps the full interval again.
pub fn resume_regs(t: &Thread) -> Regs {
    let mut r = regs_from_array(&t.regs);
    let in_syscall = (r.orig_rax as i64) >= 0;
    match r.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND if in_syscall => {}
        ERESTART_RESTARTBLOCK if in_syscall => {
            r.rax = r.orig_rax;
            r.rip -= isotrace_arch::native::SYSCALL_INSN_LEN;
            r.orig_rax = u64::MAX;
        }
        _ => r.orig_rax = u64::MAX,
    }
    r
}

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SS_DISABLE: u64 = 2;
const SS_ONSTACK: i32 = 1;

fn sig_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

/// Dispositions: each caught signal's handler as the image recorded it
/// (`handlers`, from signals.bin), ignored ones ignored, the rest default.
/// Process-wide (CLONE_SIGHAND shares them between threads), so run once,
/// in the main thread. Returns a note naming caught signals whose handler
/// the image does not have (they become default).
pub fn dispositions(
    v: &Vessel,
    proc: &Process,
    handlers: Option<&BTreeMap<i32, Handler>>,
) -> Result<Vec<String>> {
    let mut lost = Vec::new();
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let bit = 1u64 << (sig - 1);
        let ignored = proc.signals.ignored & bit != 0;
        let recorded = handlers.and_then(|h| h.get(&sig)).copied();
        let act = match recorded {
            Some(h) if proc.signals.caught & bit != 0 => h,
            _ => {
                if proc.signals.caught & bit != 0 {
                    lost.push(sig_name(sig));
                }
                let handler = if ignored { SIG_IGN } else { SIG_DFL };
                Handler {
                    handler,
                    ..Default::default()
                }
            }
        };
        // struct kernel_sigaction: handler, flags, restorer, mask.
        let bytes: Vec<u8> = [act.handler, act.flags, act.restorer, act.mask]
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        let at = v.stage(0, &bytes)?;
        let what = format!("rt_sigaction {}", sig_name(sig));
        v.call(&what, libc::SYS_rt_sigaction, [sig as u64, at, 0, 8, 0, 0])?;
    }
    let mut notes = Vec::new();
    if !lost.is_empty() {
        notes.push(format!(
            "pid {}: signal handlers not restored (the image has no handler addresses), now default: {}",
            proc.pid,
            lost.join(" ")
        ));
    }
    Ok(notes)
}

/// Every signal but SIGTRAP and SIGSEGV: the mask of a thread while
/// syscalls are injected in it. Signals the restore queues stay pending
/// under it, and so never interrupt an injected call; SIGTRAP (the
/// gadget's int3) and SIGSEGV (the gadget's unmapping) stay unblocked
/// because the kernel would otherwise unblock them and reset their
/// disposition when it forces them (kernel/signal.c, force_sig_info_to_task).
pub const INJECT_MASK: u64 = !((1 << (libc::SIGTRAP - 1)) | (1 << (libc::SIGSEGV - 1)));

/// The thread's own signal state while it is rebuilt, run in that thread
/// (`v` is its task handle): its alternate stack (`altstack`, none if the
/// image has none) and [`INJECT_MASK`]; its recorded mask is set at the
/// end (`Vessel::park`).
pub fn signal_state(v: &Vessel, altstack: Option<(u64, i32, u64)>) -> Result<()> {
    // stack_t: ss_sp, ss_flags (int, padded), ss_size. SS_ONSTACK is an
    // output only (sigaltstack(2)): a thread dumped while on its stack
    // gets the stack back without it.
    let (sp, flags, size) = match altstack {
        Some((sp, flags, size)) => (sp, (flags & !SS_ONSTACK) as u64, size),
        None => (0, SS_DISABLE, 0),
    };
    let ss: Vec<u8> = [sp, flags, size]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let at = v.stage(0, &ss)?;
    v.call("sigaltstack", libc::SYS_sigaltstack, [at, 0, 0, 0, 0, 0])?;
    let at = v.stage(0, &INJECT_MASK.to_ne_bytes())?;
    let how = libc::SIG_SETMASK as u64;
    v.call(
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        [how, at, 0, 8, 0, 0],
    )?;
    Ok(())
}

/// Queues the image's pending signals again, with their siginfo: each
/// thread's own (rt_tgsigqueueinfo(2)) and the process-wide ones
/// (rt_sigqueueinfo(2)). Run in the main thread `v`, whose pid is the
/// target's, which is what lets the kernel take a siginfo with any
/// si_code (kernel/signal.c, do_rt_sigqueueinfo: a process may send
/// itself anything). Every thread has [`INJECT_MASK`], so they stay
/// pending. `tids` maps each image thread to its tid as the process
/// sees it; `pid` is the process's own pid. Returns notes.
pub fn queue_pending(
    v: &Vessel,
    proc: &Process,
    pid: i32,
    tids: &[(i32, &Thread)],
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut queue = |nr: i64, target: Option<i32>, info: &[u8]| -> Result<()> {
        let Some(signo) = info
            .get(..4)
            .map(|b| i32::from_ne_bytes(b.try_into().expect("4")))
        else {
            return Ok(());
        };
        if signo == libc::SIGTRAP || signo == libc::SIGSEGV {
            notes.push(format!(
                "pid {}: pending {} dropped",
                proc.pid,
                sig_name(signo)
            ));
            return Ok(());
        }
        let at = v.stage(0, info)?;
        let args = match target {
            Some(tid) => [pid as u64, tid as u64, signo as u64, at, 0, 0],
            None => [pid as u64, signo as u64, at, 0, 0, 0],
        };
        let rc = v.raw(nr, args)?;
        if rc != 0 {
            notes.push(format!(
                "pid {}: pending {} not queued again: {}",
                proc.pid,
                sig_name(signo),
                nix::errno::Errno::from_raw(-rc as i32)
            ));
        }
        Ok(())
    };
    for &(tid, t) in tids {
        for info in &t.siginfo {
            queue(libc::SYS_rt_tgsigqueueinfo, Some(tid), info)?;
        }
    }
    for info in &proc.signals.shared_siginfo {
        queue(libc::SYS_rt_sigqueueinfo, None, info)?;
    }
    Ok(notes)
}

/// Refuses an XSAVE area this CPU cannot load: a feature missing from
/// this CPU's XCR0, or another layout size (the kernel takes only a
/// buffer of its own regset size).
pub fn check_xstate(pid: i32, t: &Thread, current: &[u8]) -> Result<()> {
    let cur_xcr0 = crate::dump::thread::xcr0_of(current);
    if t.xcr0 & !cur_xcr0 != 0 || t.xstate.len() != current.len() {
        return Err(Error::Invalid {
            what: format!(
                "cannot restore pid {pid}: its xstate (XCR0 {:#x}, {} bytes) does not fit this CPU (XCR0 {cur_xcr0:#x}, {} bytes)",
                t.xcr0,
                t.xstate.len(),
                current.len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(rax: i64, orig: i64, rip: u64) -> Thread {
        let mut regs = [0u64; 27];
        regs[10] = rax as u64;
        regs[15] = orig as u64;
        regs[16] = rip;
        Thread {
            regs,
            ..Default::default()
        }
    }

    #[test]
    fn interrupted_syscall_is_left_to_the_kernel_to_restart() {
        for code in [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND] {
            let r = resume_regs(&thread(code, 230, 0x1002));
            assert_eq!((r.rax as i64, r.rip, r.orig_rax), (code, 0x1002, 230));
        }
        // restart_syscall's state is gone: the original call again.
        let r = resume_regs(&thread(ERESTART_RESTARTBLOCK, 230, 0x1002));
        assert_eq!((r.rax, r.rip, r.orig_rax), (230, 0x1000, u64::MAX));
    }

    #[test]
    fn finished_syscall_and_user_code_are_kept() {
        let r = resume_regs(&thread(0, 1, 0x1002));
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1002, u64::MAX));
        let r = resume_regs(&thread(ERESTARTSYS, -1, 0x1002));
        assert_eq!((r.rax as i64, r.rip), (ERESTARTSYS, 0x1002));
    }
}
