//! Attaching to a running process (#2): the supervisor takes over a
//! program it did not start, as if it had.
//!
//! 1. Every thread is PTRACE_SEIZEd with the supervisor's options
//!    (PTRACE_O_EXITKILL included) and PTRACE_INTERRUPTed, rescanning
//!    /proc/PID/task until no new thread appears (a thread being created
//!    by a seized one arrives through PTRACE_EVENT_CLONE instead).
//! 2. The seccomp filter cannot be installed from outside, so one stopped
//!    thread runs prctl(PR_SET_NO_NEW_PRIVS) (unless the process has
//!    CAP_SYS_ADMIN) and seccomp(SECCOMP_SET_MODE_FILTER,
//!    SECCOMP_FILTER_FLAG_TSYNC) as injected syscalls: its registers point
//!    at a `syscall` instruction already in the process (the one it is
//!    stopped after, or one in the vDSO), the program is written below its
//!    stack's red zone, and PTRACE_SYSCALL runs the call to its exit stop.
//!    TSYNC puts the filter on every thread at once (seccomp(2)).
//! 3. The thread's registers are put back. If it was stopped inside a
//!    syscall that the interrupt cut short (rax = -ERESTART*), the restart
//!    the kernel would have done is done here: the injected syscall's exit
//!    consumed the chance (arch/x86/kernel/signal.c only restarts on the
//!    way out of a signal check).
//!
//! A filter cannot be removed, so the process belongs to the supervisor
//! from then on: it lives and dies with it, as a spawned one does.

use crate::error::{Error, Result};
use crate::remote::MemFile;
use crate::sys::{self, Tid, WaitEvent};
use isotrace_arch::native::{Regs, SYSCALL_INSN_LEN};
use isotrace_arch::RegAccess;
use std::collections::BTreeMap;

/// One seized thread and the stop it reported first (its wait status).
pub struct Seized {
    pub tid: Tid,
    pub status: i32,
}

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// Seizes and stops every thread of `pid`. On error, the threads seized
/// so far are detached again (untouched: no filter was installed yet).
pub fn seize_all(pid: Tid) -> Result<Vec<Seized>> {
    let mut stopped: BTreeMap<Tid, i32> = BTreeMap::new();
    let result = seize_loop(pid, &mut stopped);
    if result.is_err() {
        for &tid in stopped.keys() {
            let _ = sys::detach(tid, 0);
        }
    }
    result.map(|()| {
        stopped
            .into_iter()
            .map(|(tid, status)| Seized { tid, status })
            .collect()
    })
}

fn seize_loop(pid: Tid, stopped: &mut BTreeMap<Tid, i32>) -> Result<()> {
    loop {
        let tids = threads(pid)?;
        let new: Vec<Tid> = tids
            .into_iter()
            .filter(|t| !stopped.contains_key(t))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        for tid in new {
            match sys::seize(tid, sys::SEIZE_OPTIONS) {
                Ok(()) => {}
                // It exited between the listing and the seize.
                Err(e) if e.is_died() && tid != pid => continue,
                Err(e) => return Err(e),
            }
            sys::interrupt(tid)?;
            let status = sys::wait_tid(tid)?;
            stopped.insert(tid, status);
        }
    }
}

fn threads(pid: Tid) -> Result<Vec<Tid>> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::Tracee {
        tid: pid,
        what: format!("{dir}: {e}"),
    })?;
    let mut tids: Vec<Tid> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Installs `filter` in `tid`'s process (all threads, TSYNC) by injected
/// syscalls; `tid` must be in a PTRACE_EVENT_STOP. Leaves it stopped at the
/// injected call's exit stop with its own registers back in place.
pub fn install_filter(tid: Tid, filter: &[libc::sock_filter], no_new_privs: bool) -> Result<()> {
    let saved = sys::get_regs(tid)?;
    let insn = syscall_insn(tid, &saved)?;
    let mem = MemFile::open(tid)?;
    let (base, blob) = fprog_below_stack(filter, saved.sp());
    mem.write(tid, base, &blob)?;
    if no_new_privs {
        let nnp = libc::PR_SET_NO_NEW_PRIVS as u64;
        inject(
            tid,
            &saved,
            insn,
            libc::SYS_prctl as u64,
            [nnp, 1, 0, 0, 0, 0],
            "prctl",
        )?;
    }
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
    let args = [
        SECCOMP_SET_MODE_FILTER,
        SECCOMP_FILTER_FLAG_TSYNC,
        base,
        0,
        0,
        0,
    ];
    let r = inject(tid, &saved, insn, libc::SYS_seccomp as u64, args, "seccomp");
    sys::set_regs(tid, &restarted(saved))?;
    r.map(drop)
}

