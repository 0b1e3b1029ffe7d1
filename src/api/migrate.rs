//! The `migrate` and `clone` ops (#6), the source's side of a migration.
//!
//! On the API thread: connect to the receiver, open an authenticated
//! session and let the receiver check that this group can run there
//! (architecture, XCR0, CPU flags), all while the group runs on. Only then
//! is a [`job::MigrateJob`] handed to the supervisor's freeze barrier,
//! where the group is dumped, streamed with its environment's private
//! layer, and restored by the receiver. `migrate` kills the group only
//! once the receiver said the copy runs; `clone` lets it run on. Any
//! failure before that resumes the group, and the error says what
//! happened. The wire format is checkpoint/STREAM.md.

pub mod action;
pub mod job;
pub mod layer;
pub mod ports;
mod precopy;
pub mod staging;
mod tcp;

use crate::api::checkpoint::CheckpointLink;
use crate::api::protocol::{code, MigrateResult};
use isotrace_checkpoint::stream::handshake::local_cpu_flags;
use isotrace_checkpoint::stream::{local_xcr0, EnvOffer, EnvPlan, Hello, Session};
use serde_json::{Map, Value};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the op was asked.
pub struct Request {
    /// `migrate` or `clone`.
    pub purpose: &'static str,
    pub to: String,
    pub token: Vec<u8>,
    pub dest_env: Option<String>,
    pub pre_copy: bool,
    /// Established TCP connections are closed, not carried.
    pub tcp_close: bool,
    /// Run at each phase of the move (see `action`).
    pub action_script: Option<String>,
    /// A same-host clone's listening ports (see `ports`).
    pub ports: ports::Ports,
}

type OpError = (&'static str, String);

fn parse(purpose: &'static str, args: &Map<String, Value>) -> Result<Request, OpError> {
    let bad = |why: &str| (code::BAD_REQUEST, why.to_string());
    let text = |name: &str| match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("\"{name}\" must be a string"))),
    };
    let to = text("to")?.ok_or_else(|| bad("missing \"to\" (the receiver's HOST:PORT)"))?;
    let token = text("token")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("missing \"token\" (the receiver's shared token)"))?;
    let flag = |name: &str| match args.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(&format!("\"{name}\" must be a boolean"))),
    };
    let action_script = text("action_script")?;
    if let Some(p) = &action_script {
        if !std::path::Path::new(p).is_absolute() {
            return Err(bad("\"action_script\" must be an absolute path"));
        }
    }
    let ports = match text("ports")? {
        None => ports::Ports::default(),
        Some(p) => ports::Ports::parse(&p)
            .ok_or_else(|| bad("\"ports\" must be \"share\" or \"refuse\""))?,
    };
    Ok(Request {
        purpose,
        ports,
        to,
        token: token.into_bytes(),
        dest_env: text("env")?,
        pre_copy: flag("pre_copy")?,
        tcp_close: flag("tcp_close")?,
        action_script,
    })
}

/// The group's environment as the receiver needs to know it.
fn env_offer(link: &CheckpointLink, env: Option<&str>, home: Option<&str>) -> Option<EnvOffer> {
    let (name, home) = (env?, home?);
    let upper = link
        .state
        .as_ref()
        .and_then(|s| s.upper.clone())
        .or_else(|| {
            let store = isotrace_idb::Store::open(std::path::Path::new(home)).ok()?;
            Some(store.get(name).ok()?.upper())
        })?;
    let upper = std::fs::canonicalize(&upper).unwrap_or(upper);
    Some(EnvOffer {
        name: name.into(),
        home: home.into(),
        upper: upper.display().to_string(),
    })
}

