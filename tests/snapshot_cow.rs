//! The copy-on-write snapshot (#7): memory comes from a forked copy of
//! the target, so the target is held only for the fork and its registers.
//! Checked against a guest that knows its own memory (a byte pattern per
//! page, MADV_DONTFORK and MADV_WIPEONFORK regions): the image holds the
//! pattern, marks what fork cannot see, records the pause, and the target
//! is left with no extra child, no tracer, and its memory intact.

mod common;
mod snapshot_support;

use common::{guest, wait_for_file, wait_for_pid, Status};
use isotrace_checkpoint::model::VmaMemory;
use isotrace_checkpoint::Image;
use snapshot_support::{
    children_of, hex_field, path, record, run_isotrace, snapshot_by, tracer_of, Target, WAIT,
};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 48;

/// `isotrace snapshot --method fork`: the method this file is about.
fn snapshot(pid: i32, img: &Path, cwd: &Path) -> snapshot_support::Run {
    snapshot_by(pid, img, cwd, "fork")
}

/// The addresses snap_rss wrote to DIR/regions.
fn regions(dir: &Path) -> (u64, u64) {
    let text = wait_for_file(&dir.join("regions"), WAIT);
    (hex_field(&text, "dontfork"), hex_field(&text, "wipeonfork"))
}

/// The target's own verdict: DIR/exit makes it check its memory and exit.
fn finish(target: Target, dir: &Path) {
    std::fs::write(dir.join("exit"), "").unwrap();
    let (status, _) = target.finish();
    assert_eq!(status, Status::Exited(0), "the target's memory changed");
}

/// Every page of the pattern region holds its number, as the guest wrote.
fn assert_pattern(image: &Image, pid: i32) {
    let proc = image.process(pid).unwrap();
    let heap = proc
        .vmas
        .iter()
        .filter(|v| v.path.is_empty() && v.writable())
        .max_by_key(|v| v.len())
        .expect("the pattern's mapping");
    assert!(heap.len() >= MIB << 20, "{heap:?}");
    // malloc's chunk header puts the pattern at 16 bytes past each page
    // start of the mapping (glibc's mmap'd chunks: 16-byte header).
    let pages = image
        .read_memory(pid, heap.start, heap.len())
        .expect("read the pattern");
    let mut checked = 0;
    for (i, (_, data)) in pages.iter().enumerate().take((MIB << 8) as usize) {
        let data = data
            .as_ref()
            .unwrap_or_else(|| panic!("page {i} not captured"));
        assert_eq!(data[16], (i & 0xff) as u8, "page {i}");
        checked += 1;
    }
    assert_eq!(checked, MIB << 8);
}

#[test]
fn memory_comes_from_the_copy_and_the_pause_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = Target::spawn(
        Command::new(guest("snap_rss"))
            .arg(dir)
            .arg(MIB.to_string()),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let (dontfork, wipe) = regions(dir);
    let img = dir.join("img");
    let run = snapshot(pid, &img, dir);
    run.assert_exit(0);
    assert!(
        run.stderr_str().contains(" ms (fork "),
        "the pause is printed: {}",
        run.describe()
    );

    let image = Image::open(&img).unwrap();
    assert_eq!(image.manifest.memory_method, "cow-fork");
    assert_pattern(&image, pid);
    // glibc registers rseq and a robust list in every thread: read while
    // the threads were held, as a checkpoint does.
    let extras = isotrace_checkpoint::dump::thread_extra::read(&image).unwrap();
    let threads: Vec<(i32, &str)> = image
        .process(pid)
        .unwrap()
        .threads
        .iter()
        .map(|t| (t.tid, t.stop.as_str()))
        .collect();
    assert_eq!(extras.len(), 2, "{extras:?} of {threads:?}");
    assert!(extras.values().all(|e| e.robust.is_some()), "{extras:?}");
    let proc = image.process(pid).unwrap();
    let reason = |start: u64| match &proc.vmas.iter().find(|v| v.start == start).unwrap().memory {
        VmaMemory::Skipped { reason } => reason.clone(),
        other => panic!("{start:#x} should be skipped: {other:?}"),
    };
    assert!(reason(dontfork).contains("MADV_DONTFORK"));
    assert!(reason(wipe).contains("MADV_WIPEONFORK"));

    // The record, through inspect --json.
    let r = &record(&img, dir);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{v} in {r}"));
    let phases = &r["phases_us"];
    let steps: Vec<u64> = ["freeze", "capture", "fork", "stopped_dump", "release"]
        .iter()
        .map(|k| n(&phases[k]))
        .collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{r}");
    assert!(n(&phases["freeze"]) > 0, "{r}");
    assert_eq!(n(&r["pause_us"]), n(&phases["release"]), "{r}");
    assert!(n(&r["pause_us"]) < n(&r["total_us"]), "{r}");
    assert!(n(&r["reap_pause_us"]) > 0, "{r}");
    let p = &r["processes"][0];
    assert_eq!(p["memory_method"], "cow-fork", "{r}");
    assert_ne!(n(&p["cow_child"]) as i32, pid);

    // Left as it was: no child, not even a zombie (the children lists
    // show zombies until they are reaped), and no tracer.
    assert!(children_of(pid).is_empty(), "{:?}", children_of(pid));
    assert_eq!(tracer_of(pid), 0);
    let human = run_isotrace(&["inspect", path(&img)], dir);
    assert!(human.assert_exit(0).stdout_str().contains("  paused "));
    finish(target, dir);
}

