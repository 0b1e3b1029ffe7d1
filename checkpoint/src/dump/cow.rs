//! The copy-on-write copy of a stopped process (#7): one of its threads is
//! made to call clone(2) by an injected syscall, so that a child holding a
//! copy-on-write image of the whole address space exists while the target
//! itself runs on. Forking copies page tables, not pages, so this costs
//! milliseconds whatever the resident size.
//!
//! How the call is injected (lend.rs), without writing to the target's
//! memory beyond its stack's unused area below the red zone, restored:
//! - the `syscall` instruction (0f 05) already present in the [vdso] (its
//!   clock_gettime fallbacks), or else in some executable mapping, is the
//!   gadget: rip points at it, rax holds the number, orig_rax is -1 so the
//!   kernel applies no syscall-restart fixup to our registers when it
//!   resumes the thread (arch/x86/kernel/signal.c, arch_do_signal_or_restart);
//! - PTRACE_SYSCALL runs to the syscall-entry stop and then the exit stop
//!   (PTRACE_O_TRACESYSGOOD tells those from a SIGTRAP);
//! - the saved registers go back, then PTRACE_INTERRUPT re-traps the thread
//!   in an ordinary interrupt stop, so that when it is detached the kernel
//!   restarts (or fails with EINTR) the syscall the thread was blocked in
//!   exactly as it would have without us: restart handling only happens on
//!   the signal path, never from a syscall-exit stop.
//!
//! The child is made with exit_signal 0 and CLONE_FILES:
//! - exit_signal 0 ("a clone child", clone(2)) sends the target no SIGCHLD
//!   when the child dies, and plain wait(2)/waitpid(2) without __WALL or
//!   __WCLONE never report it;
//! - CLONE_FILES shares the fd table instead of taking a second reference
//!   to every open file, so a pipe or socket the target closes meanwhile is
//!   closed for real (no delayed EOF or FIN for its peers).
//!
//! PTRACE_O_TRACECLONE makes the kernel attach the child to us at birth and
//! stop it before it returns to user space (ptrace(2), "automatically
//! attached"), so it never runs a single instruction of the target's code.
//! Once dumped, it is SIGKILLed and reaped by us as its tracer; the kernel
//! then hands its zombie to its real parent, the target (kernel/exit.c,
//! wait_task_zombie: EXIT_TRACE), and [`reap_in_target`] makes one target
//! thread call wait4(2) on it, again by injection, in a second pause of
//! one thread for a few hundred microseconds.

use super::attach::StoppedThread;
use super::lend::{wait_event, Lent};
use crate::error::{died, Error, Result};
use crate::model::Vma;
use isotrace_tracer::sys::{self, WaitEvent};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Bytes of an executable mapping searched for a `syscall` instruction.
const GADGET_SCAN: u64 = 1 << 20;

/// Where a `syscall` instruction is in `pid`'s executable mappings, the
/// [vdso] first.
pub fn find_gadget(pid: i32, tid: i32, vmas: &[Vma]) -> Option<u64> {
    let mem = File::open(format!("/proc/{pid}/task/{tid}/mem")).ok()?;
    let mut order: Vec<&Vma> = vmas
        .iter()
        .filter(|v| v.executable() && v.readable())
        .collect();
    order.sort_by_key(|v| v.path != "[vdso]");
    for vma in order {
        let len = vma.len().min(GADGET_SCAN) as usize;
        let mut buf = vec![0u8; len];
        let Ok(n) = mem.read_at(&mut buf, vma.start) else {
            continue;
        };
        if let Some(i) = buf[..n].windows(2).position(|w| w == [0x0f, 0x05]) {
            return Some(vma.start + i as u64);
        }
    }
    None
}

/// The copy-on-write child of one target process, stopped and traced by
/// us. Dropping it without [`CowChild::finish`] kills it (and leaves its
/// zombie to the target).
#[derive(Debug)]
pub struct CowChild {
    /// The target process.
    pub parent: i32,
    /// In our pid namespace (PTRACE_GETEVENTMSG translates it).
    pub pid: i32,
    /// In the target's pid namespace (clone(2)'s result there), which
    /// its wait4(2) takes: they differ when the target is in a container.
    pid_in_target: i32,
    done: bool,
}

/// Why the copy-on-write method is not used for one process: the snapshot
/// then reads the memory of the stopped target instead.
pub type Unsuitable = String;

/// The thread to run clone(2) in: one in a plain interrupt stop (a
/// signal-delivery-stop's signal would be lost by the re-trap) whose
/// seccomp mode is off: a filter might kill the process for clone(2).
pub(crate) fn pick_thread<'a>(
    threads: &[&'a StoppedThread],
) -> std::result::Result<&'a StoppedThread, Unsuitable> {
    let mut why = "no thread is in a plain interrupt stop (all stopped by signals)".to_owned();
    for t in threads.iter().copied().filter(|t| t.stop == "interrupt") {
        let status = std::fs::read_to_string(format!("/proc/{}/task/{}/status", t.pid, t.tid))
            .unwrap_or_default();
        let seccomp = super::procfs::parse_status(&status)
            .get("Seccomp")
            .cloned()
            .unwrap_or_default();
        if seccomp == "0" {
            return Ok(t);
        }
        why = format!("a seccomp filter (mode {seccomp}) might forbid or kill clone(2)");
    }
    Err(why)
}

