//! Issue #5 with #3/#4: a group checkpoint restores as a group, under a
//! supervisor, in its environment. The restored program's writes still
//! land in the env's private layer (never on the host), it runs under the
//! seccomp filter, the group answers its API (ps, checkpoint) and can be
//! checkpointed and restored again; `--env` restores into another env,
//! where the program's open file is reopened from that env's layer.

mod common;

use common::{guest, path_str, wait_until, Iso};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A background isotrace (run or restore), SIGKILLed if the test ends
/// first; its tracees die with it (PTRACE_O_EXITKILL).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One test's world: an Iso (ISOTRACE_HOME, host dir) plus its own
/// XDG_RUNTIME_DIR, so groups never meet another test's.
struct World {
    iso: Iso,
}

impl World {
    fn new() -> World {
        let iso = Iso::new();
        fs::create_dir(iso.root().join("run")).unwrap();
        World { iso }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.iso.command(args);
        cmd.env("XDG_RUNTIME_DIR", self.iso.root().join("run"))
            .stdin(Stdio::null());
        cmd
    }

    fn isotrace(&self, args: &[&str]) -> common::Run {
        self.iso.execute(self.command(args))
    }

    fn background(&self, args: &[&str]) -> Bg {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace");
        Bg(child)
    }

    fn socket(&self, group: &str) -> PathBuf {
        self.iso
            .root()
            .join("run/isotrace")
            .join(format!("{group}.sock"))
    }

    fn wait_group(&self, group: &str) {
        let sock = self.socket(group);
        wait_until(&format!("group {group}'s socket"), WAIT, || {
            UnixStream::connect(&sock).is_ok()
        });
    }

    /// Until nobody answers on the group's socket (its supervisor is gone).
    fn wait_gone(&self, group: &str) {
        let sock = self.socket(group);
        wait_until(&format!("group {group} to end"), WAIT, || {
            UnixStream::connect(&sock).is_err()
        });
    }
}

/// "ok 1" .. "ok N" exactly, in the file at `path`; returns N.
fn counted(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut n = 0;
    for line in text.lines() {
        n += 1;
        assert_eq!(
            line,
            format!("ok {n}"),
            "line {n} of {}:\n{text}",
            path.display()
        );
    }
    n
}

/// Starts rst_counter in env `env` as group `group`, writing to the
/// public path host/out; returns the supervisor and where the private
/// copy of out is.
fn start(w: &World, env: &str, group: &str) -> (Bg, PathBuf) {
    let exe = guest("rst_counter");
    let out = w.iso.host().join("out");
    let pid = w.iso.host().join("pid");
    let bg = w.background(&[
        "run",
        "--env",
        env,
        "--group",
        group,
        "--",
        path_str(&exe),
        path_str(&out),
        path_str(&pid),
    ]);
    let private = w.iso.upper(env).join(out.strip_prefix("/").unwrap());
    wait_until("3 lines of output in the env", WAIT, || {
        counted(&private) >= 3
    });
    w.wait_group(group);
    (bg, private)
}

/// The status of the restored root, as the restore reports it.
fn restored_pid(run: &common::Run) -> i32 {
    run.stderr_str()
        .lines()
        .find_map(|l| l.split(" as pid ").nth(1))
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no restored pid:\n{}", run.describe()))
}

fn seccomp_mode(pid: i32) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|m| m.trim().to_string())
}

