//! A tracee faulting in its own memory, for an argument (a path, a struct)
//! the supervisor cannot read yet.
//!
//! A page that the program's own userfaultfd holds missing cannot be read
//! from here: /proc/PID/mem fails it (handle_userfault() answers a fault
//! without FAULT_FLAG_ALLOW_RETRY with SIGBUS), and process_vm_readv would
//! wait for the program's handler thread, which may itself be waiting in a
//! stop for this supervisor (a deadlock of the group, remote.rs). Natively
//! the kernel copies the path in the caller's own context: the fault is
//! raised there, the handler fills the page, the call goes on.
//!
//! So the call is set aside and the tracee is made to read that page itself,
//! with a syscall that copies 8 bytes from user memory and has no other
//! effect: rt_sigprocmask(INVALID_HOW, addr, NULL, 8) copies the set in,
//! then fails with EINVAL on `how` (kernel/signal.c). The event loop keeps
//! serving every other thread meanwhile, the handler's calls included. At
//! that syscall's exit stop the original registers go back with rip
//! rewound over the `syscall` instruction (inject.rs), so the tracee issues
//! its own call again, which traps again and now reads. A page that stays
//! unreadable (no mapping, a file page past EOF, a userfaultfd registered
//! UFFD_USER_MODE_ONLY, or a signal that ended the wait) is tried
//! [`MAX_PROBES`] times; then the call gets the EFAULT the kernel would
//! give.

use crate::entry::Entry;
use crate::error::Result;
use crate::supervisor::Supervisor;
use crate::sys::{self, Tid};
use isotrace_arch::native::Regs;

/// Probes of one call before the EFAULT of its argument's read stands.
pub const MAX_PROBES: u8 = 3;

/// A `how` that rt_sigprocmask refuses after copying the set in.
const INVALID_HOW: u64 = 0x7fff_ffff;
/// The kernel's sizeof(sigset_t), which rt_sigprocmask checks first: 64
/// signals, one bit each.
const SIGSET_SIZE: u64 = 8;

/// Sets `tid`'s call aside and makes it read 8 bytes at `addr` (8-aligned,
/// so they stay in one page); the event loop sees the exit stop later and
/// calls [`finish`].
pub(crate) fn start(sup: &mut Supervisor<'_>, tid: Tid, mut entry: Entry, addr: u64) -> Result<()> {
    let saved = entry.regs()?;
    let nr = isotrace_arch::by_name("rt_sigprocmask")
        .expect("rt_sigprocmask in table")
        .nr as u64;
    let task = sup.tasks.get_mut(&tid).expect("known task");
    task.probes += 1;
    task.probe = Some(saved);
    sup.stats.probes += 1;
    crate::inject::begin(tid, &saved, nr, [INVALID_HOW, addr, 0, SIGSET_SIZE, 0, 0])
}

/// At the probe's exit stop: the tracee's own call, registers `saved`,
/// is issued again.
pub(crate) fn finish(tid: Tid, saved: &Regs) -> Result<()> {
    crate::inject::rewind(tid, saved)?;
    sys::cont(tid, 0)
}
