//! Shared harness for the end-to-end tests.
//!
//! The core is differential: a [`Case`] runs one command natively and then
//! under `isotrace --no-isolation --`, each time in a fresh directory at the
//! same path and with the same environment, and compares exit status, stdout,
//! stderr and (optionally) the files left behind. Every run has a deadline;
//! a run that overstays it is SIGKILLed with its whole process group and the
//! test fails instead of hanging CI.
//!
//! Each test binary compiles only what it uses, so unused helpers are normal.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The distribution's interpreter, not a user's pyenv/virtualenv shim.
pub const PYTHON: &str = "/usr/bin/python3";

/// 64 threads, each writing, fsyncing, re-reading and hashing its own file;
/// prints one digest over all of them.
pub const PYTHON_THREADS: &str = r#"
import hashlib, os, threading

def work(i, out):
    name = f"t{i:02d}.dat"
    data = hashlib.sha256(str(i).encode()).digest() * (256 + i)
    with open(name, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    st = os.stat(name)
    with open(name, "rb") as f:
        back = f.read()
    assert back == data and st.st_size == len(data), name
    out[i] = hashlib.sha256(back).hexdigest()

out = [None] * 64
threads = [threading.Thread(target=work, args=(i, out)) for i in range(64)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert all(out), "a thread failed"
print("files", len(os.listdir(".")))
print("digest", hashlib.sha256("".join(out).encode()).hexdigest())
"#;

/// Default deadline for one run of a command.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// uid/gid used for unprivileged runs (`nobody` on Debian).
pub const NOBODY: u32 = 65534;

/// The supervisor binary built by cargo for this test run.
pub fn isotrace() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_isotrace"))
}

/// How a process ended, as waitpid(2) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The status a shell would report: 128+S for death by signal S.
    pub fn shell_code(self) -> i32 {
        match self {
            Status::Exited(code) => code,
            Status::Signaled(sig) => 128 + sig,
        }
    }

    fn from_std(status: std::process::ExitStatus) -> Status {
        match (status.code(), status.signal()) {
            (Some(code), _) => Status::Exited(code),
            (None, Some(sig)) => Status::Signaled(sig),
            (None, None) => unreachable!("a reaped child either exited or was killed"),
        }
    }
}

/// Whether a command runs directly or under the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Traced,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Traced => "isotrace",
        })
    }
}

/// The outcome of one run.
pub struct Run {
    pub mode: Mode,
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The directory the command ran in, kept for inspection.
    pub dir: PathBuf,
    _root: Option<Arc<tempfile::TempDir>>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics unless the run exited normally with `code`.
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.status,
            Status::Exited(code),
            "{}: unexpected status\n{}",
            self.mode,
            self.describe()
        );
        self
    }

    /// A readable dump of the run for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}] status {:?}\n--- stdout ({} bytes) ---\n{}\n--- stderr ({} bytes) ---\n{}",
            self.mode,
            self.status,
            self.stdout.len(),
            excerpt(&self.stdout),
            self.stderr.len(),
            excerpt(&self.stderr)
        )
    }
}

fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 4000;
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= MAX {
        return text.into_owned();
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n... ({} more bytes)", &text[..cut], text.len() - cut)
}

/// The fixed environment every run gets (plus `HOME` and per-case extras):
/// the same for the native and the traced run, and free of the caller's
/// locale and tooling so outputs are comparable.
fn base_env(home: &Path) -> Vec<(OsString, OsString)> {
    [
        (
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        ),
        ("LC_ALL", "C"),
        ("LANG", "C"),
        ("TZ", "UTC"),
        ("TERM", "dumb"),
    ]
    .iter()
    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
    .chain(std::iter::once((
        OsString::from("HOME"),
        home.as_os_str().to_owned(),
    )))
    // The store under the test's HOME, as for a user: root's default store
    // is the system's /var/lib/isotrace.
    .chain(std::iter::once((
        OsString::from("XDG_DATA_HOME"),
        home.join(".local/share").into_os_string(),
    )))
    .collect()
}

