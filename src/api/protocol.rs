//! The wire format: one JSON object per line each way (docs/API.md).
//!
//! Request: `{"v":1,"id":N,"op":"status", ...arguments}`.
//! Response: `{"v":1,"id":N,"ok":true,"result":{...}}` or
//! `{"v":1,"id":N,"ok":false,"error":{"code":"...","message":"..."}}`.
//! The id is echoed as given (null when the request had none or could not be
//! parsed). Every type here is plain serde data shared by server and client.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;
/// Every version this build can answer.
pub const SUPPORTED: &[u64] = &[1];
/// The longest request line the server reads; a longer one is a bad request.
pub const MAX_LINE: usize = 64 * 1024;
/// Every op the server knows, in the order `hello` lists them.
pub const OPS: &[&str] = &[
    "hello",
    "status",
    "ps",
    "stats",
    "stop",
    "checkpoint",
    "migrate",
    "clone",
];

/// Error codes (`error.code`).
pub mod code {
    /// The line is not a JSON object, or a field has the wrong type.
    pub const BAD_REQUEST: &str = "bad-request";
    /// `v` is not one of [`super::SUPPORTED`].
    pub const BAD_VERSION: &str = "unsupported-version";
    /// `op` is not one of [`super::OPS`].
    pub const UNKNOWN_OP: &str = "unknown-op";
    /// A known op that this build does not implement yet.
    pub const UNSUPPORTED: &str = "unsupported";
    /// The peer's uid is neither the supervisor's nor root's.
    pub const PERMISSION_DENIED: &str = "permission-denied";
    /// The process the op addresses has exited.
    pub const NOT_RUNNING: &str = "not-running";
    /// The server failed while answering (an I/O or system error).
    pub const INTERNAL: &str = "internal";
    /// A checkpoint was refused or failed; no image was left and the
    /// group runs on.
    pub const CHECKPOINT_FAILED: &str = "checkpoint-failed";
    /// A migration or clone failed before the destination confirmed that
    /// the copy runs; the group runs on where it was.
    pub const MIGRATE_FAILED: &str = "migrate-failed";
}

/// `hello`: what the server speaks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub versions: Vec<u64>,
    pub server: String,
    pub ops: Vec<String>,
}

/// `status`: one running group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: String,
    /// The environment's name; null under `--no-isolation`.
    pub env: Option<String>,
    /// The store (`ISOTRACE_HOME`) holding the environment, canonical.
    pub home: Option<String>,
    /// `isolated`, `throwaway` (`--rm`) or `no-isolation`.
    pub mode: String,
    pub supervisor_pid: i32,
    pub root_pid: i32,
    /// The supervisor's effective uid.
    pub uid: u32,
    /// When supervision started, in seconds since the epoch.
    pub started: u64,
    pub uptime_s: u64,
    pub processes: u64,
    pub threads: u64,
    /// Sum of the processes' resident sets (VmRSS).
    pub rss_kib: u64,
}

/// One entry of `ps`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// The scheduler state letter of /proc/PID/status (R, S, T, Z...).
    pub state: String,
    pub threads: u64,
    pub rss_kib: u64,
    pub cmdline: Vec<String>,
}

/// `ps`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProcessList {
    pub processes: Vec<Process>,
}

/// `stats`: the supervisor process itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SupervisorStats {
    pub supervisor_pid: i32,
    pub rss_kib: u64,
    /// VmHWM: the supervisor's peak resident set.
    pub peak_rss_kib: u64,
    /// The supervisor's own threads (the tracer, the API threads).
    pub threads: u64,
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// API connections accepted so far, this one included.
    pub api_connections: u64,
}

/// `stop`: which signal went to which processes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StopResult {
    pub signal: String,
    pub signalled: Vec<i32>,
}

