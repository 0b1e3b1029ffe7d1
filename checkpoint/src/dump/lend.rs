//! Lending a thread of a frozen process to run syscalls in it, for the
//! state only a task itself can read (signal handlers, sigstate.rs) or
//! create (its userfaultfd, precopy/inject.rs; the copy-on-write child of
//! a snapshot, cow.rs, which also reaps it with an injected wait4).
//!
//! Only a thread in an interrupt stop or a group-stop of the freeze is
//! lent, never one stopped at a syscall's entry, whose stop must be kept
//! as it is. Its
//! `syscall` instruction is one in its [vdso] (cow::find_gadget); results
//! land in a scratch area below its stack's red zone (the 128 bytes under
//! rsp that the x86_64 ABI lets leaf code use), saved and written back
//! after. A call runs under PTRACE_SYSCALL with rip at the gadget, rax the
//! call and orig_rax -1 (so the kernel applies no restart fixup): entry
//! stop, maybe a seccomp stop (the supervisor's filter; continued, which
//! lets the call run), exit stop; PTRACE_GET_SYSCALL_INFO tells those from
//! a real SIGTRAP. Then the saved registers go back and PTRACE_INTERRUPT
//! re-traps the thread in an interrupt stop, where the freeze expects it
//! (in a process in group-stop, that stop reports the group-stop again):
//! a syscall it was blocked in is restarted on the signal path as it would
//! have been (arch/x86/kernel/signal.c). A signal that arrives meanwhile
//! is queued again with tgkill(2).

use crate::error::{died, Error, Result};
use isotrace_arch::native::Regs;
use isotrace_tracer::sys::{self as tsys, WaitEvent};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// How long one stop of a lent thread may take to come.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls for `tid`'s next wait status until [`STEP_TIMEOUT`]: a thread
/// that never stops (a target the kernel keeps busy, a lost wake-up) is an
/// error naming what was waited for, never a hang.
pub(crate) fn wait_event(pid: i32, tid: i32, what: &str) -> Result<WaitEvent> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match crate::sys::wait_nohang(tid) {
            Ok(Some(status)) => return Ok(tsys::decode_status(status)),
            Ok(None) | Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) => return Err(Error::Exited { pid }),
            Err(errno) => {
                return Err(isotrace_tracer::Error::from_errno(tid, "waitpid", errno).into())
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid {
                what: format!(
                    "pid {pid}: thread {tid} did not stop within {STEP_TIMEOUT:?} while {what}"
                ),
            });
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Offset of rseq_cs in struct rseq (include/uapi/linux/rseq.h).
const RSEQ_CS_OFFSET: u64 = 8;
/// Scratch bytes used below the red zone.
const SCRATCH: u64 = 64;
const RED_ZONE: u64 = 128;
/// Stops one injected call may take (see [`Lent::call`]).
const MAX_STOPS: u32 = 256;

/// A stopped thread lent to run syscalls; [`Lent::give_back`] returns it.
pub(crate) struct Lent {
    pid: i32,
    tid: i32,
    gadget: u64,
    saved: Regs,
    mem: File,
    /// The scratch area's address in the thread's memory, for results.
    pub(crate) scratch: u64,
    /// What it held, put back by give_back; None where it is unmapped (a
    /// stack pointer at the bottom of its mapping): calls then return
    /// zeros for it.
    saved_scratch: Option<[u8; SCRATCH as usize]>,
    rseq_cs: Option<(u64, [u8; 8])>,
    caught: Vec<i32>,
    /// A child a call created, auto-attached to us ([`Lent::trace_forks`]).
    child: Option<i32>,
    /// The ptrace options give_back sets again, after trace_forks.
    options_after: Option<libc::c_int>,
}

impl Lent {
    pub(crate) fn new(pid: i32, tid: i32, gadget: u64) -> Result<Lent> {
        let saved = tsys::get_regs(tid).map_err(died(pid))?;
        let path = format!("/proc/{pid}/task/{tid}/mem");
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let scratch = (saved.rsp - RED_ZONE - SCRATCH) & !15;
        let mut bytes = [0u8; SCRATCH as usize];
        let saved_scratch = mem.read_exact_at(&mut bytes, scratch).ok().map(|()| bytes);
        // The kernel clears rseq_cs on the way to the gadget, outside any
        // critical section (kernel/rseq.c, rseq_ip_fixup): keep it.
        let rseq_cs = crate::sys::rseq_config(tid)
            .ok()
            .flatten()
            .and_then(|(ptr, _, _)| {
                let mut w = [0u8; 8];
                let at = ptr + RSEQ_CS_OFFSET;
                mem.read_exact_at(&mut w, at).ok().map(|()| (at, w))
            });
        Ok(Lent {
            pid,
            tid,
            gadget,
            saved,
            mem,
            scratch,
            saved_scratch,
            rseq_cs,
            caught: Vec::new(),
            child: None,
            options_after: None,
        })
    }

