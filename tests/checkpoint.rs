//! Issue #5, `isotrace checkpoint GROUP` of a group running under isotrace:
//! --leave-running (the group counts on), checkpoint-terminate (the group
//! ends with 137) and a restore of that image that carries on counting,
//! SIGUSR2 to the supervisor, a multi-process group frozen repeatedly while
//! it forks, an unknown group, and the API op's argument checks. Every test
//! has its own ISOTRACE_HOME and XDG_RUNTIME_DIR.

mod common;

use common::{guest, path_str, wait_for_pid, wait_until};
use isotrace_checkpoint::image::Kind;
use isotrace_checkpoint::Image;
use serde_json::Value;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A test's own ISOTRACE_HOME and XDG_RUNTIME_DIR, under one tempdir.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("home")).unwrap();
        fs::create_dir(tmp.path().join("run")).unwrap();
        World { tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::isotrace());
        cmd.args(args)
            .current_dir(self.dir())
            .env("ISOTRACE_HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.dir().join("run"))
            .stdin(Stdio::null());
        cmd
    }

    fn isotrace(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(args);
        let (status, stdout, stderr) = common::execute(&mut cmd, None, WAIT, None);
        Out {
            status: status.shell_code(),
            stdout,
            stderr,
        }
    }

    /// `isotrace --no-isolation --group GROUP -- rst_counter OUT PID` in
    /// the background, once it has counted a little.
    fn start_counter(&self, group: &str) -> Supervisor {
        let exe = guest("rst_counter");
        let out = self.dir().join("out");
        let pid = self.dir().join("pid");
        let args = [
            "--no-isolation",
            "--group",
            group,
            "--",
            path_str(&exe),
            path_str(&out),
            path_str(&pid),
        ];
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace");
        let sup = Supervisor(child);
        wait_for_pid(&pid, WAIT);
        wait_until("3 lines of output", WAIT, || counted(self.dir()) >= 3);
        let sock = self
            .dir()
            .join("run/isotrace")
            .join(format!("{group}.sock"));
        wait_until("the group's socket", WAIT, || {
            UnixStream::connect(&sock).is_ok()
        });
        sup
    }
}

/// What one `isotrace` command did.
struct Out {
    status: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Out {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(self.status, code, "{}", self.describe());
    }

    /// The pid a `restore` reported ("... as pid N").
    fn restored_pid(&self) -> i32 {
        self.stderr_str()
            .lines()
            .find_map(|l| l.split(" as pid ").nth(1))
            .and_then(|p| p.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no restored pid:\n{}", self.describe()))
    }
}

/// A background `isotrace run`, SIGKILLed if the test ends first (its
/// tracees die with it: PTRACE_O_EXITKILL).
struct Supervisor(Child);

impl Supervisor {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Its exit status as a shell reports it.
    fn wait(&mut self) -> i32 {
        common::shell_status_within(&mut self.0, WAIT)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that DIR/out is exactly "ok 1" .. "ok N" and returns N.
fn counted(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("out")).unwrap_or_default();
    let mut n = 0;
    for line in text.lines() {
        n += 1;
        assert_eq!(line, format!("ok {n}"), "line {n} of the output:\n{text}");
    }
    n
}

fn json_of(run: &Out) -> Value {
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.describe()))
}

