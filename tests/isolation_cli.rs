//! Issue #3, the run modes of CLI.md: `--env NAME`, `--rm`, the default env
//! named after the command, bad env names, exit status and the one-line
//! summary at exit.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{assert_absent_on_host, change_summary, host_snapshot, Iso, Status};

/// The names under `$ISOTRACE_HOME/envs` (empty if it does not exist yet).
fn env_names(iso: &Iso) -> BTreeSet<String> {
    fs::read_dir(iso.home().join("envs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn env_names_with_slash_or_dotdot_are_refused() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    for bad in ["../x", "a/b", "..", ".", "/abs", "x/../y", ""] {
        let run = iso.isotrace(["--env", bad, "--", "/bin/sh", "-c", "echo ran > escaped"]);
        assert_eq!(
            run.status,
            Status::Exited(125),
            "--env {bad:?} must be refused\n{}",
            run.describe()
        );
        assert!(run.stdout.is_empty(), "{}", run.describe());
        let err = run.stderr_str();
        assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
        if !bad.is_empty() {
            assert!(
                err.contains(bad),
                "the message should name the bad env name {bad:?}: {err:?}"
            );
        }
    }
    assert_absent_on_host(iso.host().join("escaped"));
    // Nothing was created for them, inside or outside the store.
    assert!(env_names(&iso).is_empty(), "{:?}", env_names(&iso));
    for stray in ["x", "envs/a", "abs", "y"] {
        assert_absent_on_host(iso.home().join(stray));
    }
    assert_absent_on_host("/abs/upper");
    host.assert_unchanged();
}

#[test]
fn rm_leaves_no_env_behind() {
    let iso = Iso::new();
    iso.sh_ok("keep", "true");
    let before = env_names(&iso);
    let host = host_snapshot(&iso.host());
    let out = iso.hp("rm-out");
    let run = iso.isotrace([
        "--rm",
        "--",
        "/bin/sh",
        "-c",
        &format!("echo hi > {out} && cat {out}"),
    ]);
    run.assert_exit(0);
    assert_eq!(run.stdout_str(), "hi\n");
    assert_eq!(env_names(&iso), before, "--rm left an env behind");
    assert_absent_on_host(&out);
    // Nothing of it shows up in another env either.
    let keep = iso.sh("keep", &format!("cat {out}"));
    assert_ne!(keep.status, Status::Exited(0), "{}", keep.describe());
    host.assert_unchanged();
}

#[test]
fn default_env_is_named_after_the_command() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    let out = iso.hp("default-out");
    let run = iso.isotrace(["--", "/bin/sh", "-c", &format!("echo x > {out}")]);
    run.assert_exit(0);
    assert_eq!(
        env_names(&iso),
        BTreeSet::from(["sh".to_owned()]),
        "{}",
        run.describe()
    );
    assert!(
        iso.upper("sh").join(out.trim_start_matches('/')).is_file(),
        "the file should be in env sh's private layer"
    );
    let again = iso.sh_ok("sh", &format!("cat {out}"));
    assert_eq!(again.stdout_str(), "x\n");
    // A command found through PATH is named by its file name too.
    let cat = iso.isotrace(["--", "cat", &out]);
    cat.assert_exit(1);
    assert!(env_names(&iso).contains("cat"), "{:?}", env_names(&iso));
    assert_absent_on_host(&out);
    host.assert_unchanged();
}

#[test]
fn exit_status_passes_through_in_env_mode() {
    let iso = Iso::new();
    for (script, code) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 42", 42),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
    ] {
        let run = iso.sh("e", script);
        assert_eq!(
            run.status,
            Status::Exited(code),
            "{script}\n{}",
            run.describe()
        );
    }
    let missing = iso.isotrace(["--env", "e", "--", "/nonexistent/isotest-cmd"]);
    assert_eq!(
        missing.status,
        Status::Exited(127),
        "{}",
        missing.describe()
    );
}

#[test]
fn summary_line_counts_changed_paths() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    let h = iso.hp("");
    let run = iso.sh_ok(
        "summ",
        &format!("cd {h} && echo 1 > a && echo 2 > b && mkdir c"),
    );
    assert_eq!(
        change_summary(&run.stderr),
        vec![(3, "summ".to_owned())],
        "expected one summary line for 3 changed paths in env summ\n{}",
        run.describe()
    );
    let line = run
        .stderr_str()
        .lines()
        .find(|l| l.contains("path(s) changed"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("isotrace env diff summ"),
        "the summary should say how to see the changes: {line:?}"
    );
    // A run that changes nothing prints no summary (or a zero count).
    let quiet = iso.sh_ok("summ", &format!("cat {h}/a {h}/b && ls {h}"));
    assert!(
        change_summary(&quiet.stderr).iter().all(|(n, _)| *n == 0),
        "{}",
        quiet.describe()
    );
    host.assert_unchanged();
}

/// Root's default store is /var/lib/isotrace, not under its 0700 HOME: a
/// program that drops privileges inside the environment (as apt's _apt
/// does) must reach the private layer, where the kernel creates its files
/// as that user. HOME here is a 0700 directory like /root; the run uses a
/// throwaway env, removed at exit.
#[test]
fn root_default_store_is_reachable_after_dropping_privileges() {
    if !common::is_root() || !common::have_program("setpriv") {
        eprintln!("needs root and setpriv: skipped");
        return;
    }
    let iso = Iso::new();
    let home = iso.root().join("roothome");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let file = format!("/tmp/isotrace-dropped-{}", std::process::id());
    let mut cmd = std::process::Command::new(common::isotrace());
    cmd.args(["--rm", "--"])
        .args(common::setpriv_prefix())
        .args([
            "/bin/sh",
            "-c",
            &format!("echo as-nobody > {file} && cat {file}"),
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", &home);
    let run = iso.execute(cmd);
    assert_eq!(run.status, Status::Exited(0), "{}", run.describe());
    assert_eq!(run.stdout_str(), "as-nobody\n");
    assert_absent_on_host(&file);
}
