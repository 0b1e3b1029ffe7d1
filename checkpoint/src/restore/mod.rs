//! Restore of a process image (#5), with ptrace, /proc and injected
//! syscalls only: no code of ours runs in the restored process.
//!
//! The restorer forks a vessel, a copy of itself that stops at once (see
//! `sys::fork_vessel`). Everything else is done to the stopped vessel
//! through a gadget page (`inject`): it unmaps what it inherited, moves its
//! vDSO to the image's address, maps and fills the image's memory
//! (`memory`), sets the mm fields (`mm`), rebuilds the fd table (`fds`),
//! cwd, umask, name, limits, signal state, and last the registers and
//! XSAVE area (`thread`). The result is stopped in a ptrace-stop, ready to
//! be released with [`release`].
//!
//! Scope of this first version: one single-threaded process; it gets a new
//! pid (the same pid needs clone3 with set_tid in a new pid namespace).

pub mod fds;
pub mod inject;
pub mod memory;
pub mod mm;
pub mod thread;

use crate::error::{Error, Result};
use crate::model::{Process, Thread};
use crate::{sys, Image};
use inject::{Vessel, GADGET_CODE, GADGET_LEN};
use isotrace_tracer::sys::{self as tsys, WaitEvent};

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Put the restored process in a new session (setsid(2)), out of the
    /// restorer's process group and away from its terminal's job control:
    /// for a restore that is not waited for.
    pub new_session: bool,
}

/// A restored process, stopped under our ptrace until [`release`]d.
#[derive(Debug)]
pub struct Restored {
    pub old_pid: i32,
    pub pid: i32,
    /// What was not restored exactly, in words, for the user.
    pub notes: Vec<String>,
}

/// SIGKILLs and reaps the vessel unless the restore got to the end, so a
/// failed restore leaves nothing running.
struct VesselGuard {
    pid: i32,
    armed: bool,
}