/// --leave-running writes a checkpoint image and the group counts on;
/// the default (terminate) then ends the group with 137 and its image
/// restores into a process that continues the count where it stopped.
#[test]
fn checkpoint_leave_running_then_terminate_and_restore() {
    let w = World::new();
    let mut sup = w.start_counter("g");
    let img = w.dir().join("img1");
    let run = w.isotrace(&[
        "checkpoint",
        "g",
        "-o",
        path_str(&img),
        "--leave-running",
        "--json",
    ]);
    run.assert_exit(0);
    let r = json_of(&run);
    assert_eq!(r["image"], path_str(&img), "{r}");
    assert_eq!(r["left_running"], true);
    assert!(r["frozen_ms"].as_f64().unwrap() > 0.0, "{r}");
    let pid = r["pids"][0].as_i64().unwrap();
    let image = Image::open(&img).unwrap();
    assert_eq!(image.manifest.kind, Kind::Checkpoint);
    assert_eq!(image.manifest.pids, vec![pid as i32]);
    let at = counted(w.dir());
    wait_until("the group to count on", WAIT, || counted(w.dir()) >= at + 3);
    assert!(sup.running());

    let img2 = w.dir().join("img2");
    let run = w.isotrace(&["checkpoint", "g", "-o", path_str(&img2)]);
    run.assert_exit(0);
    assert!(
        run.stdout_str().contains("the group was stopped"),
        "{}",
        run.describe()
    );
    assert_eq!(
        sup.wait(),
        128 + 9,
        "checkpoint-terminate SIGKILLs the group"
    );
    let stopped_at = counted(w.dir());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counted(w.dir()),
        stopped_at,
        "nothing runs after the checkpoint"
    );

    let run = w.isotrace(&["restore", path_str(&img2), "--detach"]);
    run.assert_exit(0);
    let new_pid = run.restored_pid();
    // counted() checks every line: the count goes on, not from 1 again.
    wait_until("the restored counter to go on", WAIT, || {
        counted(w.dir()) >= stopped_at + 3
    });
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
}

/// SIGUSR2 to the supervisor writes a leave-running checkpoint into
/// $ISOTRACE_HOME/checkpoints/GROUP-TIMESTAMP.
#[test]
fn sigusr2_writes_a_checkpoint_in_the_default_place() {
    let w = World::new();
    let mut sup = w.start_counter("sig");
    // SAFETY: kill(2) of the supervisor this test started.
    unsafe { libc::kill(sup.pid(), libc::SIGUSR2) };
    let dir = w.home().join("checkpoints");
    let mut image = None;
    wait_until("an image in the default checkpoint dir", WAIT, || {
        image = fs::read_dir(&dir).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                // Not the temporary directory the image is written in.
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .find(|p| p.join("manifest.json").exists())
        });
        image.is_some()
    });
    let image = image.unwrap();
    let name = image.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("sig-"), "{name}");
    assert_eq!(Image::open(&image).unwrap().manifest.kind, Kind::Checkpoint);
    let at = counted(w.dir());
    wait_until("the group to count on", WAIT, || counted(w.dir()) >= at + 2);
    assert!(sup.running());
}

/// --checkpoint-dir is where SIGUSR2 and `checkpoint` without -o put
/// their images.
#[test]
fn checkpoint_dir_of_the_run_is_the_default() {
    let w = World::new();
    let mut cmd = w.command(&[
        "--no-isolation",
        "--group",
        "cd",
        "--checkpoint-dir",
        "cps",
        "--",
        "sleep",
        "30",
    ]);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sup = Supervisor(child);
    let sock = w.dir().join("run/isotrace/cd.sock");
    wait_until("the group's socket", WAIT, || {
        UnixStream::connect(&sock).is_ok()
    });
    let run = w.isotrace(&["checkpoint", "cd", "--leave-running", "--json"]);
    run.assert_exit(0);
    let image = PathBuf::from(json_of(&run)["image"].as_str().unwrap());
    assert_eq!(image.parent().unwrap(), w.dir().join("cps"));
    assert!(image.join("manifest.json").exists());
    assert!(sup.running());
}

