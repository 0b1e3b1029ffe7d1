//! Shared by the restore test files (tests/restore_groups.rs,
//! tests/restore_api.rs): a test's own isotrace home and directories,
//! running a program under `isotrace run --group`, checkpointing and
//! restoring it, and reading what it left. Not a test target itself
//! (cargo builds only tests/*.rs and tests/*/main.rs).
#![allow(dead_code)]

use crate::common::{self, guest, path_str, wait_for_pid, wait_until};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(60);

/// A test's own ISOTRACE_HOME, XDG_RUNTIME_DIR and working dirs; with
/// `nobody`, every isotrace command runs as nobody (setpriv(1)).
pub struct World {
    tmp: tempfile::TempDir,
    pub nobody: bool,
}

/// What one `isotrace` command did.
pub struct Out {
    pub status: i32,
    pub stderr: String,
}

impl World {
    pub fn new(nobody: bool) -> World {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["home", "run", "orig", "native"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let w = World { tmp, nobody };
        if nobody {
            for d in ["", "home", "run", "orig", "native"] {
                let p = w.dir().join(d);
                fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
            }
        }
        w
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Where the checkpointed run writes; the native run writes to `native`.
    pub fn orig(&self) -> PathBuf {
        self.dir().join("orig")
    }

    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = if self.nobody {
            let mut c = Command::new(common::setpriv_prefix()[0].clone());
            c.args(&common::setpriv_prefix()[1..]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(self.dir())
            .env("HOME", self.dir().join("home"))
            .env("ISOTRACE_HOME", self.dir().join("home"))
            .env("XDG_RUNTIME_DIR", self.dir().join("run"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn isotrace(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(common::isotrace(), args);
        let (status, _, stderr) = common::execute(&mut cmd, None, WAIT, None);
        Out {
            status: status.shell_code(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `isotrace run --no-isolation --group g -- ARGV` in the background.
    pub fn start(&self, argv: &[&str]) -> Group {
        let mut args = vec!["run", "--no-isolation", "--group", "g", "--"];
        args.extend_from_slice(argv);
        let child = self
            .command(common::isotrace(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace run");
        Group(child)
    }

    /// Checkpoints group g (which ends it) into DIR/img and returns it.
    pub fn checkpoint(&self, group: &mut Group) -> PathBuf {
        let img = self.dir().join("img");
        let out = self.isotrace(&["checkpoint", "g", "-o", path_str(&img)]);
        assert_eq!(out.status, 0, "checkpoint: {}", out.stderr);
        common::shell_status_within(&mut group.0, WAIT);
        img
    }

    /// `isotrace restore --native IMG EXTRA...`: waits for the program.
    pub fn restore(&self, img: &Path, extra: &[&str]) -> Out {
        let mut args = vec!["restore", "--native", path_str(img)];
        args.extend_from_slice(extra);
        self.isotrace(&args)
    }

    /// Runs ARGV natively to the end (as the same user).
    pub fn native(&self, argv: &[&str]) {
        let mut cmd = self.command(Path::new(argv[0]), &argv[1..]);
        let (status, _, stderr) = common::execute(&mut cmd, None, WAIT, None);
        assert_eq!(
            status.shell_code(),
            0,
            "native run: {}",
            String::from_utf8_lossy(&stderr)
        );
    }
}

/// A background `isotrace run`, SIGKILLed if the test ends first.
pub struct Group(pub Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn lines(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that every "NAME START END" line of an ids file but those
/// named in `skip` has START == END (or !=, for `same == false`) and
/// returns the lines checked.
pub fn ids(path: &Path, same: bool, skip: &[&str]) -> Vec<(String, i32, i32)> {
    let text = read(path);
    let rows: Vec<(String, i32, i32)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .filter(|r: &(String, i32, i32)| !skip.contains(&r.0.as_str()))
        .collect();
    assert!(!rows.is_empty(), "{} is empty", path.display());
    for (name, start, end) in &rows {
        assert_eq!(start == end, same, "{name} {start} -> {end} in\n{text}");
    }
    rows
}

/// rst_threads checkpointed mid-run, plus its uninterrupted output.
pub fn checkpointed_threads(w: &World) -> PathBuf {
    let exe = guest("rst_threads");
    let (orig, native) = (w.orig(), w.dir().join("native"));
    w.native(&[path_str(&exe), path_str(&native), "40"]);
    let mut group = w.start(&[path_str(&exe), path_str(&orig), "40"]);
    wait_for_pid(&orig.join("pid"), WAIT);
    wait_until("8 lines from worker 1", WAIT, || {
        lines(&orig.join("out.1")) >= 8
    });
    w.checkpoint(&mut group)
}

/// The status line NAME of /proc/TID/status.
pub fn status_field(tid: i32, name: &str) -> String {
    let text = read(Path::new(&format!("/proc/{tid}/status")));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} for {tid}"))
        .trim()
        .to_owned()
}

/// Waits for the restorer's child `pid` and returns its exit code.
pub fn wait_exit(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(pid, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => return code,
            WaitStatus::Signaled(_, sig, _) => return 128 + sig as i32,
            _ => continue,
        }
    }
}
