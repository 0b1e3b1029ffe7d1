//! Creating the tracee's userfaultfd: the uffd must belong to the tracee's
//! mm (userfaultfd(2) binds it to the calling process), so one stopped
//! thread is made to call userfaultfd(2), we take a copy of the new fd
//! with pidfd_getfd(2), and the thread closes its own (an fd a checkpoint
//! could not carry). Our copy keeps the context, and its mm, alive.
//!
//! The thread must be in an interrupt stop of its supervisor's freeze
//! barrier. Its `syscall` gadget is the `0f 05` of the [vdso]'s fallback
//! paths; rip points there with rax = the call and orig_rax = -1, so the
//! kernel applies no restart fixup to our registers
//! (arch/x86/kernel/signal.c). PTRACE_SYSCALL runs it: an entry stop, a
//! seccomp stop if the supervisor's filter traps the call (we let it run),
//! an exit stop. The saved registers then go back, and PTRACE_INTERRUPT
//! re-traps the thread in an interrupt stop, so that the barrier resumes it
//! exactly as it found it: the syscall it was blocked in is restarted on
//! the signal path as it would have been.

use super::sys;
use crate::error::{Error, Result};
use crate::model::Vma;
use isotrace_arch::native::Regs;
use isotrace_tracer::sys::{self as tsys, WaitEvent};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

/// Offset of rseq_cs in struct rseq (include/uapi/linux/rseq.h).
const RSEQ_CS_OFFSET: u64 = 8;

fn died(pid: i32) -> impl Fn(isotrace_tracer::Error) -> Error {
    move |e| {
        if e.is_died() {
            Error::Exited { pid }
        } else {
            e.into()
        }
    }
}

/// The address of a `syscall` instruction in the [vdso] of `pid`.
fn gadget(pid: i32, vmas: &[Vma]) -> Result<u64> {
    let vdso = vmas
        .iter()
        .find(|v| v.path == "[vdso]")
        .ok_or_else(|| Error::Invalid {
            what: format!("pid {pid} has no [vdso] to run a syscall from"),
        })?;
    let mem = File::open(format!("/proc/{pid}/mem")).map_err(|e| Error::io("mem", e))?;
    let mut buf = vec![0u8; vdso.len() as usize];
    let n = mem
        .read_at(&mut buf, vdso.start)
        .map_err(|e| Error::io("mem", e))?;
    let at = buf[..n].windows(2).position(|w| w == [0x0f, 0x05]);
    at.map(|i| vdso.start + i as u64)
        .ok_or_else(|| Error::Invalid {
            what: format!("pid {pid}: no syscall instruction in its [vdso]"),
        })
}

/// One thread lent to us to run syscalls; `restore` gives it back.
struct Lent {
    pid: i32,
    tid: i32,
    gadget: u64,
    saved: Regs,
    rseq_cs: Option<(u64, u64)>,
    caught: Vec<i32>,
}

impl Lent {
    fn new(pid: i32, tid: i32, gadget: u64) -> Result<Lent> {
        let saved = tsys::get_regs(tid).map_err(died(pid))?;
        // The kernel clears rseq_cs on the way to our gadget, outside any
        // critical section (kernel/rseq.c, rseq_ip_fixup): put it back.
        let rseq_cs = match crate::sys::rseq_config(tid) {
            Ok(Some((ptr, _, _))) => {
                let mut word = [0u8; 8];
                let mem =
                    File::open(format!("/proc/{pid}/mem")).map_err(|e| Error::io("mem", e))?;
                mem.read_exact_at(&mut word, ptr + RSEQ_CS_OFFSET)
                    .ok()
                    .map(|()| (ptr + RSEQ_CS_OFFSET, u64::from_ne_bytes(word)))
            }
            _ => None,
        };
        Ok(Lent {
            pid,
            tid,
            gadget,
            saved,
            rseq_cs,
            caught: Vec::new(),
        })
    }

    fn call(&mut self, nr: i64, args: [u64; 3]) -> Result<i64> {
        let mut regs = self.saved;
        regs.rip = self.gadget;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        tsys::set_regs(self.tid, &regs).map_err(died(self.pid))?;
        let mut syscall_stops = 0;
        while syscall_stops < 2 {
            tsys::cont_syscall(self.tid, 0).map_err(died(self.pid))?;
            let status = tsys::wait_tid(self.tid).map_err(died(self.pid))?;
            match tsys::decode_status(status) {
                // With PTRACE_O_TRACESYSGOOD entry and exit stops look alike.
                WaitEvent::SyscallExit => syscall_stops += 1,
                WaitEvent::Seccomp => {}
                // Kept and queued again in restore(): resuming with 0 here
                // would discard it (ptrace(2), "Signal injection").
                WaitEvent::Signal(sig) => self.caught.push(sig),
                WaitEvent::Exited(_) | WaitEvent::Signaled { .. } => {
                    return Err(Error::Exited { pid: self.pid })
                }
                other => {
                    return Err(Error::Invalid {
                        what: format!(
                            "pid {}: thread {} stopped with {other:?} in an injected syscall",
                            self.pid, self.tid
                        ),
                    })
                }
            }
        }
        Ok(tsys::get_regs(self.tid).map_err(died(self.pid))?.rax as i64)
    }

    fn restore(self) -> Result<()> {
        let died = died(self.pid);
        tsys::set_regs(self.tid, &self.saved).map_err(&died)?;
        if let Some((addr, value)) = self.rseq_cs {
            let path = format!("/proc/{}/mem", self.pid);
            let mem = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            mem.write_all_at(&value.to_ne_bytes(), addr)
                .map_err(|e| Error::io(&path, e))?;
        }
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

/// A userfaultfd of `pid`'s mm, made by its thread `tid` (in an interrupt
/// stop), as an fd of ours; the thread is left as it was found.
pub fn open_uffd(pid: i32, tid: i32, vmas: &[Vma]) -> Result<OwnedFd> {
    let mut lent = Lent::new(pid, tid, gadget(pid, vmas)?)?;
    let flags = libc::O_CLOEXEC as u64 | libc::O_NONBLOCK as u64 | sys::UFFD_USER_MODE_ONLY;
    let made = lent.call(libc::SYS_userfaultfd, [flags, 0, 0]);
    let taken = made.and_then(|fd| {
        if fd < 0 {
            return Err(Error::Invalid {
                what: format!(
                    "pid {pid}: userfaultfd(2) failed: {}",
                    std::io::Error::from_raw_os_error(-fd as i32)
                ),
            });
        }
        let ours = sys::pidfd_open(pid)
            .and_then(|p| sys::pidfd_getfd(&p, fd as i32))
            .map_err(|e| Error::io(format!("/proc/{pid}/fd/{fd}"), e));
        lent.call(libc::SYS_close, [fd as u64, 0, 0])?;
        ours
    });
    let back = lent.restore();
    let ours = taken?;
    back?;
    Ok(ours)
}
