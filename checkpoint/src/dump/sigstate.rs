//! State only a task itself can read, in its own section (`signals.bin`,
//! IMAGE.md): the signal handlers of each process (rt_sigaction(2) with a
//! null new action), and each thread's alternate signal stack
//! (sigaltstack(2)) and clear_child_tid (prctl(2) PR_GET_TID_ADDRESS,
//! which needs CONFIG_CHECKPOINT_RESTORE). /proc shows only which signals
//! are caught, not where their handlers are.
//!
//! The calls run in the stopped threads themselves, lent to us one at a
//! time (`lend.rs`): only a thread in an interrupt stop of the freeze, not
//! one stopped at a syscall's entry, whose stop must be kept as it is. A
//! snapshot reads the handlers in its copy-on-write child instead
//! ([`handlers_in_child`]), after the target is released.

use super::lend::Lent;
use super::Frozen;
use crate::error::{Error, Result};
use crate::image::ImageWriter;
use crate::model::{ProcessTree, Vma};
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

const SS_DISABLE: i32 = 2;
const PR_GET_TID_ADDRESS: u64 = 40;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The handlers of every caught signal (`caught`, /proc's SigCgt).
pub(crate) fn handlers(lent: &mut Lent, caught: u64) -> Result<BTreeMap<i32, Handler>> {
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
            if !t.lendable() {
                continue;
            }
            let Some(gadget) = super::cow::find_gadget(p.pid, t.tid, &p.vmas as &[Vma]) else {
                break;
            };
            let Ok(mut lent) = Lent::new(t.pid, t.tid, gadget) else {
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

/// The handlers of a process's caught signals (`caught`, its SigCgt),
/// read in `child`: its stopped copy-on-write child, which fork(2) gave a
/// copy of every sigaction (a snapshot reads them there once the target
/// runs again, so they cost the target no pause). The child's thread is
/// not given back: the child is killed next.
pub(crate) fn handlers_in_child(
    child: i32,
    vmas: &[Vma],
    caught: u64,
) -> Result<BTreeMap<i32, Handler>> {
    let gadget = super::cow::find_gadget(child, child, vmas).ok_or_else(|| Error::Invalid {
        what: format!(
            "copy-on-write child {child}: no `syscall` instruction to read handlers with"
        ),
    })?;
    // Syscall stops must say so (SIGTRAP|0x80, which PTRACE_GET_SYSCALL_INFO
    // goes by): the child was left with PTRACE_O_EXITKILL alone.
    let options = libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD;
    isotrace_tracer::sys::set_options(child, options).map_err(crate::error::died(child))?;
    let mut lent = Lent::new(child, child, gadget)?;
    handlers(&mut lent, caught)
}

/// Captures the state into the image being written.
pub fn write(frozen: &Frozen, tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let state = capture(frozen, tree)?;
    writer.write_optional(SECTION, &state)
}

/// The state of an image (empty without the section).
pub fn read(image: &Image) -> Result<SigState> {
    image.optional(SECTION)
}