/// Runs one syscall in `tid` from `insn`; returns its result, or an error
/// naming it when it fails or the thread does something else.
fn inject(tid: Tid, saved: &Regs, insn: u64, nr: u64, args: [u64; 6], what: &str) -> Result<i64> {
    let mut regs = *saved;
    regs.set_ip(insn);
    regs.set_ret(nr as i64);
    regs.set_syscall_nr(u64::MAX);
    for (i, a) in args.iter().enumerate() {
        regs.set_arg(i, *a);
    }
    sys::set_regs(tid, &regs)?;
    // Both syscall stops report SIGTRAP|0x80 (PTRACE_O_TRACESYSGOOD),
    // which decode_status names SyscallExit.
    for stop in ["entry", "exit"] {
        sys::cont_syscall(tid, 0)?;
        let mut status = sys::wait_tid(tid)?;
        if stop == "exit" && sys::decode_status(status) == WaitEvent::Seccomp {
            // A call the process's filter traps already (seccomp(2) itself,
            // for a second filter: listings.rs) stops for it between its
            // entry and exit stops; let it through unchanged.
            sys::cont_syscall(tid, 0)?;
            status = sys::wait_tid(tid)?;
        }
        if sys::decode_status(status) != WaitEvent::SyscallExit {
            return Err(Error::Tracee {
                tid,
                what: format!("injected {what}: unexpected stop {status:#x} at syscall {stop}"),
            });
        }
    }
    let ret = sys::get_regs(tid)?.ret();
    if ret < 0 {
        return Err(Error::Tracee {
            tid,
            what: format!(
                "injected {what} failed: {}",
                nix::errno::Errno::from_raw(-ret as i32).desc()
            ),
        });
    }
    Ok(ret)
}

/// The address of a `syscall` instruction in the process: the one the
/// thread stopped after (if it was in a syscall), else one in the vDSO
/// (its fallback paths make real syscalls).
fn syscall_insn(tid: Tid, regs: &Regs) -> Result<u64> {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    let before = regs.ip().wrapping_sub(SYSCALL_INSN_LEN);
    let mut two = [0u8; 2];
    if sys::vm_read(tid, before, &mut two).is_ok_and(|n| n == 2) && two == SYSCALL {
        return Ok(before);
    }
    let maps = std::fs::read_to_string(format!("/proc/{tid}/maps")).unwrap_or_default();
    let vdso = maps.lines().find(|l| l.ends_with("[vdso]")).and_then(|l| {
        let (range, _) = l.split_once(' ')?;
        let (a, b) = range.split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ))
    });
    if let Some((start, end)) = vdso {
        let mut text = vec![0u8; (end - start) as usize];
        if sys::vm_read(tid, start, &mut text).is_ok() {
            if let Some(i) = text.windows(2).position(|w| w == SYSCALL) {
                return Ok(start + i as u64);
            }
        }
    }
    Err(Error::Tracee {
        tid,
        what: "no syscall instruction to inject through (not in a syscall, no vDSO)".into(),
    })
}

/// struct sock_filter as the kernel reads it: u16 code, u8 jt, u8 jf,
/// u32 k, native endian.
/// A `struct sock_fprog` for `filter` followed by the program, placed
/// 16-aligned below the red zone (the 128 bytes the ABI lets leaf code use
/// under the stack pointer) of a thread stopped with stack pointer `sp`:
/// its address and bytes, for seccomp(SECCOMP_SET_MODE_FILTER) as an
/// injected syscall.
pub(crate) fn fprog_below_stack(filter: &[libc::sock_filter], sp: u64) -> (u64, Vec<u8>) {
    let mut prog = Vec::with_capacity(filter.len() * 8);
    for f in filter {
        prog.extend_from_slice(&f.code.to_ne_bytes());
        prog.push(f.jt);
        prog.push(f.jf);
        prog.extend_from_slice(&f.k.to_ne_bytes());
    }
    let base = (sp.wrapping_sub(128 + 16 + prog.len() as u64)) & !15;
    let mut blob = Vec::with_capacity(16 + prog.len());
    blob.extend_from_slice(&(filter.len() as u16).to_ne_bytes());
    blob.extend_from_slice(&[0u8; 6]);
    blob.extend_from_slice(&(base + 16).to_ne_bytes());
    blob.extend_from_slice(&prog);
    (base, blob)
}

/// The registers to resume with: a syscall the interrupt cut short is
/// issued again, as the kernel's signal path would have done (-ERESTART*
/// in rax, the call in orig_rax; restart_syscall(2) for RESTARTBLOCK).
fn restarted(mut r: Regs) -> Regs {
    let in_syscall = (r.syscall_nr() as i64) >= 0;
    match r.ret() {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND if in_syscall => {
            r.set_ret(r.syscall_nr() as i64);
            r.set_ip(r.ip() - SYSCALL_INSN_LEN);
        }
        ERESTART_RESTARTBLOCK if in_syscall => {
            r.set_ret(libc::SYS_restart_syscall);
            r.set_ip(r.ip() - SYSCALL_INSN_LEN);
        }
        _ => {}
    }
    // No syscall in progress any more: nothing for the kernel to restart.
    r.set_syscall_nr(u64::MAX);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_layout_is_the_kernels() {
        let f = [libc::sock_filter {
            code: 0x15,
            jt: 1,
            jf: 2,
            k: 0xc000003e,
        }];
        let (base, blob) = fprog_below_stack(&f, 0x7fff_0000_1008);
        // 16-aligned, below the 128-byte red zone, room for all of it.
        assert_eq!(base % 16, 0);
        assert!(base + blob.len() as u64 <= 0x7fff_0000_1008 - 128);
        // struct sock_fprog: the length, then the program's address.
        assert_eq!(&blob[..2], &1u16.to_ne_bytes());
        assert_eq!(&blob[8..16], &(base + 16).to_ne_bytes());
        let b = &blob[16..];
        assert_eq!(b.len(), 8);
        assert_eq!(&b[..2], &0x15u16.to_ne_bytes());
        assert_eq!((b[2], b[3]), (1, 2));
        assert_eq!(&b[4..], &0xc000003eu32.to_ne_bytes());
    }
}
