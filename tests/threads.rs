//! Many threads and many processes: the supervisor must follow every
//! clone, exit and exit_group without losing or hanging on any of them.

mod common;

use common::{guest, Case, Mode};

#[test]
fn many_threads_doing_syscalls() {
    let (_, traced) = Case::new(guest("many_threads")).arg("256").check();
    traced.assert_exit(0);
    let out = traced.stdout_str();
    assert!(out.starts_with("threads=256 failed=0 total="), "{out}");
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        fields[2].trim_start_matches("total="),
        fields[3].trim_start_matches("expected="),
        "{out}"
    );
}

#[test]
fn many_short_lived_processes() {
    let (_, traced) = Case::new(guest("many_procs")).arg("500").check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "processes=500 bad=0 sum=6125 expected=6125\n"
    );
}

/// exit_group(2) while 64 threads sit in read, nanosleep and pause: every
/// thread dies, the status is the exit_group code, and the supervisor does
/// not wait for threads that will never report.
#[test]
fn exit_group_with_blocked_threads() {
    let (_, traced) = Case::new(guest("exit_group_blocked")).check();
    traced.assert_exit(5);
    assert_eq!(traced.stdout_str(), "all 64 threads started\n");
}

/// The supervisor waits for every traced process, like strace -f: a
/// background grandchild that outlives the first process (and does not hold
/// isotrace's stdout open) still finishes before isotrace exits. Natively
/// the shell would not wait, so this is not differential.
#[test]
fn waits_for_orphaned_descendants() {
    let traced = Case::sh(
        "(sleep 0.5; echo orphan done > orphan.txt) </dev/null >/dev/null 2>&1 & echo leader done",
    )
    .run(Mode::Traced);
    traced.assert_exit(0);
    assert_eq!(traced.stdout_str(), "leader done\n");
    let orphan = std::fs::read_to_string(traced.dir.join("orphan.txt"));
    assert_eq!(
        orphan.as_deref().ok(),
        Some("orphan done\n"),
        "isotrace exited before its traced grandchild finished"
    );
}