    /// Traces the thread with PTRACE_O_TRACESYSGOOD, so that its syscall
    /// stops say so (SIGTRAP|0x80, which PTRACE_GET_SYSCALL_INFO goes by),
    /// and with clone and fork events, so that a child a call creates is
    /// attached to us at birth and stopped before it runs
    /// ([`Lent::take_child`]). give_back sets `after` again.
    pub(crate) fn trace_forks(&mut self, after: libc::c_int) -> Result<()> {
        let options =
            libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEFORK;
        tsys::set_options(self.tid, options).map_err(died(self.pid))?;
        self.options_after = Some(after);
        Ok(())
    }

    /// The child the last call created (its pid in our namespace).
    pub(crate) fn take_child(&mut self) -> Option<i32> {
        self.child.take()
    }

    /// Runs syscall `nr`; returns its result and the scratch bytes.
    pub(crate) fn call(
        &mut self,
        nr: i64,
        args: [u64; 4],
    ) -> Result<(i64, [u8; SCRATCH as usize])> {
        let mut regs = self.saved;
        (regs.rip, regs.rax, regs.orig_rax) = (self.gadget, nr as u64, u64::MAX);
        (regs.rdi, regs.rsi, regs.rdx, regs.r10) = (args[0], args[1], args[2], args[3]);
        let (pid, tid) = (self.pid, self.tid);
        tsys::set_regs(tid, &regs).map_err(died(pid))?;
        // Entry, maybe a seccomp stop, exit, and the signals that arrive
        // meanwhile: a thread that keeps stopping beyond that is not
        // running our call (a signal storm); give up rather than spin.
        let mut stops = 0;
        loop {
            stops += 1;
            if stops > MAX_STOPS {
                return Err(Error::Invalid {
                    what: format!(
                        "pid {pid}: thread {tid} stopped {MAX_STOPS} times without finishing an injected syscall"
                    ),
                });
            }
            tsys::cont_syscall(tid, 0).map_err(died(pid))?;
            match wait_event(pid, tid, "running an injected syscall")? {
                WaitEvent::SyscallExit | WaitEvent::Signal(libc::SIGTRAP) => {
                    match crate::sys::syscall_stop_kind(tid).map_err(died(pid))? {
                        2 => break,
                        0 => self.caught.push(libc::SIGTRAP),
                        _ => {}
                    }
                }
                // An interrupt stop (PTRACE_EVENT_STOP, SIGTRAP): a
                // PTRACE_INTERRUPT that reached the thread while it was
                // stopped already (the freeze's rescan of a forking group)
                // stays pending and is taken on the next resume (ptrace(2),
                // JOBCTL_TRAP_STOP); our call has not run yet, go on. In
                // a process in group-stop that stop reports the stop
                // signal instead of SIGTRAP.
                WaitEvent::Seccomp | WaitEvent::EventStop(_) => {}
                WaitEvent::Event(ev)
                    if ev == libc::PTRACE_EVENT_CLONE || ev == libc::PTRACE_EVENT_FORK =>
                {
                    self.child = Some(tsys::event_msg(tid).map_err(died(pid))? as i32);
                }
                WaitEvent::Signal(sig) => self.caught.push(sig),
                WaitEvent::Exited(_) | WaitEvent::Signaled { .. } => {
                    return Err(Error::Exited { pid })
                }
                other => {
                    return Err(Error::Invalid {
                        what: format!(
                            "pid {pid}: thread {tid} stopped with {other:?} in an injected syscall"
                        ),
                    })
                }
            }
        }
        let rc = tsys::get_regs(tid).map_err(died(pid))?.rax as i64;
        let mut out = [0u8; SCRATCH as usize];
        if self.saved_scratch.is_some() {
            self.mem
                .read_exact_at(&mut out, self.scratch)
                .map_err(|e| Error::io("mem", e))?;
        }
        Ok((rc, out))
    }

    pub(crate) fn give_back(self) -> Result<()> {
        let died = died(self.pid);
        let io = |e| Error::io(format!("/proc/{}/mem", self.pid), e);
        if let Some(bytes) = &self.saved_scratch {
            self.mem.write_all_at(bytes, self.scratch).map_err(io)?;
        }
        if let Some((at, word)) = self.rseq_cs {
            self.mem.write_all_at(&word, at).map_err(io)?;
        }
        tsys::set_regs(self.tid, &self.saved).map_err(&died)?;
        if let Some(options) = self.options_after {
            tsys::set_options(self.tid, options).map_err(&died)?;
        }
        for sig in &self.caught {
            tsys::tgkill(self.pid, self.tid, *sig).map_err(&died)?;
        }
        // From the syscall-exit stop to an interrupt stop: the pending trap
        // is taken in get_signal() before any signal is dequeued
        // (kernel/signal.c), so the signals queued again wait for the
        // thread's release.
        tsys::interrupt(self.tid).map_err(&died)?;
        tsys::cont(self.tid, 0).map_err(&died)?;
        match wait_event(self.pid, self.tid, "returning to its interrupt stop")? {
            WaitEvent::EventStop(_) => Ok(()),
            WaitEvent::Exited(_) | WaitEvent::Signaled { .. } => {
                Err(Error::Exited { pid: self.pid })
            }
            other => Err(Error::Invalid {
                what: format!(
                    "pid {}: thread {} stopped with {other:?} instead of its interrupt stop",
                    self.pid, self.tid
                ),
            }),
        }
    }
}
