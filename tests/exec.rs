//! execve(2) in its awkward forms: from a non-leader thread, after vfork,
//! through posix_spawn, and failing.

mod common;

use common::{guest, Case};

/// A non-leader thread execs: the kernel gives the exec'ing thread the
/// leader's pid and destroys the other threads (execve(2), "All threads
/// other than the calling thread are destroyed"). The supervisor sees the
/// tid vanish and must follow the new image.
#[test]
fn execve_from_non_leader_thread() {
    let (_, traced) = Case::new(guest("thread_exec")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "thread tid differs from pid: 1\nnew image: pid preserved=1 leader=1\n"
    );
}

#[test]
fn vfork_exec_and_posix_spawn() {
    let (_, traced) = Case::new(guest("vfork_spawn")).check();
    let out = traced.stdout_str();
    assert!(out.contains("vfork+exec echo: exited 0\n"), "{out}");
    assert!(out.contains("vfork-19\n"), "{out}");
    assert!(out.contains("vfork+_exit: exited 5\n"), "{out}");
    assert!(out.contains("spawned\nposix_spawn sh: exited 3\n"), "{out}");
    assert!(out.contains("posix_spawn missing: error 2\n"), "{out}");
    assert!(out.contains("posix_spawnp true: exited 0\n"), "{out}");
}

/// A failed execve returns to the caller with the kernel's errno, and the
/// process carries on.
#[test]
fn execve_errors_reach_the_tracee() {
    let (_, traced) = Case::new(guest("exec_errors")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "execve(/nonexistent/isotrace-missing) = -1 errno=ENOENT\n\
         execve(./noexec.txt) = -1 errno=EACCES\n\
         execve(/) = -1 errno=EACCES\n\
         execve(/etc/hostname/x) = -1 errno=ENOTDIR\n\
         still running\n"
    );
}

/// The same from a shell: the exit status 127 and message come from the
/// shell's own failed execve.
#[test]
fn shell_exec_of_missing_file() {
    let (_, traced) = Case::sh("/nonexistent/isotrace-missing; echo status=$?").check();
    traced.assert_exit(0);
    assert_eq!(traced.stdout_str(), "status=127\n");
}

/// The program sees exactly the environment and arguments it was given.
#[test]
fn environment_and_argv_unchanged() {
    let (_, traced) = Case::new("/usr/bin/env")
        .env("ISOTRACE_TEST_VAR", "with spaces and = signs")
        .env("EMPTY", "")
        .check();
    traced.assert_exit(0);
    assert!(traced
        .stdout_str()
        .contains("ISOTRACE_TEST_VAR=with spaces and = signs\n"));

    let (_, traced) = Case::new("/usr/bin/printf")
        .args(["[%s]\\n", "", "a b", "--", "-x", "\u{e9}\u{1f600}"])
        .check();
    assert_eq!(
        traced.stdout_str(),
        "[]\n[a b]\n[--]\n[-x]\n[\u{e9}\u{1f600}]\n"
    );
}

/// No fds leak from the supervisor, and umask, rlimits, nice, scheduling
/// policy and personality are what the program would get natively. (Both
/// runs may also show fds the test harness itself inherited, e.g. cargo's
/// jobserver pipe; the point is that isotrace adds none.)
#[test]
fn inherited_process_state_unchanged() {
    let (_, traced) = Case::new(guest("procstate")).check();
    traced.assert_exit(0);
    assert!(
        traced
            .stdout_str()
            .starts_with("fd 0: /dev/null\nfd 1: pipe:\nfd 2: pipe:\n"),
        "{}",
        traced.describe()
    );
}

/// A large argv (well past a page of pointers and strings) survives both
/// isotrace's own command line and the execve it follows.
#[test]
fn large_argv() {
    let args: Vec<String> = (0..20_000).map(|i| format!("argument-{i}")).collect();
    let (_, traced) = Case::sh("echo $#; echo \"$1\" \"${20000}\"; printf '%s\\n' \"$@\" | cksum")
        .arg("sh")
        .args(&args)
        .check();
    traced.assert_exit(0);
    assert!(traced
        .stdout_str()
        .starts_with("20000\nargument-0 argument-19999\n"));
}
