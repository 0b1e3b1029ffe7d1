//! Issue #5, restore of what `isotrace checkpoint GROUP` captures: a
//! multi-threaded process (threads counting, blocked in read(2), a futex
//! and nanosleep(2)), a parent and child joined by a pipe, a shell
//! pipeline with data buffered in its pipe, and python3 threads. Each
//! program runs under `isotrace run --group`, is checkpointed (which ends
//! it) mid-run, restored with `isotrace restore --native`, and what it
//! leaves behind is compared with an uninterrupted native run. By default
//! a restore gives every process and thread the image's pid and tid (a
//! new pid namespace); the guests print what they saw of themselves.
//! The same-pid restore is also run as an unprivileged user.

mod common;
mod restore_world;

use common::{guest, is_root, path_str, wait_for_pid, wait_until, NOBODY};
use restore_world::{ids, lines, read, World, WAIT};
use std::fs;
use std::path::Path;
use std::process::Command;

/// rst_threads checkpointed while its workers count: the restored copy
/// writes exactly what an uninterrupted run writes, its reader and futex
/// waiter wake up, main joins every thread, and (with same pids) every
/// thread has its tid back; with --new-pids none has.
fn threads(nobody: bool, same_pids: bool, waiters: usize) {
    let w = World::new(nobody);
    let exe = guest("rst_threads");
    let (orig, native) = (w.orig(), w.dir().join("native"));
    let n = waiters.to_string();
    w.native(&[path_str(&exe), path_str(&native), "40", &n]);
    let mut group = w.start(&[path_str(&exe), path_str(&orig), "40", &n]);
    wait_for_pid(&orig.join("pid"), WAIT);
    wait_until("8 lines from worker 1", WAIT, || {
        lines(&orig.join("out.1")) >= 8
    });
    let img = w.checkpoint(&mut group);
    let before = lines(&orig.join("out.1"));
    assert!(before < 40, "the guest finished before the checkpoint");
    let extra: &[&str] = if same_pids { &[] } else { &["--new-pids"] };
    let out = w.restore(&img, extra);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    for f in ["out.1", "out.2", "out.3", "out.main"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} differs");
    }
    let rows = ids(&orig.join("ids"), same_pids, &[]);
    assert_eq!(rows.len(), 5 + waiters, "the pid and every tid");
}

#[test]
fn threads_restore_with_their_tids() {
    threads(false, true, 1);
}

/// 64 threads blocked in the same futex (pthread_cond_wait) all wake up
/// from one broadcast after the restore.
#[test]
fn sixty_four_futex_waiters_restore_with_their_tids() {
    threads(false, true, 64);
}

#[test]
fn threads_restore_with_new_pids() {
    threads(false, false, 1);
}

#[test]
fn threads_restore_with_their_tids_unprivileged() {
    if !is_root() || !common::have_program("setpriv") {
        eprintln!("skipping: needs root (to become nobody) and setpriv");
        return;
    }
    assert_eq!(NOBODY, 65534);
    threads(true, true, 1);
}

/// rst_tree: the child, restored by an injected clone3 in its restored
/// parent, keeps its pid, its parent (getppid) and its own process
/// group; the parent reads the pipe to the end and reaps the child with
/// its exit status, as in an uninterrupted run.
#[test]
fn parent_and_child_restore_with_their_pipe_and_links() {
    let w = World::new(false);
    let exe = guest("rst_tree");
    let (orig, native) = (w.orig(), w.dir().join("native"));
    w.native(&[path_str(&exe), path_str(&native), "60"]);
    let mut group = w.start(&[path_str(&exe), path_str(&orig), "60"]);
    wait_for_pid(&orig.join("pid"), WAIT);
    wait_until("10 numbers", WAIT, || lines(&orig.join("out")) >= 10);
    let img = w.checkpoint(&mut group);
    assert!(
        lines(&orig.join("out")) < 60,
        "finished before the checkpoint"
    );
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    assert_eq!(read(&orig.join("out")), read(&native.join("out")));
    // The session was led from outside the image (by the supervisor): in
    // the new pid namespace getsid(0) is 0 (a pid not visible there).
    let child = ids(&orig.join("ids.child"), true, &["sid"]);
    let names: Vec<&str> = child.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["pid", "ppid", "pgid"]);
    let parent = read(&orig.join("ids.parent"));
    let pid = parent.lines().next().unwrap();
    let f: Vec<&str> = pid.split_whitespace().collect();
    assert_eq!(f[1], f[2], "the parent's pid: {parent}");
}

