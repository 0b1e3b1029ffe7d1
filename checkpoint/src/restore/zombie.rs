//! Zombies of a restore (`dump::zombies`): a child that had exited but
//! was not reaped yet is cloned again by its parent's vessel (so it is
//! the parent's child, with its pid), left stopped until every process
//! is cloned, and made to end with its recorded status: exit_group(2)
//! for an exit code, or its signal for a death by signal, dumping core
//! when the status says it did (the 0x80 bit is set only by a core dump
//! that was written, fs/coredump.c). We reap the notice the kernel gives
//! us as its tracer; the kernel then hands the dead task to its real
//! parent as a zombie and sends that parent SIGCHLD (kernel/exit.c,
//! wait_task_zombie: a ptraced child whose tracer is not its parent).
//! The parent had that SIGCHLD when the child first died: the new one
//! is taken away again (the parent's vessel blocks SIGCHLD meanwhile and
//! takes it with rt_sigtimedwait(2)); if the original still had it
//! pending, the image's pending signals bring it back.

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

/// Ends every zombie-to-be with its status, in pid order; `parents`
/// holds the vessel of each process of the image (by image pid), none of
/// them restored yet. Returns notes.
pub fn finish(pending: Vec<Pending>, parents: &[(i32, &Vessel)]) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for p in pending {
        let z = &p.zombie;
        let parent = parents
            .iter()
            .find(|(pid, _)| *pid == z.ppid)
            .map(|(_, v)| *v)
            .ok_or_else(|| failed(z, "its parent's vessel is gone"))?;
        let old = hold_sigchld(parent)?;
        let status = z.status;
        if libc::WIFSIGNALED(status) {
            let core = libc::WCOREDUMP(status);
            let dumped = die_by_signal(&p.vessel, z, libc::WTERMSIG(status), core)?;
            if core && !dumped.0 {
                notes.push(format!(
                    "zombie pid {}: its status no longer says it dumped core ({})",
                    z.pid, dumped.1
                ));
            }
        } else {
            exit_with(&p.vessel, z, libc::WEXITSTATUS(status))?;
        }
        take_sigchld(parent, old)?;
    }
    Ok(notes)
}

/// SIGCHLD's bit in a sigset.
const SIGCHLD_BIT: u64 = 1 << (libc::SIGCHLD - 1);

/// Makes SIGCHLD default and blocked in the parent's vessel (SIG_IGN
/// would have the kernel reap the child at once, kernel/signal.c,
/// do_notify_parent); returns the mask it had.
fn hold_sigchld(parent: &Vessel) -> Result<u64> {
    // struct kernel_sigaction: handler 0 (SIG_DFL), flags, restorer, mask.
    let at = parent.stage(0, &[0u8; 32])?;
    let chld = libc::SIGCHLD as u64;
    let args = [chld, at, 0, 8, 0, 0];
    parent.call("rt_sigaction SIGCHLD", libc::SYS_rt_sigaction, args)?;
    let at = parent.stage(0, &SIGCHLD_BIT.to_ne_bytes())?;
    let old = parent.stage(8, &[0u8; 8])?;
    let block = libc::SIG_BLOCK as u64;
    let args = [block, at, old, 8, 0, 0];
    parent.call("rt_sigprocmask", libc::SYS_rt_sigprocmask, args)?;
    let mut raw = [0u8; 8];
    parent.peek(old, &mut raw)?;
    Ok(u64::from_ne_bytes(raw))
}