/// `checkpoint`: the image written and what it cost, in the manner of
/// CRIU's dump statistics. Times are milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointResult {
    /// The image directory, absolute.
    pub image: String,
    /// Every process in the image, the group's first process first.
    pub pids: Vec<i32>,
    pub threads: u64,
    /// Page data stored.
    pub bytes: u64,
    /// Whether the group runs on (`leave_running`) or was killed.
    pub left_running: bool,
    /// From the first PTRACE_INTERRUPT until every task was resumed or
    /// killed.
    pub frozen_ms: f64,
    /// Reaching the barrier.
    pub freeze_ms: f64,
    /// Dumping memory, fds and state at the barrier.
    pub dump_ms: f64,
    /// Writing the metadata, syncing and renaming the image.
    pub write_ms: f64,
    pub total_ms: f64,
    /// What the checkpoint did besides (accept queues drained first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `migrate` and `clone`: where the group went and what it cost, in the
/// manner of CRIU's migration statistics. Times are milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MigrateResult {
    /// `migrate` or `clone`.
    pub purpose: String,
    /// The receiver's address.
    pub to: String,
    /// The receiver's host name.
    pub dest_host: String,
    /// The environment the copy runs in there; null without isolation.
    pub dest_env: Option<String>,
    /// How the environment got there: `none`, `shared` (the same store)
    /// or `stream` (its private layer was sent as a tar).
    pub env_plan: String,
    /// The copy's processes on the destination.
    pub dest_pids: Vec<i32>,
    /// How memory was moved: `stop-and-copy`, or `pre-copy (...)` naming
    /// the dirty-page tracking that ran.
    pub mode: String,
    /// Pre-copy rounds (empty for stop-and-copy).
    pub rounds: Vec<MigrateRound>,
    /// Whether the source group was killed (migrate) or runs on (clone).
    pub source_released: bool,
    /// From the first PTRACE_INTERRUPT until the destination said the copy
    /// runs: the time the application did not run anywhere.
    pub downtime_ms: f64,
    pub freeze_ms: f64,
    pub dump_ms: f64,
    /// Sending the environment's private layer.
    pub layer_ms: f64,
    /// Sending the image.
    pub send_ms: f64,
    /// The destination's restore, as it measured it.
    pub restore_ms: f64,
    pub total_ms: f64,
    /// Everything sent over the connection (frames included).
    pub bytes_sent: u64,
    pub image_bytes: u64,
    pub layer_bytes: u64,
    /// Where the source held the image between dump and send.
    pub staging: String,
    /// What was not carried exactly, in words.
    pub notes: Vec<String>,
    /// How the destination filled the pages it held from pre-copy:
    /// `eager` (before the group ran: in the downtime) or `post-copy`
    /// (after: on demand and in the background); empty without pre-copy.
    #[serde(default)]
    pub fill: String,
    /// What post-copy did, once every page was in (`fill` post-copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_copy: Option<isotrace_checkpoint::restore::lazy::Stats>,
}

/// One pre-copy round.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MigrateRound {
    pub pages: u64,
    pub bytes: u64,
    pub ms: f64,
}

/// `error` of a failed response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A parsed request: the op and the other fields as its arguments.
#[derive(Debug)]
pub struct Request {
    pub id: Value,
    pub op: String,
    pub args: Map<String, Value>,
}

