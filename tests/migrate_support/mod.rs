//! What the migration tests share (tests/migrate.rs, tests/migrate_net.rs):
//! a world of two ISOTRACE_HOMEs ("home" is the source host, "home2" the
//! destination), groups started in env A, receivers, and the checks of a
//! counter's output. Each test binary uses part of it.
#![allow(dead_code)]

use crate::common::{self, guest, path_str, wait_until};
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(60);
pub const TOKEN: &str = "migrate-test-token-0123456789";

/// A test's own homes (source and destination) and XDG_RUNTIME_DIR.
pub struct World {
    pub tmp: tempfile::TempDir,
    /// Processes to kill when the test ends, however it ends.
    pub pids: common::Pids,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["home", "home2", "run"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        World {
            tmp,
            pids: common::Pids::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn command(&self, home: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::isotrace());
        cmd.args(args)
            .current_dir(self.dir())
            .env("ISOTRACE_HOME", self.dir().join(home))
            .env("XDG_RUNTIME_DIR", self.dir().join("run"))
            .env_remove("ISOTRACE_FAULT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs isotrace to completion: (status, stdout, stderr).
    pub fn isotrace(
        &self,
        home: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut cmd = self.command(home, args);
        cmd.envs(env.iter().copied());
        let (status, out, err) = common::execute(&mut cmd, None, WAIT * 2, None);
        let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (status.shell_code(), s(out), s(err))
    }

    /// `isotrace run --env A --group G -- rst_counter OUT PID`, once it
    /// has counted a little. Returns the supervisor.
    pub fn start_counter(&mut self, group: &str) -> Child {
        self.start_guest(group, "rst_counter", &[])
    }

    /// `isotrace run --env A --group G -- GUEST OUT PID EXTRA...`, once it
    /// has written a few lines.
    pub fn start_guest(&mut self, group: &str, name: &str, extra: &[&str]) -> Child {
        self.start_guest_with(group, &[], name, extra)
    }

    /// [`World::start_guest`] with more flags for `run`.
    pub fn start_guest_with(
        &mut self,
        group: &str,
        run_flags: &[&str],
        name: &str,
        extra: &[&str],
    ) -> Child {
        let exe = guest(name);
        let (out, pid) = (self.dir().join("out"), self.dir().join("pid"));
        let mut args = vec!["run", "--env", "A", "--group", group];
        args.extend_from_slice(run_flags);
        args.push("--");
        let mut cmd = self.command("home", &args);
        cmd.args([path_str(&exe), path_str(&out), path_str(&pid)])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        self.pids.push(child.id() as i32);
        wait_until("the counter to count", WAIT, || {
            counted(&self.env_file("home", "A", &out)) >= 3
        });
        child
    }

    /// The copy, in env `env` of `home`, counts on from where the source
    /// (env A of "home") stopped, with no gap and no repeat.
    pub fn assert_counts_on(&self, home: &str, env: &str) {
        let before = counted(&self.env_file("home", "A", &self.out()));
        let there = self.env_file(home, env, &self.out());
        wait_until(&format!("the copy to count on in env {env}"), WAIT, || {
            counted(&there) >= before + 5
        });
        assert!(assert_seamless(&there) >= before + 5);
    }

    /// Where env NAME of `home` keeps the public path `public`.
    pub fn env_file(&self, home: &str, env: &str, public: &Path) -> PathBuf {
        let rel = public.strip_prefix("/").unwrap();
        self.dir()
            .join(home)
            .join("envs")
            .join(env)
            .join("upper")
            .join(rel)
    }

    pub fn out(&self) -> PathBuf {
        self.dir().join("out")
    }

    /// `isotrace receive --listen 127.0.0.1:0 --once --json` with home2,
    /// and its port.
    pub fn receiver(&mut self, token: &str, env: &[(&str, &str)]) -> (Child, u16) {
        self.receiver_of("home2", token, env)
    }

    pub fn receiver_of(&mut self, home: &str, token: &str, env: &[(&str, &str)]) -> (Child, u16) {
        let mut cmd = self.command(
            home,
            &["receive", "--listen", "127.0.0.1:0", "--once", "--json"],
        );
        cmd.env("ISOTRACE_MIGRATE_TOKEN", token)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        self.pids.push(child.id() as i32);
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                eprintln!("[receiver] {l}");
            }
        });
        (child, port)
    }
}

