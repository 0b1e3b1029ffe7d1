//! `isotrace restore` of images taken with `isotrace snapshot` from native
//! processes: the restored program carries on where the image left it
//! (same file offset, heap, globals, brk growth), a damaged image restores
//! nothing, and what is not supported yet is refused clearly.

mod common;

use common::{guest, guest_static, isotrace_raw, path_str, wait_for_pid, wait_until, Run, Status};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A process SIGKILLed (and reaped if it is our child) on drop.
struct Running {
    pid: i32,
    child: Option<Child>,
    /// A restored process (not our child) is killed through a pidfd: its
    /// pid may be reused once it dies.
    guard: Option<common::PidGuard>,
}

impl Running {
    /// A restored process, not a child of this test.
    fn restored(pid: i32) -> Running {
        Running {
            pid,
            child: None,
            guard: Some(common::PidGuard::of(pid)),
        }
    }

    fn kill(&mut self) {
        if let Some(g) = &mut self.guard {
            g.kill();
        }
        if let Some(mut c) = self.child.take() {
            // Not reaped yet, so the pid is still this child's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn alive(&self) -> bool {
        !matches!(common::proc_state(self.pid), None | Some('Z') | Some('X'))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts rst_counter writing to DIR/out, and waits until it has counted
/// a little.
fn start_counter(exe: &Path, dir: &Path, extra: &[&str]) -> Running {
    start_program(&mut Command::new(exe), dir, extra)
}

/// Starts a program that takes rst_counter's arguments and protocol.
fn start_program(cmd: &mut Command, dir: &Path, extra: &[&str]) -> Running {
    let child = cmd
        .arg(dir.join("out"))
        .arg(dir.join("pid"))
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn rst_counter");
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    wait_until("3 lines of output", WAIT, || counted(dir) >= 3);
    Running {
        pid,
        child: Some(child),
        guard: None,
    }
}

/// Checks that DIR/out is exactly "ok 1" .. "ok N" and returns N.
fn counted(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("out")).unwrap_or_default();
    let mut n = 0;
    for line in text.lines() {
        n += 1;
        assert_eq!(
            line,
            format!("ok {n}"),
            "line {n} of the counter's output:\n{text}"
        );
    }
    n
}

fn snapshot(pid: i32, img: &Path, dir: &Path) {
    let run = isotrace_raw(["snapshot", &pid.to_string(), "-o", path_str(img)], dir);
    run.assert_exit(0);
}

fn restore(img: &Path, dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", path_str(img)];
    args.extend_from_slice(extra);
    isotrace_raw(args, dir)
}

/// The new pid from "restored pid OLD from IMG as pid NEW".
fn restored_pid(run: &Run) -> i32 {
    let err = run.stderr_str();
    let pid = err
        .lines()
        .find_map(|l| l.split(" as pid ").nth(1))
        .and_then(|p| p.split_whitespace().next()?.parse().ok());
    pid.unwrap_or_else(|| panic!("no restored pid in:\n{err}"))
}

/// Snapshot, kill the original, restore detached: the counter goes on
/// from where the image left it (nothing reset, no line lost or doubled)
/// with its heap, big malloc block and global intact.
fn continues_counting(exe: PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut original = start_counter(&exe, dir, &[]);
    let restored = restore_in_place(&mut original, dir);
    let comm = fs::read_to_string(format!("/proc/{}/comm", restored.pid)).unwrap();
    let name = exe.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(comm.trim()), "comm {comm:?}");
    let cmdline = fs::read(format!("/proc/{}/cmdline", restored.pid)).unwrap();
    assert!(cmdline.starts_with(exe.as_os_str().as_encoded_bytes()));
}

/// Snapshots `original`, kills it, restores it detached, and waits until
/// the restored copy has counted 5 more lines with every check passing.
fn restore_in_place(original: &mut Running, dir: &Path) -> Running {
    let img = dir.join("img");
    snapshot(original.pid, &img, dir);
    original.kill();
    let before = counted(dir);
    let run = restore(&img, dir, &["--detach"]);
    run.assert_exit(0);
    let restored = Running::restored(restored_pid(&run));
    assert_ne!(restored.pid, original.pid);
    wait_until("the restored counter to pass the original", WAIT, || {
        counted(dir) >= before + 5
    });
    assert!(restored.alive());
    restored
}

#[test]
fn dynamic_counter_continues_after_restore() {
    continues_counting(guest("rst_counter"));
}

#[test]
fn static_counter_continues_after_restore() {
    continues_counting(guest_static("rst_counter"));
}

/// python3 (interpreter, dynamic libraries, its own heap arenas and
/// buffered file object) carries on too.
#[test]
fn python_counter_continues_after_restore() {
    let Some((tmp, mut original)) = start_python(PY_COUNTER) else {
        return;
    };
    let dir = tmp.path();
    restore_in_place(&mut original, dir);
}

/// Starts python3 running `program` (rst_counter's arguments and
/// protocol) in a new temporary directory; None, said on stderr, when
/// python3 is not installed.
fn start_python(program: &str) -> Option<(tempfile::TempDir, Running)> {
    if !common::have_program("python3") {
        eprintln!("python3 is not installed: skipping");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("count.py");
    fs::write(&script, program).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    let running = start_program(&mut cmd, tmp.path(), &[]);
    Some((tmp, running))
}

/// rst_counter's protocol in Python: "ok N" lines checked against a
/// digest of data built at start.
const PY_COUNTER: &str = r#"
import hashlib, os, sys, time
data = [bytes([i % 256]) * 1000 for i in range(2000)]
digest = hashlib.sha256(b"".join(data)).hexdigest()
out = open(sys.argv[1], "w")
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
n = 0
while True:
    n += 1
    ok = hashlib.sha256(b"".join(data)).hexdigest() == digest
    out.write(("ok %d\n" if ok else "BAD %d\n") % n)
    out.flush()
    time.sleep(0.1)
"#;

/// Without --detach, restore waits and exits with the program's status.
#[test]
fn restore_waits_for_the_program_without_detach() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let img = dir.join("img");
    let mut original = start_counter(&guest("rst_counter"), dir, &["25"]);
    snapshot(original.pid, &img, dir);
    original.kill();
    let run = restore(&img, dir, &[]);
    assert_eq!(run.status, Status::Exited(7), "{}", run.stderr_str());
    assert_eq!(counted(dir), 25);
}

/// A flipped byte in the pages section: the checksum names the section,
/// and no process is started.
#[test]
fn corrupt_image_restores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let img = dir.join("img");
    let mut original = start_counter(&guest("rst_counter"), dir, &[]);
    snapshot(original.pid, &img, dir);
    original.kill();
    let pages = fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .expect("a pages section");
    let mut bytes = fs::read(&pages).unwrap();
    bytes[4096] ^= 0x40;
    fs::write(&pages, bytes).unwrap();
    let before = counted(dir);
    let run = restore(&img, dir, &["--detach"]);
    run.assert_exit(1);
    let err = run.stderr_str();
    let name = pages.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&format!("image section {name} is corrupt"))
            && err.contains("nothing was restored"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counted(dir), before, "something ran after a failed restore");
}

