//! `--trace` and `--trace-file`: one strace-style line per trapped syscall,
//! and the traced program's own output unchanged.

mod common;

use common::{isotrace_raw, Case, Mode};

/// The line for cat opening /etc/hostname, e.g.
/// `[pid 42] openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3`.
fn is_hostname_open(line: &str) -> bool {
    line.starts_with("[pid ")
        && line.contains("] openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY")
        && line.trim_end().ends_with(") = 3")
}

#[test]
fn trace_to_stderr() {
    let native = Case::new("/bin/cat").arg("/etc/hostname").run(Mode::Native);
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(
        [
            "--no-isolation",
            "--trace",
            "--",
            "/bin/cat",
            "/etc/hostname",
        ],
        dir.path(),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout, native.stdout,
        "program output changed by --trace"
    );
    let err = run.stderr_str();
    assert!(
        err.lines().any(is_hostname_open),
        "no openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY...) = 3 line\n{}",
        run.describe()
    );
    let pid_lines = err.lines().filter(|l| l.starts_with("[pid ")).count();
    assert_eq!(
        pid_lines,
        err.lines().count(),
        "every --trace line should start with [pid N]\n{}",
        run.describe()
    );
}

#[test]
fn trace_file_leaves_stderr_clean() {
    let native = Case::new("/bin/cat").arg("/etc/hostname").run(Mode::Native);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.log");
    let run = isotrace_raw(
        [
            "--no-isolation",
            "--trace-file",
            file.to_str().unwrap(),
            "--",
            "/bin/cat",
            "/etc/hostname",
        ],
        dir.path(),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout, native.stdout,
        "program output changed by --trace-file"
    );
    assert_eq!(run.stderr_str(), "", "--trace-file must leave stderr alone");
    let log = std::fs::read_to_string(&file).expect("trace file written");
    assert!(
        log.lines().any(is_hostname_open),
        "no openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY...) = 3 line in the trace file:\n{log}"
    );
}

/// The pid in a trace line is the thread that made the call: a child's
/// calls carry the child's pid.
#[test]
fn trace_follows_children() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(
        [
            "--no-isolation",
            "--trace",
            "--",
            "/bin/sh",
            "-c",
            "/bin/cat /etc/hostname; echo $$",
        ],
        dir.path(),
    );
    run.assert_exit(0);
    let out = run.stdout_str();
    let sh_pid = out.lines().last().expect("pid line").trim().to_owned();
    let err = run.stderr_str();
    let cat_line = err
        .lines()
        .find(|l| is_hostname_open(l))
        .unwrap_or_else(|| panic!("no hostname openat line\n{}", run.describe()));
    assert!(
        !cat_line.starts_with(&format!("[pid {sh_pid}]")),
        "cat runs in a child of sh, so its line must not carry sh's pid {sh_pid}: {cat_line}"
    );
}

/// Guards the differential tests against a supervisor that silently stops
/// tracing: a grandchild of CMD reports isotrace as its tracer, and its
/// seccomp filter is in force (Seccomp: 2, filter mode).
#[test]
fn descendants_are_really_traced() {
    use std::sync::{Arc, Mutex};
    let supervisor = Arc::new(Mutex::new(0u32));
    let seen = supervisor.clone();
    let traced = Case::sh("sh -c 'grep -E \"^(TracerPid|Seccomp):\" /proc/self/status'")
        .during(move |_, pid| *seen.lock().unwrap() = pid)
        .run(Mode::Traced);
    traced.assert_exit(0);
    let pid = *supervisor.lock().unwrap();
    let out = traced.stdout_str();
    assert!(
        out.contains(&format!("TracerPid:\t{pid}\n")),
        "grandchild should be traced by isotrace (pid {pid})\n{}",
        traced.describe()
    );
    assert!(out.contains("Seccomp:\t2\n"), "{}", traced.describe());
}
