//! Issue #2, `isotrace attach PID`: a program started natively is taken
//! over while it runs (threads blocked in nanosleep included): from then on
//! its syscalls are trapped (every thread runs under the seccomp filter),
//! it carries on without losing or repeating work, `attach` exits with its
//! status, and its group answers `ps` and `checkpoint`. Refusals name the
//! problem.

mod common;

use common::{guest, path_str, wait_until};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A native process SIGKILLed (and reaped) if the test ends first.
struct Native(Child);

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ticker(out: &Path, ticks: u32, threads: u32) -> Native {
    let child = Command::new(guest("attach_ticker"))
        .arg(out)
        .arg(ticks.to_string())
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn attach_ticker");
    Native(child)
}

/// Per thread, its ticks in order; panics unless each is 1, 2, ... N.
fn ticks(out: &Path) -> BTreeMap<u32, u32> {
    let text = fs::read_to_string(out).unwrap_or_default();
    let mut last: BTreeMap<u32, u32> = BTreeMap::new();
    for line in text.lines() {
        let (t, i) = line.split_once(' ').expect("T I");
        let (t, i): (u32, u32) = (t.parse().unwrap(), i.parse().unwrap());
        let prev = last.insert(t, i).unwrap_or(0);
        assert_eq!(
            i,
            prev + 1,
            "thread {t} skipped or repeated a tick:\n{text}"
        );
    }
    last
}

fn seccomp_modes(pid: u32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let status = fs::read_to_string(e.ok()?.path().join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|m| m.trim().to_string())
    })
    .collect()
}

fn isotrace(dir: &Path) -> Command {
    let mut cmd = Command::new(common::isotrace());
    cmd.current_dir(dir)
        .env("ISOTRACE_HOME", dir.join("home"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .stdin(Stdio::null());
    cmd
}

#[test]
fn attach_traces_every_thread_and_passes_the_exit_status_on() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("run")).unwrap();
    let out = tmp.path().join("out");
    let mut target = start_ticker(&out, 60, 3);
    let pid = target.0.id();
    wait_until("3 threads ticking", WAIT, || {
        ticks(&out).values().filter(|&&n| n >= 2).count() == 3
    });
    assert!(seccomp_modes(pid).iter().all(|m| m == "0"));
    let trace = tmp.path().join("trace");
    let mut attach = isotrace(tmp.path())
        .args(["attach", &pid.to_string(), "--trace-file", path_str(&trace)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("every thread under the filter", WAIT, || {
        let m = seccomp_modes(pid);
        m.len() == 3 && m.iter().all(|m| m == "2")
    });
    let code = common::shell_status_within(&mut attach, WAIT);
    assert_eq!(code, 7, "attach did not pass the program's status on");
    // The native parent reaps it too.
    let _ = target.0.wait();
    let last = ticks(&out);
    assert_eq!(last.values().copied().collect::<Vec<_>>(), vec![60, 60, 60]);
    let traced = fs::read_to_string(&trace).unwrap();
    let opens = traced
        .lines()
        .filter(|l| l.contains("openat(") && l.contains(path_str(&out)))
        .count();
    assert!(opens > 0 && opens <= 180, "{opens} traced opens:\n{traced}");
    let tids: std::collections::BTreeSet<&str> = traced
        .lines()
        .filter_map(|l| l.strip_prefix("[pid ")?.split(']').next())
        .collect();
    assert_eq!(tids.len(), 3, "not every thread was traced: {tids:?}");
}

#[test]
fn an_attached_process_is_a_group_that_can_be_checkpointed() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("run")).unwrap();
    let out = tmp.path().join("out");
    let mut target = start_ticker(&out, 100, 1);
    let pid = target.0.id();
    wait_until("ticking", WAIT, || {
        ticks(&out).get(&0).is_some_and(|&n| n >= 2)
    });
    let mut attach = isotrace(tmp.path())
        .args(["attach", &pid.to_string(), "--group", "att"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = tmp.path().join("run/isotrace/att.sock");
    wait_until("the group's socket", WAIT, || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let img = tmp.path().join("img");
    let run = isotrace(tmp.path())
        .args(["checkpoint", "att", "-o", path_str(&img), "--leave-running"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let image = isotrace_checkpoint::Image::open(&img).unwrap();
    assert_eq!(image.manifest.pids, vec![pid as i32]);
    let at = ticks(&out)[&0];
    wait_until("ticking on after the checkpoint", WAIT, || {
        ticks(&out)[&0] >= at + 2
    });
    assert_eq!(common::shell_status_within(&mut attach, WAIT), 7);
    let _ = target.0.wait();
}

#[test]
fn refusals_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("run")).unwrap();
    let run = isotrace(tmp.path())
        .args(["attach", "999999999"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(125));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no such process"), "{err}");

    // A process already under a supervisor has a tracer.
    let out = tmp.path().join("out");
    let mut sup = isotrace(tmp.path())
        .args(["run", "--no-isolation", "--"])
        .arg(guest("attach_ticker"))
        .args([path_str(&out), "200", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("ticking", WAIT, || {
        ticks(&out).get(&0).is_some_and(|&n| n >= 1)
    });
    let pid = common::pids_with_cmdline(path_str(&out))
        .into_iter()
        .find(|&p| p as u32 != sup.id())
        .expect("the traced ticker");
    let run = isotrace(tmp.path())
        .args(["attach", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(125));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("already traced by pid"), "{err}");
    let _ = sup.kill();
    let _ = sup.wait();
}

/// As an ordinary user (nobody, when the tests run as root): attach needs
/// no privilege beyond ptrace over one's own process, and no_new_privs is
/// set by injection since the target lacks CAP_SYS_ADMIN.
#[test]
fn attach_works_unprivileged() {
    use std::os::unix::fs::PermissionsExt;
    if common::is_root() && !common::have_program("setpriv") {
        eprintln!("skipping: running as root and setpriv (util-linux) is missing");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    for d in ["run", "home"] {
        fs::create_dir(tmp.path().join(d)).unwrap();
        fs::set_permissions(tmp.path().join(d), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let as_user = |prog: &Path| -> Command {
        if common::is_root() {
            let mut pre = common::setpriv_prefix();
            let mut cmd = Command::new(pre.remove(0));
            cmd.args(pre).arg(prog);
            cmd
        } else {
            Command::new(prog)
        }
    };
    let out = tmp.path().join("out");
    let child = as_user(&guest("attach_ticker"))
        .arg(&out)
        .args(["40", "2"])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut target = Native(child);
    wait_until("ticking", WAIT, || {
        ticks(&out).values().filter(|&&n| n >= 2).count() == 2
    });
    // setpriv execs the guest: the pid is the ticker's.
    let pid = target.0.id();
    let mut attach = as_user(common::isotrace())
        .args(["attach", &pid.to_string()])
        .current_dir(tmp.path())
        .env("ISOTRACE_HOME", tmp.path().join("home"))
        .env("XDG_RUNTIME_DIR", tmp.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("both threads under the filter", WAIT, || {
        let m = seccomp_modes(pid);
        m.len() == 2 && m.iter().all(|m| m == "2")
    });
    assert_eq!(common::shell_status_within(&mut attach, WAIT), 7);
    let _ = target.0.wait();
    assert_eq!(
        ticks(&out).values().copied().collect::<Vec<_>>(),
        vec![40, 40]
    );
}
