//! The supervisor's side of the control socket.
//!
//! [`Claim::new`] takes the group's name before the program starts: it binds
//! `GROUP.sock` (mode 0600 in a 0700 directory), refusing a name whose
//! socket answers and replacing a stale one. [`Claim::serve`] then answers
//! requests on a thread of its own; dropping the claim removes the socket.
//!
//! The server threads block every signal: the supervisor's handlers
//! (SIGTERM forwarding, the placement timer) rely on the signal interrupting
//! the tracer thread's waitpid, and a process-directed signal goes to any
//! thread that does not block it (signal(7)). They never call ptrace: only
//! the tracer thread may (ptrace(2): the tracer is a thread).

use crate::api::checkpoint::{self, CheckpointLink};
use crate::api::client::{self, Probe};
use crate::api::migrate;
use crate::api::procs;
use crate::api::protocol::{self, code, Hello, ProcessList, Request, StopResult};
use crate::api::protocol::{GroupStatus, OPS, SUPPORTED};
use crate::api::rundir;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{geteuid, Pid};
use serde_json::{Map, Value};
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Stack of each server thread: they parse short lines and read /proc.
const STACK: usize = 256 * 1024;

/// What a group is, as `status` reports it.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    pub group: String,
    pub env: Option<String>,
    pub home: Option<String>,
    /// `isolated`, `throwaway` or `no-isolation`.
    pub mode: String,
}

