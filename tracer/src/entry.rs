//! The syscall a tracee is stopped in at a seccomp stop, read and changed
//! with as few ptrace requests as the verdict needs.
//!
//! Most stops need only the number and the six arguments: a call let
//! through, a path argument pointed at the scratch region. Those come from
//! PTRACE_GET_SYSCALL_INFO, about half the cost of PTRACE_GETREGS on this
//! VM (0.55 against 1.0 us, pinned); the whole register set is read only
//! when something needs it (an injection, a kernel without the request).
//! Changes go back the cheapest way: one PTRACE_POKEUSER (0.5 us) for one
//! register, PTRACE_SET_SYSCALL_INFO (Linux 6.16, 0.53 us) for the number
//! and arguments together, where a PTRACE_SETREGS (1.2 us) would need a
//! PTRACE_GETREGS first.

use crate::error::Result;
use crate::sys::{self, Tid};
use isotrace_arch::native::{Regs, ARG_WORDS, NR_WORD, RET_WORD};
use isotrace_arch::RegAccess;

pub struct Entry {
    tid: Tid,
    nr: u64,
    args: [u64; 6],
    /// The whole register set, once read.
    regs: Option<Regs>,
}

impl Entry {
    /// Reads the syscall of `tid`, which is in a seccomp stop.
    pub fn read(tid: Tid) -> Result<Entry> {
        if let Some((nr, args)) = sys::seccomp_call(tid)? {
            return Ok(Entry {
                tid,
                nr,
                args,
                regs: None,
            });
        }
        let regs = sys::get_regs(tid)?;
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = regs.arg(i);
        }
        Ok(Entry {
            tid,
            nr: regs.syscall_nr(),
            args,
            regs: Some(regs),
        })
    }

    pub fn nr(&self) -> u64 {
        self.nr
    }

    pub fn args(&self) -> [u64; 6] {
        self.args
    }

    /// The whole register set (read once, then kept).
    pub fn regs(&mut self) -> Result<Regs> {
        if let Some(r) = self.regs {
            return Ok(r);
        }
        let r = sys::get_regs(self.tid)?;
        self.regs = Some(r);
        Ok(r)
    }

    /// Makes the syscall `nr(args)`, writing only what differs.
    pub fn set_call(&mut self, nr: u64, args: [u64; 6]) -> Result<()> {
        let mut words = (0..6)
            .filter(|&i| args[i] != self.args[i])
            .map(|i| (ARG_WORDS[i], args[i]))
            .chain((nr != self.nr).then_some((NR_WORD, nr)));
        match (words.next(), words.next()) {
            (None, _) => {}
            (Some((w, v)), None) => sys::poke_reg(self.tid, w, v)?,
            _ => {
                if !sys::set_seccomp_call(self.tid, nr, &args)? {
                    let mut regs = self.regs()?;
                    regs.set_syscall_nr(nr);
                    for (i, &a) in args.iter().enumerate() {
                        regs.set_arg(i, a);
                    }
                    sys::set_regs(self.tid, &regs)?;
                }
            }
        }
        self.nr = nr;
        self.args = args;
        if let Some(regs) = self.regs.as_mut() {
            regs.set_syscall_nr(nr);
            for (i, &a) in args.iter().enumerate() {
                regs.set_arg(i, a);
            }
        }
        Ok(())
    }

    /// Skips the syscall: it returns `ret` without running. seccomp(2):
    /// "The tracer can skip the system call by changing the system call
    /// number to -1 ... the system call will appear to return the value
    /// that the tracer puts in the return value register." Two POKEUSERs,
    /// as PTRACE_SETREGS would store the same two words.
    pub fn skip(&mut self, ret: i64) -> Result<()> {
        sys::poke_reg(self.tid, NR_WORD, u64::MAX)?;
        sys::poke_reg(self.tid, RET_WORD, ret as u64)?;
        self.nr = u64::MAX;
        if let Some(regs) = self.regs.as_mut() {
            regs.set_syscall_nr(u64::MAX);
            regs.set_ret(ret);
        }
        Ok(())
    }
}
