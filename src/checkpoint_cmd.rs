//! `isotrace checkpoint GROUP [-o DIR] [--leave-running] [--json]` (#5): a
//! client of the group's control socket (`checkpoint` op, docs/API.md).
//! The supervisor freezes the group, dumps it, and then kills it
//! (checkpoint-terminate, the default: its `isotrace run` exits 137) or
//! lets it run on.

use crate::cli::CheckpointArgs;
use crate::EXIT_USAGE;
use isotrace::api::client::{ApiError, Client};
use isotrace::api::protocol::{code, CheckpointResult};
use std::io::Write as _;

/// A checkpoint that was refused or failed (no image; the group runs on).
const EXIT_FAILED: i32 = 1;

pub fn main(args: CheckpointArgs) -> i32 {
    let group = &args.group;
    let mut client = match Client::connect_group(group) {
        Ok(c) => c,
        Err(ApiError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("isotrace: checkpoint: no running group named {group}");
            return EXIT_USAGE;
        }
        Err(ApiError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            eprintln!("isotrace: checkpoint: no running group named {group} (its supervisor died)");
            return EXIT_USAGE;
        }
        Err(ApiError::Protocol(why)) => {
            eprintln!("isotrace: checkpoint: {why}");
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("isotrace: checkpoint: group {group}: {e}");
            return EXIT_FAILED;
        }
    };
    if let Some(dir) = &args.output {
        if std::fs::symlink_metadata(dir).is_ok() {
            eprintln!(
                "isotrace: checkpoint: {} already exists; refusing to overwrite it",
                dir.display()
            );
            return EXIT_USAGE;
        }
    }
    let mut extra = serde_json::Map::new();
    if args.tcp_close {
        extra.insert("tcp_close".into(), serde_json::Value::Bool(true));
    }
    match client.checkpoint_with(args.output.as_deref(), args.leave_running, extra) {
        Ok(r) => {
            let text = if args.json {
                serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"
            } else {
                human(group, &r)
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            0
        }
        Err(e) => {
            let tail = match e.code() {
                Some(code::CHECKPOINT_FAILED) => "; no image was written, the group runs on",
                _ => "",
            };
            let msg = match &e {
                ApiError::Remote { message, .. } => message.clone(),
                other => other.to_string(),
            };
            eprintln!("isotrace: checkpoint of group {group} failed: {msg}{tail}");
            if e.code() == Some(code::BAD_REQUEST) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            }
        }
    }
}

fn human(group: &str, r: &CheckpointResult) -> String {
    let pids: Vec<String> = r.pids.iter().map(|p| p.to_string()).collect();
    let then = if r.left_running {
        "the group runs on"
    } else {
        "the group was stopped"
    };
    let mut text = format!(
        "checkpoint of group {group}: {}\n  pids {} ({} threads), {:.1} MiB of memory; {then}\n  \
         frozen {:.1} ms (freeze {:.1}, dump {:.1}), write {:.1} ms, total {:.1} ms\n",
        r.image,
        pids.join(" "),
        r.threads,
        r.bytes as f64 / (1 << 20) as f64,
        r.frozen_ms,
        r.freeze_ms,
        r.dump_ms,
        r.write_ms,
        r.total_ms
    );
    for note in &r.notes {
        text += &format!("  note: {note}\n");
    }
    text
}