/// A sh pipeline whose producer has already written everything and
/// exited: the rest of its output sits in the pipe, which the checkpoint
/// records (pipes.bin) and the restore refills; the consumer reads it all
/// and the script finishes. Only builtins run in the loops (no child
/// that could be a zombie at the checkpoint: the dump skips zombies).
#[test]
fn shell_pipeline_restores_with_buffered_pipe_data() {
    let w = World::new(false);
    let script = w.dir().join("prog.sh");
    fs::write(
        &script,
        "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo \"item $i\"; done | \
         while read a b; do echo \"got $b\"; j=0; \
         while [ $j -lt 3000 ]; do j=$((j+1)); done; done > \"$1/out\"; \
         echo finished >> \"$1/out\"\n",
    )
    .unwrap();
    let (orig, native) = (w.orig(), w.dir().join("native"));
    w.native(&["/bin/sh", path_str(&script), path_str(&native)]);
    let mut group = w.start(&["/bin/sh", path_str(&script), path_str(&orig)]);
    wait_until("20 lines", WAIT, || lines(&orig.join("out")) >= 20);
    let img = w.checkpoint(&mut group);
    assert!(img.join("pipes.bin").exists(), "no pipe data in the image");
    assert!(
        lines(&orig.join("out")) < 1000,
        "finished before the checkpoint"
    );
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    assert_eq!(read(&orig.join("out")), read(&native.join("out")));
}

/// A guest that writes "tick N" lines to DIR/ticks and its results to
/// DIR/out at the end, checkpointed after 10 ticks and restored: both
/// files are the same as after an uninterrupted run.
fn ticking_guest_restores(name: &str) {
    let w = World::new(false);
    let exe = guest(name);
    let (orig, native) = (w.orig(), w.dir().join("native"));
    w.native(&[path_str(&exe), path_str(&native)]);
    let mut group = w.start(&[path_str(&exe), path_str(&orig)]);
    wait_until("10 ticks", WAIT, || lines(&orig.join("ticks")) >= 10);
    let img = w.checkpoint(&mut group);
    assert!(!orig.join("out").exists(), "finished before the checkpoint");
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    for f in ["ticks", "out"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} differs");
    }
}

/// Signals pending at the checkpoint (blocked, each with its siginfo:
/// one queued to the process, one to a thread, one from kill(2)) are
/// pending again after the restore, and sigwaitinfo(2) takes them with
/// the same value and si_code.
#[test]
fn pending_signals_restore_with_their_siginfo() {
    ticking_guest_restores("rst_pending");
}

/// An eventfd (its count), a signalfd (its mask), a periodic timerfd
/// (blocked in read(2) at the checkpoint) and an epoll watching a pipe
/// and the eventfd (level- and edge-triggered) are rebuilt from their
/// fdinfo and behave as in an uninterrupted run.
#[test]
fn eventfd_signalfd_timerfd_and_epoll_restore() {
    ticking_guest_restores("rst_anon");
}

/// MAP_SHARED|MAP_ANONYMOUS memory a parent and child share, and a
/// memfd the parent maps and holds an fd of, are one object each again
/// after the restore: the counter the child bumps is what the parent
/// reads, and the memfd's fd reads, at its offset, what was written
/// through the mapping.
#[test]
fn shared_anonymous_memory_and_memfd_stay_shared() {
    ticking_guest_restores("rst_shm");
}

