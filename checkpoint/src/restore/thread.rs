//! The restored thread's own state: signal dispositions and mask, then
//! its registers and XSAVE area, set last.

use super::inject::Vessel;
use crate::error::{Error, Result};
use crate::model::{Process, Thread};
use isotrace_arch::native::Regs;

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
/// -ERESTART* code) is rewound over its `syscall` instruction with the
/// number back in rax, so it issues the call again, as the kernel would
/// have done (arch/x86/kernel/signal.c, arch_do_signal_or_restart).
/// -ERESTART_RESTARTBLOCK is re-issued as the original call too: its
/// restart_syscall(2) state lived in the dumped task and is gone, and in a
/// new task restart_syscall only returns EINTR. For a relative sleep this
/// sleeps the full interval again. orig_rax is set to -1 so the kernel
/// applies no fixup of its own when the thread leaves its ptrace-stop.
pub fn resume_regs(t: &Thread) -> Regs {
    let mut r = regs_from_array(&t.regs);
    if (r.orig_rax as i64) >= 0
        && matches!(
            r.rax as i64,
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        )
    {
        r.rax = r.orig_rax;
        r.rip -= isotrace_arch::native::SYSCALL_INSN_LEN;
    }
    r.orig_rax = u64::MAX;
    r
}

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SS_DISABLE: u64 = 2;

fn sig_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

/// Dispositions (ignored as recorded, everything else default: the image
/// does not record handler addresses), no alternate stack, and the mask.
/// Returns a note naming the handlers that are lost.
pub fn signals(v: &Vessel, proc: &Process, t: &Thread) -> Result<Vec<String>> {
    let mut lost = Vec::new();
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let bit = 1u64 << (sig - 1);
        let handler = if proc.signals.ignored & bit != 0 {
            SIG_IGN
        } else {
            SIG_DFL
        };
        if proc.signals.caught & bit != 0 {
            lost.push(sig_name(sig));
        }
        // struct kernel_sigaction: handler, flags, restorer, mask.
        let act: Vec<u8> = [handler, 0, 0, 0]
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        let at = v.stage(0, &act)?;
        let what = format!("rt_sigaction {}", sig_name(sig));
        v.call(&what, libc::SYS_rt_sigaction, [sig as u64, at, 0, 8, 0, 0])?;
    }
    // stack_t: ss_sp, ss_flags (int, padded), ss_size.
    let ss: Vec<u8> = [0, SS_DISABLE, 0]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let at = v.stage(0, &ss)?;
    v.call("sigaltstack", libc::SYS_sigaltstack, [at, 0, 0, 0, 0, 0])?;
    let at = v.stage(0, &t.sig_blocked.to_ne_bytes())?;
    let how = libc::SIG_SETMASK as u64;
    v.call(
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        [how, at, 0, 8, 0, 0],
    )?;
    let mut notes = Vec::new();
    if !lost.is_empty() {
        notes.push(format!(
            "signal handlers not restored (the image has no handler addresses), now default: {}",
            lost.join(" ")
        ));
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
    fn interrupted_syscall_is_reissued() {
        for code in [
            ERESTARTSYS,
            ERESTARTNOINTR,
            ERESTARTNOHAND,
            ERESTART_RESTARTBLOCK,
        ] {
            let r = resume_regs(&thread(code, 230, 0x1002));
            assert_eq!((r.rax, r.rip, r.orig_rax), (230, 0x1000, u64::MAX));
        }
    }

    #[test]
    fn finished_syscall_and_user_code_are_kept() {
        let r = resume_regs(&thread(0, 1, 0x1002));
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1002, u64::MAX));
        let r = resume_regs(&thread(ERESTARTSYS, -1, 0x1002));
        assert_eq!((r.rax as i64, r.rip), (ERESTARTSYS, 0x1002));
    }
}
