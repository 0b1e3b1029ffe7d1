//! Syscalls run inside the stopped vessel, through a gadget page.
//!
//! The gadget page holds `syscall; int3` (0f 05 cc). To run a syscall we
//! point rip at it with the number in rax and the arguments in
//! rdi/rsi/rdx/r10/r8/r9 (syscall(2), "Architecture calling conventions")
//! and PTRACE_CONT. The int3 then stops the vessel with SIGTRAP in a
//! signal-delivery-stop, and the result is in rax. The next PTRACE_CONT
//! passes signal 0, which discards that SIGTRAP (ptrace(2), "Signal
//! injection and suppression"). orig_rax is always -1, so the kernel never
//! applies syscall-restart fixups to the injected registers when it
//! resumes the vessel from a signal stop (arch/x86/kernel/signal.c).
//!
//! The page after the code is a data page for syscall arguments that are
//! pointers (paths, sigsets, structs), written through /proc/PID/mem.

use crate::error::{Error, Result};
use crate::sys::CloneArgs;
use isotrace_arch::native::Regs;
use isotrace_tracer::sys::{self, WaitEvent};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// `syscall; int3`.
pub const GADGET_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
/// The gadget mapping: one code page, then one data page.
pub const GADGET_LEN: u64 = 2 * crate::PAGE_SIZE;

pub struct Vessel {
    pub pid: i32,
    /// Registers of the vessel's first stop: valid cs/ss/eflags to start
    /// every injected call from.
    base: Regs,
    /// Where `syscall; int3` is.
    code: u64,
    /// A writable page for pointer arguments, or 0 before the gadget page.
    data: u64,
    mem: File,
}

/// A failed injected syscall or a vessel that stopped the wrong way.
fn failed(pid: i32, what: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid {
        what: format!("restore (vessel pid {pid}): {what}: {why}"),
    }
}