impl Drop for VesselGuard {
    fn drop(&mut self) {
        if self.armed {
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
    }
}

/// The one process and thread this version restores, or a refusal.
fn single(image: &Image) -> Result<(&Process, &Thread)> {
    let procs = &image.tree.processes;
    if procs.len() != 1 {
        let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
        return Err(Error::Invalid {
            what: format!(
                "the image holds {} processes ({}); restore supports one process so far",
                procs.len(),
                pids.join(", ")
            ),
        });
    }
    let proc = &procs[0];
    match proc.threads.as_slice() {
        [t] => Ok((proc, t)),
        ts => Err(Error::Invalid {
            what: format!(
                "cannot restore pid {}: it has {} threads; restore supports single-threaded processes so far",
                proc.pid,
                ts.len()
            ),
        }),
    }
}

/// Rebuilds the image's process. Everything that can be refused is
/// refused before the vessel exists.
pub fn restore(image: &Image, opts: &Options) -> Result<Restored> {
    let (proc, thread) = single(image)?;
    let tty = (0..3).find(|&fd| is_tty(fd));
    let (fd_plans, mut notes) = fds::plan(proc, tty)?;
    for vma in &proc.vmas {
        memory::classify(proc.pid, vma)?;
    }
    let pages = image.dir.join(&proc.pages_section);
    let pages = std::fs::canonicalize(&pages).map_err(|e| Error::io(pages, e))?;

    let pid = sys::fork_vessel()?;
    let mut guard = VesselGuard { pid, armed: true };
    let status = tsys::wait_tid(pid)?;
    if tsys::decode_status(status) != WaitEvent::Signal(libc::SIGSTOP) {
        return Err(Error::Invalid {
            what: format!("the restore vessel (pid {pid}) did not stop: status {status:#x}"),
        });
    }
    thread::check_xstate(proc.pid, thread, &sys::get_xstate(pid)?)?;
    let v = bootstrap(pid, proc)?;
    memory::teardown(&v)?;
    memory::move_vdso(&v, proc, image)?;
    let at = v.stage_path(&pages.to_string_lossy())?;
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let what = format!("open {}", pages.display());
    let pages_fd = v.call(
        &what,
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
    )?;
    memory::rebuild(&v, proc, pages_fd)?;
    v.call("close", libc::SYS_close, [pages_fd, 0, 0, 0, 0, 0])?;
    notes.extend(mm::apply(&v, image, proc)?);
    fds::apply(&v, &fd_plans)?;
    notes.extend(settings(&v, proc)?);
    if opts.new_session {
        v.call("setsid", libc::SYS_setsid, [0; 6])?;
    }
    notes.extend(thread::signals(&v, proc, thread)?);
    v.unmap_gadget()?;
    tsys::set_regs(pid, &thread::resume_regs(thread))?;
    sys::set_xstate(pid, &thread.xstate)?;
    guard.armed = false;
    Ok(Restored {
        old_pid: proc.pid,
        pid,
        notes,
    })
}

fn is_tty(fd: i32) -> bool {
    use std::io::IsTerminal;
    match fd {
        0 => std::io::stdin().is_terminal(),
        1 => std::io::stdout().is_terminal(),
        _ => std::io::stderr().is_terminal(),
    }
}

/// Gets a gadget page into the vessel: `syscall; int3` is first written
/// over the code at its stop (its copy of our text, never run again),
/// used once to map the real gadget page at an address free in both the
/// vessel and the image, and the vessel's rseq registration (glibc's, at
/// an address that is about to be unmapped) is dropped so the kernel does
/// not write into the restored memory on preemption (rseq(2)).
fn bootstrap(pid: i32, proc: &Process) -> Result<Vessel> {
    let rip = tsys::get_regs(pid)?.rip;
    let mut v = Vessel::new(pid, rip)?;
    v.poke(rip, &GADGET_CODE)?;
    if let Some((ptr, size, sig)) = sys::rseq_config(pid)? {
        const RSEQ_FLAG_UNREGISTER: u64 = 1;
        let args = [ptr, size as u64, RSEQ_FLAG_UNREGISTER, sig as u64, 0, 0];
        v.call("rseq unregister", libc::SYS_rseq, args)?;
    }
    let current = memory::vessel_maps(pid)?;
    let taken: Vec<(u64, u64)> = proc
        .vmas
        .iter()
        .chain(&current)
        .map(|m| (m.start, m.end))
        .collect();
    let gadget =
        memory::free_range(&taken, GADGET_LEN, memory::mmap_min_addr()).ok_or_else(|| {
            Error::Invalid {
                what: "no free address for the restore's gadget page".into(),
            }
        })?;
    let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let got = v.call(
        "mmap the gadget page",
        libc::SYS_mmap,
        [gadget, GADGET_LEN, prot, flags, u64::MAX, 0],
    )?;
    if got != gadget {
        return Err(Error::Invalid {
            what: format!("the gadget page landed at {got:#x}, not {gadget:#x}"),
        });
    }
    v.poke(gadget, &GADGET_CODE)?;
    v.use_gadget(gadget);
    Ok(v)
}

/// cwd, umask, the thread name, and resource limits.
fn settings(v: &Vessel, proc: &Process) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(cwd) = &proc.cwd {
        let at = v.stage_path(cwd)?;
        if v.raw(libc::SYS_chdir, [at, 0, 0, 0, 0, 0])? != 0 {
            notes.push(format!("cwd {cwd} is gone; the cwd is isotrace restore's"));
        }
    }
    if let Some(mask) = proc.umask {
        v.call("umask", libc::SYS_umask, [mask as u64, 0, 0, 0, 0, 0])?;
    }
    let mut comm = proc.comm.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = v.stage(0, &comm)?;
    let set_name = libc::PR_SET_NAME as u64;
    v.call(
        "prctl PR_SET_NAME",
        libc::SYS_prctl,
        [set_name, at, 0, 0, 0, 0],
    )?;
    for limit in &proc.limits {
        let Some(resource) = rlimit_resource(&limit.name) else {
            continue;
        };
        let inf = libc::RLIM64_INFINITY;
        let (soft, hard) = (limit.soft.unwrap_or(inf), limit.hard.unwrap_or(inf));
        if sys::prlimit(v.pid, resource, soft, hard).is_err() {
            notes.push(format!("limit \"{}\" not restored", limit.name));
        }
    }
    Ok(notes)
}

/// The RLIMIT_* of a /proc/PID/limits row name (fs/proc/base.c lnames).
fn rlimit_resource(name: &str) -> Option<u32> {
    const NAMES: [&str; 16] = [
        "Max cpu time",
        "Max file size",
        "Max data size",
        "Max stack size",
        "Max core file size",
        "Max resident set",
        "Max processes",
        "Max open files",
        "Max locked memory",
        "Max address space",
        "Max file locks",
        "Max pending signals",
        "Max msgqueue size",
        "Max nice priority",
        "Max realtime priority",
        "Max realtime timeout",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Lets a restored process run: PTRACE_DETACH with no signal. It stays
/// the caller's child.
pub fn release(pid: i32) -> Result<()> {
    tsys::detach(pid, 0).map_err(Into::into)
}
