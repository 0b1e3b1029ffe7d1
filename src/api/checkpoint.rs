//! The `checkpoint` op and the SIGUSR2 trigger (#5): a [`BarrierJob`] that
//! dumps the group while the supervisor holds every task at its freeze
//! barrier, then lets the group run on (`leave_running`) or has it killed
//! (checkpoint-terminate, as CRIU does by default).
//!
//! The job runs on the tracer thread (it reads registers with ptrace); the
//! API thread that asked waits for its answer on a channel. With
//! `leave_running` the image is committed (fsync, rename) after the group
//! was resumed, so the disk does not lengthen the pause; when terminating,
//! it is committed first, so that a failed write leaves the group running.

use crate::api::drain::AcceptDrain;
use crate::api::protocol::{code, CheckpointResult};
use crate::api::state::{self, SupervisorState};
use isotrace_checkpoint::dump::tcp::TcpPolicy;
use isotrace_checkpoint::dump::{checkpoint, Dumped, StoppedThread};
use isotrace_tracer::{AfterFreeze, Barrier, BarrierJob, StopKind, Waker};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a checkpoint answers: its result, or why there is no image.
pub type Answer = Result<CheckpointResult, String>;

/// How the API reaches the supervisor's barrier, and where images go by
/// default.
#[derive(Clone)]
pub struct CheckpointLink {
    pub waker: Waker,
    pub group: String,
    /// Default images go to `ROOT/GROUP-TIMESTAMP`; None if there is no
    /// default place (then `dir` is required).
    pub root: Option<PathBuf>,
    /// What the supervisor is, written into every image (`state.rs`).
    pub state: Option<SupervisorState>,
}

impl CheckpointLink {
    /// A new image directory under the default root: GROUP-TIMESTAMP, with
    /// `-N` added if that exists already. Creates the root.
    pub fn default_dir(&self) -> Result<PathBuf, String> {
        let root = self.root.as_ref().ok_or(
            "no default checkpoint directory (set ISOTRACE_HOME or HOME); give one with -o DIR",
        )?;
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamp = isotrace_checkpoint::image::manifest::rfc3339(secs).replace(':', "");
        let base = format!("{}-{stamp}", self.group);
        let mut dir = root.join(&base);
        let mut n = 1;
        while std::fs::symlink_metadata(&dir).is_ok() {
            n += 1;
            dir = root.join(format!("{base}-{n}"));
        }
        Ok(dir)
    }

    /// A checkpoint of this group into `dir`, carrying the supervisor's
    /// state.
    pub fn job(
        &self,
        dir: PathBuf,
        leave_running: bool,
        reply: Option<mpsc::Sender<Answer>>,
    ) -> CheckpointJob {
        let mut job = CheckpointJob::new(dir, leave_running, reply);
        job.state = self.state.clone();
        job.drain = Some(AcceptDrain::new(self.waker.clone()));
        job
    }

    /// What the supervisor runs on a user's SIGUSR2: a leave-running
    /// checkpoint into the default place, reported on stderr.
    pub fn signal_job(&self) -> Box<dyn BarrierJob> {
        // Called on the tracer thread: no wait for a post-copy here.
        if let Err(e) = isotrace_checkpoint::restore::lazy::refuse_dump() {
            return Box::new(Refused(e.to_string()));
        }
        match self.default_dir() {
            Ok(dir) => Box::new(self.job(dir, true, None)),
            Err(why) => Box::new(Refused(why)),
        }
    }
}

/// Connects a supervisor's freeze barrier to the group's `checkpoint` op
/// and to SIGUSR2. Call after spawning, before `Claim::serve`.
/// `state` goes into every image of the group.
pub fn attach(
    sup: &mut isotrace_tracer::Supervisor<'_>,
    claim: &mut crate::api::server::Claim,
    state: Option<SupervisorState>,
) {
    let link = CheckpointLink {
        waker: sup.waker(),
        group: claim.group().to_string(),
        root: claim.checkpoint_root().map(Path::to_path_buf),
        state,
    };
    let on_signal = link.clone();
    sup.on_checkpoint_signal(Box::new(move || on_signal.signal_job()));
    claim.enable_checkpoint(link);
}

/// Set once a checkpoint-terminate has written its image and killed the
/// group: the group's environment must then outlive it, even a throwaway
/// one, or the image could not be restored.
static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process's group ended by a checkpoint-terminate.
pub fn terminated_by_checkpoint() -> bool {
    TERMINATED.load(std::sync::atomic::Ordering::SeqCst)
}

/// How long an API request waits for its checkpoint: the dump of a large
/// group takes its time.
pub const WAIT: Duration = Duration::from_secs(600);

/// How long a checkpoint asked for while the group still receives its
/// memory by post-copy waits for that to finish before it is refused (a
/// 1 GiB post-copy takes about 1.5 s here: README, Benchmarks). The group
/// runs meanwhile; nothing is frozen yet.
pub const POST_COPY_WAIT: Duration = Duration::from_secs(10);

