//! isotrace's own errors: 125 for bad usage, 126 for a command that cannot
//! be executed, 127 for a command that does not exist, each explained on
//! stderr in a line starting with "isotrace: ".

mod common;

use common::{chmod, isotrace_raw, write_file, Run};

fn assert_one_line_error(run: &Run, code: i32, naming: &str) {
    run.assert_exit(code);
    let err = run.stderr_str();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected a one-line message on stderr\n{}",
        run.describe()
    );
    assert!(
        err.starts_with("isotrace: "),
        "stderr should start with \"isotrace: \"\n{}",
        run.describe()
    );
    assert!(
        err.contains(naming),
        "stderr should name {naming:?}\n{}",
        run.describe()
    );
    assert!(run.stdout.is_empty(), "{}", run.describe());
}

#[test]
fn missing_command_is_127() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(
        ["--no-isolation", "--", "/nonexistent/isotrace-no-such-cmd"],
        dir.path(),
    );
    assert_one_line_error(&run, 127, "/nonexistent/isotrace-no-such-cmd");
}

#[test]
fn command_not_on_path_is_127() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(["--no-isolation", "--", "isotrace-no-such-cmd"], dir.path());
    assert_one_line_error(&run, 127, "isotrace-no-such-cmd");
}

#[test]
fn non_executable_file_is_126() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "script.sh", "#!/bin/sh\necho should not run\n");
    let path = dir.path().join("script.sh");
    chmod(&path, 0o644);
    let run = isotrace_raw(["--no-isolation", "--", path.to_str().unwrap()], dir.path());
    assert_one_line_error(&run, 126, "script.sh");
}

#[test]
fn directory_as_command_is_126() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(["--no-isolation", "--", "/usr"], dir.path());
    assert_one_line_error(&run, 126, "/usr");
}

/// Unknown flags are bad usage: 125, not clap's default 2.
#[test]
fn unknown_flag_is_125() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(["--bogus-flag", "--", "/bin/true"], dir.path());
    run.assert_exit(125);
    let err = run.stderr_str();
    assert!(
        err.lines().next().unwrap_or("").starts_with("isotrace: "),
        "the first stderr line should start with \"isotrace: \"\n{}",
        run.describe()
    );
    assert!(err.contains("--bogus-flag"), "{}", run.describe());
}

#[test]
fn no_command_is_125() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--no-isolation"][..], &["--no-isolation", "--"][..]] {
        let run = isotrace_raw(args, dir.path());
        assert_eq!(
            run.status,
            common::Status::Exited(125),
            "isotrace {args:?}\n{}",
            run.describe()
        );
        assert!(
            run.stderr_str()
                .lines()
                .next()
                .unwrap_or("")
                .starts_with("isotrace: "),
            "isotrace {args:?}: the first stderr line should start with \"isotrace: \"\n{}",
            run.describe()
        );
    }
}

/// The program's own 126/127 pass through unchanged: isotrace only uses
/// these codes when it cannot start CMD itself.
#[test]
fn commands_own_127_is_not_an_isotrace_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = isotrace_raw(
        ["--no-isolation", "--", "/bin/sh", "-c", "exit 127"],
        dir.path(),
    );
    run.assert_exit(127);
    assert_eq!(run.stderr_str(), "", "{}", run.describe());
}