/// Checkpoint-terminate, then `restore` (detached): the group is back in
/// env e1 under a supervisor, with the seccomp filter, its writes go on in
/// the private layer and never reach the host, `ps` lists it, and a second
/// checkpoint/restore cycle works too.
#[test]
fn group_restores_in_its_env_under_a_supervisor() {
    let w = World::new();
    let (mut bg, private) = start(&w, "e1", "g1");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "g1", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    assert!(
        img.join("supervisor.json").exists(),
        "the image has no supervisor state"
    );
    let at = counted(&private);

    let run = w.isotrace(&["restore", path_str(&img), "--detach", "--new-pids"]);
    run.assert_exit(0);
    let err = run.stderr_str();
    assert!(err.contains("group g1") && err.contains("env e1"), "{err}");
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("the restored counter to go on", WAIT, || {
        counted(&private) >= at + 3
    });
    assert_eq!(
        seccomp_mode(pid).as_deref(),
        Some("2"),
        "restored pid {pid} is not filtered"
    );
    assert!(
        !w.iso.host().join("out").exists(),
        "the restored program wrote to the host"
    );
    let ps = w.isotrace(&["ps", "--json"]);
    ps.assert_exit(0);
    assert!(ps.stdout_str().contains("\"g1\""), "{}", ps.describe());

    // Again: the restored group is a group like any other.
    let img2 = w.iso.root().join("img2");
    w.isotrace(&["checkpoint", "g1", "-o", path_str(&img2)])
        .assert_exit(0);
    wait_until("the restored group to end", WAIT, || {
        seccomp_mode(pid).is_none()
    });
    let at = counted(&private);
    let run = w.isotrace(&["restore", path_str(&img2), "--detach", "--new-pids"]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("the twice-restored counter to go on", WAIT, || {
        counted(&private) >= at + 3
    });
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `restore --env e2 --group g2`: the group comes back in another env.
/// Its output file had been copied up in e1 only, so e2 first gets a copy
/// of e1's layer (`env copy`), as a migration to another env does; the
/// restored program then writes into e2's copy while e1's stays as it was.
#[test]
fn restore_into_another_env() {
    let w = World::new();
    let (mut bg, private1) = start(&w, "e1", "g1");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "g1", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let at = counted(&private1);
    w.isotrace(&["env", "copy", "e1", "e2"]).assert_exit(0);

    let run = w.isotrace(&[
        "restore",
        path_str(&img),
        "--env",
        "e2",
        "--group",
        "g2",
        "--detach",
        "--new-pids",
    ]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    let private2 = w
        .iso
        .upper("e2")
        .join(private1.strip_prefix(w.iso.upper("e1")).unwrap());
    wait_until("the counter to go on in e2", WAIT, || {
        counted(&private2) >= at + 3
    });
    assert_eq!(
        counted(&private1),
        at,
        "e1's copy changed after the restore into e2"
    );
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A group name that is taken is refused before anything is restored.
#[test]
fn a_running_group_name_is_refused() {
    let w = World::new();
    let (_bg, _) = start(&w, "e1", "g1");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "g1", "-o", path_str(&img), "--leave-running"])
        .assert_exit(0);
    let run = w.isotrace(&["restore", path_str(&img), "--new-pids"]);
    run.assert_exit(125);
    assert!(run.stderr_str().contains("--group"), "{}", run.describe());
}

/// A `--rm` group's checkpoint keeps its throwaway env (the image needs
/// it); the restored group is throwaway again: when it exits, the env goes.
#[test]
fn a_throwaway_group_keeps_its_env_for_its_checkpoint() {
    let w = World::new();
    let exe = guest("rst_counter");
    let out = w.iso.host().join("out");
    let pid = w.iso.host().join("pid");
    let mut bg = w.background(&[
        "run",
        "--rm",
        "--group",
        "t1",
        "--",
        path_str(&exe),
        path_str(&out),
        path_str(&pid),
        "40",
    ]);
    w.wait_group("t1");
    let envs = || -> Vec<String> {
        let run = w.isotrace(&["env", "list"]);
        run.stdout_str()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("rm-"))
            .map(str::to_string)
            .collect()
    };
    wait_until("the throwaway env", WAIT, || envs().len() == 1);
    let env = envs().remove(0);
    let private = w.iso.upper(&env).join(out.strip_prefix("/").unwrap());
    wait_until("3 lines of output", WAIT, || counted(&private) >= 3);
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "t1", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    assert_eq!(
        envs(),
        vec![env.clone()],
        "the throwaway env went with its group"
    );
    // Not detached: the restored counter exits 7 at 40, and so does restore.
    let run = w.isotrace(&["restore", path_str(&img), "--new-pids"]);
    assert_eq!(run.status.shell_code(), 7, "{}", run.describe());
    assert!(
        envs().is_empty(),
        "the restored throwaway group left its env behind"
    );
}

/// A shell pipeline (three processes joined by a pipe, forking `sleep`
/// every round) in env e1: checkpointed, then restored as a group under a
/// supervisor with its pids. The restored processes run under the filter,
/// and each `>>` they open is still redirected into the env: the host
/// never gets the file.
#[test]
fn a_pipeline_restores_isolated_with_its_pids() {
    let w = World::new();
    let out = w.iso.host().join("piped");
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done | \
         while read n; do echo \"ok $n\" >> {}; done",
        out.display()
    );
    let mut bg = w.background(&[
        "run", "--env", "e1", "--group", "p1", "--", "/bin/sh", "-c", &script,
    ]);
    let private = w.iso.upper("e1").join(out.strip_prefix("/").unwrap());
    wait_until("the pipeline to count", WAIT, || counted(&private) >= 5);
    w.wait_group("p1");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "p1", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let image = isotrace_checkpoint::Image::open(&img).unwrap();
    assert!(
        image.tree.processes.len() >= 3,
        "{} processes",
        image.tree.processes.len()
    );
    let at = counted(&private);
    let run = w.isotrace(&["restore", path_str(&img), "--detach"]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("the restored pipeline to count on", WAIT, || {
        counted(&private) >= at + 5
    });
    assert!(!out.exists(), "the restored pipeline wrote to the host");
    assert_eq!(seccomp_mode(pid).as_deref(), Some("2"));
    let nspid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:").map(str::to_string))
        .unwrap_or_default();
    let inner: i32 = nspid
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(
        image.tree.processes.iter().any(|p| p.pid == inner),
        "the restored root's pid in its namespace ({nspid}) is not one of the image's"
    );
    // The restored supervisor: its tracees die with it (PTRACE_O_EXITKILL),
    // the whole pipeline included.
    let sup = supervisor_pid(&run);
    // SAFETY: kill(2) of the supervisor this test's restore started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    wait_until("the pipeline to end with its supervisor", WAIT, || {
        seccomp_mode(pid).is_none()
    });
}

