//! The namespace gate: keeps a path the policy resolved from changing
//! under the kernel's own lookup.
//!
//! The policy resolves a path, the mechanism rewrites it, the tracee
//! resumes and the kernel walks the rewritten path some microseconds later.
//! If another thread turned a directory on that path into a symlink in
//! between (rename it away, then symlink or rename a symlink into its
//! place), the kernel would follow the symlink, for example out of the
//! environment's private layer onto the host. Opens are immune
//! (RESOLVE_NO_SYMLINKS), but a chmod, unlink or mkdir is not, and neither
//! is the supervisor's own copy-up done for them.
//!
//! Every symlink-planting call (the policy names them [`Gate::Exclusive`]:
//! rename, link, symlink) runs alone: it is admitted only when no other
//! namespace-changing call (the policy's [`Gate::Shared`] calls) is in
//! flight, and it holds the gate until its syscall-exit stop. Shared calls
//! need no exit stop: a thread's next ptrace-stop of any kind proves its
//! previous syscall has finished its lookup, and a thread that does not
//! stop soon on its own is PTRACE_INTERRUPTed once an exclusive call
//! waits. A call that cannot be admitted stays in its seccomp stop
//! ("parked") and is handled again, from the start, once the gate opens;
//! so the policy resolves its path only after any rename it raced with
//! has completed.
//!
//! The gate is per supervisor: two groups sharing one environment are not
//! serialized against each other.

use crate::sys::Tid;
use std::collections::HashSet;

/// How a trapped syscall takes part in the gate (the policy's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Changes no name another call's rewrite depends on.
    Free,
    /// Creates, removes or changes an object at a resolved path.
    Shared,
    /// Can put a symlink where a directory was (rename, link, symlink).
    Exclusive,
}

/// The wait status of a seccomp stop (ptrace(2): status>>8 ==
/// (SIGTRAP | (PTRACE_EVENT_SECCOMP<<8))), for re-queueing a parked task.
pub const SECCOMP_STOP_STATUS: i32 =
    0x7f | (libc::SIGTRAP << 8) | (libc::PTRACE_EVENT_SECCOMP << 16);

#[derive(Default)]
pub struct NamespaceGate {
    /// Threads whose shared call may still be walking its path.
    shared: HashSet<Tid>,
    /// The thread whose exclusive call is in flight.
    exclusive: Option<Tid>,
    /// Threads held in their seccomp stop, in arrival order.
    parked: Vec<Tid>,
    /// Whether an exclusive call is among the parked: shared calls then
    /// wait too, so that a stream of them cannot starve it.
    exclusive_waiting: bool,
    /// Threads already PTRACE_INTERRUPTed for the waiting exclusive call.
    interrupted: HashSet<Tid>,
}

/// What the supervisor must do after [`NamespaceGate::admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go on handling the call; `exit_stop`: resume it with PTRACE_SYSCALL.
    Go { exit_stop: bool },
    /// Leave it in its seccomp stop; interrupt these threads (a shared
    /// call of theirs may still be in flight).
    Park { interrupt: Vec<Tid> },
}

impl NamespaceGate {
    pub fn admit(&mut self, tid: Tid, gate: Gate) -> Admission {
        match gate {
            Gate::Free => Admission::Go { exit_stop: false },
            // The holder issues its call again after an injected syscall
            // (the scratch mapping): it still holds the gate.
            Gate::Exclusive if self.exclusive == Some(tid) => Admission::Go { exit_stop: true },
            Gate::Shared if self.exclusive.is_none() && !self.exclusive_waiting => {
                self.shared.insert(tid);
                Admission::Go { exit_stop: false }
            }
            Gate::Exclusive if self.exclusive.is_none() && self.shared.is_empty() => {
                self.exclusive = Some(tid);
                Admission::Go { exit_stop: true }
            }
            Gate::Shared => self.park(tid, Vec::new()),
            Gate::Exclusive => {
                self.exclusive_waiting = true;
                let interrupt: Vec<Tid> = self
                    .shared
                    .iter()
                    .filter(|t| self.interrupted.insert(**t))
                    .copied()
                    .collect();
                self.park(tid, interrupt)
            }
        }
    }

    fn park(&mut self, tid: Tid, interrupt: Vec<Tid>) -> Admission {
        if !self.parked.contains(&tid) {
            self.parked.push(tid);
        }
        Admission::Park { interrupt }
    }