/// python3 parent and child joined by a socketpair: the parent has sent
/// everything and shut its end for writing, the child reads slowly. The
/// restore rebuilds the pair (peers found by sock_diag), refills the
/// child's receive queue and the shutdown, so the child reads to EOF and
/// answers, and the parent gets the answer and reaps it.
#[test]
fn python_socketpair_restores_with_queued_data_and_shutdown() {
    let w = World::new(false);
    let script = w.dir().join("pair.py");
    fs::write(&script, PY_SOCKETPAIR).unwrap();
    let (orig, native) = (w.orig(), w.dir().join("native"));
    let py = common::PYTHON;
    w.native(&[py, path_str(&script), path_str(&native)]);
    let mut group = w.start(&[py, path_str(&script), path_str(&orig)]);
    wait_until("10 lines", WAIT, || lines(&orig.join("out")) >= 10);
    let img = w.checkpoint(&mut group);
    assert!(
        img.join("sockets.bin").exists(),
        "no socket pairs in the image"
    );
    assert!(
        lines(&orig.join("out")) < 100,
        "finished before the checkpoint"
    );
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    for f in ["out", "done"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} differs");
    }
}

const PY_SOCKETPAIR: &str = r#"
import os, socket, sys, time
d = sys.argv[1]
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    with open(os.path.join(d, "out"), "w") as f:
        while True:
            data = b.recv(9, socket.MSG_WAITALL)
            if not data:
                break
            f.write("got %s\n" % data.decode().strip())
            f.flush()
            time.sleep(0.02)
        b.sendall(b"bye from child\n")
    os._exit(0)
b.close()
for i in range(100):
    a.sendall(b"msg %04d\n" % i)
a.shutdown(socket.SHUT_WR)
reply = a.recv(100)
_, status = os.waitpid(pid, 0)
with open(os.path.join(d, "done"), "w") as f:
    f.write("reply %r status %d\n" % (reply, status))
"#;

/// Signal handlers (SA_SIGINFO, SA_ONSTACK) and each thread's alternate
/// stack, read at the checkpoint by syscalls run in the stopped threads
/// (signals.bin), work after the restore, and so does glibc's own
/// SIGSETXID handler, which setgid(2) in a multi-threaded program needs.
/// A --leave-running checkpoint first: the group, whose threads lent
/// themselves to those syscalls, runs on undisturbed to the same end.
#[test]
fn handlers_and_altstacks_restore_and_the_running_group_is_undisturbed() {
    let w = World::new(false);
    let exe = guest("rst_handlers");
    let (orig, native) = (w.orig(), w.dir().join("native"));
    w.native(&[path_str(&exe), path_str(&native)]);
    let mut group = w.start(&[path_str(&exe), path_str(&orig)]);
    wait_until("10 ticks", WAIT, || lines(&orig.join("ticks")) >= 10);
    let img = w.dir().join("img");
    let out = w.isotrace(&["checkpoint", "g", "--leave-running", "-o", path_str(&img)]);
    assert_eq!(out.status, 0, "checkpoint: {}", out.stderr);
    assert!(img.join("signals.bin").exists(), "no handlers in the image");
    assert_eq!(common::shell_status_within(&mut group.0, WAIT), 0);
    for f in ["ticks", "out"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} of the run");
    }
    fs::remove_file(orig.join("out")).unwrap();
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    assert!(
        !out.stderr.contains("handlers not restored"),
        "{}",
        out.stderr
    );
    for f in ["ticks", "out"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} restored");
    }
}

