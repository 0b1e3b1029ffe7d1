//! Issue #5's corpus of self-checking programs, in the style of CRIU's
//! zdtm/static: each C program of tests/zdtm/ builds one kind of state,
//! says it is ready, and sleeps; it is checkpointed (which ends the
//! original), restored in a fresh process tree, woken with SIGUSR1, and
//! checks everything it built, writing PASS or FAIL with a reason to
//! DIR/result (the protocol is in tests/zdtm/zdtm.h). Each program is
//! its own test, restored under a supervisor (`isotrace restore IMG`);
//! a few are also restored with `--native`, and a few as nobody.

mod common;
mod restore_world;

use common::{execute, is_root, path_str, wait_until, Status};
use restore_world::{World, WAIT};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// How the image is restored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    /// `isotrace restore IMG`: back under a supervisor, as the group.
    Supervised,
    /// `isotrace restore --native IMG`: no supervisor.
    Native,
    /// Supervised, every isotrace command run as nobody (setpriv).
    Nobody,
}

/// Compiles tests/zdtm/NAME.c once per test process (gcc -O2 -pthread,
/// with zdtm.h on the include path) and returns the binary.
fn program(name: &str) -> PathBuf {
    type Cell = Arc<OnceLock<PathBuf>>;
    static CACHE: OnceLock<Mutex<HashMap<String, Cell>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| compile(name)).clone()
}

