//! The Rust API of a running group: a client of its control socket, and the
//! listing of every running group that `isotrace ps` prints.
//!
//! ```no_run
//! use isotrace::api::client::{running_groups, Client};
//! for g in running_groups().unwrap().groups {
//!     let mut c = Client::connect_group(&g.group).unwrap();
//!     println!("{} has {} processes", g.group, c.ps().unwrap().len());
//! }
//! ```

use crate::api::protocol::{self, ErrorBody, GroupStatus, Hello, Process, ProcessList};
use crate::api::protocol::{CheckpointResult, StopResult, SupervisorStats};
use crate::api::rundir;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a call waits for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum ApiError {
    /// Connecting, writing or reading failed.
    Io(io::Error),
    /// The server answered `ok: false`.
    Remote { code: String, message: String },
    /// The server's line is not a response of this protocol.
    Protocol(String),
    /// The supervisor cannot answer (it is stopped, or did not answer in
    /// time); says why.
    Unavailable(String),
}

impl ApiError {
    /// The server's error code, for `Remote` errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Remote { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Io(e) => write!(f, "{e}"),
            ApiError::Remote { code, message } => write!(f, "{message} ({code})"),
            ApiError::Protocol(why) => write!(f, "protocol error: {why}"),
            ApiError::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<io::Error> for ApiError {
    fn from(e: io::Error) -> Self {
        ApiError::Io(e)
    }
}

/// One connection to a group's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ApiError> {
        let writer = UnixStream::connect(path)?;
        writer.set_read_timeout(Some(TIMEOUT))?;
        writer.set_write_timeout(Some(TIMEOUT))?;
        Ok(Client {
            reader: BufReader::new(writer.try_clone()?),
            writer,
            next_id: 1,
        })
    }

    /// Connects to the group named `group` in this user's socket directory.
    pub fn connect_group(group: &str) -> Result<Client, ApiError> {
        let path = rundir::socket_path(&rundir::socket_dir(), group).map_err(ApiError::Protocol)?;
        match Client::connect(&path) {
            Err(ApiError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ApiError::Io(io::Error::new(
                    e.kind(),
                    format!("no running group named {group}"),
                )))
            }
            other => other,
        }
    }

    /// The supervisor at the other end, if job control or a debugger has
    /// stopped it (state T or t in /proc/PID/stat): it cannot answer, and a
    /// request sent now would be carried out whenever it is continued.
    fn stopped_peer(&self) -> Option<i32> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let pid = getsockopt(&self.writer, PeerCredentials).ok()?.pid();
        let state = crate::api::procs::state_letter(&format!("/proc/{pid}/stat"));
        matches!(state.as_str(), "T" | "t").then_some(pid)
    }

    /// Sends one request and returns its `result`.
    pub fn call(&mut self, op: &str, args: Map<String, Value>) -> Result<Value, ApiError> {
        if let Some(pid) = self.stopped_peer() {
            return Err(ApiError::Unavailable(format!(
                "the group's supervisor (pid {pid}) is stopped, so `{op}` was not sent; \
                 `kill -CONT {pid}` resumes it"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        let sent = writeln!(self.writer, "{}", protocol::request_line(id, op, args));
        // A server that refused us may have closed already: its line
        // explains why better than EPIPE does.
        let mut line = String::new();
        let read = self.reader.read_line(&mut line);
        match (read, sent) {
            (Ok(0), Err(e)) | (Err(_), Err(e)) => return Err(e.into()),
            (Ok(0), Ok(())) => {
                return Err(ApiError::Protocol(
                    "the server closed the connection".into(),
                ))
            }
            (Err(e), Ok(()))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let waited = self.writer.read_timeout().ok().flatten().unwrap_or(TIMEOUT);
                if let Some(pid) = self.stopped_peer() {
                    return Err(ApiError::Unavailable(format!(
                        "no answer to `{op}`: the group's supervisor (pid {pid}) was stopped \
                         after the request was sent; it will carry it out when continued \
                         (`kill -CONT {pid}`)"
                    )));
                }
                return Err(ApiError::Unavailable(format!(
                    "no answer to `{op}` within {} s: the group's supervisor is stopped or not responding",
                    waited.as_secs()
                )));
            }
            (Err(e), Ok(())) => return Err(e.into()),
            (Ok(_), _) => {}
        }
        let resp: Value = serde_json::from_str(&line)
            .map_err(|e| ApiError::Protocol(format!("bad response line ({e}): {line:?}")))?;
        if resp["v"] != json!(protocol::VERSION) {
            return Err(ApiError::Protocol(format!(
                "unexpected version in {line:?}"
            )));
        }
        if !(resp["id"] == json!(id) || resp["id"].is_null()) {
            return Err(ApiError::Protocol(format!(
                "response to another request: {line:?}"
            )));
        }
        match resp["ok"] {
            Value::Bool(true) => Ok(resp["result"].clone()),
            Value::Bool(false) => {
                let e: ErrorBody = serde_json::from_value(resp["error"].clone())
                    .map_err(|e| ApiError::Protocol(format!("bad error object: {e}")))?;
                Err(ApiError::Remote {
                    code: e.code,
                    message: e.message,
                })
            }
            _ => Err(ApiError::Protocol(format!("no \"ok\" in {line:?}"))),
        }
    }

    fn typed<T: DeserializeOwned>(
        &mut self,
        op: &str,
        args: Map<String, Value>,
    ) -> Result<T, ApiError> {
        let value = self.call(op, args)?;
        serde_json::from_value(value).map_err(|e| ApiError::Protocol(format!("{op} result: {e}")))
    }

    pub fn hello(&mut self) -> Result<Hello, ApiError> {
        self.typed("hello", Map::new())
    }

    pub fn status(&mut self) -> Result<GroupStatus, ApiError> {
        self.typed("status", Map::new())
    }

    pub fn ps(&mut self) -> Result<Vec<Process>, ApiError> {
        self.typed::<ProcessList>("ps", Map::new())
            .map(|l| l.processes)
    }

    pub fn stats(&mut self) -> Result<SupervisorStats, ApiError> {
        self.typed("stats", Map::new())
    }

    /// `signal`: TERM (to the first process) or KILL (to every process),
    /// also INT and HUP.
    pub fn stop(&mut self, signal: &str) -> Result<StopResult, ApiError> {
        let mut args = Map::new();
        args.insert("signal".into(), json!(signal));
        self.typed("stop", args)
    }
}

impl Client {
    /// Checkpoints the group into `dir` (absolute; None: the supervisor's
    /// default place), then kills it unless `leave_running`. Waits as long
    /// as the dump takes (up to `api::checkpoint::WAIT`).
    pub fn checkpoint(
        &mut self,
        dir: Option<&Path>,
        leave_running: bool,
    ) -> Result<CheckpointResult, ApiError> {
        self.checkpoint_with(dir, leave_running, Map::new())
    }

    /// [`Client::checkpoint`] with more of the op's arguments
    /// (`tcp_close`, docs/API.md).
    pub fn checkpoint_with(
        &mut self,
        dir: Option<&Path>,
        leave_running: bool,
        mut args: Map<String, Value>,
    ) -> Result<CheckpointResult, ApiError> {
        if let Some(dir) = dir {
            let dir = std::path::absolute(dir)?;
            let text = dir
                .to_str()
                .ok_or_else(|| ApiError::Protocol(format!("{} is not UTF-8", dir.display())))?;
            args.insert("dir".into(), json!(text));
        }
        args.insert("leave_running".into(), json!(leave_running));
        let wait = crate::api::checkpoint::WAIT + Duration::from_secs(5);
        self.writer.set_read_timeout(Some(wait))?;
        let result = self.typed("checkpoint", args);
        self.writer.set_read_timeout(Some(TIMEOUT))?;
        result
    }
}

/// What is at a socket path.
#[derive(Debug)]
pub enum Probe {
    Absent,
    /// Nothing listens: the supervisor died (connect(2): ECONNREFUSED).
    Stale,
    Alive,
    /// Connecting failed otherwise (e.g. EACCES).
    Unreachable(io::Error),
}

pub fn probe(path: &Path) -> Probe {
    match UnixStream::connect(path) {
        Ok(_) => Probe::Alive,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Absent,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Probe::Stale,
        Err(e) => Probe::Unreachable(e),
    }
}

/// The supervisor pid behind a live socket, if it answers `status`.
pub fn supervisor_pid(path: &Path) -> Option<i32> {
    let mut c = Client::connect(path).ok()?;
    c.status().ok().map(|s| s.supervisor_pid)
}

/// Removes a socket found stale, re-checked under the directory lock so
/// that a group claiming the name meanwhile keeps its new socket.
fn remove_stale(dir: &Path, path: &Path) {
    let Ok(_lock) = rundir::lock(dir) else { return };
    if matches!(probe(path), Probe::Stale) {
        let _ = fs::remove_file(path);
    }
}

/// The running groups, by name; `problems` names sockets that answered
/// but could not be listed (another uid's, a wedged server).
#[derive(Debug, Default)]
pub struct Listing {
    pub groups: Vec<GroupStatus>,
    pub problems: Vec<String>,
}

pub fn running_groups() -> io::Result<Listing> {
    running_groups_in(&rundir::socket_dir())
}

/// Queries every `*.sock` of `dir` concurrently; stale ones are removed.
pub fn running_groups_in(dir: &Path) -> io::Result<Listing> {
    let entries = match fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Listing::default()),
        Err(e) => return Err(e),
    };
    let sockets: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let group = rundir::group_of(name.to_str()?)?.to_string();
            Some((group, e.path()))
        })
        .collect();
    let mut answers = Vec::with_capacity(sockets.len());
    for chunk in sockets.chunks(32) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(_, path)| s.spawn(|| Client::connect(path).and_then(|mut c| c.status())))
                .collect();
            for h in handles {
                answers.push(
                    h.join().unwrap_or_else(|_| {
                        Err(ApiError::Protocol("client thread panicked".into()))
                    }),
                );
            }
        });
    }
    let mut listing = Listing::default();
    for ((group, path), answer) in sockets.iter().zip(answers) {
        match answer {
            Ok(status) => listing.groups.push(status),
            Err(ApiError::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                remove_stale(dir, path)
            }
            Err(ApiError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => listing.problems.push(format!("group {group}: {e}")),
        }
    }
    listing.groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(listing)
}

