//! The action script of a migration (`--action-script PATH`, README
//! "TCP connections"): where the service address moves with the group.
//! CRIU leaves that to the orchestrator through its action scripts; so do
//! we. The script runs on the source's host, in the supervisor's network
//! namespace, with the phase in `ISOTRACE_ACTION`:
//!
//! - `network-lock`: the group is frozen and its TCP connections are
//!   locked (no segment of theirs passes), before the image is sent.
//! - `pre-resume`: the copy is restored and stopped at the destination;
//!   move the address now. A non-zero exit aborts the migration: the copy
//!   is discarded and the source resumes.
//! - `network-unlock`: the end, with `ISOTRACE_RESULT` = `migrated` (the
//!   copy runs, the source's connections are gone) or `resumed` (the
//!   source runs on: put the address back if `pre-resume` moved it).
//!
//! Also set: `ISOTRACE_GROUP`, `ISOTRACE_TO` (the receiver's HOST:PORT)
//! and `ISOTRACE_CONNECTIONS` (space-separated `LOCAL>REMOTE` pairs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one phase may run.
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct ActionScript {
    pub path: String,
    pub group: String,
    pub to: String,
    pub connections: String,
}

impl ActionScript {
    /// Runs the script for `phase`; Err says why it failed.
    pub fn run(&self, phase: &str, result: Option<&str>) -> Result<(), String> {
        let what = |why: String| format!("action script {} ({phase}): {why}", self.path);
        let mut cmd = Command::new(&self.path);
        cmd.env("ISOTRACE_ACTION", phase)
            .env("ISOTRACE_GROUP", &self.group)
            .env("ISOTRACE_TO", &self.to)
            .env("ISOTRACE_CONNECTIONS", &self.connections)
            .stdin(Stdio::null());
        if let Some(r) = result {
            cmd.env("ISOTRACE_RESULT", r);
        }
        let mut child = cmd.spawn().map_err(|e| what(e.to_string()))?;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(what(format!("exited with {st}"))),
                Ok(None) if start.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(what(format!("did not finish within {TIMEOUT:?}")));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(what(e.to_string())),
            }
        }
    }
}