impl CowChild {
    /// Makes the copy-on-write child of a fully stopped process. Ok(Err)
    /// says why this process cannot have one (its stopped memory is read
    /// instead); Err is fatal (the target died).
    pub fn fork(
        threads: &[&StoppedThread],
        vmas: &[Vma],
    ) -> Result<std::result::Result<CowChild, Unsuitable>> {
        let t = match pick_thread(threads) {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        let Some(gadget) = find_gadget(t.pid, t.tid, vmas) else {
            return Ok(Err(
                "no `syscall` instruction found in its executable mappings".into(),
            ));
        };
        let mut lent = Lent::new(t.pid, t.tid, gadget)?;
        lent.trace_forks(0)?;
        // clone(flags = CLONE_FILES | exit_signal 0, newsp = 0: the child
        // keeps the stack, copy-on-write, like fork(2)).
        let result = lent.call(libc::SYS_clone, [libc::CLONE_FILES as u64, 0, 0, 0]);
        let child = lent.take_child();
        let restored = lent.give_back();
        let (rax, _) = result?;
        restored?;
        let Some(child) = child.filter(|_| rax > 0) else {
            let errno = nix::errno::Errno::from_raw((-rax) as i32);
            return Ok(Err(format!("clone(2) in the target failed: {errno}")));
        };
        let mut cow = CowChild {
            parent: t.pid,
            pid: child,
            pid_in_target: rax as i32,
            done: false,
        };
        // An auto-attached child starts in PTRACE_EVENT_STOP (ptrace(2)).
        match wait_event(t.pid, child, "waiting for the copy-on-write child")? {
            WaitEvent::EventStop(_) => {}
            other => {
                cow.done = true;
                return Err(Error::Invalid {
                    what: format!(
                        "pid {}: its copy-on-write child {child} reported {other:?}",
                        t.pid
                    ),
                });
            }
        }
        // It inherited our options; it should die with us, and nothing else.
        sys::set_options(child, libc::PTRACE_O_EXITKILL).map_err(died(t.pid))?;
        Ok(Ok(cow))
    }

    /// /proc/CHILD: the address space (and, shared, the fd table) as it was
    /// at the fork.
    pub fn proc_dir(&self) -> super::ProcDir {
        super::ProcDir {
            pid: self.parent,
            tid: self.pid,
            base: format!("/proc/{}", self.pid),
        }
    }

    /// Kills and reaps the child, then makes the target reap its zombie.
    /// Returns how long the one target thread was held for that.
    pub fn finish(mut self) -> Result<Duration> {
        self.done = true;
        kill_and_wait(self.pid);
        reap_in_target(self.parent, self.pid_in_target)
    }
}

/// SIGKILL the child and wait (as its tracer) until it is a zombie. The
/// kernel tears down its copy of the page tables before that, so this is
/// done before the target is touched again.
fn kill_and_wait(child: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::SIGKILL);
    loop {
        match sys::wait_tid(child).map(sys::decode_status) {
            Ok(WaitEvent::Exited(_) | WaitEvent::Signaled { .. }) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

impl Drop for CowChild {
    fn drop(&mut self) {
        if !self.done {
            kill_and_wait(self.pid);
            if let Err(e) = reap_in_target(self.parent, self.pid_in_target) {
                tracing::warn!("pid {}: reaping its copy-on-write child: {e}", self.parent);
            }
        }
    }
}

/// Seizes one live thread of `pid` and has it wait4(2) for the zombie of
/// `child` (its pid in the target's namespace). Returns how long that
/// thread was held.
pub fn reap_in_target(pid: i32, child: i32) -> Result<Duration> {
    let tids = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for tid in tids {
        let started = Instant::now();
        if sys::seize(tid, 0).is_err() {
            continue;
        }
        let result = reap_with(pid, tid, child);
        let _ = sys::detach(tid, 0);
        match result {
            Ok(()) => return Ok(started.elapsed()),
            Err(Error::Exited { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    // Every thread exited: the target is gone and init reaps the zombie.
    Ok(Duration::ZERO)
}

fn reap_with(pid: i32, tid: i32, child: i32) -> Result<()> {
    sys::interrupt(tid).map_err(died(pid))?;
    loop {
        match wait_event(pid, tid, "stopping to reap the copy-on-write child")? {
            WaitEvent::EventStop(_) => break,
            // A signal that was on its way: delivered as it would have been;
            // the interrupt is still pending and stops the thread next.
            WaitEvent::Signal(sig) => sys::cont(tid, sig).map_err(died(pid))?,
            WaitEvent::Exited(_) | WaitEvent::Signaled { .. } => return Err(Error::Exited { pid }),
            _ => sys::cont(tid, 0).map_err(died(pid))?,
        }
    }
    // Found again: the target ran meanwhile and may have exec'd.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/maps"))
        .map_err(|e| super::vanished(pid, "maps", e))?;
    let gadget =
        find_gadget(pid, tid, &super::procfs::parse_maps(&maps)).ok_or_else(|| Error::Invalid {
            what: format!("pid {pid}: no `syscall` instruction left to reap its child {child}"),
        })?;
    let mut lent = Lent::new(pid, tid, gadget)?;
    lent.trace_forks(0)?;
    let flags = (libc::__WALL | libc::WNOHANG) as u64;
    let result = lent.call(libc::SYS_wait4, [child as u64, 0, flags, 0]);
    let restored = lent.give_back();
    let (rax, _) = result?;
    restored?;
    if rax == i64::from(child) {
        tracing::debug!("pid {pid}: thread {tid} reaped the copy-on-write child {child}");
    } else {
        // ECHILD: another thread of the target reaped it first (a
        // waitpid(-1, __WALL) of its own).
        tracing::info!("pid {pid}: wait4({child}) in the target returned {rax}");
    }
    Ok(())
}
