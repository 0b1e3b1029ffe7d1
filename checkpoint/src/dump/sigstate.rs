//! State only a task itself can read, in its own section (`signals.bin`,
//! IMAGE.md): the signal handlers of each process (rt_sigaction(2) with a
//! null new action), and each thread's alternate signal stack
//! (sigaltstack(2)) and clear_child_tid (prctl(2) PR_GET_TID_ADDRESS,
//! which needs CONFIG_CHECKPOINT_RESTORE). /proc shows only which signals
//! are caught, not where their handlers are.
//!
//! The calls run in the stopped threads themselves, lent to us one at a
//! time (`Lent`): only a thread in an interrupt stop of the freeze, not
//! one stopped at a syscall's entry, whose stop must be kept as it is.
//! Its `syscall` instruction is one in the [vdso]; results land in a
//! scratch area below its stack's red zone (the 128 bytes under rsp that
//! the x86_64 ABI lets leaf code use), saved and written back after. It
//! runs the call under PTRACE_SYSCALL: entry stop, maybe a seccomp stop
//! (the supervisor's filter; continued, which lets the call run), exit
//! stop; PTRACE_GET_SYSCALL_INFO tells those from a real SIGTRAP. Then the
//! saved registers go back and PTRACE_INTERRUPT re-traps it in an
//! interrupt stop, where the freeze expects it: a syscall it was blocked
//! in is restarted on the signal path as it would have been
//! (arch/x86/kernel/signal.c). A signal that arrives meanwhile is queued
//! again with tgkill(2).