#[derive(Debug)]
pub enum ClaimError {
    BadName(String),
    Running {
        group: String,
        supervisor_pid: Option<i32>,
    },
    Io {
        what: String,
        error: io::Error,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::BadName(why) => f.write_str(why),
            ClaimError::Running {
                group,
                supervisor_pid: Some(pid),
            } => write!(f, "group {group} is already running (supervisor pid {pid})"),
            ClaimError::Running { group, .. } => write!(
                f,
                "group {group} is already running (its socket answers, but not with a status)"
            ),
            ClaimError::Io { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for ClaimError {}

/// A group name held by this process: its bound socket, removed on drop.
pub struct Claim {
    info: GroupInfo,
    path: PathBuf,
    /// (st_dev, st_ino) of our socket: drop removes it only if the path
    /// still names it.
    id: (u64, u64),
    listener: Option<UnixListener>,
    state: Option<Arc<State>>,
    checkpoint: Option<CheckpointLink>,
    checkpoint_root: Option<PathBuf>,
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> ClaimError {
    move |error| ClaimError::Io { what, error }
}

impl Claim {
    /// Claims `info.group` in this user's socket directory.
    pub fn new(info: GroupInfo) -> Result<Claim, ClaimError> {
        Claim::in_dir(&rundir::socket_dir(), info)
    }

    pub fn in_dir(dir: &Path, info: GroupInfo) -> Result<Claim, ClaimError> {
        let path = rundir::socket_path(dir, &info.group).map_err(ClaimError::BadName)?;
        rundir::ensure(dir).map_err(io_err(format!("socket directory {}", dir.display())))?;
        let _lock = rundir::lock(dir).map_err(io_err(format!("locking {}", dir.display())))?;
        match client::probe(&path) {
            Probe::Absent => {}
            Probe::Stale => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(format!("removing stale {}", path.display()))(e))
                }
                _ => {}
            },
            Probe::Alive => {
                return Err(ClaimError::Running {
                    supervisor_pid: client::supervisor_pid(&path),
                    group: info.group,
                })
            }
            Probe::Unreachable(e) => return Err(io_err(format!("probing {}", path.display()))(e)),
        }
        let listener =
            UnixListener::bind(&path).map_err(io_err(format!("binding {}", path.display())))?;
        let meta = fs::symlink_metadata(&path).map_err(io_err(path.display().to_string()))?;
        let claim = Claim {
            info,
            id: (meta.dev(), meta.ino()),
            path,
            listener: Some(listener),
            state: None,
            checkpoint: None,
            checkpoint_root: None,
        };
        // The directory is 0700, so nobody else can reach the socket while
        // it still has bind(2)'s umask-derived mode.
        fs::set_permissions(&claim.path, fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("chmod {}", claim.path.display())))?;
        Ok(claim)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn group(&self) -> &str {
        &self.info.group
    }

    pub fn info(&self) -> &GroupInfo {
        &self.info
    }

    /// Lets the `checkpoint` op reach the supervisor's freeze barrier
    /// (without it, the op answers `unsupported`). Call before `serve`.
    pub fn enable_checkpoint(&mut self, link: CheckpointLink) {
        self.checkpoint = Some(link);
    }

    /// Where this group's checkpoints go by default (in GROUP-TIMESTAMP).
    pub fn set_checkpoint_root(&mut self, root: Option<PathBuf>) {
        self.checkpoint_root = root;
    }

    pub fn checkpoint_root(&self) -> Option<&Path> {
        self.checkpoint_root.as_deref()
    }

    /// Starts answering on a server thread; `root` is the group's first
    /// process. Call it once, after the program was spawned (no thread may
    /// exist across the supervisor's fork).
    pub fn serve(&mut self, root: i32) -> io::Result<()> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("the group is already being served"))?;
        let state = Arc::new(State {
            info: self.info.clone(),
            root,
            me: std::process::id() as i32,
            uid: geteuid().as_raw(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            clock: Instant::now(),
            connections: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            checkpoint: self.checkpoint.take(),
        });
        self.state = Some(Arc::clone(&state));
        spawn_quiet(move || accept_loop(listener, state))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
        // A `stop` ends the group while its answer is being written: give
        // requests under way a moment to finish before the process exits.
        if let Some(state) = &self.state {
            let deadline = Instant::now() + Duration::from_secs(1);
            while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Spawns a server thread with every signal blocked (see the module doc).
fn spawn_quiet(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(io::Error::from)?;
    let spawned = std::thread::Builder::new()
        .name("isotrace-api".into())
        .stack_size(STACK)
        .spawn(f);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    spawned.map(drop)
}

struct State {
    info: GroupInfo,
    root: i32,
    me: i32,
    uid: u32,
    started: u64,
    clock: Instant,
    connections: AtomicU64,
    /// Requests read and not yet answered.
    in_flight: AtomicUsize,
    checkpoint: Option<CheckpointLink>,
}

fn accept_loop(listener: UnixListener, state: Arc<State>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                state.connections.fetch_add(1, Ordering::Relaxed);
                let state = Arc::clone(&state);
                // Threads spawned here inherit this thread's full mask.
                let spawned = std::thread::Builder::new()
                    .name("isotrace-api".into())
                    .stack_size(STACK)
                    .spawn(move || serve_conn(stream, &state));
                if let Err(e) = spawned {
                    tracing::warn!("api: cannot start a connection thread: {e}");
                }
            }
            // EMFILE, ENOBUFS and the like: back off rather than spin.
            Err(e) => {
                tracing::warn!("api: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Only the supervisor's uid and root may talk to it (SO_PEERCRED, unix(7):
/// the peer's credentials at connect time).
fn check_peer(stream: &UnixStream, uid: u32) -> Result<(), String> {
    let cred = getsockopt(stream, PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if cred.uid() == uid || cred.uid() == 0 {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not control this group (supervisor uid {uid})",
            cred.uid()
        ))
    }
}

fn serve_conn(stream: UnixStream, state: &State) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    if let Err(why) = check_peer(&stream, state.uid) {
        refuse(stream, &why);
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = protocol::MAX_LINE as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.len() > protocol::MAX_LINE && line.last() != Some(&b'\n');
        let reply = if too_long {
            let why = format!("request longer than {} bytes", protocol::MAX_LINE);
            protocol::error_line(&Value::Null, code::BAD_REQUEST, &why)
        } else {
            state.in_flight.fetch_add(1, Ordering::SeqCst);
            match std::str::from_utf8(&line).map(str::trim) {
                Ok("") => String::new(),
                Ok(text) => answer(state, text),
                Err(_) => protocol::error_line(&Value::Null, code::BAD_REQUEST, "not UTF-8"),
            }
        };
        let written = reply.is_empty() || writeln!(out, "{reply}").is_ok();
        if !too_long {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if !written || too_long {
            return;
        }
    }
}

/// Says why, then drains what the peer sent before closing: closing a unix
/// socket with unread data resets the peer, which could lose our line.
fn refuse(mut stream: UnixStream, why: &str) {
    let _ = writeln!(
        stream,
        "{}",
        protocol::error_line(&Value::Null, code::PERMISSION_DENIED, why)
    );
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut (&stream).take(1 << 20), &mut io::sink());
}

fn answer(state: &State, text: &str) -> String {
    match protocol::parse_request(text) {
        Err(r) => protocol::error_line(&r.id, r.code, &r.message),
        Ok(req) => match dispatch(state, &req) {
            Ok(result) => protocol::ok_line(&req.id, &result),
            Err((code, message)) => protocol::error_line(&req.id, code, &message),
        },
    }
}

/// A result serialized as JSON text, or an error code and message.
type OpResult = Result<String, (&'static str, String)>;

fn to_value(x: impl serde::Serialize) -> OpResult {
    serde_json::to_string(&x).map_err(|e| (code::INTERNAL, e.to_string()))
}

fn dispatch(state: &State, req: &Request) -> OpResult {
    match req.op.as_str() {
        "hello" => to_value(Hello {
            versions: SUPPORTED.to_vec(),
            server: format!("isotrace {}", env!("CARGO_PKG_VERSION")),
            ops: OPS.iter().map(|s| s.to_string()).collect(),
        }),
        "status" => to_value(state.status()),
        "ps" => to_value(ProcessList {
            processes: procs::processes(&procs::group(state.root, state.me)),
        }),
        "stats" => {
            let mut s = procs::supervisor();
            s.api_connections = state.connections.load(Ordering::Relaxed);
            to_value(s)
        }
        "stop" => stop(state, &req.args),
        "checkpoint" => match &state.checkpoint {
            Some(link) => checkpoint::request(link, &req.args).and_then(to_value),
            None => Err((
                code::UNSUPPORTED,
                "this supervisor cannot checkpoint its group".into(),
            )),
        },
        op @ ("migrate" | "clone") => match &state.checkpoint {
            Some(link) => {
                let purpose = if op == "clone" { "clone" } else { "migrate" };
                let (env, home) = (state.info.env.as_deref(), state.info.home.as_deref());
                migrate::request(link, purpose, env, home, &req.args).and_then(to_value)
            }
            None => Err((
                code::UNSUPPORTED,
                format!("this supervisor cannot freeze its group, so it cannot {op} it"),
            )),
        },
        other => Err((
            code::UNKNOWN_OP,
            format!("unknown op {other:?} (known: {})", OPS.join(", ")),
        )),
    }
}

impl State {
    fn status(&self) -> GroupStatus {
        let group = procs::group(self.root, self.me);
        GroupStatus {
            group: self.info.group.clone(),
            env: self.info.env.clone(),
            home: self.info.home.clone(),
            mode: self.info.mode.clone(),
            supervisor_pid: self.me,
            root_pid: self.root,
            uid: self.uid,
            started: self.started,
            uptime_s: self.clock.elapsed().as_secs(),
            processes: group.len() as u64,
            threads: group.iter().map(|p| p.threads).sum(),
            rss_kib: group.iter().map(|p| p.rss_kib).sum(),
        }
    }
}

/// `{"signal":"TERM"}` (the default) goes to the first process, which
/// decides what its children get; `KILL` goes to every process of the group.
fn stop(state: &State, args: &Map<String, Value>) -> OpResult {
    let name = match args.get("signal") {
        None => "TERM",
        Some(Value::String(s)) => s.strip_prefix("SIG").unwrap_or(s),
        Some(_) => return Err((code::BAD_REQUEST, "\"signal\" must be a string".into())),
    };
    let sig = match name {
        "TERM" => Signal::SIGTERM,
        "KILL" => Signal::SIGKILL,
        "INT" => Signal::SIGINT,
        "HUP" => Signal::SIGHUP,
        _ => {
            let why = format!("signal {name:?} is not one of TERM, KILL, INT, HUP");
            return Err((code::BAD_REQUEST, why));
        }
    };
    let group = procs::group(state.root, state.me);
    let mut targets: Vec<i32> = group.iter().map(|p| p.pid).collect();
    if sig != Signal::SIGKILL {
        targets.retain(|&p| p == state.root);
    }
    // The root first: it is the one whose status the group exits with.
    targets.sort_by_key(|&p| p != state.root);
    if targets.is_empty() {
        let why = format!(
            "the group's first process (pid {}) has exited; {{\"signal\":\"KILL\"}} ends the rest",
            state.root
        );
        return Err((code::NOT_RUNNING, why));
    }
    // These pids were read as our tracees just now; ESRCH means one exited.
    let signalled = targets
        .into_iter()
        .filter(|&p| kill(Pid::from_raw(p), sig).is_ok())
        .collect();
    to_value(StopResult {
        signal: name.to_string(),
        signalled,
    })
}