/// Ends a group: `stop` TERM, then KILL if it is still there after
/// `grace`. Returns once its socket is gone (the supervisor removes it as
/// its very last step), or an error if that does not happen.
pub fn stop_and_wait(group: &str, grace: Duration) -> Result<(), ApiError> {
    let path = rundir::socket_path(&rundir::socket_dir(), group).map_err(ApiError::Protocol)?;
    for signal in ["TERM", "KILL"] {
        match Client::connect(&path).and_then(|mut c| c.stop(signal)) {
            Ok(_) => {}
            Err(e) if e.code() == Some(protocol::code::NOT_RUNNING) => {}
            Err(ApiError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(probe(&path), Probe::Alive) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(ApiError::Protocol(format!(
        "group {group} is still running after SIGKILL"
    )))
}

impl Client {
    /// `migrate` (purpose "migrate") or `clone`: moves or copies the group
    /// to the receiver at `to`, authenticated with `token`, into `env`
    /// there. Waits as long as the migration takes.
    pub fn migrate(
        &mut self,
        purpose: &str,
        to: &str,
        token: &[u8],
        env: Option<&str>,
        pre_copy: bool,
    ) -> Result<crate::api::protocol::MigrateResult, ApiError> {
        self.migrate_with(purpose, to, token, env, pre_copy, Map::new())
    }

    /// [`Client::migrate`] with more of the op's arguments (`tcp_close`,
    /// `action_script`, docs/API.md).
    pub fn migrate_with(
        &mut self,
        purpose: &str,
        to: &str,
        token: &[u8],
        env: Option<&str>,
        pre_copy: bool,
        mut args: Map<String, Value>,
    ) -> Result<crate::api::protocol::MigrateResult, ApiError> {
        let token = std::str::from_utf8(token)
            .map_err(|_| ApiError::Protocol("the token is not UTF-8".into()))?;
        args.insert("to".into(), json!(to));
        args.insert("token".into(), json!(token));
        args.insert("env".into(), json!(env));
        args.insert("pre_copy".into(), json!(pre_copy));
        let wait = crate::api::checkpoint::WAIT + Duration::from_secs(5);
        self.writer.set_read_timeout(Some(wait))?;
        let result = self.typed(purpose, args);
        self.writer.set_read_timeout(Some(TIMEOUT))?;
        result
    }
}
