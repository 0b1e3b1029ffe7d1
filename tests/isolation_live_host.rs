//! Issue #3: "reads fall through to the host unless the path exists in the
//! private layer", live. A name the host makes while a program runs in an
//! environment is seen by that program's next call, wherever it is: in a
//! host directory the environment copied up and had looked the name up in
//! (found missing) and listed, under a directory the host makes whole, in
//! a directory the environment made before the host made the same one,
//! and in an `env copy` of the environment.
//!
//! An overlay mount is no oracle here: overlayfs leaves changes to its
//! lower layer while mounted undefined, and on this kernel a name looked
//! up missing stays missing (a negative dentry) and a directory created in
//! upper before the lower one existed shows none of the lower's entries
//! until its dentry is evicted (README, "Isolation"). isotrace keeps no
//! answer "missing" and merges such a directory at once (it is not
//! opaque), as the overlay does once its dentries are dropped.

mod common;

use common::{unique_token, wait_until, write_file, Iso, Status};
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Runs `before` in env `env`, then `host_step` natively while the program
/// waits, then `after` in the same program (one supervisor, one cache).
/// Returns the program's stdout; panics if it failed.
fn with_host_step(
    iso: &Iso,
    env: &str,
    before: &str,
    host_step: impl FnOnce(),
    after: &str,
) -> String {
    // Under the /dev exception, so that both sides see the flags.
    let token = unique_token("livehost");
    let ready = PathBuf::from(format!("/dev/shm/{token}.ready"));
    let go = PathBuf::from(format!("/dev/shm/{token}.go"));
    iso.litter(&ready);
    iso.litter(&go);
    let script = format!(
        "set -e\n{before}\ntouch {ready}\n\
         i=0; while [ ! -e {go} ]; do sleep 0.05; i=$((i+1)); [ $i -lt 2400 ]; done\n\
         {after}\n",
        ready = ready.display(),
        go = go.display()
    );
    let mut cmd = iso.command(["--env", env, "--", "/bin/sh", "-c", &script]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_until("the program to look first", Duration::from_secs(60), || {
        ready.exists()
    });
    host_step();
    fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = fs::remove_file(&ready);
    let _ = fs::remove_file(&go);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names looked up missing, in directories of every kind, then made by
/// the host while the program runs: the program's next calls find them.
#[test]
fn names_the_host_makes_are_seen_at_once_wherever_they_were_missing() {
    let iso = Iso::new();
    write_file(&iso.host(), "w/h/one", "one\n");
    let w = iso.hp("w");
    // h: a host directory the env copies up (its own file goes in), whose
    // "gate" it looks for and whose entries it lists; n: a directory the
    // host does not have yet; m: a directory the env makes (complete in
    // the lookup cache), which the host then makes too.
    let before = format!(
        "echo mine > {w}/h/out; test ! -e {w}/h/gate; ls {w}/h\n\
         test ! -e {w}/n/f; test ! -e {w}/n\n\
         mkdir {w}/m; echo mine > {w}/m/own; test ! -e {w}/m/gate"
    );
    let host = iso.host();
    let step = || {
        write_file(&host, "w/h/gate", "h\n");
        write_file(&host, "w/n/f", "n\n");
        write_file(&host, "w/m/gate", "m\n");
    };
    let after = format!("cat {w}/h/gate {w}/n/f {w}/m/gate; ls {w}/h {w}/m");
    let out = with_host_step(&iso, "e", &before, step, &after);
    assert_eq!(
        out,
        format!("one\nout\nh\nn\nm\n{w}/h:\ngate\none\nout\n\n{w}/m:\ngate\nown\n")
    );
    assert!(!iso.host().join("w/h/out").exists());
    assert!(!iso.host().join("w/m/own").exists());
}

/// The same in an `env copy` of the environment (its layer's files are
/// links to the source's), for a name the running copy looked for.
#[test]
fn an_env_copy_sees_the_host_live_too() {
    let iso = Iso::new();
    write_file(&iso.host(), "w/h/one", "one\n");
    let w = iso.hp("w");
    iso.sh_ok("e", &format!("echo mine > {w}/h/out; mkdir {w}/m"));
    let copy = iso.isotrace(["env", "copy", "e", "c"]);
    assert_eq!(copy.status, Status::Exited(0), "{}", copy.describe());
    let before = format!("cat {w}/h/out; test ! -e {w}/h/gate; test ! -e {w}/m/gate");
    let host = iso.host();
    let step = || {
        write_file(&host, "w/h/gate", "h\n");
        write_file(&host, "w/m/gate", "m\n");
    };
    let after = format!("cat {w}/h/gate {w}/m/gate; ls {w}/h");
    let out = with_host_step(&iso, "c", &before, step, &after);
    assert_eq!(out, "mine\nh\nm\ngate\none\nout\n");
    assert!(!iso.host().join("w/h/out").exists());
}