/// A failure after the vessel exists (the open file is gone) names the fd
/// and path, and kills the half-built process.
#[test]
fn missing_file_fails_after_start_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let img = dir.join("img");
    let mut original = start_counter(&guest("rst_counter"), dir, &[]);
    snapshot(original.pid, &img, dir);
    original.kill();
    let before = counted(dir);
    fs::rename(dir.join("out"), dir.join("out.moved")).unwrap();
    let run = restore(&img, dir, &["--detach"]);
    run.assert_exit(1);
    let err = run.stderr_str();
    let want = format!("cannot reopen fd 3 ({})", path_str(&dir.join("out")));
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("nothing was restored"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !dir.join("out").exists(),
        "something ran after a failed restore"
    );
    let out = dir.join("out.moved");
    assert_eq!(
        fs::read_to_string(out).unwrap().lines().count() as u64,
        before
    );
}

/// A snapshot of a process whose three threads are blocked in read(2):
/// the restored copy (threads recreated by injected clone3s) wakes them,
/// joins them and prints their sum, as the original would have.
#[test]
fn snapshot_of_blocked_threads_restores_and_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let img = dir.join("img");
    let stdout = fs::File::create(dir.join("stdout")).unwrap();
    let child = Command::new(guest("snap_threads"))
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let mut original = Running {
        pid,
        child: Some(child),
        guard: None,
    };
    snapshot(pid, &img, dir);
    original.kill();
    fs::write(dir.join("go"), "").unwrap();
    let run = restore(&img, dir, &[]);
    run.assert_exit(0);
    let out = fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(
        out.starts_with("sum 6\n") && out.ends_with("done\n"),
        "{out}"
    );
}