/// How far the counter's file has counted (0 if absent).
pub fn counted(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("ok ")?.split(' ').next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// Every line is "ok N", N = 1, 2, 3... in order: no gap, no repeat, no
/// BAD line. A last line still being written may be cut.
pub fn assert_seamless(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    let mut n = 0;
    let mut pieces: Vec<&str> = text.split('\n').collect();
    pieces.pop(); // "" after the last newline, or a line being written
    for line in pieces {
        n += 1;
        let want = format!("ok {n}");
        let ok = line == want || line.starts_with(&format!("{want} "));
        assert!(ok, "line {n} is {line:?} in {}:\n{text}", path.display());
    }
    n
}

/// Ends a group that is still running: SIGKILL to its supervisor (whose
/// PTRACE_O_EXITKILL takes the group along), then reaps it.
pub fn end(mut sup: Child) {
    let _ = sup.kill();
    let _ = sup.wait();
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub fn dest_pid(v: &Value) -> i32 {
    v["dest_pids"][0].as_i64().expect("a destination pid") as i32
}

/// The group must be gone: its supervisor exited (the group was killed).
pub fn assert_released(sup: &mut Child) {
    let status = common::shell_status_within(sup, WAIT);
    assert_eq!(status, 137, "the source group should have been killed");
}

/// Two "hosts": network namespaces joined by a veth pair (10.213.N.1 and
/// .2), removed when dropped. None (the test is skipped) without root or
/// `ip`.
pub struct Hosts {
    pub a: String,
    pub b: String,
    pub ip_b: String,
    /// Host A's end of the link.
    pub veth_a: String,
}

impl Hosts {
    pub fn new(tag: &str) -> Option<Hosts> {
        if !common::is_root() || !common::have_program("ip") {
            eprintln!("skipped: needs root and ip(8) to make network namespaces");
            return None;
        }
        let id = std::process::id();
        let (a, b) = (format!("isomig-{tag}a-{id}"), format!("isomig-{tag}b-{id}"));
        let net = format!("10.213.{}", (id as usize + tag.len() * 17) % 250);
        let va = format!("vm{tag}a{}", id % 100_000);
        let hosts = Hosts {
            a: a.clone(),
            b: b.clone(),
            ip_b: format!("{net}.2"),
            veth_a: va.clone(),
        };
        let vb = format!("vm{tag}b{}", id % 100_000);
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), a.clone()],
            vec!["netns".into(), "add".into(), b.clone()],
            vec![
                "link".into(),
                "add".into(),
                va.clone(),
                "netns".into(),
                a.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                vb.clone(),
                "netns".into(),
                b.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "addr".into(),
                "add".into(),
                format!("{net}.1/24"),
                "dev".into(),
                va.clone(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "addr".into(),
                "add".into(),
                format!("{net}.2/24"),
                "dev".into(),
                vb.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                va.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                vb.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let st = Command::new("ip").args(&step).status().unwrap();
            assert!(st.success(), "ip {}", step.join(" "));
        }
        Some(hosts)
    }

    /// Bytes sent by host A's end of the link.
    pub fn sent_by_a(&self) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.a, "cat"])
            .arg(format!(
                "/sys/class/net/{}/statistics/tx_bytes",
                self.veth_a
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    pub fn ip(&self, args: &[&str]) {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {}", args.join(" "));
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl World {
    /// `ip netns exec NS isotrace ARGS...` with this world's environment.
    pub fn in_netns(&self, ns: &str, home: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(common::isotrace())
            .args(args)
            .current_dir(self.dir())
            .env("ISOTRACE_HOME", self.dir().join(home))
            .env("XDG_RUNTIME_DIR", self.dir().join("run"))
            .env("ISOTRACE_MIGRATE_TOKEN", TOKEN)
            .env_remove("ISOTRACE_FAULT")
            .stdin(Stdio::null());
        cmd
    }

    /// rst_counter in env A, its supervisor in namespace `ns`.
    pub fn counter_in(&mut self, ns: &str, group: &str) -> Child {
        let exe = guest("rst_counter");
        let (out, pid) = (self.out(), self.dir().join("pid"));
        let args = ["run", "--env", "A", "--group", group, "--"];
        let mut cmd = self.in_netns(ns, "home", &args);
        cmd.args([path_str(&exe), path_str(&out), path_str(&pid)])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        self.pids.push(child.id() as i32);
        let a = self.env_file("home", "A", &out);
        wait_until("the counter to count", WAIT, || counted(&a) >= 3);
        child
    }

    /// `isotrace receive --once` in namespace `ns` on ADDR:0; its port.
    pub fn receiver_in(&mut self, ns: &str, addr: &str) -> (Child, u16) {
        let listen = format!("{addr}:0");
        let mut cmd = self.in_netns(ns, "home2", &["receive", "--listen", &listen, "--once"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        self.pids.push(child.id() as i32);
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("no port in {line:?}"));
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                eprintln!("[receiver] {l}");
            }
        });
        (child, port)
    }
}