    /// `tid` stopped (any ptrace-stop) or is gone. Returns the parked
    /// threads to handle again when this opened the gate.
    pub fn stopped(&mut self, tid: Tid) -> Vec<Tid> {
        if self.shared.is_empty() {
            // The hot path: no stop of a gate-free run pays a hash.
            return Vec::new();
        }
        let mut opened = false;
        if self.shared.remove(&tid) {
            self.interrupted.remove(&tid);
            opened = self.shared.is_empty();
        }
        // An exclusive call is not ended by a stop of any kind: only by its
        // exit stop or its thread's end ([`Self::exclusive_done`]).
        if opened {
            self.unpark()
        } else {
            Vec::new()
        }
    }

    /// The exclusive call of `tid` finished (its exit stop) or its thread
    /// is gone.
    pub fn exclusive_done(&mut self, tid: Tid) -> Vec<Tid> {
        if self.exclusive == Some(tid) {
            self.exclusive = None;
            return self.unpark();
        }
        Vec::new()
    }

    /// A thread that ended: whatever it held or waited for is dropped.
    pub fn gone(&mut self, tid: Tid) -> Vec<Tid> {
        self.parked.retain(|&t| t != tid);
        let mut again = self.exclusive_done(tid);
        again.extend(self.stopped(tid));
        again
    }

    /// Every parked thread, to be handled again in arrival order (those
    /// still not admissible park again, keeping their order).
    fn unpark(&mut self) -> Vec<Tid> {
        self.exclusive_waiting = false;
        std::mem::take(&mut self.parked)
    }

    /// Parked threads, for the freeze barrier (they are in a seccomp stop).
    pub fn take_parked(&mut self) -> Vec<Tid> {
        self.unpark()
    }

    pub fn is_exclusive(&self, tid: Tid) -> bool {
        self.exclusive == Some(tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_calls_run_together_and_exclusive_waits_for_them() {
        let mut g = NamespaceGate::default();
        assert_eq!(g.admit(1, Gate::Shared), Admission::Go { exit_stop: false });
        assert_eq!(g.admit(2, Gate::Shared), Admission::Go { exit_stop: false });
        let Admission::Park { mut interrupt } = g.admit(3, Gate::Exclusive) else {
            panic!("exclusive admitted with shared calls in flight");
        };
        interrupt.sort();
        assert_eq!(interrupt, vec![1, 2]);
        // While it waits, new shared calls wait too (no starvation).
        assert!(matches!(g.admit(4, Gate::Shared), Admission::Park { .. }));
        assert!(g.stopped(1).is_empty());
        assert_eq!(g.stopped(2), vec![3, 4]);
        // Handled again in order: 3 goes, 4 waits for 3's exit.
        assert_eq!(
            g.admit(3, Gate::Exclusive),
            Admission::Go { exit_stop: true }
        );
        assert!(matches!(g.admit(4, Gate::Shared), Admission::Park { .. }));
        assert!(g.stopped(3).is_empty(), "only its exit stop ends it");
        assert_eq!(g.exclusive_done(3), vec![4]);
        assert_eq!(g.admit(4, Gate::Shared), Admission::Go { exit_stop: false });
    }

    #[test]
    fn free_calls_never_wait_and_gone_threads_release() {
        let mut g = NamespaceGate::default();
        assert_eq!(
            g.admit(1, Gate::Exclusive),
            Admission::Go { exit_stop: true }
        );
        assert_eq!(g.admit(2, Gate::Free), Admission::Go { exit_stop: false });
        assert!(matches!(
            g.admit(5, Gate::Exclusive),
            Admission::Park { .. }
        ));
        assert!(matches!(g.admit(6, Gate::Shared), Admission::Park { .. }));
        assert_eq!(g.gone(6), Vec::<Tid>::new());
        assert_eq!(g.gone(1), vec![5]);
        assert!(
            g.is_exclusive(5) || g.admit(5, Gate::Exclusive) == Admission::Go { exit_stop: true }
        );
    }

    #[test]
    fn the_holder_reissuing_its_call_is_not_parked() {
        let mut g = NamespaceGate::default();
        assert_eq!(
            g.admit(1, Gate::Exclusive),
            Admission::Go { exit_stop: true }
        );
        assert!(g.stopped(1).is_empty());
        assert_eq!(
            g.admit(1, Gate::Exclusive),
            Admission::Go { exit_stop: true }
        );
        assert!(g.exclusive_done(1).is_empty());
    }

    #[test]
    fn interrupts_are_asked_once_per_thread() {
        let mut g = NamespaceGate::default();
        g.admit(1, Gate::Shared);
        let Admission::Park { interrupt } = g.admit(2, Gate::Exclusive) else {
            panic!()
        };
        assert_eq!(interrupt, vec![1]);
        let Admission::Park { interrupt } = g.admit(3, Gate::Exclusive) else {
            panic!()
        };
        assert!(interrupt.is_empty());
    }
}
