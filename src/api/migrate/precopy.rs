//! `--pre-copy` on the source: a short barrier to create the tracee's
//! userfaultfd (an injected syscall, see checkpoint/src/precopy/inject.rs),
//! then rounds on the API thread while the group runs, each sending the
//! pages written since the last in PrePages frames. The final freeze is
//! the ordinary migration job, which then sends the image as a delta.
//!
//! When the tracking cannot be set up (more than one process, no thread in
//! an interrupt stop, a kernel without UFFD_FEATURE_WP_ASYNC), the
//! migration falls back to stop-and-copy and the result says why.

use isotrace_checkpoint::dump::procfs::parse_maps;
use isotrace_checkpoint::precopy::{self, inject, PreCopy};
use isotrace_checkpoint::stream::{pages, Kind, Session};
use isotrace_tracer::{AfterFreeze, Barrier, BarrierJob, StopKind, Waker};
use std::sync::mpsc;
use std::time::Duration;

type Setup = Result<PreCopy, String>;

struct SetupJob {
    reply: mpsc::Sender<Setup>,
    answer: Option<Setup>,
}

fn setup(barrier: &Barrier) -> Setup {
    let pids = barrier.pids();
    let [pid] = pids.as_slice() else {
        return Err(format!(
            "the group has {} processes; pre-copy tracks one process so far",
            pids.len()
        ));
    };
    let thread = barrier
        .tasks
        .iter()
        .find(|t| t.pid == *pid && t.stop == StopKind::Interrupt)
        .ok_or("no thread of the group is in an interrupt stop to run userfaultfd(2) in")?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let uffd =
        inject::open_uffd(*pid, thread.tid, &parse_maps(&maps)).map_err(|e| e.to_string())?;
    PreCopy::start(*pid, uffd).map_err(|e| format!("userfaultfd write-protect (async): {e}"))
}

impl BarrierJob for SetupJob {
    fn at_barrier(&mut self, barrier: Result<&Barrier, &isotrace_tracer::Error>) -> AfterFreeze {
        self.answer = Some(match barrier {
            Ok(b) => setup(b),
            Err(e) => Err(format!("cannot freeze the group: {e}")),
        });
        AfterFreeze::Resume
    }

    fn finish(mut self: Box<Self>, _: Duration) {
        let answer = self
            .answer
            .take()
            .unwrap_or(Err("the setup did not run".into()));
        let _ = self.reply.send(answer);
    }
}

/// Sets up tracking and runs the rounds. Ok(Some): the pre-copy to finish
/// at the freeze; Ok(None): it could not be set up, and the mode to report
/// says why; Err: the connection failed (the group was never stopped for
/// longer than the setup).
pub fn run(waker: &Waker, session: &mut Session) -> Result<(Option<PreCopy>, String), String> {
    let (tx, rx) = mpsc::channel();
    let job = SetupJob {
        reply: tx,
        answer: None,
    };
    if waker.submit(Box::new(job)).is_err() {
        return Err("the group ended before pre-copy could start".into());
    }
    let mut pc = match rx.recv_timeout(crate::api::checkpoint::WAIT) {
        Ok(Ok(pc)) => pc,
        Ok(Err(why)) => return Ok((None, fallback(&why))),
        Err(_) => return Err("the group ended before pre-copy could start".into()),
    };
    let pid = pc.pid;
    let mut send = |addr: u64, bytes: &[u8]| {
        session
            .tx
            .send(Kind::PrePages, &pages::payload(pid, addr, bytes))
            .map_err(std::io::Error::other)
    };
    while pc.converging() {
        pc.round(&mut send)
            .map_err(|e| format!("pre-copy round: {e}"))?;
    }
    Ok((Some(pc), precopy::MODE_UFFD_WP.to_string()))
}

fn fallback(why: &str) -> String {
    let soft = if precopy::soft_dirty_works() {
        "soft-dirty works here but is not used yet"
    } else {
        "no soft-dirty on this kernel"
    };
    format!("stop-and-copy (pre-copy unavailable: {why}; {soft})")
}