/// Takes the SIGCHLD the zombie's end sent away from the parent's vessel
/// (rt_sigtimedwait with a zero timeout: EAGAIN if none came), and puts
/// its mask back.
fn take_sigchld(parent: &Vessel, old: u64) -> Result<()> {
    let set = parent.stage(0, &SIGCHLD_BIT.to_ne_bytes())?;
    let zero = parent.stage(16, &[0u8; 16])?;
    let rc = parent.raw(libc::SYS_rt_sigtimedwait, [set, 0, zero, 8, 0, 0])?;
    if rc != i64::from(libc::SIGCHLD) && rc != -i64::from(libc::EAGAIN) {
        return Err(Error::Invalid {
            what: format!(
                "taking a zombie's SIGCHLD from its parent: rt_sigtimedwait returned {rc}"
            ),
        });
    }
    let at = parent.stage(0, &old.to_ne_bytes())?;
    let setmask = libc::SIG_SETMASK as u64;
    parent
        .call(
            "rt_sigprocmask",
            libc::SYS_rt_sigprocmask,
            [setmask, at, 0, 8, 0, 0],
        )
        .map(drop)
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
/// signal unblocked, then an injected getpid(2) stops at the gadget's
/// int3 in a signal-delivery-stop for SIGTRAP, and we resume it with
/// `sig` instead (ptrace(2), "Signal injection and suppression"), which
/// it cannot survive. Without `core`, RLIMIT_CORE 0 so nothing is
/// written; with it, see [`prepare_core`]. Returns whether the status
/// says it dumped core, and if it should have but does not, why.
fn die_by_signal(v: &Vessel, z: &Zombie, sig: i32, core: bool) -> Result<(bool, String)> {
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
    let scratch = if core {
        prepare_core(v)
    } else {
        Err("not asked".to_string())
    };
    if scratch.is_err() {
        crate::sys::prlimit(v.pid, libc::RLIMIT_CORE, 0, 0)?;
    }
    v.call("getpid", libc::SYS_getpid, [0; 6])?;
    tsys::cont(v.pid, sig)?;
    let got = tsys::decode_status(tsys::wait_tid(v.pid)?);
    let dumped = match got {
        WaitEvent::Signaled { sig: s, core } if s == sig => core,
        other => {
            return Err(failed(
                z,
                format!("ended as {other:?}, not by signal {sig}"),
            ))
        }
    };
    let why = match scratch {
        Ok(dir) => {
            let _ = std::fs::remove_dir_all(&dir);
            "no core was written".to_string()
        }
        Err(why) => why,
    };
    Ok((dumped, why))
}

/// Readies the zombie-to-be to dump core where nothing else sees it: in
/// a new empty directory (its cwd; removed with the core afterwards),
/// RLIMIT_CORE unlimited, coredump_filter 0 (no memory, only the ELF
/// headers and notes, core(5)), dumpable. Only for a core_pattern that
/// names a file in the cwd: one with a '/' writes elsewhere and a '|'
/// one runs a program of the host (core(5)). Returns the directory, or
/// why not.
fn prepare_core(v: &Vessel) -> std::result::Result<std::path::PathBuf, String> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .map_err(|e| format!("core_pattern: {e}"))?;
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.contains('/') || pattern.starts_with('|') {
        return Err(format!(
            "core_pattern {pattern:?} does not write into the cwd"
        ));
    }
    let dir = std::env::temp_dir().join(format!("isotrace-core-{}", v.pid));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ready = (|| -> Result<()> {
        // The vessel may run as another uid (a restore as nobody).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io(&dir, e))?;
        let at = v.stage_path(&dir.to_string_lossy())?;
        v.call("chdir", libc::SYS_chdir, [at, 0, 0, 0, 0, 0])?;
        let dumpable = [libc::PR_SET_DUMPABLE as u64, 1, 0, 0, 0, 0];
        v.call("prctl PR_SET_DUMPABLE", libc::SYS_prctl, dumpable)?;
        let filter = format!("/proc/{}/coredump_filter", v.pid);
        std::fs::write(&filter, "0").map_err(|e| Error::io(&filter, e))?;
        crate::sys::prlimit(v.pid, libc::RLIMIT_CORE, u64::MAX, u64::MAX)?;
        Ok(())
    })();
    match ready {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e.to_string())
        }
    }
}

fn expect_end(v: &Vessel, z: &Zombie, want: WaitEvent) -> Result<()> {
    let got = tsys::decode_status(tsys::wait_tid(v.pid)?);
    if got != want {
        return Err(failed(z, format!("ended as {got:?}, not {want:?}")));
    }
    Ok(())
}