/// The argv prefix that runs a program as `nobody` with no supplementary
/// groups (setpriv(1), util-linux).
pub fn setpriv_prefix() -> Vec<OsString> {
    vec![
        "setpriv".into(),
        format!("--reuid={NOBODY}").into(),
        format!("--regid={NOBODY}").into(),
        "--clear-groups".into(),
        "--".into(),
    ]
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `prog` can be found on the standard PATH.
pub fn have_program(prog: &str) -> bool {
    [
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
    ]
    .iter()
    .any(|d| Path::new(d).join(prog).exists())
}

/// SIGKILLs a spawned child's process group when dropped: on timeout, when
/// the test unwinds, and after the child was reaped (to clear leftovers), so
/// nothing outlives the test.
struct Reaper {
    pid: i32,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: plain kill(2); the child leads its own process group
        // (process_group(0) below), so -pid addresses only that group.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` to completion with stdout and stderr captured, `stdin` fed in
/// (or /dev/null), and `during(pid)` called while it runs. The child gets its
/// own process group; on timeout the group is SIGKILLed and this panics.
pub fn execute(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    during: Option<&dyn Fn(u32)>,
) -> (Status, Vec<u8>, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id();
    let reaper = Reaper { pid: pid as i32 };
    let out = spawn_reader(child.stdout.take().expect("piped stdout"));
    let err = spawn_reader(child.stderr.take().expect("piped stderr"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        thread::spawn(move || {
            // EPIPE is fine: the program may not read all of its input.
            let _ = pipe.write_all(&input);
        });
    }
    if let Some(during) = during {
        during(pid);
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(status) => status.expect("waitpid"),
        Err(_) => {
            drop(reaper);
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!("{cmd:?} did not finish within {timeout:?}; its process group was killed");
        }
    };
    let collect = |rx: mpsc::Receiver<Vec<u8>>, what: &str| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("{cmd:?} exited but its {what} pipe is still held open by another process")
        })
    };
    let stdout = collect(out, "stdout");
    let stderr = collect(err, "stderr");
    // The group leader is reaped; kill whatever it left behind in its group
    // so no test leaks processes (the Reaper does that on drop).
    drop(reaper);
    (Status::from_std(status), stdout, stderr)
}

type DirHook = Box<dyn Fn(&Path)>;
type DuringHook = Box<dyn Fn(&Path, u32)>;

/// One command to run natively and under isotrace, and what to compare.
pub struct Case {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    setup: Option<DirHook>,
    during: Option<DuringHook>,
    compare_stderr: bool,
    compare_files: bool,
    unprivileged: bool,
    timeout: Duration,
}

impl Case {
    pub fn new(program: impl AsRef<OsStr>) -> Case {
        Case {
            argv: vec![program.as_ref().to_owned()],
            env: Vec::new(),
            stdin: None,
            setup: None,
            during: None,
            compare_stderr: true,
            compare_files: false,
            unprivileged: false,
            timeout: TIMEOUT,
        }
    }

    /// `/bin/sh -c SCRIPT`
    pub fn sh(script: &str) -> Case {
        Case::new("/bin/sh").arg("-c").arg(script)
    }