/// The `checkpoint` op: `{"dir": ABSOLUTE-PATH, "leave_running": BOOL}`,
/// both optional. Blocks until the supervisor has done it.
pub fn request(
    link: &CheckpointLink,
    args: &Map<String, Value>,
) -> Result<CheckpointResult, (&'static str, String)> {
    let bad = |why: &str| (code::BAD_REQUEST, why.to_string());
    let leave_running = match args.get("leave_running") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"leave_running\" must be a boolean")),
    };
    let dir = match args.get("dir") {
        None | Some(Value::Null) => link
            .default_dir()
            .map_err(|why| (code::CHECKPOINT_FAILED, why))?,
        Some(Value::String(d)) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(Value::String(_)) => return Err(bad("\"dir\" must be an absolute path")),
        Some(_) => return Err(bad("\"dir\" must be a string")),
    };
    let tcp_close = match args.get("tcp_close") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"tcp_close\" must be a boolean")),
    };
    // A page post-copy has not filled yet cannot be dumped (the dump
    // refuses it too: restore::lazy::refuse_dump); wait for it here, while
    // the group runs, rather than freeze the group for nothing.
    let post_copy = isotrace_checkpoint::restore::lazy::running();
    let waited = Instant::now();
    if !isotrace_checkpoint::restore::lazy::wait_done(POST_COPY_WAIT) {
        let why = format!(
            "the group is still receiving its memory from a post-copy migration \
             (waited {POST_COPY_WAIT:?}); try again when the migration has finished"
        );
        return Err((code::CHECKPOINT_FAILED, why));
    }
    let (tx, rx) = mpsc::channel();
    let mut job = Box::new(link.job(dir, leave_running, Some(tx)));
    if tcp_close {
        job.tcp = TcpPolicy::Close;
    }
    let gone = || {
        let why = "the group ended before it could be checkpointed";
        (code::NOT_RUNNING, why.to_string())
    };
    let waited = waited.elapsed();
    link.waker.submit(job).map_err(|_| gone())?;
    match rx.recv_timeout(WAIT) {
        Ok(Ok(mut result)) => {
            if post_copy {
                let ms = waited.as_secs_f64() * 1000.0;
                let note = format!("waited {ms:.0} ms for the group's post-copy to finish");
                result.notes.insert(0, note);
            }
            Ok(result)
        }
        Ok(Err(why)) => Err((code::CHECKPOINT_FAILED, why)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err((
            code::INTERNAL,
            format!("no answer from the supervisor within {WAIT:?}"),
        )),
    }
}

/// A checkpoint that cannot even start; says why on stderr.
struct Refused(String);

impl BarrierJob for Refused {
    fn at_barrier(&mut self, _: Result<&Barrier, &isotrace_tracer::Error>) -> AfterFreeze {
        AfterFreeze::Resume
    }
    fn finish(self: Box<Self>, _: Duration) {
        eprintln!("isotrace: checkpoint (SIGUSR2) failed: {}", self.0);
    }
}

pub struct CheckpointJob {
    dir: PathBuf,
    leave_running: bool,
    /// Where the answer goes; None: to stderr (the signal trigger).
    reply: Option<mpsc::Sender<Answer>>,
    started: Instant,
    freeze: Duration,
    dump: Duration,
    dumped: Option<Dumped>,
    answer: Option<Answer>,
    /// The supervisor's state, written as a section of the image.
    pub state: Option<SupervisorState>,
    /// What to do with established TCP connections (`--tcp-close`).
    pub tcp: TcpPolicy,
    /// Connections waiting in accept queues at the freeze (`api::drain`).
    drain: Option<AcceptDrain>,
    notes: Vec<String>,
}

impl CheckpointJob {
    pub fn new(dir: PathBuf, leave_running: bool, reply: Option<mpsc::Sender<Answer>>) -> Self {
        CheckpointJob {
            dir,
            leave_running,
            reply,
            started: Instant::now(),
            freeze: Duration::ZERO,
            dump: Duration::ZERO,
            dumped: None,
            answer: None,
            state: None,
            tcp: TcpPolicy::Repair,
            drain: None,
            notes: Vec::new(),
        }
    }

    fn commit(&mut self, dumped: Dumped, frozen: Duration) -> Answer {
        let start = Instant::now();
        let summary = dumped.commit(frozen).map_err(|e| e.to_string())?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok(CheckpointResult {
            image: summary.dir.display().to_string(),
            pids: summary.pids,
            threads: summary.threads as u64,
            bytes: summary.bytes,
            left_running: self.leave_running,
            frozen_ms: 0.0,
            freeze_ms: ms(self.freeze),
            dump_ms: ms(self.dump),
            write_ms: ms(start.elapsed()),
            total_ms: 0.0,
            notes: Vec::new(),
        })
    }
}

