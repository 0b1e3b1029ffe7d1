//! `isotrace snapshot`, `inspect` and `core` against processes running
//! natively (not under isotrace): the target is frozen only briefly and
//! finishes normally; the image lists its threads, files and memory; gdb
//! opens the core with every thread's stack; bad input is refused clearly.

mod common;
mod snapshot_support;

use common::{guest, have_program, wait_for_pid, wait_until, Status};
use isotrace_checkpoint::model::FdKind;
use isotrace_checkpoint::Image;
use snapshot_support::{children_of, gdb, path, run_isotrace, snapshot, tracer_of, Target, WAIT};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Starts snap_threads in `dir` and waits until its three threads block.
fn start_threads_guest(dir: &Path) -> (Target, i32, PathBuf) {
    let exe = guest("snap_threads");
    let target = Target::spawn(Command::new(&exe).arg(dir).current_dir(dir));
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    (target, pid, exe)
}

#[test]
fn threads_inspect_core_and_the_target_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (target, pid, exe) = start_threads_guest(dir);
    let img = dir.join("img");
    let run = snapshot(pid, &img, dir);
    run.assert_exit(0);

    // The JSON view: 4 threads, argv, cwd, the pipes.
    let json = run_isotrace(&["inspect", path(&img), "--json"], dir);
    json.assert_exit(0);
    let text = json.stdout_str();
    assert!(text.contains("\"schema\": \"isotrace-inspect\""), "{text}");
    assert_eq!(text.matches("\"tid\":").count(), 4, "{text}");
    assert!(
        text.contains(&format!("\"cwd\": \"{}\"", path(dir))),
        "{text}"
    );
    assert!(text.contains(path(&exe)), "{text}");

    // The same through the library, field by field.
    let image = Image::open(&img).unwrap();
    let proc = image.process(pid).unwrap();
    assert_eq!(proc.threads.len(), 4);
    assert_eq!(proc.cwd.as_deref(), Some(path(dir)));
    let argv: Vec<&[u8]> = proc.cmdline.split(|&b| b == 0).collect();
    assert_eq!(argv[..2], [path(&exe).as_bytes(), path(dir).as_bytes()]);
    let pipes = proc.fds.iter().filter(|f| f.kind == FdKind::Pipe).count();
    assert!(pipes >= 6, "three pipes: {:?}", proc.fds);
    assert!(proc
        .threads
        .iter()
        .all(|t| t.xstate.len() >= 576 && t.xcr0 & 3 == 3));
    // `--method auto`: copy-before-write where userfaultfd(2) is allowed
    // in the target (root here), the fork otherwise.
    let method = if common::is_root() {
        "uffd-wp"
    } else {
        "cow-fork"
    };
    assert_eq!(image.manifest.memory_method, method);

    // Memory: the marker string in the guest's .data, by hexdump.
    let data = proc
        .vmas
        .iter()
        .find(|v| v.path == path(&exe) && v.writable())
        .expect("the guest's data mapping");
    let hex = run_isotrace(
        &[
            "inspect",
            path(&img),
            "--dump-memory",
            &format!("{:#x}", data.start),
            &(data.len()).to_string(),
        ],
        dir,
    );
    hex.assert_exit(0);
    let ascii: String = hex
        .stdout_str()
        .lines()
        .filter_map(|l| {
            l.split_once('|')
                .map(|(_, a)| a.trim_end_matches('|').to_owned())
        })
        .collect();
    assert!(
        ascii.contains("isotrace-snapshot-marker-0123456789"),
        "{}",
        hex.stdout_str()
    );

    // The core: every blocked thread's function by name.
    let core = dir.join("core");
    run_isotrace(&["core", path(&img), "-o", path(&core)], dir).assert_exit(0);
    if let Some(bt) = gdb(&exe, &core, &["thread apply all bt", "info threads"]) {
        for f in [
            "blocked_in_alpha",
            "blocked_in_beta",
            "blocked_in_gamma",
            "main",
        ] {
            assert!(bt.contains(f), "gdb backtraces lack {f}:\n{bt}");
        }
        assert!(bt.contains(&format!("LWP {pid}")), "{bt}");
    }

    // The target was left as it was: it wakes its threads and finishes.
    assert!(!fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("TracerPid:\t1"));
    fs::write(dir.join("go"), "").unwrap();
    let (status, out) = target.finish();
    assert_eq!(status, Status::Exited(0));
    assert_eq!(
        out,
        "sum 6\nmarker isotrace-snapshot-marker-0123456789\ndone\n"
    );
}