#[test]
fn missing_image_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("nope");
    let run = restore(&img, tmp.path(), &[]);
    run.assert_exit(1);
    assert!(
        run.stderr_str().contains("not an isotrace image"),
        "{}",
        run.stderr_str()
    );
}

/// A process stopped by job control (SIGSTOP) when it was snapshotted is
/// stopped again after the restore, before it runs any code, and goes on
/// counting from where it was when it gets SIGCONT.
#[test]
fn a_stopped_process_is_restored_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let img = dir.join("img");
    let mut original = start_counter(&guest("rst_counter"), dir, &[]);
    // SAFETY: kill(2) of a process this test started.
    unsafe { libc::kill(original.pid, libc::SIGSTOP) };
    wait_until("the original to stop", WAIT, || {
        common::proc_state(original.pid) == Some('T')
    });
    snapshot(original.pid, &img, dir);
    original.kill();
    let before = counted(dir);
    let run = restore(&img, dir, &["--detach"]);
    run.assert_exit(0);
    let restored = Running::restored(restored_pid(&run));
    wait_until("the restored process to be stopped", WAIT, || {
        common::proc_state(restored.pid) == Some('T')
    });
    assert_eq!(counted(dir), before, "it ran before stopping");
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(restored.pid, libc::SIGCONT) };
    wait_until("the restored counter to go on", WAIT, || {
        counted(dir) >= before + 3
    });
}

/// A snapshot keeps the target's signal handlers (read in its
/// copy-on-write child): python3's SIGUSR1 handler, sent to the restored
/// copy, runs and writes its line, where a default action would kill it.
#[test]
fn snapshot_restore_keeps_signal_handlers() {
    let handler = "import signal\n\
        def on_usr1(sig, frame):\n    out.write('usr1 %d\\n' % n)\n    out.flush()\n\
        signal.signal(signal.SIGUSR1, on_usr1)\n";
    let program = PY_COUNTER.replace("n = 0\n", &format!("n = 0\n{handler}"));
    let Some((tmp, mut original)) = start_python(&program) else {
        return;
    };
    let dir = tmp.path();
    let img = dir.join("img");
    snapshot(original.pid, &img, dir);
    assert!(img.join("signals.bin").exists(), "no handlers in the image");
    original.kill();
    let run = restore(&img, dir, &["--detach"]);
    run.assert_exit(0);
    assert!(
        !run.stderr_str().contains("not restored"),
        "{}",
        run.describe()
    );
    let restored = Running::restored(restored_pid(&run));
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(restored.pid, libc::SIGUSR1) };
    let out = dir.join("out");
    wait_until("the handler's line", WAIT, || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("usr1 ")
    });
    let before = fs::read_to_string(&out).unwrap().lines().count();
    wait_until("counting on after the handler", WAIT, || {
        fs::read_to_string(&out).unwrap().lines().count() > before + 2
    });
    assert!(restored.alive());
}