impl Vessel {
    /// Takes over a vessel in its first stop; `code` must already hold
    /// [`GADGET_CODE`].
    pub fn new(pid: i32, code: u64) -> Result<Vessel> {
        let base = sys::get_regs(pid)?;
        let path = format!("/proc/{pid}/mem");
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Vessel {
            pid,
            base,
            code,
            data: 0,
            mem,
        })
    }

    pub fn base_regs(&self) -> Regs {
        self.base
    }

    /// Switches to a gadget mapping at `addr` (code page + data page).
    pub fn use_gadget(&mut self, addr: u64) {
        self.code = addr;
        self.data = addr + crate::PAGE_SIZE;
    }

    pub fn gadget(&self) -> u64 {
        self.code
    }

    /// Writes bytes into the vessel, through FOLL_FORCE, so read-only and
    /// not-yet-faulted pages work too (proc(5), /proc/PID/mem).
    pub fn poke(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        self.mem
            .write_all_at(bytes, addr)
            .map_err(|e| failed(self.pid, &format!("write at {addr:#x}"), e))
    }

    pub fn peek(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.mem
            .read_exact_at(buf, addr)
            .map_err(|e| failed(self.pid, &format!("read at {addr:#x}"), e))
    }

    /// Puts `bytes` at `offset` of the data page and returns their address.
    pub fn stage(&self, offset: u64, bytes: &[u8]) -> Result<u64> {
        assert!(self.data != 0, "the data page exists once the gadget does");
        assert!(offset + bytes.len() as u64 <= crate::PAGE_SIZE);
        self.poke(self.data + offset, bytes)?;
        Ok(self.data + offset)
    }

    /// A NUL-terminated path in the data page (from offset 2048).
    pub fn stage_path(&self, path: &str) -> Result<u64> {
        if path.len() >= 2047 || path.contains('\0') {
            return Err(failed(self.pid, "path", format!("{path:?} is too long")));
        }
        let mut bytes = path.as_bytes().to_vec();
        bytes.push(0);
        self.stage(2048, &bytes)
    }

    /// Registers that run syscall `nr` with `args` at the gadget.
    fn call_regs(&self, nr: i64, args: [u64; 6]) -> Regs {
        let mut regs = self.base;
        regs.rip = self.code;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        regs
    }

    /// Runs syscall `nr` and returns its raw result (-errno on failure).
    pub fn raw(&self, nr: i64, args: [u64; 6]) -> Result<i64> {
        sys::set_regs(self.pid, &self.call_regs(nr, args))?;
        let sig = self.resume_until_stop()?;
        if sig != libc::SIGTRAP {
            return Err(failed(
                self.pid,
                &format!("syscall {nr}"),
                format!("stopped by signal {sig} instead of the gadget's int3"),
            ));
        }
        Ok(sys::get_regs(self.pid)?.rax as i64)
    }

    /// Runs an injected clone3(2) with `args` (staged at the start of the
    /// data page, `set_tid` after it) and returns the new task's id in our
    /// pid namespace, the task waited for in its first stop. The vessel is
    /// traced with PTRACE_O_TRACECLONE/TRACEFORK, so the kernel stops it
    /// in a PTRACE_EVENT_CLONE/FORK stop whose message is that id
    /// (ptrace(2), PTRACE_GETEVENTMSG), and attaches the new task, which
    /// starts in a PTRACE_EVENT_STOP.
    pub fn clone3(&self, what: &str, mut args: CloneArgs, set_tid: Option<i32>) -> Result<i32> {
        if let Some(tid) = set_tid {
            args.set_tid = self.stage(256, &tid.to_ne_bytes())?;
            args.set_tid_size = 1;
        }
        let bytes = args.to_bytes();
        let at = self.stage(0, &bytes)?;
        let regs = self.call_regs(libc::SYS_clone3, [at, bytes.len() as u64, 0, 0, 0, 0]);
        sys::set_regs(self.pid, &regs)?;
        sys::cont(self.pid, 0)?;
        let mut child = None;
        loop {
            let status = sys::wait_tid(self.pid)?;
            match sys::decode_status(status) {
                WaitEvent::Event(ev)
                    if [
                        libc::PTRACE_EVENT_CLONE,
                        libc::PTRACE_EVENT_FORK,
                        libc::PTRACE_EVENT_VFORK,
                    ]
                    .contains(&ev) =>
                {
                    child = Some(sys::event_msg(self.pid)? as i32);
                    sys::cont(self.pid, 0)?;
                }
                WaitEvent::Signal(libc::SIGTRAP) => break,
                other => return Err(failed(self.pid, what, format!("unexpected stop {other:?}"))),
            }
        }
        let rc = sys::get_regs(self.pid)?.rax as i64;
        let child = match child {
            Some(c) if rc > 0 => c,
            _ if rc == -(libc::EEXIST as i64) && set_tid.is_some() => {
                let why = format!(
                    "pid {} is taken in the restore's pid namespace (clone3 set_tid: EEXIST)",
                    set_tid.unwrap_or_default()
                );
                return Err(failed(self.pid, what, why));
            }
            _ if (-4095..0).contains(&rc) => {
                let errno = nix::errno::Errno::from_raw(-rc as i32);
                return Err(failed(self.pid, what, errno));
            }
            _ => {
                return Err(failed(
                    self.pid,
                    what,
                    format!("no clone event (result {rc})"),
                ))
            }
        };
        let status = sys::wait_tid(child)?;
        match sys::decode_status(status) {
            WaitEvent::EventStop(_) | WaitEvent::Signal(libc::SIGSTOP) => Ok(child),
            other => Err(failed(
                child,
                what,
                format!("new task stopped as {other:?}"),
            )),
        }
    }

    /// A handle on another thread (or a child process) that shares this
    /// vessel's gadget address; `tid` must be in a ptrace-stop.
    pub fn task(&self, tid: i32) -> Result<Vessel> {
        let mut v = Vessel::new(tid, self.code)?;
        v.data = self.data;
        Ok(v)
    }

    /// Runs a syscall that must succeed; `what` names it in the error.
    pub fn call(&self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let rc = self.raw(nr, args)?;
        if (-4095..0).contains(&rc) {
            let errno = nix::errno::Errno::from_raw(-rc as i32);
            return Err(failed(self.pid, what, errno));
        }
        Ok(rc as u64)
    }

    /// PTRACE_CONT with no signal, then the signal of the next stop.
    pub fn resume_until_stop(&self) -> Result<i32> {
        sys::cont(self.pid, 0)?;
        let status = sys::wait_tid(self.pid)?;
        match sys::decode_status(status) {
            WaitEvent::Signal(sig) => Ok(sig),
            WaitEvent::Exited(code) => Err(failed(self.pid, "vessel", format!("exited ({code})"))),
            WaitEvent::Signaled { sig, .. } => Err(failed(
                self.pid,
                "vessel",
                format!("killed by signal {sig}"),
            )),
            other => Err(failed(
                self.pid,
                "vessel",
                format!("unexpected stop {other:?}"),
            )),
        }
    }

    /// Unmaps the gadget with its own last syscall. Returning into the
    /// unmapped page faults at once: the vessel stops with SIGSEGV in a
    /// signal-delivery-stop, which [`Vessel::park`] discards. If a seccomp
    /// filter is installed and traces munmap, the tracee must have
    /// PTRACE_O_TRACESECCOMP: the seccomp stop is then continued, which
    /// lets the call run (seccomp(2), SECCOMP_RET_TRACE).
    pub fn unmap_gadget(&self) -> Result<()> {
        let mut regs = self.base;
        regs.rip = self.code;
        regs.rax = libc::SYS_munmap as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = self.code;
        regs.rsi = GADGET_LEN;
        sys::set_regs(self.pid, &regs)?;
        let sig = loop {
            sys::cont(self.pid, 0)?;
            let status = sys::wait_tid(self.pid)?;
            match sys::decode_status(status) {
                WaitEvent::Seccomp => continue,
                WaitEvent::Signal(sig) => break sig,
                other => {
                    return Err(failed(
                        self.pid,
                        "munmap of the gadget",
                        format!("unexpected stop {other:?}"),
                    ))
                }
            }
        };
        let rc = sys::get_regs(self.pid)?.rax;
        if sig != libc::SIGSEGV || rc != 0 {
            return Err(failed(
                self.pid,
                "munmap of the gadget",
                format!("signal {sig}, result {}", rc as i64),
            ));
        }
        Ok(())
    }

    /// Sets the task's final registers and XSAVE area and leaves it in a
    /// PTRACE_EVENT_STOP, the stop every restored task is handed over in.
    /// The task is in a signal-delivery-stop (the gadget's SIGTRAP or the
    /// SIGSEGV of [`Vessel::unmap_gadget`]); PTRACE_INTERRUPT makes a trap
    /// pending and PTRACE_CONT with signal 0 discards the signal, so the
    /// kernel's get_signal() loop reports the trap before the task runs a
    /// single user instruction (kernel/signal.c, do_jobctl_trap). Leaving
    /// that stop, the task finishes get_signal(), so an interrupted syscall
    /// (orig_rax >= 0, rax -ERESTART*, thread.rs `resume_regs`) is restarted
    /// or fails with EINTR by the kernel's own rule.
    /// `mask` is the blocked set it ends with, set by PTRACE_SETSIGMASK so
    /// that signals the restore queued stay pending until it is released.
    pub fn park(&self, regs: &Regs, xstate: &[u8], mask: u64) -> Result<()> {
        sys::set_regs(self.pid, regs)?;
        crate::sys::set_xstate(self.pid, xstate)?;
        crate::sys::set_sigmask(self.pid, mask)?;
        sys::interrupt(self.pid)?;
        sys::cont(self.pid, 0)?;
        let status = sys::wait_tid(self.pid)?;
        match sys::decode_status(status) {
            WaitEvent::EventStop(_) => Ok(()),
            other => Err(failed(
                self.pid,
                "the final stop",
                format!("unexpected stop {other:?}"),
            )),
        }
    }
}
