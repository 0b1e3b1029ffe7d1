//! Issue #4, the application-group API: each running group's control socket
//! (docs/API.md), `isotrace ps`, `--group`, and `env rm` refusing while a
//! group runs. Every test has its own ISOTRACE_HOME and XDG_RUNTIME_DIR.

mod common;

use common::{is_root, setpriv_prefix, wait_until, Iso, Run, Status};
use isotrace::api::client::Client;
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// One test's world: an [`Iso`] plus its own runtime directory.
struct World {
    iso: Iso,
}

impl World {
    fn new() -> World {
        let iso = Iso::new();
        fs::create_dir(iso.root().join("run")).unwrap();
        World { iso }
    }

    fn runtime(&self) -> PathBuf {
        self.iso.root().join("run")
    }

    fn socket(&self, group: &str) -> PathBuf {
        self.runtime()
            .join("isotrace")
            .join(format!("{group}.sock"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.iso.command(args);
        cmd.env("XDG_RUNTIME_DIR", self.runtime());
        cmd
    }

    fn isotrace(&self, args: &[&str]) -> Run {
        self.iso.execute(self.command(args))
    }

    /// Starts `isotrace ARGS` in the background and waits for `group`'s
    /// socket to answer.
    fn start(&self, group: &str, args: &[&str]) -> Background {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace");
        let bg = Background(child);
        let sock = self.socket(group);
        wait_until(&format!("{} to answer", sock.display()), WAIT, || {
            UnixStream::connect(&sock).is_ok()
        });
        bg
    }

    fn ps_json(&self) -> Vec<Value> {
        let run = self.isotrace(&["ps", "--json"]);
        run.assert_exit(0);
        serde_json::from_slice::<Value>(&run.stdout)
            .unwrap_or_else(|e| panic!("ps --json: {e}\n{}", run.describe()))
            .as_array()
            .expect("ps --json prints an array")
            .clone()
    }
}

/// A background supervisor, SIGKILLed if the test ends first (its tracees
/// die with it: PTRACE_O_EXITKILL).
struct Background(Child);

impl Background {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits for the supervisor to exit; returns its status as a shell
    /// reports it.
    fn wait(&mut self) -> i32 {
        common::shell_status_within(&mut self.0, WAIT)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends raw lines and returns the parsed response lines.
fn exchange(sock: &Path, lines: &[&str]) -> Vec<Value> {
    let stream = UnixStream::connect(sock).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    lines
        .iter()
        .map(|line| {
            writeln!(writer, "{line}").unwrap();
            let mut resp = String::new();
            reader.read_line(&mut resp).unwrap();
            serde_json::from_str(&resp).unwrap_or_else(|e| panic!("{resp:?}: {e}"))
        })
        .collect()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_group_answers_over_its_socket_and_stops() {
    let w = World::new();
    let mut bg = w.start("g", &["--env", "e", "--group", "g", "--", "sleep", "30"]);
    let sock = w.socket("g");
    assert_eq!(mode_of(&sock), 0o600, "socket mode");
    assert_eq!(mode_of(sock.parent().unwrap()), 0o700, "directory mode");

    let groups = w.ps_json();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert_eq!((&g["group"], &g["env"]), (&json!("g"), &json!("e")));
    assert_eq!(g["supervisor_pid"], json!(bg.pid()));
    assert!(g["processes"].as_u64().unwrap() >= 1, "{g}");
    let table = w.isotrace(&["ps"]);
    table.assert_exit(0);
    assert!(
        table.stdout_str().lines().any(|l| l.starts_with("g ")),
        "{}",
        table.describe()
    );

    let r = exchange(
        &sock,
        &[
            r#"{"v":1,"id":1,"op":"hello"}"#,
            r#"{"v":1,"id":2,"op":"status"}"#,
            r#"{"v":1,"id":3,"op":"ps"}"#,
            r#"{"v":1,"id":4,"op":"no-such-op"}"#,
            r#"{"v":1,"id":5,"op": "status""#,
            r#"{"v":1,"id":6,"op":"checkpoint","leave_running":"yes"}"#,
            r#"{"v":1,"id":7,"op":"stats"}"#,
        ],
    );
    assert_eq!(r[0]["result"]["versions"], json!([1]));
    assert_eq!((&r[1]["id"], &r[1]["ok"]), (&json!(2), &json!(true)));
    assert_eq!(r[1]["result"]["env"], "e");
    assert_eq!(r[1]["result"]["supervisor_pid"], json!(bg.pid()));
    let procs = r[2]["result"]["processes"].as_array().unwrap();
    assert!(
        procs.iter().any(|p| p["cmdline"] == json!(["sleep", "30"])),
        "{procs:?}"
    );
    assert_eq!(
        (&r[3]["ok"], &r[3]["error"]["code"]),
        (&json!(false), &json!("unknown-op"))
    );
    assert_eq!(r[4]["error"]["code"], "bad-request");
    assert_eq!(r[5]["error"]["code"], "bad-request");
    assert!(r[6]["result"]["peak_rss_kib"].as_u64().unwrap() > 0);

    // The Rust API sees the same group.
    let mut client = Client::connect(&sock).unwrap();
    assert_eq!(client.status().unwrap().group, "g");

    let again = w.isotrace(&["--env", "e", "--group", "g", "--", "true"]);
    assert_eq!(again.status, Status::Exited(125), "{}", again.describe());
    let want = format!("group g is already running (supervisor pid {})", bg.pid());
    assert!(again.stderr_str().contains(&want), "{}", again.describe());
    let bad = w.isotrace(&["--group", "../x", "--", "true"]);
    assert_eq!(bad.status, Status::Exited(125), "{}", bad.describe());

    let stop = exchange(&sock, &[r#"{"v":1,"id":9,"op":"stop"}"#]);
    assert_eq!(stop[0]["result"]["signal"], "TERM", "{stop:?}");
    assert_eq!(bg.wait(), 128 + 15, "sleep's SIGTERM passes through");
    assert!(!sock.exists(), "the socket is removed when the group exits");
    assert!(w.ps_json().is_empty());
}

#[test]
fn env_rm_refuses_while_a_group_runs_unless_forced() {
    let w = World::new();
    let mut bg = w.start("g", &["--env", "e", "--group", "g", "--", "sleep", "30"]);
    let show = w.isotrace(&["env", "show", "e", "--json"]);
    show.assert_exit(0);
    let show: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(show["groups"][0]["group"], "g", "{show}");

    let rm = w.isotrace(&["env", "rm", "e"]);
    assert_eq!(rm.status, Status::Exited(1), "{}", rm.describe());
    let want = format!(
        "isotrace: env e is in use by group g (supervisor pid {}); use --force",
        bg.pid()
    );
    assert_eq!(rm.stderr_str().trim(), want);
    assert!(w.iso.home().join("envs/e").exists());

    w.isotrace(&["env", "rm", "e", "--force"]).assert_exit(0);
    assert_eq!(bg.wait(), 128 + 15);
    assert!(!w.socket("g").exists());
    let list = w.isotrace(&["env", "list"]);
    assert!(
        !list.stdout_str().lines().any(|l| l == "e"),
        "{}",
        list.describe()
    );
}

/// A supervisor stopped by job control cannot answer: a request is not
/// sent at all (it would be carried out whenever the supervisor is
/// continued), the error names the pid and how to continue it, and the
/// group works again once continued.
#[test]
fn a_stopped_supervisor_is_named_and_gets_no_request() {
    let w = World::new();
    let bg = w.start(
        "st",
        &["--no-isolation", "--group", "st", "--", "sleep", "60"],
    );
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(bg.pid(), libc::SIGSTOP) };
    wait_until("the supervisor to stop", WAIT, || {
        common::proc_state(bg.pid()) == Some('T')
    });
    let img = w.iso.root().join("img");
    let run = w.isotrace(&["checkpoint", "st", "-o", common::path_str(&img)]);
    assert_ne!(run.status, Status::Exited(0), "{}", run.describe());
    let err = run.stderr_str();
    assert!(
        err.contains(&format!("supervisor (pid {}) is stopped", bg.pid()))
            && err.contains(&format!("kill -CONT {}", bg.pid())),
        "{}",
        run.describe()
    );
    let mut c = Client::connect(&w.socket("st")).unwrap();
    let e = c.ps().unwrap_err().to_string();
    assert!(e.contains("was not sent"), "{e}");
    // SAFETY: as above.
    unsafe { libc::kill(bg.pid(), libc::SIGCONT) };
    wait_until("the supervisor to run", WAIT, || {
        common::proc_state(bg.pid()) != Some('T')
    });
    let mut c = Client::connect(&w.socket("st")).unwrap();
    assert_eq!(c.ps().unwrap().len(), 1);
    // The refused checkpoint never reached the supervisor: no image now,
    // and the group still runs.
    assert!(!img.exists(), "a refused request was carried out later");
    assert_eq!(c.ps().unwrap().len(), 1);
}

#[test]
fn a_dead_supervisors_socket_is_cleaned() {
    let w = World::new();
    let mut bg = w.start("g", &["--env", "e", "--group", "g", "--", "sleep", "30"]);
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(bg.pid(), libc::SIGKILL) };
    bg.wait();
    assert!(w.socket("g").exists(), "a crash leaves the socket");
    assert!(w.ps_json().is_empty());
    assert!(!w.socket("g").exists(), "ps removed the stale socket");

    let mut bg = w.start("g", &["--env", "e", "--group", "g", "--", "sleep", "30"]);
    // SAFETY: as above.
    unsafe { libc::kill(bg.pid(), libc::SIGKILL) };
    bg.wait();
    // A new start replaces the stale socket.
    let run = w.isotrace(&["--env", "e", "--group", "g", "--", "true"]);
    run.assert_exit(0);
    assert!(!w.socket("g").exists());
}

#[test]
fn groups_without_an_env_are_named_after_the_command() {
    let w = World::new();
    let child = w
        .command(&["--no-isolation", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bg = Background(child);
    let group = format!("sleep-{}", bg.pid());
    wait_until("the socket", WAIT, || {
        UnixStream::connect(w.socket(&group)).is_ok()
    });
    let groups = w.ps_json();
    assert_eq!(groups[0]["group"], json!(group));
    assert_eq!(
        (&groups[0]["env"], &groups[0]["mode"]),
        (&Value::Null, &json!("no-isolation"))
    );
    let mut c = Client::connect(&w.socket(&group)).unwrap();
    let killed = c.stop("KILL").unwrap();
    assert!(killed
        .signalled
        .contains(&groups[0]["root_pid"].as_i64().unwrap().try_into().unwrap()));
}

#[test]
fn another_uid_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let w = World::new();
    let _bg = w.start("g", &["--env", "e", "--group", "g", "--", "sleep", "30"]);
    let as_nobody = |args: &[&str]| {
        let mut argv = setpriv_prefix();
        argv.push(common::isotrace().into());
        argv.extend(args.iter().map(Into::into));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("XDG_RUNTIME_DIR", w.runtime())
            .current_dir("/");
        w.iso.execute(cmd)
    };
    // Mode 0700 keeps nobody out of the directory.
    let run = as_nobody(&["ps", "--json"]);
    assert_ne!(run.status, Status::Exited(0), "{}", run.describe());
    // With the file modes opened, SO_PEERCRED still refuses.
    for dir in [w.iso.root(), &w.runtime(), &w.runtime().join("isotrace")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(w.socket("g"), fs::Permissions::from_mode(0o666)).unwrap();
    let run = as_nobody(&["ps", "--json"]);
    run.assert_exit(0);
    assert_eq!(run.stdout_str().trim(), "[]", "{}", run.describe());
    assert!(
        run.stderr_str().contains("permission-denied"),
        "{}",
        run.describe()
    );
    // The refused client did not disturb the group.
    assert_eq!(w.ps_json().len(), 1);
}

#[test]
fn programs_sharing_an_env_are_separate_groups() {
    let w = World::new();
    let _a = w.start("e", &["--env", "e", "--", "sleep", "30"]);
    // The default name is taken: the second group is named e-PID.
    let b = w
        .command(&["--env", "e", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let b = Background(b);
    let second = format!("e-{}", b.pid());
    wait_until("the second socket", WAIT, || {
        UnixStream::connect(w.socket(&second)).is_ok()
    });
    let groups = w.ps_json();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["e", second.as_str()]);
    assert!(groups.iter().all(|g| g["env"] == "e"));
    let rm = w.isotrace(&["env", "rm", "e"]);
    assert!(
        rm.stderr_str().contains("and 1 other group(s)"),
        "{}",
        rm.describe()
    );
}