/// `redis-cli -p PORT ARGS...`'s stdout, trimmed (None if it failed).
fn redis(w: &World, port: u16, args: &[&str]) -> Option<String> {
    let out = w
        .command(
            Path::new("redis-cli"),
            &[&["-p", &port.to_string()], args].concat(),
        )
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// redis-server (threads, epoll, a pipe, listening TCP sockets) is
/// checkpointed with data in it, restored, and serves clients again on
/// its port with that data; it shuts down cleanly and the restore exits 0.
#[test]
fn redis_server_restores_and_serves_its_data() {
    if !common::have_program("redis-server") || !common::have_program("redis-cli") {
        eprintln!("skipping: redis-server and redis-cli are needed");
        return;
    }
    let w = World::new(false);
    let port = common::free_tcp_port();
    let p = port.to_string();
    let dir = path_str(w.dir()).to_owned();
    let args = [
        "redis-server",
        "--port",
        &p,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir,
    ];
    let mut group = w.start(&args);
    wait_until("redis to answer", WAIT, || {
        redis(&w, port, &["ping"]).as_deref() == Some("PONG")
    });
    assert_eq!(redis(&w, port, &["set", "k1", "v1"]).as_deref(), Some("OK"));
    assert_eq!(
        redis(&w, port, &["rpush", "l", "a", "b", "c"]).as_deref(),
        Some("3")
    );
    let img = w.checkpoint(&mut group);
    assert!(
        redis(&w, port, &["ping"]).is_none(),
        "the checkpoint ended it"
    );
    // If the test fails first: the restored redis runs on detached from
    // the restorer, so it is told to shut down.
    struct Shutdown(u16);
    impl Drop for Shutdown {
        fn drop(&mut self) {
            let _ = Command::new("redis-cli")
                .args(["-p", &self.0.to_string(), "shutdown", "nosave"])
                .output();
        }
    }
    let _shutdown = Shutdown(port);
    let mut restored = restore_world::Group(
        w.command(common::isotrace(), &["restore", "--native", path_str(&img)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the restored redis", WAIT, || {
        redis(&w, port, &["ping"]).as_deref() == Some("PONG")
    });
    assert_eq!(redis(&w, port, &["get", "k1"]).as_deref(), Some("v1"));
    assert_eq!(
        redis(&w, port, &["lrange", "l", "0", "-1"]).as_deref(),
        Some("a\nb\nc")
    );
    assert_eq!(redis(&w, port, &["incr", "n"]).as_deref(), Some("1"));
    let _ = redis(&w, port, &["shutdown", "nosave"]);
    assert_eq!(common::shell_status_within(&mut restored.0, WAIT), 0);
}

/// python3 with two threads writing through their own file objects and
/// main joining them.
#[test]
fn python_threads_restore() {
    let w = World::new(false);
    let script = w.dir().join("threads.py");
    fs::write(&script, PY_THREADS).unwrap();
    let (orig, native) = (w.orig(), w.dir().join("native"));
    let py = common::PYTHON;
    w.native(&[py, path_str(&script), path_str(&native)]);
    let mut group = w.start(&[py, path_str(&script), path_str(&orig)]);
    wait_until("10 lines from thread 0", WAIT, || {
        lines(&orig.join("t0")) >= 10
    });
    let img = w.checkpoint(&mut group);
    assert!(
        lines(&orig.join("t0")) < 80,
        "finished before the checkpoint"
    );
    let out = w.restore(&img, &[]);
    assert_eq!(out.status, 0, "restore: {}", out.stderr);
    for f in ["t0", "t1", "main"] {
        assert_eq!(read(&orig.join(f)), read(&native.join(f)), "{f} differs");
    }
}

const PY_THREADS: &str = r#"
import hashlib, os, sys, threading, time
d = sys.argv[1]
def work(k):
    with open(os.path.join(d, "t%d" % k), "w") as f:
        h = hashlib.sha256()
        for i in range(80):
            h.update(b"%d" % i)
            f.write("%d %d %s\n" % (k, i, h.hexdigest()[:16]))
            f.flush()
            time.sleep(0.03)
ts = [threading.Thread(target=work, args=(k,)) for k in range(2)]
for t in ts:
    t.start()
for t in ts:
    t.join()
with open(os.path.join(d, "main"), "w") as f:
    f.write("joined %d threads, pid same: %s\n" % (len(ts), "yes"))
"#;