    /// `/bin/bash --norc --noprofile -c SCRIPT`
    pub fn bash(script: &str) -> Case {
        Case::new("/bin/bash")
            .args(["--norc", "--noprofile", "-c"])
            .arg(script)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Case {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Case
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Case {
        self.env.push((key.into(), value.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Case {
        self.stdin = Some(input.into());
        self
    }

    /// Populates each fresh working directory before the command runs.
    pub fn setup(mut self, f: impl Fn(&Path) + 'static) -> Case {
        self.setup = Some(Box::new(f));
        self
    }

    /// Runs while the command runs, with its working directory and the pid
    /// of the process the harness spawned (isotrace itself when traced).
    pub fn during(mut self, f: impl Fn(&Path, u32) + 'static) -> Case {
        self.during = Some(Box::new(f));
        self
    }

    /// Stderr is not deterministic for this command; don't compare it.
    pub fn ignore_stderr(mut self) -> Case {
        self.compare_stderr = false;
        self
    }

    /// Also compare the trees left in the working directory.
    pub fn compare_files(mut self) -> Case {
        self.compare_files = true;
        self
    }

    /// Run as `nobody` via setpriv(1) when the tests run as root.
    pub fn unprivileged(mut self) -> Case {
        self.unprivileged = is_root();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Case {
        self.timeout = timeout;
        self
    }

    /// Runs the command once in `mode`, in a fresh directory.
    pub fn run(&self, mode: Mode) -> Run {
        let root = Arc::new(self.make_root());
        self.run_in(mode, &root)
    }

    fn make_root(&self) -> tempfile::TempDir {
        let root = tempfile::Builder::new()
            .prefix("isotrace-test-")
            .tempdir()
            .expect("tempdir");
        if self.unprivileged {
            chmod(root.path(), 0o777);
        }
        root
    }

    /// The working directory is always `ROOT/w`, so both runs see the same
    /// path; afterwards it is renamed to `ROOT/native` or `ROOT/isotrace`.
    fn run_in(&self, mode: Mode, root: &Arc<tempfile::TempDir>) -> Run {
        let work = root.path().join("w");
        fs::create_dir(&work).expect("create work dir");
        if let Some(setup) = &self.setup {
            setup(&work);
        }
        if self.unprivileged {
            chmod(&work, 0o777);
        }
        let mut argv: Vec<OsString> = Vec::new();
        if self.unprivileged {
            argv.extend(setpriv_prefix());
        }
        if mode == Mode::Traced {
            argv.extend([
                isotrace().as_os_str().to_owned(),
                "--no-isolation".into(),
                "--".into(),
            ]);
        }
        argv.extend(self.argv.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&work)
            .env_clear()
            .envs(base_env(root.path()))
            .envs(self.env.iter().cloned());
        let during = self.during.as_ref().map(|f| {
            let work = work.clone();
            move |pid: u32| f(&work, pid)
        });
        let (status, stdout, stderr) = execute(
            &mut cmd,
            self.stdin.as_deref(),
            self.timeout,
            during.as_ref().map(|f| f as &dyn Fn(u32)),
        );
        let kept = root.path().join(mode.to_string());
        fs::rename(&work, &kept).expect("rename work dir");
        Run {
            mode,
            status,
            stdout,
            stderr,
            dir: kept,
            _root: Some(root.clone()),
        }
    }

    /// Runs natively, then under isotrace, and asserts both behaved the
    /// same. Returns both runs for further checks.
    pub fn check(self) -> (Run, Run) {
        let root = Arc::new(self.make_root());
        let native = self.run_in(Mode::Native, &root);
        let traced = self.run_in(Mode::Traced, &root);
        let what = format!("{:?}", self.argv);
        assert_eq!(
            traced.status,
            Status::Exited(native.status.shell_code()),
            "{what}: exit status differs (isotrace must exit with the native status, \
             128+S for a signal)\n{}\n{}",
            native.describe(),
            traced.describe()
        );
        assert_same_bytes(&format!("{what} stdout"), &native.stdout, &traced.stdout);
        if self.compare_stderr {
            assert_same_bytes(&format!("{what} stderr"), &native.stderr, &traced.stderr);
        }
        if self.compare_files {
            assert_same_tree(&native.dir, &traced.dir);
        }
        (native, traced)
    }
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Panics with the first differing line (and a little context) if the two
/// outputs differ.
pub fn assert_same_bytes(what: &str, native: &[u8], traced: &[u8]) {
    if native == traced {
        return;
    }
    let a: Vec<&[u8]> = native.split(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = traced.split(|&b| b == b'\n').collect();
    let first = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |lines: &[&[u8]]| {
        lines
            .iter()
            .enumerate()
            .skip(first.saturating_sub(2))
            .take(6)
            .map(|(i, l)| format!("{:>6}: {}", i + 1, String::from_utf8_lossy(l)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: native and isotrace differ ({} vs {} bytes, {} vs {} lines); first difference at line {}\n\
         --- native ---\n{}\n--- isotrace ---\n{}",
        native.len(),
        traced.len(),
        a.len(),
        b.len(),
        first + 1,
        show(&a),
        show(&b)
    );
}

/// One entry of a directory tree, as far as transparency is concerned.
/// Timestamps are left out: the two runs happen at different times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, len: u64, hash: u64 },
    Symlink { target: PathBuf },
    Other { mode: u32 },
}

/// Every entry under `dir`, keyed by its path relative to `dir`.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let dir = base.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    entries.sort();
    for name in entries {
        let rel = rel.join(&name);
        let path = base.join(&rel);
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            Node::Symlink {
                target: fs::read_link(&path).expect("readlink"),
            }
        } else if ft.is_dir() {
            walk(base, &rel, out);
            Node::Dir { mode }
        } else if ft.is_file() {
            Node::File {
                mode,
                len: meta.len(),
                hash: hash_file(&path),
            }
        } else {
            Node::Other { mode }
        };
        out.insert(rel, node);
    }
}

/// FNV-1a over the file's bytes: only ever compared within one test process.
pub fn hash_file(path: &Path) -> u64 {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return hash;
        }
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Panics listing the entries that differ between the two trees.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ta = tree(a);
    let tb = tree(b);
    if ta == tb {
        return;
    }
    let mut diffs = Vec::new();
    for (path, node) in &ta {
        match tb.get(path) {
            None => diffs.push(format!("only in {}: {}", a.display(), path.display())),
            Some(other) if other != node => diffs.push(format!(
                "differs: {}: {node:?} vs {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in tb.keys().filter(|p| !ta.contains_key(*p)) {
        diffs.push(format!("only in {}: {}", b.display(), path.display()));
    }
    let total = diffs.len();
    diffs.truncate(30);
    panic!("trees differ in {total} entries:\n{}", diffs.join("\n"));
}

/// Runs `isotrace ARGS...` (no implicit flags) in `cwd` with the harness
/// environment, e.g. to test its own error handling.
pub fn isotrace_raw<I, S>(args: I, cwd: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(isotrace());
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(base_env(cwd));
    let (status, stdout, stderr) = execute(&mut cmd, None, TIMEOUT, None);
    Run {
        mode: Mode::Traced,
        status,
        stdout,
        stderr,
        dir: cwd.to_owned(),
        _root: None,
    }
}

/// Compiles `tests/guests/NAME.c` once per test process (-O2 -pthread) and
/// returns the binary's path.
pub fn guest(name: &str) -> PathBuf {
    compiled(name, false)
}

/// Like [`guest`], linked with `-static`.
pub fn guest_static(name: &str) -> PathBuf {
    compiled(name, true)
}

fn compiled(name: &str, static_link: bool) -> PathBuf {
    type Cell = Arc<OnceLock<PathBuf>>;
    static CACHE: OnceLock<Mutex<HashMap<(String, bool), Cell>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry((name.to_owned(), static_link))
        .or_default()
        .clone();
    cell.get_or_init(|| compile(name, static_link)).clone()
}

fn compile(name: &str, static_link: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.c"));
    assert!(src.exists(), "no guest source {}", src.display());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    fs::create_dir_all(&dir).expect("create guest dir");
    // Unprivileged runs execute guests as nobody.
    chmod(&dir, 0o755);
    let out = dir.join(if static_link {
        format!("{name}-static")
    } else {
        name.to_owned()
    });
    // Another test binary may compile the same guest concurrently: build to
    // a private name, then rename(2) atomically into place.
    let tmp = dir.join(format!(".{name}.{}.{static_link}.tmp", std::process::id()));
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-pthread", "-Wall", "-D_GNU_SOURCE"]);
    if static_link {
        cmd.arg("-static");
    }
    cmd.arg("-o").arg(&tmp).arg(&src);
    let (status, _, stderr) = execute(&mut cmd, None, TIMEOUT, None);
    assert_eq!(
        status,
        Status::Exited(0),
        "compiling {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&stderr)
    );
    fs::rename(&tmp, &out).expect("rename compiled guest");
    out
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after
/// `timeout`. For synchronising with a running program without fixed sleeps.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a file the guest creates atomically (write + rename) and
/// returns its trimmed contents.
pub fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let mut text = String::new();
    wait_until(
        &format!("{} to appear", path.display()),
        timeout,
        || match fs::read_to_string(path) {
            Ok(t) => {
                text = t;
                true
            }
            Err(_) => false,
        },
    );
    text.trim().to_owned()
}

/// Waits for a pid file and parses it.
pub fn wait_for_pid(path: &Path, timeout: Duration) -> i32 {
    let text = wait_for_file(path, timeout);
    text.parse()
        .unwrap_or_else(|e| panic!("bad pid {text:?} in {}: {e}", path.display()))
}

/// The scheduler state letter of `pid` from /proc/PID/stat (R, S, T, t, Z...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and parentheses: the state follows
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Pids of live (non-zombie) processes whose command line contains `token`.
pub fn pids_with_cmdline(token: &str) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(token.len()).any(|w| w == token.as_bytes()))
                .unwrap_or(false)
        })
        .filter(|&pid| !matches!(proc_state(pid), Some('Z') | Some('X') | None))
        .collect()
}

/// A loopback TCP port for a test's server, free now and outside the
/// kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
/// default). A port bind(2) picks from that range (`127.0.0.1:0`) may be
/// taken as the source port of some other test's outgoing connection before
/// the server binds it; ports below it are never handed out that way. Each
/// test process starts at its own offset and no two calls in one process
/// return the same port.
pub fn free_tcp_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 20_000;
    static N: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        assert!(
            n < SPAN,
            "no free loopback TCP port in {FIRST}-{}",
            FIRST + SPAN
        );
        let port = (FIRST + (start + n) % SPAN) as u16;
        // Free for both a listener and a connection's end right now.
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A token unique to this test process and call, for marking processes.
pub fn unique_token(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "isotrace-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `contents` to `dir/name`.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Lines of `text` as bytes, for grepping outputs that may not be UTF-8.
pub fn lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// `path` as UTF-8, for building shell snippets.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

// ---------------------------------------------------------------------------
// Isolated environments (issue #3): a private ISOTRACE_HOME per test, runs in
// an env, and "the host is byte-for-byte untouched" checks.
// ---------------------------------------------------------------------------

/// Deadline for one isotrace run in the isolation tests.
pub const ISO_TIMEOUT: Duration = Duration::from_secs(60);

/// One isolation test's world: a fresh `ISOTRACE_HOME` (`root/home`), a host
/// directory the test populates natively (`root/host`) and a `HOME` for the
/// programs (`root/user`). Everything is removed when dropped.
pub struct Iso {
    root: tempfile::TempDir,
    /// Host paths outside `root` the test names (e.g. /usr/local/bin/X):
    /// asserted absent by the test, and removed on drop in case a bug put
    /// them on the host anyway, so one failure does not litter the machine.
    litter: Mutex<Vec<PathBuf>>,
}

impl Iso {
    pub fn new() -> Iso {
        let root = tempfile::Builder::new()
            .prefix("isotest-")
            .tempdir()
            .expect("tempdir");
        for d in ["home", "host", "user"] {
            fs::create_dir(root.path().join(d)).expect("create fixture dir");
        }
        Iso {
            root,
            litter: Mutex::new(Vec::new()),
        }
    }

    /// The test's root directory (holds home/, host/ and user/).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `ISOTRACE_HOME` for every run of this test.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The host directory the test populates natively.
    pub fn host(&self) -> PathBuf {
        self.root.path().join("host")
    }

    /// `host()/rel` as a string, for shell snippets.
    pub fn hp(&self, rel: &str) -> String {
        path_str(&self.host().join(rel)).to_owned()
    }

    /// Where env NAME's private layer lives (`$ISOTRACE_HOME/envs/NAME/upper`).
    pub fn upper(&self, env: &str) -> PathBuf {
        self.home().join("envs").join(env).join("upper")
    }

    /// Registers a host path outside the fixture to be removed on drop.
    pub fn litter(&self, path: impl Into<PathBuf>) {
        self.litter.lock().unwrap().push(path.into());
    }

    /// A `Command` for `isotrace ARGS...` with the harness environment,
    /// `ISOTRACE_HOME` and `HOME` set, run in the host directory.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let user = self.root.path().join("user");
        let mut cmd = Command::new(isotrace());
        cmd.args(args)
            .current_dir(self.host())
            .env_clear()
            .envs(base_env(&user))
            .env("ISOTRACE_HOME", self.home());
        cmd
    }

    /// Runs `isotrace ARGS...` to completion under [`ISO_TIMEOUT`].
    pub fn isotrace<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.execute(self.command(args))
    }

    /// Runs a prepared command (see [`Iso::command`]) under [`ISO_TIMEOUT`].
    pub fn execute(&self, mut cmd: Command) -> Run {
        let (status, stdout, stderr) = execute(&mut cmd, None, ISO_TIMEOUT, None);
        Run {
            mode: Mode::Traced,
            status,
            stdout,
            stderr,
            dir: self.host(),
            _root: None,
        }
    }

    /// `isotrace --env ENV -- /bin/sh -c SCRIPT`
    pub fn sh(&self, env: &str, script: &str) -> Run {
        self.isotrace(["--env", env, "--", "/bin/sh", "-c", script])
    }

    /// Like [`Iso::sh`], and panics unless the script exited 0.
    pub fn sh_ok(&self, env: &str, script: &str) -> Run {
        let run = self.sh(env, script);
        assert_eq!(
            run.status,
            Status::Exited(0),
            "in env {env}: sh -c {script:?} failed\n{}",
            run.describe()
        );
        run
    }

    /// Runs `/bin/sh -c SCRIPT` natively with the same environment as the
    /// isotrace runs (for setup and for checking what the host sees).
    pub fn native_sh(&self, script: &str) -> Run {
        let user = self.root.path().join("user");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .current_dir(self.host())
            .env_clear()
            .envs(base_env(&user));
        let (status, stdout, stderr) = execute(&mut cmd, None, ISO_TIMEOUT, None);
        Run {
            mode: Mode::Native,
            status,
            stdout,
            stderr,
            dir: self.host(),
            _root: None,
        }
    }
}

impl Default for Iso {
    fn default() -> Iso {
        Iso::new()
    }
}

impl Drop for Iso {
    fn drop(&mut self) {
        for p in self.litter.lock().unwrap().iter() {
            if fs::symlink_metadata(p).is_ok() {
                eprintln!("cleaning up host litter {}", p.display());
                let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
            }
        }
    }
}

/// Everything about one host entry that a write could change: content, mode,
/// owner, link count and the m/ctimes. Access times are left out (reads
/// update them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub len: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// Content hash for files, target for symlinks.
    pub content: String,
}

/// A recursive snapshot of a host tree, including its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    pub root: PathBuf,
    pub entries: BTreeMap<PathBuf, HostEntry>,
}

/// lstat-level facts about one path, or `None` if it does not exist.
pub fn host_entry(path: &Path) -> Option<HostEntry> {
    let meta = fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    let (kind, content) = if ft.is_symlink() {
        let t = fs::read_link(path).expect("readlink");
        ('l', t.to_string_lossy().into_owned())
    } else if ft.is_dir() {
        ('d', String::new())
    } else if ft.is_file() {
        ('f', format!("{:016x}", hash_file(path)))
    } else {
        ('o', String::new())
    };
    Some(HostEntry {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: meta.nlink(),
        len: if kind == 'd' { 0 } else { meta.len() },
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        content,
    })
}

/// Snapshots `root` and everything below it (symlinks are not followed).
pub fn host_snapshot(root: &Path) -> HostSnapshot {
    fn go(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, HostEntry>) {
        let path = base.join(rel);
        let Some(entry) = host_entry(&path) else {
            return;
        };
        let is_dir = entry.kind == 'd';
        out.insert(rel.to_owned(), entry);
        if is_dir {
            let mut names: Vec<_> = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
                .map(|e| e.expect("dir entry").file_name())
                .collect();
            names.sort();
            for n in names {
                go(base, &rel.join(n), out);
            }
        }
    }
    let mut entries = BTreeMap::new();
    go(root, Path::new(""), &mut entries);
    HostSnapshot {
        root: root.to_owned(),
        entries,
    }
}

impl HostSnapshot {
    /// Panics, listing every difference, unless the tree is exactly as it
    /// was when this snapshot was taken.
    pub fn assert_unchanged(&self) {
        let now = host_snapshot(&self.root);
        if now == *self {
            return;
        }
        let mut diffs = Vec::new();
        for (p, e) in &self.entries {
            match now.entries.get(p) {
                None => diffs.push(format!("removed from host: {}", p.display())),
                Some(n) if n != e => {
                    diffs.push(format!("changed on host: {}: {e:?} -> {n:?}", p.display()))
                }
                Some(_) => {}
            }
        }
        for p in now
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
        {
            diffs.push(format!("appeared on host: {}", p.display()));
        }
        panic!(
            "the host tree {} is not byte-for-byte untouched ({} differences):\n{}",
            self.root.display(),
            diffs.len(),
            diffs.join("\n")
        );
    }
}

/// Panics unless `path` does not exist on the host (lstat says ENOENT).
pub fn assert_absent_on_host(path: impl AsRef<Path>) {
    let path = path.as_ref();
    if let Ok(meta) = fs::symlink_metadata(path) {
        panic!(
            "{} exists on the host ({:?}, mode {:o}), but only the env should have it",
            path.display(),
            meta.file_type(),
            meta.mode()
        );
    }
}

/// The counted summary line isotrace prints at exit, if any:
/// `isotrace: N path(s) changed in env NAME; see ...` -> (N, NAME).
pub fn change_summary(stderr: &[u8]) -> Vec<(u64, String)> {
    lines(stderr)
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("isotrace: ")?;
            let (n, rest) = rest.split_once(" path(s) changed in env ")?;
            let (name, _) = rest.split_once("; see ")?;
            Some((n.parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// Waits (up to `timeout`) for a background child to exit and returns its
/// status as a shell reports it (128+signal when killed).
#[allow(dead_code)]
pub fn shell_status_within(child: &mut std::process::Child, timeout: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// python3's sqlite3 in a transaction loop (WAL: an open db, its -wal and
/// -shm), for checkpoints and migrations mid-loop. argv: DB N PROGRESS;
/// every 10 transactions PROGRESS holds how far it got, and at the end
/// PROGRESS.result holds PRAGMA integrity_check, count(*), count(DISTINCT
/// i), max(i), and whether every row was updated in its transaction.
pub const SQLITE_LOOP: &str = r#"
import os, sqlite3, sys, time
db, n, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v TEXT)")
for i in range(1, n + 1):
    c.execute("BEGIN")
    c.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
    c.execute("UPDATE t SET v = ? WHERE i = ?", ("y" * 200, i))
    c.execute("COMMIT")
    if i % 10 == 0:
        with open(progress + ".tmp", "w") as f:
            f.write(str(i))
        os.rename(progress + ".tmp", progress)
    time.sleep(0.005)
ok = c.execute("PRAGMA integrity_check").fetchone()[0]
rows = c.execute("SELECT count(*), count(DISTINCT i), max(i), min(v) FROM t").fetchone()
with open(progress + ".result", "w") as f:
    print(ok, rows[0], rows[1], rows[2], rows[3] == "y" * 200, file=f)
"#;

/// A process SIGKILLed when dropped (or by [`PidGuard::kill`]), held by a
/// pidfd taken while it is known to run: pid_max is 32768 here, so a
/// process that died earlier in the test may have its pid reused by
/// another test's process before the drop, and kill(2) by pid would hit
/// that one. A pid that is already gone holds nothing.
pub struct PidGuard(Option<std::os::fd::OwnedFd>);

impl PidGuard {
    pub fn of(pid: i32) -> PidGuard {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open(2) takes two integers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a new fd that nothing else owns.
        PidGuard((fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// SIGKILL, once.
    pub fn kill(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(fd) = self.0.take() {
            // SAFETY: pidfd_send_signal(2) on a pidfd we own, with no
            // siginfo (NULL) and no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Processes a test SIGKILLs when it ends, however it ends.
#[derive(Default)]
pub struct Pids(Vec<PidGuard>);

impl Pids {
    pub fn push(&mut self, pid: i32) {
        self.0.push(PidGuard::of(pid));
    }

    pub fn extend<P: std::borrow::Borrow<i32>>(&mut self, pids: impl IntoIterator<Item = P>) {
        for p in pids {
            self.push(*p.borrow());
        }
    }
}