/// Why a line is not a request, with the id to answer under.
#[derive(Debug)]
pub struct Rejected {
    pub id: Value,
    pub code: &'static str,
    pub message: String,
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, Rejected> {
    let reject = |id: &Value, code, message: String| Rejected {
        id: id.clone(),
        code,
        message,
    };
    let value: Value = serde_json::from_str(line).map_err(|e| {
        reject(
            &Value::Null,
            code::BAD_REQUEST,
            format!("malformed JSON: {e}"),
        )
    })?;
    let Value::Object(mut args) = value else {
        return Err(reject(
            &Value::Null,
            code::BAD_REQUEST,
            "a request is a JSON object".into(),
        ));
    };
    let id = args.remove("id").unwrap_or(Value::Null);
    if !(id.is_null() || id.is_number() || id.is_string()) {
        return Err(reject(
            &Value::Null,
            code::BAD_REQUEST,
            "\"id\" must be a number or a string".into(),
        ));
    }
    match args.remove("v") {
        Some(v) if v.as_u64().is_some_and(|v| SUPPORTED.contains(&v)) => {}
        Some(v) => {
            return Err(reject(
                &id,
                code::BAD_VERSION,
                format!("version {v} is not supported (supported: {SUPPORTED:?})"),
            ))
        }
        None => {
            return Err(reject(
                &id,
                code::BAD_REQUEST,
                "missing \"v\" (the protocol version, 1)".into(),
            ))
        }
    }
    let op = match args.remove("op") {
        Some(Value::String(op)) => op,
        Some(_) => {
            return Err(reject(
                &id,
                code::BAD_REQUEST,
                "\"op\" must be a string".into(),
            ))
        }
        None => return Err(reject(&id, code::BAD_REQUEST, "missing \"op\"".into())),
    };
    Ok(Request { id, op, args })
}

/// A success line (without the newline). `result` is serialized JSON, so
/// that its fields keep their declared order; the envelope's come first.
pub fn ok_line(id: &Value, result: &str) -> String {
    format!("{{\"v\":{VERSION},\"id\":{id},\"ok\":true,\"result\":{result}}}")
}

/// A failure line (without the newline).
pub fn error_line(id: &Value, code: &str, message: &str) -> String {
    let error = json!({"code": code, "message": message});
    format!("{{\"v\":{VERSION},\"id\":{id},\"ok\":false,\"error\":{error}}}")
}

/// A request line (without the newline).
pub fn request_line(id: u64, op: &str, args: Map<String, Value>) -> String {
    let mut req = args;
    req.insert("v".into(), json!(VERSION));
    req.insert("id".into(), json!(id));
    req.insert("op".into(), json!(op));
    Value::Object(req).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request() {
        let r = parse_request(r#"{"v":1,"id":7,"op":"stop","signal":"KILL"}"#).unwrap();
        assert_eq!((r.id, r.op.as_str()), (json!(7), "stop"));
        assert_eq!(r.args["signal"], "KILL");
    }

    #[test]
    fn rejects_bad_lines_with_codes() {
        let code_of = |l: &str| parse_request(l).unwrap_err().code;
        assert_eq!(code_of("{not json"), code::BAD_REQUEST);
        assert_eq!(code_of("[1,2]"), code::BAD_REQUEST);
        assert_eq!(code_of(r#"{"id":1,"op":"status"}"#), code::BAD_REQUEST);
        assert_eq!(
            code_of(r#"{"v":2,"id":1,"op":"status"}"#),
            code::BAD_VERSION
        );
        assert_eq!(code_of(r#"{"v":1,"id":1,"op":3}"#), code::BAD_REQUEST);
        assert_eq!(code_of(r#"{"v":1,"id":[1],"op":"ps"}"#), code::BAD_REQUEST);
        let e = parse_request(r#"{"v":9,"id":4,"op":"ps"}"#).unwrap_err();
        assert_eq!(e.id, json!(4));
    }

    #[test]
    fn lines_round_trip() {
        let line = request_line(3, "ps", Map::new());
        let r = parse_request(&line).unwrap();
        assert_eq!((r.id, r.op.as_str()), (json!(3), "ps"));
        let line = ok_line(&json!(3), r#"{"a":1}"#);
        assert!(line.starts_with(r#"{"v":1,"id":3,"ok":true,"#), "{line}");
        let ok: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(ok["result"]["a"], 1);
        let err: Value =
            serde_json::from_str(&error_line(&Value::Null, code::UNKNOWN_OP, "x")).unwrap();
        assert_eq!(
            (err["ok"].clone(), err["error"]["code"].clone()),
            (json!(false), json!("unknown-op"))
        );
    }
}