fn compile(name: &str) -> PathBuf {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zdtm");
    let src = src_dir.join(format!("{name}.c"));
    assert!(src.exists(), "no zdtm program {}", src.display());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zdtm");
    fs::create_dir_all(&dir).expect("create zdtm dir");
    // Rootless runs execute the programs as nobody.
    common::chmod(&dir, 0o755);
    // Named after what it is built from, and never replaced once there:
    // another test process (or another checkout sharing the target dir)
    // may be running it, and replacing a running program's file would
    // make its exe mapping "(deleted)" at the checkpoint.
    let hash = common::hash_file(&src) ^ common::hash_file(&src_dir.join("zdtm.h")).rotate_left(1);
    let out = dir.join(format!("{name}-{hash:016x}"));
    if out.exists() {
        return out;
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-pthread", "-Wall", "-D_GNU_SOURCE", "-I"])
        .arg(&src_dir)
        .arg("-o")
        .arg(&tmp)
        .arg(&src);
    let (status, _, stderr) = execute(&mut cmd, None, common::TIMEOUT, None);
    assert_eq!(
        status,
        Status::Exited(0),
        "compiling {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&stderr)
    );
    // link(2) fails with EEXIST rather than replacing what a concurrent
    // build put there first (the same program).
    match fs::hard_link(&tmp, &out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("link {}: {e}", out.display()),
    }
    let _ = fs::remove_file(&tmp);
    out
}

/// A background isotrace command, SIGKILLed if the test ends first (its
/// tracees die with it: PTRACE_O_EXITKILL).
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Until `cond` holds or `bg` exits; true if `cond` held.
fn until_or_exit(what: &str, bg: &mut Bg, mut cond: impl FnMut() -> bool) -> bool {
    let mut held = false;
    wait_until(what, WAIT, || {
        held = cond();
        held || bg.0.try_wait().ok().flatten().is_some()
    });
    held
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The restored root's pid, from the restorer's "... as pid N" line.
fn restored_pid(stderr: &str) -> Option<i32> {
    let line = stderr.lines().find(|l| l.contains(" as pid "))?;
    line.split(" as pid ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs program `name` through one checkpoint and restore.
fn zdtm(name: &str, how: How) {
    if how == How::Nobody && (!is_root() || !common::have_program("setpriv")) {
        eprintln!("skipping: needs root (to become nobody) and setpriv");
        return;
    }
    let exe = program(name);
    let w = World::new(how == How::Nobody);
    let dir = w.orig();
    let result = dir.join("result");
    let mut group = w.start(&[path_str(&exe), path_str(&dir)]);
    let ready = wait_ready(&dir, &mut group.0);
    assert!(ready, "{name} ended before it was ready: {}", text(&result));
    let img = w.checkpoint(&mut group);
    drop(group);
    let (out, err) = (w.dir().join("restore.out"), w.dir().join("restore.err"));
    let mut args = vec!["restore", path_str(&img)];
    if how == How::Native {
        args.insert(1, "--native");
    }
    let mut restore = Bg(w
        .command(common::isotrace(), &args)
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn isotrace restore"));
    let mut pid = None;
    until_or_exit("the restored pid", &mut restore, || {
        pid = restored_pid(&text(&err));
        pid.is_some()
    });
    let Some(pid) = pid else {
        panic!("{name}: the restore failed:\n{}", text(&err));
    };
    // Wake it only once it sleeps in zdtm_wait's sigsuspend(2) again: a
    // restored thread re-issues the call it was in, and a handler that
    // ran before that would leave it asleep in the re-issued call.
    until_or_exit("the restored program to sleep again", &mut restore, || {
        text(Path::new(&format!("/proc/{pid}/syscall")))
            .starts_with(&format!("{} ", libc::SYS_rt_sigsuspend))
    });
    // SAFETY: kill(2) of the pid the restorer just reported; it is its
    // descendant and cannot be reaped (and reused) before it exits.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let got_result = until_or_exit(
        &format!("the result of {name} ({how:?})"),
        &mut restore,
        || result.exists(),
    );
    let verdict = text(&result);
    let why = |status: &str| {
        format!(
            "{name} ({how:?}): {status}\n{}restore stderr:\n{}",
            if verdict.is_empty() {
                "no result\n"
            } else {
                &verdict
            },
            text(&err)
        )
    };
    assert!(verdict.starts_with("PASS"), "{}", why("the program failed"));
    if got_result {
        // The root wrote its verdict; the rest of the group ends with it.
        until_or_exit(
            &format!("{name} ({how:?}) to end after its result"),
            &mut restore,
            || false,
        );
    }
    let status = restore.0.wait().expect("wait for isotrace restore");
    assert!(status.success(), "{}", why(&status.to_string()));
}

/// Waits for DIR/ready, or the program's end; true if it got ready.
fn wait_ready(dir: &Path, child: &mut std::process::Child) -> bool {
    let ready = dir.join("ready");
    let mut got = false;
    wait_until("the program to be ready", WAIT, || {
        got = ready.exists();
        got || child.try_wait().ok().flatten().is_some()
    });
    got
}

/// One #[test] per program: `name` under a supervisor, plus the extra
/// ways listed.
macro_rules! zdtm {
    ($($(#[$attr:meta])* $name:ident $(: $($how:ident),+)?;)+) => {
        mod corpus {
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    super::zdtm(stringify!($name), super::How::Supervised);
                    $($(super::zdtm(stringify!($name), super::How::$how);)+)?
                }
            )+
        }
    };
}

zdtm! {
    anon_filled: Native, Nobody;
    blocked_read_thread;
    brk_heap;
    busy_syscall_entry: Nobody;
    cow_private;
    deleted_file: Native, Nobody;
    devices;
    dir_fd;
    epoll;
    eventfd;
    fifo: Native, Nobody;
    fifo_rdwr;
    file_dup_shared;
    file_mapping_dirty;
    file_offset: Native, Nobody;
    file_shared_fork: Native, Nobody;
    fork_storm: Native, Nobody;
    fork_tree: Native, Nobody;
    guard_pages;
    handler_running;
    inotify: Native, Nobody;
    itimer_real: Native;
    memfd_fd_only: Native;
    memfd_mapped;
    memfd_seals: Native, Nobody;
    mprotect_mix;
    nanosleep_child;
    pending_signals;
    pipe_blocked_read: Native;
    pipe_data;
    posix_timer: Native;
    process_settings;
    prot_none_data: Native;
    scm_rights: Native, Nobody;
    shm_anon_shared;
    signalfd;
    sigsuspend_mask;
    socketpair_dgram: Native, Nobody;
    socketpair_seqpacket;
    socketpair_stream;
    sparse_mapping: Native;
    sysv_shm;
    tcp_listen;
    thread_sigmask;
    thread_storm: Native, Nobody;
    threads_futex64: Native;
    timerfd;
    timerfd_expirations: Native, Nobody;
    udp_bound;
    udp_connected: Native, Nobody;
    udp_queued: Native, Nobody;
    unix_dgram_bound: Native, Nobody;
    unix_listen: Native, Nobody;
    unix_listen_waiting: Native, Nobody;
    unix_stream_conn;
    zombie: Native, Nobody;
    zombie_core: Native, Nobody;
}