use super::attach::StoppedThread;
use super::Frozen;
use crate::error::{Error, Result};
use crate::image::{codec, ImageWriter};
use crate::model::{ProcessTree, Vma};
use crate::Image;
use isotrace_arch::native::Regs;
use isotrace_tracer::sys::{self as tsys, WaitEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The section's name.
pub const SECTION: &str = "signals.bin";

/// One struct kernel_sigaction, as rt_sigaction(2) returns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSignals {
    /// stack_t: ss_sp, ss_flags, ss_size (None if it has none).
    pub altstack: Option<(u64, i32, u64)>,
    /// clear_child_tid (None if unreadable).
    pub tid_address: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigState {
    /// pid -> signal number -> its handler, for the caught signals.
    pub handlers: BTreeMap<i32, BTreeMap<i32, Handler>>,
    pub threads: BTreeMap<i32, ThreadSignals>,
}

/// Offset of rseq_cs in struct rseq (include/uapi/linux/rseq.h).
const RSEQ_CS_OFFSET: u64 = 8;
/// Scratch bytes used below the red zone.
const SCRATCH: u64 = 64;
const RED_ZONE: u64 = 128;
const SS_DISABLE: i32 = 2;
const PR_GET_TID_ADDRESS: u64 = 40;

fn died(pid: i32) -> impl Fn(isotrace_tracer::Error) -> Error {
    move |e| {
        if e.is_died() {
            Error::Exited { pid }
        } else {
            e.into()
        }
    }
}

/// A stopped thread lent to run syscalls; [`Lent::give_back`] returns it.
struct Lent {
    pid: i32,
    tid: i32,
    gadget: u64,
    saved: Regs,
    mem: File,
    scratch: u64,
    saved_scratch: [u8; SCRATCH as usize],
    rseq_cs: Option<(u64, [u8; 8])>,
    caught: Vec<i32>,
}

impl Lent {
    fn new(t: &StoppedThread, gadget: u64) -> Result<Lent> {
        let (pid, tid) = (t.pid, t.tid);
        let saved = tsys::get_regs(tid).map_err(died(pid))?;
        let path = format!("/proc/{pid}/task/{tid}/mem");
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let scratch = (saved.rsp - RED_ZONE - SCRATCH) & !15;
        let mut saved_scratch = [0u8; SCRATCH as usize];
        mem.read_exact_at(&mut saved_scratch, scratch)
            .map_err(|e| Error::io(&path, e))?;
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
        })
    }

    /// Runs syscall `nr`; returns its result and the scratch bytes.
    fn call(&mut self, nr: i64, args: [u64; 4]) -> Result<(i64, [u8; SCRATCH as usize])> {
        let mut regs = self.saved;
        (regs.rip, regs.rax, regs.orig_rax) = (self.gadget, nr as u64, u64::MAX);
        (regs.rdi, regs.rsi, regs.rdx, regs.r10) = (args[0], args[1], args[2], args[3]);
        let (pid, tid) = (self.pid, self.tid);
        tsys::set_regs(tid, &regs).map_err(died(pid))?;
        loop {
            tsys::cont_syscall(tid, 0).map_err(died(pid))?;
            let status = tsys::wait_tid(tid).map_err(died(pid))?;
            match tsys::decode_status(status) {
                WaitEvent::SyscallExit | WaitEvent::Signal(libc::SIGTRAP) => {
                    match crate::sys::syscall_stop_kind(tid).map_err(died(pid))? {
                        2 => break,
                        0 => self.caught.push(libc::SIGTRAP),
                        _ => {}
                    }
                }
                WaitEvent::Seccomp => {}
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
        self.mem
            .read_exact_at(&mut out, self.scratch)
            .map_err(|e| Error::io("mem", e))?;
        Ok((rc, out))
    }

    fn give_back(self) -> Result<()> {
        let died = died(self.pid);
        let io = |e| Error::io(format!("/proc/{}/mem", self.pid), e);
        self.mem
            .write_all_at(&self.saved_scratch, self.scratch)
            .map_err(io)?;
        if let Some((at, word)) = self.rseq_cs {
            self.mem.write_all_at(&word, at).map_err(io)?;
        }
        tsys::set_regs(self.tid, &self.saved).map_err(&died)?;
        for sig in &self.caught {
            tsys::tgkill(self.pid, self.tid, *sig).map_err(&died)?;
        }
        tsys::interrupt(self.tid).map_err(&died)?;
        tsys::cont(self.tid, 0).map_err(&died)?;
        match tsys::decode_status(tsys::wait_tid(self.tid).map_err(&died)?) {
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

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The handlers of every caught signal (`caught`, /proc's SigCgt).
fn handlers(lent: &mut Lent, caught: u64) -> Result<BTreeMap<i32, Handler>> {
    let mut out = BTreeMap::new();
    for sig in (1..=64).filter(|s| caught & (1u64 << (s - 1)) != 0) {
        let args = [sig as u64, 0, lent.scratch, 8];
        let (rc, b) = lent.call(libc::SYS_rt_sigaction, args)?;
        if rc == 0 {
            let h = Handler {
                handler: u64_at(&b, 0),
                flags: u64_at(&b, 8),
                restorer: u64_at(&b, 16),
                mask: u64_at(&b, 24),
            };
            out.insert(sig, h);
        }
    }
    Ok(out)
}

/// The lent thread's own alternate stack and clear_child_tid.
fn thread_signals(lent: &mut Lent) -> Result<ThreadSignals> {
    let (rc, b) = lent.call(libc::SYS_sigaltstack, [0, lent.scratch, 0, 0])?;
    let flags = i32::from_ne_bytes(b[8..12].try_into().expect("4 bytes"));
    let altstack =
        (rc == 0 && flags & SS_DISABLE == 0).then(|| (u64_at(&b, 0), flags, u64_at(&b, 16)));
    let (rc, b) = lent.call(libc::SYS_prctl, [PR_GET_TID_ADDRESS, lent.scratch, 0, 0])?;
    let tid_address = (rc == 0).then(|| u64_at(&b, 0));
    Ok(ThreadSignals {
        altstack,
        tid_address,
    })
}

/// Reads the state of every process of `tree` from its threads in
/// `frozen`. A thread that cannot be lent (not in an interrupt stop, no
/// gadget, an unmapped scratch area) is skipped: the restore then falls
/// back to what /proc shows and says so.
pub fn capture(frozen: &Frozen, tree: &ProcessTree) -> Result<SigState> {
    let mut state = SigState::default();
    for p in &tree.processes {
        let mut first = true;
        for t in frozen.threads_of(p.pid) {
            if t.stop != "interrupt" || t.at_syscall_entry {
                continue;
            }
            let Some(gadget) = super::cow::find_gadget(p.pid, t.tid, &p.vmas as &[Vma]) else {
                break;
            };
            let Ok(mut lent) = Lent::new(t, gadget) else {
                continue;
            };
            let got = (|| {
                if first {
                    state
                        .handlers
                        .insert(p.pid, handlers(&mut lent, p.signals.caught)?);
                }
                thread_signals(&mut lent)
            })();
            lent.give_back()?;
            state.threads.insert(t.tid, got?);
            first = false;
        }
    }
    Ok(state)
}

/// Captures the state into the image being written.
pub fn write(frozen: &Frozen, tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let state = capture(frozen, tree)?;
    if state == SigState::default() {
        return Ok(());
    }
    writer.write_section(SECTION, &codec::encode(&state)?)
}

/// The state of an image (empty without the section).
pub fn read(image: &Image) -> Result<SigState> {
    if image.manifest.section(SECTION).is_none() {
        return Ok(SigState::default());
    }
    let path = image.dir.join(SECTION);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path, e))?;
    codec::decode(SECTION, &bytes)
}