/// A seccomp filter might forbid or kill clone(2): such a process is
/// dumped while stopped instead, and the image says why.
#[test]
fn a_seccomp_filtered_target_is_dumped_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = Target::spawn(
        Command::new(guest("snap_rss"))
            .arg(dir)
            .arg(MIB.to_string())
            .arg("seccomp"),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let img = dir.join("img");
    let run = snapshot(pid, &img, dir);
    run.assert_exit(0);
    assert!(
        run.stderr_str().contains("dumped while stopped") && run.stderr_str().contains("seccomp"),
        "{}",
        run.describe()
    );
    let image = Image::open(&img).unwrap();
    assert_eq!(image.manifest.memory_method, "stopped");
    assert_pattern(&image, pid);
    let p = &record(&img, dir)["processes"][0];
    assert_eq!(p["memory_method"], "stopped", "{p}");
    assert!(
        p["why_stopped"].as_str().unwrap().contains("seccomp"),
        "{p}"
    );
    assert!(children_of(pid).is_empty());
    finish(target, dir);
}

/// A target in its own pid namespace (a container's init): the copy's pid
/// differs between our namespace (for ptrace) and the target's (for the
/// wait4 that reaps it there); a mix-up would leave a zombie behind.
#[test]
fn a_target_in_a_pid_namespace() {
    if !common::is_root() || !common::have_program("unshare") {
        eprintln!("needs root and unshare(1) (util-linux): skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let unshare = Target::spawn(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(guest("snap_rss"))
            .arg(dir)
            .arg("8"),
    );
    assert_eq!(
        wait_for_pid(&dir.join("pid"), WAIT),
        1,
        "init of its namespace"
    );
    let pid = children_of(unshare.pid())[0];
    let run = snapshot(pid, &dir.join("img"), dir);
    run.assert_exit(0);
    let image = Image::open(&dir.join("img")).unwrap();
    assert_eq!(image.manifest.memory_method, "cow-fork");
    assert!(children_of(pid).is_empty(), "{:?}", children_of(pid));
    std::fs::write(dir.join("exit"), "").unwrap();
    let (status, _) = unshare.finish();
    assert_eq!(status, Status::Exited(0));
}

/// An ordinary user (not root, no capabilities) snapshots a process of
/// their own the same way: the injected clone, the reading of the child
/// and the reap need nothing but ptrace rights over it. `--method auto`
/// (the default) comes here: userfaultfd(2) for kernel-mode faults is
/// refused to the target with vm.unprivileged_userfaultfd=0.
#[test]
fn an_ordinary_user_snapshots_their_own_process() {
    if !common::is_root() {
        eprintln!("needs root to become nobody with setpriv(1): skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::chmod(dir, 0o777);
    let as_nobody = common::setpriv_prefix();
    let target = Target::spawn(
        Command::new(&as_nobody[0])
            .args(&as_nobody[1..])
            .arg(guest("snap_rss"))
            .arg(dir)
            .arg("8"),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let img = dir.join("img");
    let mut cmd = Command::new(&as_nobody[0]);
    cmd.args(&as_nobody[1..]).arg(common::isotrace()).args([
        "snapshot",
        &pid.to_string(),
        "-o",
        path(&img),
    ]);
    let (status, _, err) = common::execute(&mut cmd, None, WAIT, None);
    assert_eq!(
        status,
        Status::Exited(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let image = Image::open(&img).unwrap();
    let allowed = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .is_ok_and(|v| v.trim() == "1");
    let method = if allowed { "uffd-wp" } else { "cow-fork" };
    assert_eq!(image.manifest.memory_method, method);
    assert_eq!(image.process(pid).unwrap().creds.uid[0], common::NOBODY);
    assert!(children_of(pid).is_empty(), "{:?}", children_of(pid));
    finish(target, dir);
}
