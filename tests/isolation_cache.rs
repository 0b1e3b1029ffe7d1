//! Issue #3, the supervisor's shortcuts must never show a stale answer:
//! - directories made in the env are "complete" in the lookup cache (a name
//!   missing there is asked of the host only): names made, renamed and
//!   removed by one process are seen by the next, and the host still shows
//!   through, live, while the program runs;
//! - fd and cwd links are read through per-thread /proc handles and
//!   per-number link handles: a reused fd number, dup2, dup3, a sibling
//!   thread's swap, chdir, a rename by another process, a thread with its
//!   own fd table, fork and exec all give what they give natively;
//! - a scratch slot is not rewritten when it already holds the bytes.

mod common;

use common::{guest, host_snapshot, wait_until, write_file, Iso, Run};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One process makes, renames and removes names in directories the env
/// made; each check runs in another process (a fresh exec, its own lookups
/// through the supervisor's one cache).
#[test]
fn names_made_renamed_and_removed_are_seen_by_the_next_process() {
    let iso = Iso::new();
    write_file(&iso.host(), "w/host.txt", "host\n");
    let host = host_snapshot(&iso.host());
    let w = iso.hp("w");
    let script = format!(
        "set -e\n\
         mkdir {w}/a; mkdir {w}/a/b; echo 1 > {w}/a/b/f; cat {w}/a/b/f\n\
         mv {w}/a {w}/c; test ! -e {w}/a; test ! -e {w}/a/b/f; cat {w}/c/b/f\n\
         mkdir {w}/a; test ! -e {w}/a/b; ls -A {w}/a | wc -l\n\
         echo 2 > {w}/a/g; mv {w}/a/g {w}/c/b/f; cat {w}/c/b/f; test ! -e {w}/a/g\n\
         rm {w}/c/b/f; test ! -e {w}/c/b/f; ls -A {w}/c/b | wc -l\n\
         mkdir {w}/c/b/f; test -d {w}/c/b/f; rmdir {w}/c/b/f; test ! -e {w}/c/b/f\n\
         mv {w}/host.txt {w}/a/h; cat {w}/a/h; test ! -e {w}/host.txt\n\
         mkdir {w}/n; mv {w}/c {w}/n/c; cat {w}/n/c/b/../../../a/h\n\
         ln -s ../a/h {w}/n/l; cat {w}/n/l; ls {w}/n\n"
    );
    let run = iso.sh_ok("e", &script);
    assert_eq!(run.stdout_str(), "1\n1\n0\n2\n0\nhost\nhost\nhost\nc\nl\n");
    // A later group in the env starts with an empty cache: same view.
    let again = iso.sh_ok(
        "e",
        &format!("cat {w}/a/h {w}/n/l; ls {w}/n/c/b | wc -l; test ! -e {w}/host.txt"),
    );
    assert_eq!(again.stdout_str(), "host\nhost\n0\n");
    host.assert_unchanged();
}

/// A directory made in the env is complete in the cache, but what the host
/// puts at the same public path while the program runs shows through at
/// once, as on an overlay mount.
#[test]
fn the_host_shows_through_a_directory_made_in_the_env_live() {
    let iso = Iso::new();
    fs::create_dir(iso.host().join("w")).unwrap();
    let w = iso.hp("w");
    // Under the /dev exception, so that both sides see the flags.
    let token = common::unique_token("isocache");
    let ready = PathBuf::from(format!("/dev/shm/{token}.ready"));
    let go = PathBuf::from(format!("/dev/shm/{token}.go"));
    iso.litter(&ready);
    iso.litter(&go);
    let script = format!(
        "set -e\n\
         mkdir {w}/d; echo mine > {w}/d/own; test ! -e {w}/d/later\n\
         touch {ready}\n\
         i=0; while [ ! -e {go} ]; do sleep 0.05; i=$((i+1)); [ $i -lt 2400 ]; done\n\
         cat {w}/d/later; cat {w}/d/own; ls {w}/d\n",
        ready = ready.display(),
        go = go.display()
    );
    let child = {
        let mut cmd = iso.command(["--env", "e", "--", "/bin/sh", "-c", &script]);
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    wait_until(
        "the program to make its directory",
        Duration::from_secs(60),
        || ready.exists(),
    );
    // The host gets the same directory, and a file the env never had.
    write_file(&iso.host(), "w/d/later", "from the host\n");
    fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = fs::remove_file(&ready);
    let _ = fs::remove_file(&go);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from the host\nmine\nlater\nown\n"
    );
    assert!(!iso.host().join("w/d/own").exists());
}

fn letters_tree(root: &std::path::Path) {
    for d in ["A", "B", "C"] {
        write_file(root, &format!("{d}/f"), d);
    }
}

