//! What the snapshot test files share: a natively running target killed
//! with its process group on drop, `isotrace snapshot`, and gdb in batch
//! mode. Used as `mod snapshot_support;` next to `mod common;`.
#![allow(dead_code)] // each test file uses its own part

pub use crate::common::Run;
use crate::common::{self, have_program, isotrace_raw, Status};
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// A natively running target, SIGKILLed with its process group on drop.
pub struct Target {
    pub child: Child,
}

impl Target {
    pub fn spawn(cmd: &mut Command) -> Target {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Target { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for exit (bounded) and returns the status and stdout.
    pub fn finish(mut self) -> (Status, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waitpid") {
                break s;
            }
            assert!(Instant::now() < deadline, "target did not finish");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => Status::Exited(c),
            (None, Some(s)) => Status::Signaled(s),
            _ => unreachable!(),
        };
        (status, out)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The group this test created (process_group(0)).
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub fn run_isotrace(args: &[&str], cwd: &Path) -> Run {
    isotrace_raw(args, cwd)
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

pub fn snapshot(pid: i32, img: &Path, cwd: &Path) -> Run {
    run_isotrace(&["snapshot", &pid.to_string(), "-o", path(img)], cwd)
}

/// `isotrace snapshot PID -o IMG --method METHOD`.
pub fn snapshot_by(pid: i32, img: &Path, cwd: &Path, method: &str) -> Run {
    let pid = pid.to_string();
    run_isotrace(
        &["snapshot", &pid, "-o", path(img), "--method", method],
        cwd,
    )
}

/// The same, running: for a test that acts on the target (or on
/// isotrace) while the snapshot is taken.
pub fn spawn_snapshot(pid: i32, img: &Path, method: &str, stderr: Stdio) -> Child {
    Command::new(common::isotrace())
        .args([
            "snapshot",
            &pid.to_string(),
            "-o",
            path(img),
            "--method",
            method,
        ])
        .stderr(stderr)
        .spawn()
        .expect("spawn isotrace snapshot")
}

/// The image's snapshot record (snapshot.json), through `inspect --json`.
pub fn record(img: &Path, cwd: &Path) -> serde_json::Value {
    let json = run_isotrace(&["inspect", path(img), "--json"], cwd);
    let doc: serde_json::Value =
        serde_json::from_str(&json.assert_exit(0).stdout_str()).expect("inspect --json");
    doc["image"]["snapshot"].clone()
}

/// The hex value of `key=0x...` in a guest's `key=value` text.
pub fn hex_field(text: &str, key: &str) -> u64 {
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key}= in {text:?}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

/// `TracerPid` of /proc/PID/status.
pub fn tracer_of(pid: i32) -> i32 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// The pids of `pid`'s children (every thread's), from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let task = task.unwrap().path();
        let text = fs::read_to_string(task.join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    out
}

/// gdb's output for `cmds` on PROG + CORE, or None (with a note) when gdb
/// is not installed.
pub fn gdb(prog: &Path, core: &Path, cmds: &[&str]) -> Option<String> {
    if !have_program("gdb") {
        eprintln!("gdb is not installed: skipping the gdb checks (apt-get install gdb)");
        return None;
    }
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch"]);
    for c in cmds {
        cmd.args(["-ex", c]);
    }
    cmd.arg(prog).arg(core);
    let (status, out, err) = common::execute(&mut cmd, None, Duration::from_secs(120), None);
    assert_eq!(
        status,
        Status::Exited(0),
        "gdb failed: {}",
        String::from_utf8_lossy(&err)
    );
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    ))
}

/// gdb output of `thread apply all ...` split per thread: LWP → the lines
/// printed under its "Thread N (... (LWP TID))" header.
pub fn per_thread(out: &str) -> std::collections::BTreeMap<i32, String> {
    let mut map = std::collections::BTreeMap::<i32, String>::new();
    let mut current = None;
    for line in out.lines() {
        if line.starts_with("Thread ") {
            current = line
                .split("(LWP ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|t| t.trim().parse::<i32>().ok());
            continue;
        }
        if let Some(tid) = current {
            let text = map.entry(tid).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    map
}
