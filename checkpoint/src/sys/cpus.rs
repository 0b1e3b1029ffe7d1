//! Which CPUs the image's helper threads run on.
//!
//! A supervisor settles on one CPU (tracer/src/placement.rs: a ptrace
//! stop costs several times more when the tracee's wake-up crosses CPUs),
//! and a thread inherits its creator's affinity (sched_setaffinity(2),
//! "A child created via fork(2) inherits its parent's CPU affinity mask";
//! clone(2) threads alike). So the write thread of a dump and the
//! read-ahead thread of a restore, spawned by the supervisor, shared its
//! one CPU with the thread they were meant to work beside: measured on a
//! 1 GiB dump into tmpfs, the dump took as long as both threads' CPU time
//! added up (0.59 s of CPU, 0.59 s of wall time). Such a thread moves
//! itself back to the CPUs the process started with, and their work
//! overlaps (0.37 s).
//!
//! The process's starting CPUs are remembered by [`remember`], which the
//! binary calls before any supervisor settles; a process that never calls
//! it (a test calling the library) leaves its helper threads where they
//! are. nix's affinity calls are safe wrappers: no `unsafe` here.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::sync::OnceLock;

/// The calling process's CPU mask when [`remember`] ran.
static START: OnceLock<CpuSet> = OnceLock::new();

/// Remembers the CPUs this process may run on now: call it at the start
/// of `main`, before a supervisor pins itself.
pub fn remember() {
    if let Ok(set) = sched_getaffinity(Pid::from_raw(0)) {
        let _ = START.set(set);
    }
}

/// Moves the calling thread (a helper that works beside the thread that
/// spawned it) back onto the CPUs the process started with, when it
/// inherited fewer. All of them, the supervisor's included: where another
/// program keeps the other CPU busy, the helper can still run while the
/// supervisor waits for it (measured: confined to the other CPU, a 1 GiB
/// dump into tmpfs once took twice as long as with both threads on one).
/// Advisory: where the kernel refuses (a cpuset that shrank since), the
/// thread stays where it is, which is slower but correct.
pub fn spread() {
    let Some(start) = START.get() else { return };
    if sched_getaffinity(Pid::from_raw(0)).is_ok_and(|now| now != *start) {
        let _ = sched_setaffinity(Pid::from_raw(0), start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper spawned by a thread held on one CPU gets the start set
    /// back.
    #[test]
    fn helper_runs_on_the_start_cpus() {
        remember();
        let start = *START.get().expect("remembered");
        let first = (0..CpuSet::count())
            .find(|&c| start.is_set(c).unwrap_or(false))
            .expect("some CPU");
        let helper = std::thread::spawn(move || {
            let mut one = CpuSet::new();
            one.set(first).unwrap();
            sched_setaffinity(Pid::from_raw(0), &one).unwrap();
            std::thread::spawn(|| {
                spread();
                sched_getaffinity(Pid::from_raw(0)).unwrap()
            })
            .join()
            .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(helper, start);
    }
}