fn connect(to: &str) -> Result<TcpStream, String> {
    let addrs: Vec<_> = to
        .to_socket_addrs()
        .map_err(|e| format!("{to}: {e}"))?
        .collect();
    let mut last = format!("{to}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    Err(last)
}

/// The op: `{"to": "HOST:PORT", "token": "...", "env": NAME|null,
/// "pre_copy": BOOL, "ports": "share"|"refuse"}`. Blocks until the group moved, or did not.
pub fn request(
    link: &CheckpointLink,
    purpose: &'static str,
    env: Option<&str>,
    home: Option<&str>,
    args: &Map<String, Value>,
) -> Result<MigrateResult, OpError> {
    let started = Instant::now();
    let req = parse(purpose, args)?;
    let failed = |why: String| (code::MIGRATE_FAILED, why);
    // A copy still receiving its memory by post-copy cannot be dumped
    // (its freeze would refuse): refuse before connecting or running any
    // pre-copy round for nothing.
    isotrace_checkpoint::restore::lazy::refuse_dump().map_err(|e| failed(e.to_string()))?;
    let hello = Hello {
        purpose: purpose.into(),
        group: link.group.clone(),
        image_version: isotrace_checkpoint::image::FORMAT_VERSION,
        arch: std::env::consts::ARCH.into(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        xcr0: local_xcr0(),
        cpu_flags: local_cpu_flags(),
        env: env_offer(link, env, home),
        dest_env: req.dest_env.clone(),
        layer_precopy: req.pre_copy,
    };
    let conn = connect(&req.to).map_err(failed)?;
    let _ = conn.set_read_timeout(Some(CONNECT_TIMEOUT));
    let (session, accept) = Session::open(conn, &req.token, &hello)
        .map_err(|e| failed(format!("the receiver at {} refused: {e}", req.to)))?;
    if accept.env_plan == EnvPlan::Stream && hello.env.is_none() {
        return Err(failed(
            "the receiver asked for an environment layer, but the group has none".into(),
        ));
    }
    let mut session = session;
    // With pre-copy, the layer goes first, whole, while the group runs;
    // the freeze then sends only what changed (layer.rs).
    let pre_layer = match (&hello.env, req.pre_copy && accept.layer_precopy) {
        (Some(env), true) if accept.env_plan == EnvPlan::Stream => {
            let upper = std::path::Path::new(&env.upper);
            Some(layer::send_pre(&mut session.tx, upper).map_err(failed)?)
        }
        _ => None,
    };
    let (pre, mode) = if req.pre_copy {
        precopy::run(&link.waker, &mut session).map_err(failed)?
    } else {
        (None, "stop-and-copy".to_string())
    };
    let (tx, rx) = mpsc::channel();
    let mut job =
        job::MigrateJob::new(req, hello, session, accept, link.state.clone(), started, tx);
    job.set_precopy(pre, mode);
    job.set_pre_layer(pre_layer);
    job.set_waker(link.waker.clone());
    let gone = || {
        let why = "the group ended before it could be migrated";
        (code::NOT_RUNNING, why.to_string())
    };
    link.waker.submit(Box::new(job)).map_err(|_| gone())?;
    let wait = crate::api::checkpoint::WAIT;
    match rx.recv_timeout(wait) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(why)) => Err(failed(why)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err((
            code::INTERNAL,
            format!("no answer from the supervisor within {wait:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_op_checks_its_arguments() {
        let r = parse(
            "migrate",
            &args(json!({"to": "h:1", "token": "t", "pre_copy": true})),
        )
        .unwrap();
        assert_eq!(
            (r.to.as_str(), r.token.as_slice(), r.pre_copy),
            ("h:1", &b"t"[..], true)
        );
        assert_eq!(r.dest_env, None);
        let code_of = |v: Value| parse("clone", &args(v)).err().map(|(c, _)| c);
        assert_eq!(code_of(json!({"token": "t"})), Some(code::BAD_REQUEST));
        assert_eq!(code_of(json!({"to": "h:1"})), Some(code::BAD_REQUEST));
        assert_eq!(
            code_of(json!({"to": "h:1", "token": ""})),
            Some(code::BAD_REQUEST)
        );
        assert_eq!(
            code_of(json!({"to": 5, "token": "t"})),
            Some(code::BAD_REQUEST)
        );
        let bad = json!({"to": "h:1", "token": "t", "pre_copy": "yes"});
        assert_eq!(code_of(bad), Some(code::BAD_REQUEST));
        let bad = json!({"to": "h:1", "token": "t", "ports": "netns"});
        assert_eq!(code_of(bad), Some(code::BAD_REQUEST));
        let refuse = json!({"to": "h:1", "token": "t", "ports": "refuse"});
        let r = parse("clone", &args(refuse)).unwrap();
        assert_eq!(r.ports, ports::Ports::Refuse);
        let e = parse(
            "migrate",
            &args(json!({"to": "h:1", "token": "t", "env": 3})),
        )
        .err();
        assert!(e.unwrap().1.contains("\"env\""));
    }
}