/// A shell that forks and execs without pause is frozen again and again:
/// every checkpoint holds a consistent set of processes and the group
/// carries on.
#[test]
fn a_forking_group_is_checkpointed_repeatedly() {
    let w = World::new();
    let n = w.dir().join("n");
    let script = format!(
        "i=0; while :; do /bin/true; i=$((i+1)); echo $i > {}.tmp; mv {}.tmp {}; done",
        n.display(),
        n.display(),
        n.display()
    );
    let child = w
        .command(&["--no-isolation", "--group", "fk", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sup = Supervisor(child);
    let count = || {
        fs::read_to_string(&n)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until("the loop to run", WAIT, || count() > 5);
    for i in 0..5 {
        let img = w.dir().join(format!("img{i}"));
        let run = w.isotrace(&["checkpoint", "fk", "-o", path_str(&img), "--leave-running"]);
        run.assert_exit(0);
        let image = Image::open(&img).unwrap();
        assert!(!image.tree.processes.is_empty());
        let before = count();
        wait_until("the loop to go on", WAIT, || count() > before + 2);
    }
    assert!(sup.running());
}

#[test]
fn unknown_group_is_named_and_refused() {
    let w = World::new();
    let run = w.isotrace(&["checkpoint", "nosuch", "-o", "img"]);
    run.assert_exit(125);
    assert!(run.stderr_str().contains("nosuch"), "{}", run.describe());
    assert!(!w.dir().join("img").exists());
}

/// An existing -o DIR is refused before anything is frozen, and a bad
/// argument to the op is a bad request; the group runs on.
#[test]
fn bad_requests_leave_the_group_running() {
    let w = World::new();
    let mut sup = w.start_counter("br");
    fs::create_dir(w.dir().join("taken")).unwrap();
    let run = w.isotrace(&["checkpoint", "br", "-o", "taken"]);
    run.assert_exit(125);
    assert!(
        run.stderr_str().contains("already exists"),
        "{}",
        run.describe()
    );
    let sock = w.dir().join("run/isotrace/br.sock");
    let mut c = isotrace::api::client::Client::connect(&sock).unwrap();
    let mut args = serde_json::Map::new();
    args.insert("dir".into(), "relative/img".into());
    let e = c.call("checkpoint", args).unwrap_err();
    assert_eq!(e.code(), Some("bad-request"), "{e}");
    let at = counted(w.dir());
    wait_until("the group to count on", WAIT, || counted(w.dir()) >= at + 2);
    assert!(sup.running());
}

/// State that cannot be checkpointed (a datagram queued on a connected
/// UDP socket by a sender outside the group: the socket is carried, a
/// datagram only when its sender is in the group) refuses the
/// checkpoint, naming the pid, the fd and its kind: no image is left and
/// the group runs on.
#[test]
fn an_unsupported_fd_refuses_the_checkpoint_and_the_group_runs_on() {
    if !common::have_program("bash") {
        eprintln!("bash is not installed: skipping");
        return;
    }
    let w = World::new();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    // bash says hello through fd 3, so the peer learns its address and
    // queues a datagram for it.
    let script = format!(
        "exec 3<>/dev/udp/127.0.0.1/{port}; echo hello >&3; echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 30"
    );
    let child = w
        .command(&[
            "--no-isolation",
            "--group",
            "tcp",
            "--",
            "bash",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sup = Supervisor(child);
    let pid = wait_for_pid(&w.dir().join("pid"), WAIT);
    let mut hello = [0u8; 16];
    let (_, bash) = peer.recv_from(&mut hello).unwrap();
    peer.send_to(b"queued", bash).unwrap();
    wait_until("sleep to run", WAIT, || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    let img = w.dir().join("img");
    let run = w.isotrace(&["checkpoint", "tcp", "-o", path_str(&img)]);
    run.assert_exit(1);
    let err = run.stderr_str();
    assert!(
        err.contains(&format!("pid {pid}: fd 3 (socket"))
            && err.contains("UDP socket with datagrams queued")
            && err.contains("no socket of the group")
            && err.contains("no image was written"),
        "{}",
        run.describe()
    );
    assert!(!img.exists());
    let leftovers: Vec<_> = fs::read_dir(w.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".img"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The barrier's release may come just after the refusal is answered.
    wait_until("sleep to run on (not stopped)", WAIT, || {
        common::proc_state(pid) == Some('S')
    });
    assert!(sup.running());
}

/// Runs guest `name` with `args`, then a pid file and a result file, as
/// group `group`; checks that a --leave-running checkpoint is refused
/// with a message holding every string of `want(pid)`, that no image is
/// left and the group runs on; then wakes the guest (SIGUSR1), which
/// checks that its state is intact and writes "intact" if so.
fn refused_and_intact(
    w: &World,
    group: &str,
    name: &str,
    args: &[&str],
    pidfile: &Path,
    want: impl Fn(i32) -> Vec<String>,
) {
    let exe = guest(name);
    let result = w.dir().join("result");
    let mut argv = vec!["--no-isolation", "--group", group, "--", path_str(&exe)];
    argv.extend(args);
    argv.extend([path_str(pidfile), path_str(&result)]);
    let child = w
        .command(&argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sup = Supervisor(child);
    let pid = wait_for_pid(pidfile, WAIT);
    let sock = w.dir().join("run/isotrace").join(format!("{group}.sock"));
    wait_until("the group's socket", WAIT, || {
        UnixStream::connect(&sock).is_ok()
    });
    let img = w.dir().join("img");
    let run = w.isotrace(&["checkpoint", group, "--leave-running", "-o", path_str(&img)]);
    run.assert_exit(1);
    let err = run.stderr_str();
    for part in want(pid) {
        assert!(
            err.contains(&part),
            "{name}: no {part:?} in:\n{}",
            run.describe()
        );
    }
    assert!(!img.exists());
    assert!(sup.running());
    // SAFETY: kill(2) of the guest, which waits for this signal.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    wait_until("the guest's result", WAIT, || result.exists());
    assert_eq!(fs::read_to_string(&result).unwrap(), "intact", "{name}");
}

/// A file in flight that cannot be carried (an eventfd passed with
/// SCM_RIGHTS and closed by its sender) refuses the checkpoint, naming
/// the pid, the socket's fd and the file's kind; the message is still
/// queued with its file: the dump only peeked.
#[test]
fn an_eventfd_in_flight_refuses_the_checkpoint_and_stays_queued() {
    let w = World::new();
    let pidfile = w.dir().join("pid");
    refused_and_intact(&w, "flight", "inflight_eventfd", &[], &pidfile, |pid| {
        vec![
            format!("pid {pid}: fd 10 (socket socket:["),
            "anon_inode:[eventfd]".into(),
        ]
    });
}

/// A listener with a connection waiting in its accept queue refuses the
/// checkpoint, naming the pid, the fd and the listener: a TCP one (and
/// the queue's length), and a unix one whose client sent data (a silent
/// one is carried, zdtm unix_listen_waiting). The connection is still
/// there to accept afterwards.
#[test]
fn a_listener_with_waiting_connections_refuses_the_checkpoint() {
    for kind in ["tcp", "unix"] {
        let w = World::new();
        let pidfile = w.dir().join("pid");
        refused_and_intact(&w, "backlog", "listen_backlog", &[kind], &pidfile, |pid| {
            let queue = if kind == "tcp" {
                "with 1 connection waiting"
            } else {
                "waiting in its accept queue"
            };
            vec![format!("pid {pid}: fd 10 (socket socket:["), queue.into()]
        });
    }
}

/// An inotify fd with events queued refuses the checkpoint, naming the
/// pid, the fd and the inotify instance; the events are still there to
/// read afterwards.
#[test]
fn queued_inotify_events_refuse_the_checkpoint() {
    let w = World::new();
    // In a directory of their own: the world's directory changes as the
    // supervisor runs (its socket), which would add events.
    let sub = w.dir().join("watched");
    fs::create_dir(&sub).unwrap();
    refused_and_intact(
        &w,
        "events",
        "inotify_queued",
        &[],
        &sub.join("pid"),
        |pid| {
            vec![
                format!("pid {pid}: fd 10 (anon_inode anon_inode:inotify)"),
                "bytes of events queued".into(),
            ]
        },
    );
}

/// A memfd sealed against writing and mapped shared (read-only, as a
/// Wayland keymap) refuses the checkpoint, naming the pid, the fd and
/// the memfd: its contents would come back through the mapping, which
/// the seal forbids. The mapping and the seals are as they were.
#[test]
fn a_mapped_write_sealed_memfd_refuses_the_checkpoint() {
    let w = World::new();
    let pidfile = w.dir().join("pid");
    refused_and_intact(&w, "sealed", "memfd_write_sealed", &[], &pidfile, |pid| {
        vec![
            format!("pid {pid}: fd 10 (memfd /memfd:keymap"),
            "sealed against writing".into(),
        ]
    });
}

/// A unix socket connected to a listener outside the group refuses the
/// checkpoint, naming the pid, the fd and the socket: a restore could
/// not connect it again (it used to fail only then, after the checkpoint
/// had ended the group). The connection still works afterwards.
#[test]
fn a_socket_connected_outside_refuses_the_checkpoint() {
    let w = World::new();
    let path = w.dir().join("outside.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let pidfile = w.dir().join("pid");
    refused_and_intact(
        &w,
        "outside",
        "socket_outside",
        &[path_str(&path)],
        &pidfile,
        |pid| {
            vec![
                format!("pid {pid}: fd 10 (socket socket:["),
                "connected to a peer outside the group, which a restore cannot rebuild".into(),
            ]
        },
    );
    let (mut conn, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut conn, &mut byte).unwrap();
    assert_eq!(&byte, b"x");
}

/// A python3 that counts into DIR/count every 20 ms and, on SIGUSR1,
/// writes DIR/handled.
const HANDLER_COUNTER: &str = r#"
import os, signal, sys, time
d = sys.argv[1]
def handled(sig, frame):
    with open(d + "/handled.tmp", "w") as f:
        f.write("SIGUSR1")
    os.replace(d + "/handled.tmp", d + "/handled")
signal.signal(signal.SIGUSR1, handled)
n = 0
while True:
    n += 1
    with open(d + "/count.tmp", "w") as f:
        f.write(str(n))
    os.replace(d + "/count.tmp", d + "/count")
    time.sleep(0.02)
"#;

/// A group that job control stopped (SIGSTOP) is checkpointed with its
/// signal handlers, read from its stopped thread, and is restored stopped:
/// it counts no further until SIGCONT, and SIGUSR1 then runs its handler
/// instead of killing it.
#[test]
fn a_stopped_group_is_restored_stopped_with_its_handlers() {
    let w = World::new();
    let script = w.dir().join("counter.py");
    fs::write(&script, HANDLER_COUNTER).unwrap();
    let args = [
        "--no-isolation",
        "--group",
        "stopped",
        "--",
        common::PYTHON,
        path_str(&script),
        path_str(w.dir()),
    ];
    let mut sup = Supervisor(
        w.command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace"),
    );
    let count = || -> u64 {
        fs::read_to_string(w.dir().join("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until("the counter to count", WAIT, || count() >= 3);
    let pid = common::pids_with_cmdline(path_str(&script))
        .into_iter()
        .find(|&p| p != sup.pid())
        .expect("the python3 process");
    // SAFETY: kill(2) of a process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_until("the counter to stop", WAIT, || {
        matches!(common::proc_state(pid), Some('t' | 'T'))
    });
    let img = w.dir().join("img");
    let run = w.isotrace(&["checkpoint", "stopped", "-o", path_str(&img)]);
    run.assert_exit(0);
    sup.wait();
    let stopped_at = count();

    let run = w.isotrace(&["restore", path_str(&img), "--detach"]);
    run.assert_exit(0);
    assert!(
        !run.stderr_str().contains("handlers not restored"),
        "{}",
        run.describe()
    );
    let new_pid = run.restored_pid();
    wait_until("the restored process to be stopped", WAIT, || {
        matches!(common::proc_state(new_pid), Some('t' | 'T'))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(),
        stopped_at,
        "the restored process ran while stopped"
    );
    assert!(matches!(common::proc_state(new_pid), Some('t' | 'T')));
    // SAFETY: kill(2) of the process this test restored.
    unsafe { libc::kill(new_pid, libc::SIGCONT) };
    wait_until("the restored counter to go on", WAIT, || {
        count() >= stopped_at + 3
    });
    // SAFETY: as above.
    unsafe { libc::kill(new_pid, libc::SIGUSR1) };
    wait_until("the handler to run", WAIT, || {
        w.dir().join("handled").exists() || common::proc_state(new_pid).is_none()
    });
    let alive = common::proc_state(new_pid).is_some_and(|s| s != 'Z');
    assert!(alive, "SIGUSR1 killed the restored process");
    // SAFETY: as above.
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
}
