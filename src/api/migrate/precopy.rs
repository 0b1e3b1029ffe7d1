//! `--pre-copy` on the source: a short barrier to create the tracee's
//! userfaultfd (an injected syscall, see checkpoint/src/precopy/inject.rs),
//! then rounds on the API thread while the group runs, each sending the
//! pages written since the last in PrePages frames. The final freeze is
//! the ordinary migration job, which then sends the image as a delta.
//!
//! Each process of the group (each address space) gets its own tracker.
//! A process whose tracking cannot be set up (no thread in an interrupt
//! stop, a kernel without UFFD_FEATURE_WP_ASYNC) is dumped whole at the
//! freeze and the notes say so; when no process can be tracked, the
//! migration falls back to stop-and-copy and the mode says why.

use isotrace_checkpoint::dump::procfs::parse_maps;
use isotrace_checkpoint::precopy::group::GroupPreCopy;
use isotrace_checkpoint::precopy::{self, inject, PreCopy};
use isotrace_checkpoint::stream::{pages, Kind, Session};
use isotrace_tracer::{AfterFreeze, Barrier, BarrierJob, StopKind, Waker};
use std::sync::mpsc;
use std::time::Duration;

type Setup = Result<GroupPreCopy, String>;

struct SetupJob {
    reply: mpsc::Sender<Setup>,
    answer: Option<Setup>,
}

/// Tracking for one process (one mm): its userfaultfd is made by one of
/// its own threads, as userfaultfd(2) binds the context to the caller's mm.
fn setup_one(barrier: &Barrier, pid: i32) -> Result<PreCopy, String> {
    let thread = barrier
        .tasks
        .iter()
        .find(|t| t.pid == pid && t.stop == StopKind::Interrupt)
        .ok_or("no thread in an interrupt stop to run userfaultfd(2) in")?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let uffd = inject::open_uffd(pid, thread.tid, &parse_maps(&maps)).map_err(|e| e.to_string())?;
    PreCopy::start(pid, uffd).map_err(|e| format!("userfaultfd write-protect (async): {e}"))
}

/// One tracker per process; a process that cannot be tracked is dumped
/// whole at the freeze while the others are pre-copied. Err when none can.
fn setup(barrier: &Barrier) -> Setup {
    let (mut procs, mut fallen) = (Vec::new(), Vec::new());
    for pid in barrier.pids() {
        match setup_one(barrier, pid) {
            Ok(pc) => procs.push(pc),
            Err(why) => fallen.push((pid, why)),
        }
    }
    if procs.is_empty() {
        let why: Vec<String> = fallen
            .iter()
            .map(|(p, w)| format!("pid {p}: {w}"))
            .collect();
        return Err(why.join("; "));
    }
    Ok(GroupPreCopy::new(procs, &fallen))
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
pub fn run(waker: &Waker, session: &mut Session) -> Result<(Option<GroupPreCopy>, String), String> {
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
    let mut send = |pid: i32, addr: u64, bytes: &[u8]| {
        session
            .tx
            .send(Kind::PrePages, &pages::payload(pid, addr, bytes))
            .map_err(std::io::Error::other)
    };
    while pc.converging() {
        pc.round(&mut send)
            .map_err(|e| format!("pre-copy round: {e}"))?;
    }
    let mode = if pc.notes.is_empty() {
        precopy::MODE_UFFD_WP.to_string()
    } else {
        format!(
            "{} for {} of the group's processes (the others: see the notes)",
            precopy::MODE_UFFD_WP,
            pc.pids().len()
        )
    };
    Ok((Some(pc), mode))
}

fn fallback(why: &str) -> String {
    let soft = if precopy::soft_dirty_works() {
        "soft-dirty works here but is not used yet"
    } else {
        "no soft-dirty on this kernel"
    };
    format!("stop-and-copy (pre-copy unavailable: {why}; {soft})")
}