#[test]
fn subcommand_views() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_target, pid, _) = start_threads_guest(dir);
    let img = dir.join("img");
    snapshot(pid, &img, dir).assert_exit(0);
    let human = run_isotrace(&["inspect", path(&img)], dir);
    human.assert_exit(0);
    assert!(
        human
            .stdout_str()
            .contains(&format!("process {pid} (snap_threads)")),
        "{}",
        human.stdout_str()
    );
    let ps = run_isotrace(&["inspect", path(&img), "ps"], dir);
    assert_eq!(ps.assert_exit(0).stdout_str().matches("tid ").count(), 4);
    let fds = run_isotrace(&["inspect", path(&img), "fds"], dir);
    assert!(fds.assert_exit(0).stdout_str().contains("pipe:["));
    let mems = run_isotrace(&["inspect", path(&img), "mems"], dir);
    assert!(mems.assert_exit(0).stdout_str().contains("[stack]"));
    run_isotrace(&["inspect", path(&img), "sockets", "--json"], dir).assert_exit(0);
}

#[test]
fn a_missing_pid_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let run = snapshot(pid, &tmp.path().join("img"), tmp.path());
    assert_eq!(run.status, Status::Exited(1), "{}", run.describe());
    assert!(
        run.stderr_str()
            .contains(&format!("isotrace: no process {pid}")),
        "{}",
        run.describe()
    );
    assert!(!tmp.path().join("img").exists());
}

#[test]
fn another_users_process_is_refused() {
    if !common::is_root() {
        eprintln!("not root: cannot start a process as another user; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    common::chmod(tmp.path(), 0o777);
    let target = Target::spawn(Command::new("sleep").arg("60"));
    let pid = target.child.id() as i32;
    let img = tmp.path().join("img");
    let mut cmd = Command::new("setpriv");
    cmd.args(&common::setpriv_prefix()[1..])
        .arg(common::isotrace())
        .args(["snapshot", &pid.to_string(), "-o", path(&img)]);
    let (status, _, err) = common::execute(&mut cmd, None, WAIT, None);
    let err = String::from_utf8_lossy(&err);
    assert_eq!(status, Status::Exited(1), "{err}");
    assert!(
        err.contains(&format!("isotrace: not allowed to trace pid {pid}")),
        "{err}"
    );
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn an_already_traced_target_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = guest("snap_threads");
    let mut tracers = vec![vec![
        common::isotrace().to_str().unwrap().to_owned(),
        "--no-isolation".into(),
        "--".into(),
    ]];
    if have_program("strace") {
        tracers.push(vec![
            "strace".into(),
            "-f".into(),
            "-o".into(),
            "/dev/null".into(),
        ]);
    }
    for (i, tracer) in tracers.iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        fs::create_dir(&dir).unwrap();
        let _target = Target::spawn(
            Command::new(&tracer[0])
                .args(&tracer[1..])
                .arg(&exe)
                .arg(&dir),
        );
        let pid = wait_for_pid(&dir.join("pid"), WAIT);
        refused_naming_its_tracer(pid, &dir, &format!("{tracer:?}"));
    }
}

/// gdb attached to a running process (not started under it) is its tracer
/// until it detaches: the snapshot refuses and names gdb's pid.
#[test]
fn a_target_under_gdb_is_refused() {
    if !have_program("gdb") {
        eprintln!("gdb is not installed: skipped (apt-get install gdb)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = Target::spawn(Command::new(guest("snap_threads")).arg(dir));
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let attached = dir.join("attached");
    let gdb = Target::spawn(Command::new("gdb").args([
        "-nx",
        "-batch",
        "-p",
        &pid.to_string(),
        "-ex",
        &format!("shell touch {} && sleep 60", path(&attached)),
    ]));
    wait_until("gdb to attach", WAIT, || attached.exists());
    assert_eq!(tracer_of(pid), gdb.pid(), "gdb is the tracer");
    refused_naming_its_tracer(pid, dir, "gdb");
    drop(gdb);
    drop(target);
}

/// The snapshot of an already-traced `pid` fails, names the tracer from
/// /proc, writes nothing, and leaves the tracer in place.
fn refused_naming_its_tracer(pid: i32, dir: &Path, what: &str) {
    let tracer = tracer_of(pid);
    assert!(tracer > 0, "{what}: pid {pid} should be traced");
    let img = dir.join("img");
    let run = snapshot(pid, &img, dir);
    assert_eq!(run.status, Status::Exited(1), "{}", run.describe());
    let msg = format!("isotrace: pid {pid} is already traced by pid {tracer}\n");
    assert!(
        run.stderr_str().contains(&msg),
        "{what}: {}",
        run.describe()
    );
    assert!(!img.exists());
    assert_eq!(tracer_of(pid), tracer, "{what}: the tracer is unchanged");
}

#[test]
fn a_corrupt_image_names_the_section() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = Target::spawn(Command::new("sleep").arg("60"));
    let pid = target.child.id() as i32;
    wait_until("sleep to start", WAIT, || {
        fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("sleep"))
    });
    let img = dir.join("img");
    snapshot(pid, &img, dir).assert_exit(0);
    for section in ["procs.bin".to_owned(), format!("pages-{pid}.img")] {
        let copy = dir.join(format!("copy-{section}"));
        fs::create_dir(&copy).unwrap();
        for e in fs::read_dir(&img).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        let file = copy.join(&section);
        let mut bytes = fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&file, bytes).unwrap();
        for args in [
            vec!["inspect", path(&copy)],
            vec!["core", path(&copy), "-o", path(&dir.join("c"))],
        ] {
            let run = run_isotrace(&args, dir);
            assert_eq!(run.status, Status::Exited(1), "{}", run.describe());
            let want = format!("image section {section} is corrupt");
            assert!(run.stderr_str().contains(&want), "{}", run.describe());
        }
    }
    assert!(!dir.join("c").exists());
}