const FDREUSE_OUT: &str = "first A\nreuse B\ndup2 C\nchdir-A A\nchdir-B B\nfchdir C\n\
thread A\nunshared-thread B\nunshared-thread-cwd A\nunshared-main A\nunshared-main-cwd C\n\
fork-child C\nfork-parent A\nexec-kept A\nexec-reused B\n";

/// fd numbers reused after close, dup2, chdir/fchdir, a CLONE_FILES thread,
/// a thread with an fd table and cwd of its own, fork and exec: every
/// relative open starts where it natively would, over host directories
/// and over directories that exist only in the env.
#[test]
fn fd_and_cwd_links_follow_every_change_of_the_table() {
    let iso = Iso::new();
    letters_tree(&iso.host().join("h"));
    let g = guest("iso_fdreuse");
    let native = iso.native_sh(&format!("{} {}", g.display(), iso.hp("h")));
    assert_eq!(native.stdout_str(), FDREUSE_OUT, "{}", native.describe());
    let host = host_snapshot(&iso.host());
    let traced = iso.sh_ok("e", &format!("{} {}", g.display(), iso.hp("h")));
    assert_eq!(traced.stdout_str(), FDREUSE_OUT);
    // The same over directories the env made: every openat is rewritten
    // into the private layer from the fd's public name.
    let traced = in_env_made_letters(&iso, &g);
    assert_eq!(traced.stdout_str(), FDREUSE_OUT);
    assert!(!iso.host().join("p").exists());
    host.assert_unchanged();
}

/// The same path over and over (the scratch slot keeps its bytes), then
/// others, then the first again: each call gets its own path.
#[test]
fn repeated_and_alternating_paths_each_reach_their_own_file() {
    let iso = Iso::new();
    letters_tree(&iso.host());
    let (a, b) = (iso.hp("A/f"), iso.hp("B/f"));
    let script = format!(
        "for i in 1 2 3; do cat {a}; done; cat {b} {a} {b}; echo; \
         python3 -c 'import os\nfor p in [\"{a}\"] * 50 + [\"{b}\"] + [\"{a}\"]: print(open(p).read(), end=\"\")'"
    );
    let run = iso.sh_ok("e", &script);
    let mut want = String::from("AAABAB\n");
    want.push_str(&"A".repeat(50));
    want.push_str("BA");
    assert_eq!(run.stdout_str(), want);
}

/// A tracee that discards the scratch region's pages with process_madvise
/// (any advice on its own mm, Linux 6.13+): the next calls over the same
/// path are rewritten again, not left pointing at zeroed memory.
#[test]
fn discarded_scratch_pages_are_written_again() {
    let iso = Iso::new();
    write_file(&iso.host(), "f", "x");
    let g = guest("iso_pmadvise");
    let run = iso.sh_ok("e", &format!("{} {}", g.display(), iso.hp("f")));
    let out = run.stdout_str();
    assert!(out.ends_with("ok 10/10\n"), "{}", run.describe());
    assert!(
        out.starts_with("discarded yes\n") || out.starts_with("discarded no\n"),
        "{out}"
    );
}

const FDLINKS_OUT: &str = "first A\ndup3 C\nsibling-before A\nsibling B\ncycle Y\n\
renamed-before A\nrenamed A\nrenamed-fresh N\ncwd-before A\ncwd-moved A\n\
closed-before A\nclosed ERR\nclosed-reopened C\n";

/// The link handles kept per fd number (procdirs.rs) read the fd table and
/// the cwd live: dup3, a sibling thread that swaps the number, 200
/// close/reopen rounds at one number, a directory renamed by another
/// process while open (and while the cwd), and a closed number all give
/// what they give natively, over directories the env made. (Over host
/// directories the rename steps differ: an fd open on a host directory the
/// env then renames keeps the host object, whose link still reads the old
/// public name, which the env has given to the new directory.)
#[test]
fn fd_link_handles_read_the_table_live() {
    let iso = Iso::new();
    letters_tree(&iso.host().join("h"));
    let g = guest("iso_fdlinks");
    let native_root = iso.host().join("native");
    letters_tree(&native_root);
    let native = iso.native_sh(&format!("{} {}", g.display(), native_root.display()));
    assert_eq!(native.stdout_str(), FDLINKS_OUT, "{}", native.describe());
    fs::remove_dir_all(&native_root).unwrap();
    let host = host_snapshot(&iso.host());
    let traced = in_env_made_letters(&iso, &g);
    assert_eq!(traced.stdout_str(), FDLINKS_OUT);
    assert!(!iso.host().join("p").exists());
    host.assert_unchanged();
}

/// Runs guest `g` in env "e" over /p, whose directories A, B and C (each
/// with a file `f` holding its letter) the env made itself.
fn in_env_made_letters(iso: &Iso, g: &Path) -> Run {
    let p = iso.hp("p");
    iso.sh_ok(
        "e",
        &format!(
            "for d in A B C; do mkdir -p {p}/$d && printf $d > {p}/$d/f; done && {} {p}",
            g.display()
        ),
    )
}