fn stop_name(stop: StopKind) -> String {
    match stop {
        StopKind::Interrupt => "interrupt".into(),
        StopKind::GroupStop(sig) => {
            let name = nix::sys::signal::Signal::try_from(sig).map_or("?", |s| s.as_str());
            format!("group-stop {name}")
        }
        StopKind::NewChild => "new-child".into(),
        StopKind::SyscallEntry => "syscall-entry".into(),
    }
}

/// The threads at the barrier as the dump takes them.
fn stopped_threads(barrier: &Barrier) -> Vec<StoppedThread> {
    barrier
        .tasks
        .iter()
        .map(|t| StoppedThread {
            pid: t.pid,
            tid: t.tid,
            state: proc_state(t.pid, t.tid),
            stop: stop_name(t.stop),
            deliver: 0,
            at_syscall_entry: t.stop == StopKind::SyscallEntry,
        })
        .collect()
}

/// The scheduler state letter of a thread (here: `t`, stopped by ptrace).
fn proc_state(pid: i32, tid: i32) -> String {
    super::procs::state_letter(&format!("/proc/{pid}/task/{tid}/stat"))
}

impl BarrierJob for CheckpointJob {
    fn at_barrier(&mut self, barrier: Result<&Barrier, &isotrace_tracer::Error>) -> AfterFreeze {
        let barrier = match barrier {
            Ok(b) if b.tasks.is_empty() => {
                self.answer = Some(Err("the group has no process left".into()));
                return AfterFreeze::Resume;
            }
            Ok(b)
                if self
                    .drain
                    .as_mut()
                    .is_some_and(|d| d.start(b, &mut self.notes)) =>
            {
                return AfterFreeze::Resume;
            }
            Ok(b) => b,
            Err(e) => {
                self.answer = Some(Err(format!("cannot freeze the group: {e}")));
                return AfterFreeze::Resume;
            }
        };
        self.freeze = barrier.freeze;
        let start = Instant::now();
        let dumped = checkpoint::dump_tcp(
            barrier.root,
            barrier.pids(),
            stopped_threads(barrier),
            &self.dir,
            self.tcp,
            self.leave_running,
        );
        let dumped = dumped.and_then(|(mut d, held)| {
            if let Some(s) = &self.state {
                d.write_section(state::SECTION, &s.to_json())?;
            }
            Ok((d, held))
        });
        self.dump = start.elapsed();
        // Dropping `held` resumes the group's TCP connections (leave
        // repair mode, lift the network lock): what a group that runs on
        // needs.
        match dumped {
            Err(e) => {
                self.answer = Some(Err(e.to_string()));
                AfterFreeze::Resume
            }
            Ok((d, _held)) if self.leave_running => {
                self.dumped = Some(d);
                AfterFreeze::Resume
            }
            Ok((d, held)) => {
                let answer = self.commit(d, self.freeze + self.dump);
                let after = match answer {
                    Ok(_) => {
                        // The connections end silently with the group and
                        // stay locked until `isotrace restore` of this
                        // image lifts the lock (IMAGE.md, tcp.bin).
                        if let Err(e) = held.release(false) {
                            tracing::warn!("releasing the TCP connections: {e}");
                        }
                        TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
                        AfterFreeze::Kill
                    }
                    Err(_) => AfterFreeze::Resume,
                };
                self.answer = Some(answer);
                after
            }
        }
    }

    fn finish(mut self: Box<Self>, frozen: Duration) {
        if self.drain.as_mut().is_some_and(AcceptDrain::take_pending) {
            AcceptDrain::again(self, frozen, |j: &mut CheckpointJob| {
                let d = j.drain.as_mut().expect("draining");
                (d, &mut j.notes)
            });
            return;
        }
        if let Some(d) = &mut self.drain {
            d.end(&mut self.notes);
        }
        if let Some(d) = self.dumped.take() {
            self.answer = Some(self.commit(d, frozen));
        }
        let mut answer = self
            .answer
            .take()
            .unwrap_or_else(|| Err("the checkpoint did not run".into()));
        if let Ok(r) = &mut answer {
            r.frozen_ms = frozen.as_secs_f64() * 1000.0;
            r.total_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            r.notes = std::mem::take(&mut self.notes);
        }
        match self.reply.take() {
            Some(tx) => {
                let _ = tx.send(answer);
            }
            None => report(&self.dir, &answer),
        }
    }
}

/// The signal trigger's one line on the supervisor's stderr.
fn report(dir: &Path, answer: &Answer) {
    match answer {
        Ok(r) => eprintln!(
            "isotrace: checkpoint (SIGUSR2) written to {} ({} processes, frozen {:.1} ms)",
            r.image,
            r.pids.len(),
            r.frozen_ms
        ),
        Err(why) => eprintln!(
            "isotrace: checkpoint (SIGUSR2) to {} failed: {why}; the group runs on",
            dir.display()
        ),
    }
}