#[test]
fn a_target_dying_mid_snapshot_leaves_no_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = Target::spawn(Command::new("sleep").arg("60"));
    let pid = target.child.id() as i32;
    wait_until("sleep to start", WAIT, || {
        fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("sleep"))
    });
    let mut cmd = Command::new(common::isotrace());
    cmd.args(["snapshot", &pid.to_string(), "-o", path(&dir.join("img"))])
        .env("ISOTRACE_FAULT", "kill-after-freeze");
    let (status, _, err) = common::execute(&mut cmd, None, WAIT, None);
    let err = String::from_utf8_lossy(&err);
    assert_eq!(status, Status::Exited(1), "{err}");
    assert!(
        err.contains(&format!("pid {pid} exited during the snapshot")),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let (status, _) = target.finish();
    assert_eq!(status, Status::Signaled(libc::SIGKILL));
}

#[test]
fn a_process_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _target = Target::spawn(
        Command::new("/bin/sh")
            .args(["-c", "sleep 60 & sleep 61 & echo ready > ready; wait"])
            .current_dir(dir),
    );
    let pid = _target.child.id() as i32;
    common::wait_for_file(&dir.join("ready"), WAIT);
    // Both children forked before `ready`, but may not have exec'd sleep
    // yet: wait until they are the processes the assertions describe.
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let kids: Vec<String> = std::fs::read_to_string(&children)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let sleeping = kids
            .iter()
            .filter(|k| {
                std::fs::read_to_string(format!("/proc/{k}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .count();
        if sleeping == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "children never became sleep: {kids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let img = dir.join("img");
    run_isotrace(
        &["snapshot", &pid.to_string(), "--tree", "-o", path(&img)],
        dir,
    )
    .assert_exit(0);
    let image = Image::open(&img).unwrap();
    assert_eq!(image.tree.processes.len(), 3, "{:?}", image.manifest.pids);
    assert!(image.tree.processes[1..]
        .iter()
        .all(|p| p.ppid == pid && p.comm == "sleep"));
    // Each of the three had a copy-on-write child, killed and reaped: the
    // shell (blocked in wait) still has exactly its two sleeps.
    let mut kids = children_of(pid);
    kids.sort_unstable();
    let mut want: Vec<i32> = image.tree.processes[1..].iter().map(|p| p.pid).collect();
    want.sort_unstable();
    assert_eq!(kids, want);
    assert!(image.tree.processes[1..]
        .iter()
        .all(|p| children_of(p.pid).is_empty()));
}

#[test]
fn python_core_opens_in_gdb() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = "import os, socket, threading, time\n\
        srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n\
        a, b = socket.socketpair()\n\
        ts = [threading.Thread(target=time.sleep, args=(60,), daemon=True) for _ in range(2)]\n\
        [t.start() for t in ts]\n\
        open('pid.tmp', 'w').write(str(os.getpid())); os.rename('pid.tmp', 'pid')\n\
        time.sleep(60)\n";
    let _target = Target::spawn(
        Command::new(common::PYTHON)
            .args(["-c", script])
            .current_dir(dir),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let img = dir.join("img");
    snapshot(pid, &img, dir).assert_exit(0);
    let image = Image::open(&img).unwrap();
    assert_eq!(image.process(pid).unwrap().threads.len(), 3);
    let socks = run_isotrace(&["inspect", path(&img), "sockets", "--json"], dir);
    let text = socks.assert_exit(0).stdout_str();
    assert!(
        text.contains("\"state\": \"LISTEN\"") && text.contains("127.0.0.1:"),
        "{text}"
    );
    assert_eq!(text.matches("\"family\": \"unix\"").count(), 2, "{text}");
    let core = dir.join("core");
    run_isotrace(&["core", path(&img), "-o", path(&core)], dir).assert_exit(0);
    if let Some(out) = gdb(Path::new(common::PYTHON), &core, &["info threads", "bt"]) {
        let threads = out
            .lines()
            .filter(|l| {
                l.trim_start_matches(['*', ' '])
                    .starts_with(char::is_numeric)
                    && l.contains("(LWP ")
            })
            .count();
        assert_eq!(threads, 3, "{out}");
        assert!(
            !out.contains("corrupt string table"),
            "the vdso must be whole:\n{out}"
        );
        assert!(out.contains(&format!("LWP {pid}")), "{out}");
    }
}

#[test]
fn a_zombie_leader_is_skipped_not_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _target = Target::spawn(Command::new(guest("snap_leader_exit")).arg(dir));
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let img = dir.join("img");
    snapshot(pid, &img, dir).assert_exit(0);
    let image = Image::open(&img).unwrap();
    let threads = &image.process(pid).unwrap().threads;
    assert_eq!(threads.len(), 1, "only the worker: {threads:?}");
    assert_ne!(threads[0].tid, pid);
}

/// `ps --all` lists what `snapshot` could take: a free process says so, a
/// process under an isotrace supervisor is refused naming that tracer,
/// as the snapshot itself would be; the human table says the same.
#[test]
fn ps_all_says_which_processes_a_snapshot_can_take() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = guest("snap_threads");
    let (free_dir, traced_dir) = (tmp.path().join("free"), tmp.path().join("traced"));
    fs::create_dir(&free_dir).unwrap();
    fs::create_dir(&traced_dir).unwrap();
    let _free = Target::spawn(Command::new(&exe).arg(&free_dir));
    let _traced = Target::spawn(
        Command::new(common::isotrace())
            .args(["--no-isolation", "--"])
            .arg(&exe)
            .arg(&traced_dir),
    );
    let free = wait_for_pid(&free_dir.join("pid"), WAIT);
    let traced = wait_for_pid(&traced_dir.join("pid"), WAIT);
    let run = run_isotrace(&["ps", "--all", "--json"], tmp.path());
    run.assert_exit(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout_str()).unwrap();
    let procs = v["processes"].as_array().expect("a processes array");
    let find = |pid: i32| {
        procs
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("pid {pid} not listed"))
    };
    assert!(find(free)["refused"].is_null(), "{}", find(free));
    assert_eq!(find(free)["threads"], 4);
    let why = find(traced)["refused"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tracer = tracer_of(traced);
    assert!(
        why.contains(&format!("already traced by {tracer} (isotrace)")),
        "{why}"
    );
    let table = run_isotrace(&["ps", "--all"], tmp.path());
    table.assert_exit(0);
    let text = table.stdout_str();
    let line = |pid: i32| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("pid {pid} not in:\n{text}"))
            .to_owned()
    };
    assert!(line(free).contains(" yes "), "{text}");
    assert!(line(traced).contains("no: already traced"), "{text}");
}