/// After a same-pid restore, /proc/PID (PID as the program sees it, from
/// $$) is the program itself: the restore's pid namespace has a procfs of
/// its own (a new mount namespace), not the host's, where that pid is
/// someone else's or nobody's. (Trace-only group: under isolation the
/// supervisor walks /proc in the host's namespace; see README.)
#[test]
fn proc_of_its_own_pid_is_itself_after_restore() {
    let w = World::new();
    let out = w.iso.host().join("procself");
    let script = format!(
        "while :; do c=$(cat /proc/$$/comm 2>/dev/null || echo none); \
         echo \"$$ $c\" >> {}; sleep 0.05; done",
        out.display()
    );
    let mut bg = w.background(&[
        "run",
        "--no-isolation",
        "--group",
        "p2",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let lines = || fs::read_to_string(&out).unwrap_or_default().lines().count();
    wait_until("a few lines", WAIT, || lines() >= 3);
    w.wait_group("p2");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "p2", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let before = lines();
    let run = w.isotrace(&["restore", path_str(&img), "--detach"]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("lines from the restored shell", WAIT, || {
        lines() >= before + 3
    });
    let text = fs::read_to_string(&out).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let first = text.lines().next().unwrap().to_string();
    assert_eq!(last, first, "before and after the restore:\n{text}");
    assert!(!last.ends_with(" none"), "{text}");
    // SAFETY: kill(2) of the shell this test restored (a single process
    // between its `cat`s and `sleep`s, whose children end with it).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// An isolated restored group has the procfs of its own pid namespace:
/// /proc/self, /proc/$$ (the pid the shell knows) and the magic links under
/// it (exe, cwd, followed by the supervisor) name each process itself,
/// before and after the restore, and readlink /proc/self gives a pid.
#[test]
fn proc_self_works_in_an_isolated_restored_group() {
    let w = World::new();
    let out = w.iso.host().join("selfcomm");
    let script = format!(
        "cd /usr/share; while :; do c=$(cat /proc/self/comm 2>/dev/null || echo none); \
         p=$(cat /proc/$$/comm 2>/dev/null || echo none); \
         e=$(readlink /proc/$$/exe || echo none); \
         d=$(cd /proc/$$/cwd 2>/dev/null && pwd -P || echo none); \
         s=$(readlink /proc/self); case $s in ''|*[!0-9]*) s=bad;; *) s=num;; esac; \
         echo \"$$ $c $p $e $d $s\" >> {}; sleep 0.05; done",
        out.display()
    );
    let mut bg = w.background(&[
        "run", "--env", "e1", "--group", "p3", "--", "/bin/sh", "-c", &script,
    ]);
    let private = w.iso.upper("e1").join(out.strip_prefix("/").unwrap());
    let lines = || {
        fs::read_to_string(&private)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until("a few lines", WAIT, || lines() >= 3);
    w.wait_group("p3");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "p3", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let before = lines();
    let run = w.isotrace(&["restore", path_str(&img), "--detach"]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("lines from the restored shell", WAIT, || {
        lines() >= before + 3
    });
    let text = fs::read_to_string(&private).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with(" cat dash /usr/bin/dash /usr/share num"),
        "{text}"
    );
    assert!(text.lines().all(|l| l == first), "{text}");
    // SAFETY: kill(2) of the shell this test restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The supervisor pid from a detached restore's line.
fn supervisor_pid(run: &common::Run) -> i32 {
    run.stderr_str()
        .split("supervisor pid ")
        .nth(1)
        .and_then(|r| r.split(')').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no supervisor pid:\n{}", run.describe()))
}

/// The same running group checkpointed five times in a row
/// (--leave-running), then restored from each image in turn: every one
/// carries on counting from where it was taken.
#[test]
fn five_checkpoints_in_a_row_each_restore() {
    let w = World::new();
    let (mut bg, private) = start(&w, "e1", "g5");
    let mut images = Vec::new();
    for i in 0..5 {
        let img = w.iso.root().join(format!("img{i}"));
        w.isotrace(&["checkpoint", "g5", "-o", path_str(&img), "--leave-running"])
            .assert_exit(0);
        images.push(img);
        let at = counted(&private);
        wait_until("the group to count on", WAIT, || counted(&private) > at);
    }
    let _ = bg.0.kill();
    let _ = bg.0.wait();
    for img in &images {
        let high = counted(&private);
        let run = w.isotrace(&["restore", path_str(img), "--detach"]);
        run.assert_exit(0);
        // counted() checks every line: a restored counter rewrites the
        // lines after its image's point with the same text, then goes on.
        wait_until(
            "the restored counter to pass the highest count",
            WAIT,
            || counted(&private) >= high + 2,
        );
        let sup = supervisor_pid(&run);
        // SAFETY: kill(2) of the supervisor this test's restore started;
        // its tracee dies with it (PTRACE_O_EXITKILL).
        unsafe { libc::kill(sup, libc::SIGKILL) };
        w.wait_gone("g5");
    }
}

/// python3's sqlite3 in a transaction loop (WAL: an open db, its -wal and
/// its shared -shm mapping), in env e1, checkpointed in the middle and
/// restored: the database passes PRAGMA integrity_check with no row lost
/// or doubled, as in an uninterrupted run.
#[test]
fn sqlite_transaction_loop_survives_checkpoint_and_restore() {
    let w = World::new();
    let db = w.iso.host().join("loop.db");
    let progress = w.iso.host().join("progress");
    let want = "ok 400 400 400 True\n";
    let native = w.isotrace(&[
        "run",
        "--no-isolation",
        "--",
        "python3",
        "-c",
        common::SQLITE_LOOP,
        path_str(&w.iso.host().join("native.db")),
        "400",
        path_str(&w.iso.host().join("native-progress")),
    ]);
    native.assert_exit(0);
    let result = |p: &Path| fs::read_to_string(p.with_extension("result")).unwrap_or_default();
    let native_result = result(&w.iso.host().join("native-progress"));
    assert_eq!(native_result, want, "{}", native.describe());
    let mut bg = w.background(&[
        "run",
        "--env",
        "e1",
        "--group",
        "sq",
        "--",
        "python3",
        "-c",
        common::SQLITE_LOOP,
        path_str(&db),
        "400",
        path_str(&progress),
    ]);
    let private = w.iso.upper("e1").join(progress.strip_prefix("/").unwrap());
    let done = || {
        fs::read_to_string(&private)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    wait_until("100 transactions", WAIT, || done() >= 100);
    w.wait_group("sq");
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "sq", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    assert!(done() < 400, "the loop ended before the checkpoint");
    // Not detached: restore waits for the loop to finish.
    let run = w.isotrace(&["restore", path_str(&img)]);
    run.assert_exit(0);
    assert_eq!(result(&private), want, "{}", run.describe());
    assert!(!db.exists(), "the database reached the host");
}

/// A full disk during a checkpoint (a 2 MiB tmpfs, smaller than the
/// group's memory): the checkpoint fails with the reason, leaves no
/// image, and the group, which a checkpoint-terminate would have killed,
/// keeps running.
#[test]
fn a_full_disk_fails_the_checkpoint_and_the_group_runs_on() {
    if !common::is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let w = World::new();
    let (mut bg, private) = start(&w, "e1", "gf");
    let small = w.iso.root().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let img = small.join("img");
    let run = w.isotrace(&["checkpoint", "gf", "-o", path_str(&img)]);
    assert_ne!(run.status.shell_code(), 0, "{}", run.describe());
    assert!(
        run.stderr_str().contains("No space left on device") || run.stderr_str().contains("ENOSPC"),
        "{}",
        run.describe()
    );
    assert!(
        !img.exists(),
        "a partial image was left at {}",
        img.display()
    );
    let leftovers: Vec<_> = fs::read_dir(&small).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "left in the full filesystem: {leftovers:?}"
    );
    let at = counted(&private);
    wait_until("the group to count on", WAIT, || {
        counted(&private) >= at + 3
    });
    assert!(bg.0.try_wait().unwrap().is_none(), "the group ended");
}

/// `make -j2` checkpointed halfway through (two recipes running, others
/// waiting on the jobserver pipe), the original gone, and restored in its
/// env: make finishes the build with every target built exactly once, as
/// an uninterrupted run does, and all of it lands in the private layer.
#[test]
fn make_j2_checkpointed_halfway_finishes_the_build() {
    if !common::have_program("make") {
        eprintln!("make is not installed: skipping");
        return;
    }
    let w = World::new();
    let src = w.iso.host().join("build");
    fs::create_dir(&src).unwrap();
    let targets: Vec<String> = (1..=16).map(|i| format!("t{i:02}")).collect();
    let makefile = format!(
        "all: {all}\n\t@echo done > all.out\n\
         t%:\n\t@sleep 0.15; echo $@ > $@.out; echo $@ >> built.log\n",
        all = targets.join(" ")
    );
    fs::write(src.join("Makefile"), &makefile).unwrap();
    // The uninterrupted run, natively, for the reference.
    let native = w.iso.root().join("native");
    fs::create_dir(&native).unwrap();
    fs::write(native.join("Makefile"), &makefile).unwrap();
    let status = std::process::Command::new("make")
        .args(["-s", "-j2", "-C"])
        .arg(&native)
        .status()
        .unwrap();
    assert!(status.success());
    let sorted = |p: &Path| {
        let mut v: Vec<String> = fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let want = sorted(&native.join("built.log"));
    assert_eq!(want, targets);

    let mut bg = w.background(&[
        "run",
        "--env",
        "e1",
        "--group",
        "mk",
        "--",
        "make",
        "-s",
        "-j2",
        "-C",
        path_str(&src),
    ]);
    let private = w.iso.upper("e1").join(src.strip_prefix("/").unwrap());
    let built = || sorted(&private.join("built.log")).len();
    wait_until("a few targets built", WAIT, || built() >= 4);
    let img = w.iso.root().join("img");
    w.isotrace(&["checkpoint", "mk", "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let at_checkpoint = built();
    assert!(
        at_checkpoint < targets.len(),
        "the build ended before the checkpoint"
    );
    let run = w.isotrace(&["restore", path_str(&img), "--detach"]);
    run.assert_exit(0);
    let pid = restored_pid(&run);
    let _group = common::PidGuard::of(supervisor_pid(&run));
    wait_until("the restored make to finish", WAIT, || {
        private.join("all.out").exists()
    });
    assert_eq!(
        sorted(&private.join("built.log")),
        want,
        "built.log after restore"
    );
    for t in &targets {
        assert_eq!(
            fs::read_to_string(private.join(format!("{t}.out"))).unwrap(),
            format!("{t}\n")
        );
    }
    assert!(
        !src.join("built.log").exists(),
        "the build wrote on the host"
    );
    // SAFETY: kill(2) of the make this test restored (it is ending anyway).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A signal sent to a restored process while the restore still holds it
/// (between `ready` and `go` of `restore --control`) interrupts the call
/// the process was blocked in, as it would have without the checkpoint:
/// pause(2) and sigsuspend(2) return EINTR after the handler runs. Two
/// restore bugs broke this: the thread's mask was read from /proc's SigBlk
/// (sigsuspend's temporary mask), and an interrupted call was rewound by
/// hand, so the handler ran and the call slept again.
#[test]
fn a_signal_sent_during_the_restore_interrupts_pause_and_sigsuspend() {
    for mode in ["pause", "sigsuspend"] {
        signal_during_restore(mode);
    }
}

fn signal_during_restore(mode: &str) {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let w = World::new();
    let dir = w.iso.root().join(format!("wake-{mode}"));
    fs::create_dir(&dir).unwrap();
    let exe = guest("rst_sigwake");
    let group = format!("w{mode}");
    let mut bg = w.background(&[
        "run",
        "--no-isolation",
        "--group",
        &group,
        "--",
        path_str(&exe),
        path_str(&dir),
        mode,
    ]);
    let pid = common::wait_for_pid(&dir.join("pid"), WAIT);
    let nr = if mode == "pause" { "34" } else { "130" };
    wait_until("the guest to block", WAIT, || {
        fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.split_whitespace().next() == Some(nr))
    });
    let img = w.iso.root().join(format!("img-{mode}"));
    w.isotrace(&["checkpoint", &group, "-o", path_str(&img)])
        .assert_exit(0);
    let _ = bg.0.wait();
    let ctl = w.iso.root().join(format!("ctl-{mode}"));
    fs::create_dir(&ctl).unwrap();
    for fifo in ["ready", "go"] {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        nix::unistd::mkfifo(&ctl.join(fifo), mode).unwrap();
    }
    let mut ready = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ctl.join("ready"))
        .unwrap();
    let mut restore = w.background(&[
        "restore",
        path_str(&img),
        "--new-pids",
        "--control",
        path_str(&ctl),
    ]);
    let mut said = String::new();
    wait_until("the restore to say ready", WAIT, || {
        let mut buf = [0u8; 256];
        if let Ok(n) = ready.read(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        said.contains('\n')
    });
    let held: i32 = said
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("not a ready line: {said:?}"));
    // SAFETY: kill(2) of the process this test's restore holds stopped.
    assert_eq!(unsafe { libc::kill(held, libc::SIGUSR2) }, 0);
    let mut go = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ctl.join("go"))
        .unwrap();
    writeln!(go, "go").unwrap();
    drop(go);
    let out = dir.join("out");
    wait_until(&format!("{mode} to return after the restore"), WAIT, || {
        out.exists()
    });
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "woken 1 EINTR\n",
        "{mode}"
    );
    assert_eq!(common::shell_status_within(&mut restore.0, WAIT), 0);
}
