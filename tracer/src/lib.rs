//! The ptrace + seccomp mechanism of isotrace.
//!
//! The tracer starts a program under a seccomp filter derived from the
//! syscall table (`filter`), stops it at every trapped syscall, decodes the
//! call into a typed [`Call`], asks a [`Policy`] for a [`Verdict`] and
//! carries it out: continue, rewrite arguments (paths go into a scratch
//! region tracee threads cannot touch), emulate, or deny. It never decides
//! anything itself beyond protecting its own invariants (`guard`).
//!
//! `unsafe` lives in `sys.rs`, `spawn.rs`, `jobctl.rs` and `placement.rs` only (and in the
//! kernel test of `filter.rs`).

mod apply;
pub mod attach;
mod entry;
pub mod error;
pub mod filter;
pub mod format;
pub mod freeze;
pub mod gate;
mod guard;
mod inject;
mod jobctl;
mod listings;
mod placement;
pub mod policy;
mod probe;
pub mod remote;
pub mod scratch;
pub mod spawn;
pub mod supervisor;
pub mod sys;
mod task;

pub use error::{Error, Result};
pub use freeze::{AfterFreeze, Barrier, BarrierJob, FrozenTask, StopKind, Waker};
pub use jobctl::notify_on_signal;
pub use policy::{
    Action, ArgvItem, Call, Event, ExitAction, ExitKind, MemWrite, PathArg, Policy, SpawnKind,
    TraceeView, Verdict, SYSCALL_NR,
};
pub use spawn::{ChildFailure, ReadOnlyHost, SpawnSpec};
pub use supervisor::{Adopted, Outcome, Stats, Supervisor};
