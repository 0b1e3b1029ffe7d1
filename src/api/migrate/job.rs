//! The part of a migration that runs at the freeze barrier, on the tracer
//! thread: dump, send, and wait for the receiver's word. The group stays
//! frozen throughout, so the image, the environment's files and the fds'
//! offsets agree; the downtime is from the first PTRACE_INTERRUPT until
//! the receiver's `Running`.
//!
//! Two-phase end: the receiver restores the copy stopped and says `Ready`;
//! we answer `Go`; it releases the copy and says `Running`. A receiver that
//! loses the connection before `Go` kills its stopped copy, so a failure
//! anywhere before `Running` leaves exactly one copy running: the source,
//! resumed.

use super::staging::Staging;
use super::tcp::{self, TcpMove};
use super::Request;
use crate::api::drain::AcceptDrain;
use crate::api::protocol::{MigrateResult, MigrateRound};
use crate::api::state::{self, SupervisorState};
use isotrace_checkpoint::dump::{checkpoint, StoppedThread};
use isotrace_checkpoint::precopy::group::{GroupPreCopy, Held, Retired};
use isotrace_checkpoint::stream::delta;
use isotrace_checkpoint::stream::{transfer, Accept, EnvPlan, Hello, Kind, Session};
use isotrace_tracer::{AfterFreeze, Barrier, BarrierJob, StopKind, Waker};
use serde::Deserialize;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the receiver may take to verify and restore what it got.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one write may block on a receiver that stopped reading (a
/// dead link sends no RST: only a timeout notices it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Answer = Result<MigrateResult, String>;

/// A pre-copy at the freeze: per pre-copied process, the pages the
/// receiver holds; and the commitment to what it sent.
type Sealed = (Held, delta::PreEnd);

pub struct MigrateJob {
    req: Request,
    hello: Hello,
    session: Session,
    accept: Accept,
    state: Option<SupervisorState>,
    started: Instant,
    reply: mpsc::Sender<Answer>,
    result: MigrateResult,
    error: Option<String>,
    precopy: Option<GroupPreCopy>,
    /// Pre-copy's trackers after the freeze, dropped with the job (after
    /// the downtime; `Retired`).
    retired: Option<Retired>,
    /// The group's TCP connections while it moves.
    tcp: Option<TcpMove>,
    /// From the barrier to the start of the dump (accept-queue check).
    before_dump: Duration,
    /// The layer as pre-copy sent it, if it did.
    pre_layer: Option<super::layer::PreSent>,
    /// Connections waiting in accept queues at the freeze (`api::drain`).
    drain: Option<AcceptDrain>,
}

/// What the receiver says in `Ready` and `Running`.
#[derive(Deserialize, Default)]
struct Confirmed {
    #[serde(default)]
    pids: Vec<i32>,
    #[serde(default)]
    restore_ms: f64,
    #[serde(default)]
    notes: Vec<String>,
    /// `Running`: the copy's held pages are being post-copied, and a
    /// `PostCopied` frame follows once they are all in.
    #[serde(default)]
    post_copy: bool,
    /// `Running` after pre-copy: `eager` or `post-copy`.
    #[serde(default)]
    fill: String,
}

/// What the receiver says in `PostCopied`.
#[derive(Deserialize, Default)]
struct PostCopied {
    #[serde(default)]
    stats: Option<isotrace_checkpoint::restore::lazy::Stats>,
    #[serde(default)]
    error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl MigrateJob {
    pub fn new(
        req: Request,
        hello: Hello,
        session: Session,
        accept: Accept,
        state: Option<SupervisorState>,
        started: Instant,
        reply: mpsc::Sender<Answer>,
    ) -> MigrateJob {
        let result = MigrateResult {
            purpose: req.purpose.into(),
            to: req.to.clone(),
            dest_host: accept.host.clone(),
            dest_env: accept.dest_env.clone(),
            env_plan: serde_json::to_value(accept.env_plan)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            dest_pids: Vec::new(),
            mode: "stop-and-copy".into(),
            rounds: Vec::new(),
            source_released: false,
            downtime_ms: 0.0,
            freeze_ms: 0.0,
            dump_ms: 0.0,
            layer_ms: 0.0,
            send_ms: 0.0,
            restore_ms: 0.0,
            total_ms: 0.0,
            bytes_sent: 0,
            image_bytes: 0,
            layer_bytes: 0,
            staging: String::new(),
            notes: Vec::new(),
            fill: String::new(),
            post_copy: None,
        };
        MigrateJob {
            req,
            hello,
            session,
            accept,
            state,
            started,
            reply,
            result,
            error: None,
            precopy: None,
            retired: None,
            before_dump: Duration::ZERO,
            tcp: None,
            pre_layer: None,
            drain: None,
        }
    }

    /// Lets the job drain accept queues at the freeze (`api::drain`).
    pub fn set_waker(&mut self, waker: Waker) {
        self.drain = Some(AcceptDrain::new(waker));
    }

    /// The pre-copy that ran (None: stop-and-copy), and the mode's name.
    pub fn set_precopy(&mut self, pc: Option<GroupPreCopy>, mode: String) {
        self.precopy = pc;
        self.result.mode = mode;
    }

    /// The layer pre-copy sent while the group ran (None: the whole layer
    /// goes at the freeze).
    pub fn set_pre_layer(&mut self, pre: Option<super::layer::PreSent>) {
        self.pre_layer = pre;
    }

    /// At the freeze, after pre-copy: the pages the receiver holds (still
    /// clean), which the dump then leaves out, and what pre-copy sent.
    /// `frozen`: the pids at the barrier; any other is dumped whole.
    fn seal_precopy(&mut self, frozen: &[i32]) -> Option<Sealed> {
        let pc = self.precopy.take()?;
        self.result.rounds = pc
            .rounds
            .iter()
            .map(|r| MigrateRound {
                pages: r.pages,
                bytes: r.bytes,
                ms: r.ms,
            })
            .collect();
        let pre = delta::PreEnd {
            pages: pc.rounds.iter().map(|r| r.pages).sum(),
            blake3: pc.sent_digest(),
        };
        let (held, notes, retired) = pc.clean(frozen);
        self.result.notes.extend(notes);
        self.retired = Some(retired);
        Some((held, pre))
    }

    /// Sends the image: whole, or after pre-copy as a delta over the pages
    /// the receiver holds, which the dump left out.
    fn send(
        &mut self,
        dir: &std::path::Path,
        sealed: Option<Sealed>,
    ) -> Result<u64, isotrace_checkpoint::stream::Error> {
        let Some((clean, pre)) = sealed else {
            return transfer::send_image(&mut self.session.tx, dir);
        };
        let held = |p: i32, addr: u64, pages: u64| match clean.get(&p) {
            Some(c) => c.split(addr, pages),
            None => vec![(addr, pages, false)],
        };
        let (data, reused) = delta::send_image_delta(&mut self.session.tx, dir, &held, &pre)?;
        let dirty = data / isotrace_checkpoint::PAGE_SIZE;
        self.result.notes.push(format!(
            "after the freeze: about {dirty} pages of data sent, {reused} pages already sent by pre-copy"
        ));
        Ok(data)
    }

    /// Dump, send, confirm. Err: why the group must resume.
    fn run(&mut self, barrier: &Barrier, frozen_at: Instant) -> Result<(), String> {
        self.before_dump = frozen_at.elapsed();
        let sock = self.session.tx.get_ref();
        let _ = sock.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = sock.set_read_timeout(Some(RESTORE_TIMEOUT));
        let staging = Staging::new().map_err(|e| format!("staging the image: {e}"))?;
        self.result.staging = staging.medium.clone();
        let dir = staging.dir.join("image");
        let t = Instant::now();
        let policy = tcp::policy(self.req.purpose, self.req.tcp_close);
        let (root, pids) = (barrier.root, barrier.pids());
        let sealed = self.seal_precopy(&pids);
        let scanned = t.elapsed();
        let keep = sealed.as_ref().map(|s| s.0.clone()).unwrap_or_default();
        let (mut dumped, held) =
            checkpoint::dump_tcp_holding(root, pids, threads(barrier), &dir, policy, keep)
                .map_err(|e| e.to_string())?;
        let dumped_at = t.elapsed();
        let script = self.req.action_script.as_deref();
        let group = &self.hello.group;
        let mut moving = TcpMove::new(held, dumped.tree(), script, group, &self.req.to);
        if self.req.purpose == "clone" {
            // Before anything is sent: a refusal leaves the group as it was.
            let notes = moving.cloning(dumped.tree(), self.req.ports)?;
            self.result.notes.extend(notes);
        }
        moving.locked()?;
        self.tcp = Some(moving);
        if let Some(s) = &self.state {
            dumped
                .write_section(state::SECTION, &s.to_json())
                .map_err(|e| e.to_string())?;
        }
        dumped.commit(Duration::ZERO).map_err(|e| e.to_string())?;
        self.result.dump_ms = ms(t.elapsed());
        if sealed_pages(&self.result) {
            self.result.notes.push(format!(
                "dump at the freeze: last dirty scan {:.1} ms, memory and state {:.1} ms, image commit {:.1} ms",
                ms(scanned),
                ms(dumped_at - scanned),
                ms(t.elapsed() - dumped_at)
            ));
        }
        let to = self.req.to.clone();
        let net = |e: isotrace_checkpoint::stream::Error| format!("sending to {to}: {e}");
        if self.accept.env_plan == EnvPlan::Stream {
            let t = Instant::now();
            let upper = self
                .hello
                .env
                .as_ref()
                .map(|e| e.upper.clone())
                .unwrap_or_default();
            let upper = std::path::Path::new(&upper);
            let to = &self.req.to;
            self.result.layer_bytes = match self.pre_layer.take() {
                None => super::layer::send(&mut self.session.tx, upper)
                    .map_err(|e| format!("{e} (to {to})"))?,
                Some(pre) => {
                    let mapped = super::layer::mapped_shared_writable(&barrier.pids(), upper);
                    let (bytes, removed, sent) =
                        super::layer::send_delta(&mut self.session.tx, upper, &pre, &mapped)
                            .map_err(|e| format!("{e} (to {to})"))?;
                    self.result.notes.push(format!(
                        "layer: {} bytes pre-copied while the group ran; at the freeze {} entries removed, {} sent again ({} bytes)",
                        pre.bytes, removed, sent, bytes
                    ));
                    pre.bytes + bytes
                }
            };
            self.result.layer_ms = ms(t.elapsed());
        }
        let t = Instant::now();
        self.result.image_bytes = self.send(&dir, sealed).map_err(net)?;
        if let Some(t) = &mut self.tcp {
            t.before_restore()?;
        }
        self.session.tx.send(Kind::Commit, b"").map_err(net)?;
        self.result.send_ms = ms(t.elapsed());
        drop(staging);
        self.confirm(barrier.freeze, frozen_at)
    }

    /// Ready, Go, Running; after a pre-copy whose pages the copy fills
    /// after it runs, PostCopied (the group stays frozen until then: if
    /// post-copy fails, it resumes).
    fn confirm(&mut self, freeze: Duration, frozen_at: Instant) -> Result<(), String> {
        let to = self.req.to.clone();
        let lost = |e: isotrace_checkpoint::stream::Error| match e {
            isotrace_checkpoint::stream::Error::Peer(why) => {
                format!("the receiver at {to} could not start the copy: {why}")
            }
            e => format!("the receiver at {to} did not confirm the copy: {e}"),
        };
        let asked = Instant::now();
        let ready: Confirmed = self.session.rx.expect_json(Kind::Ready).map_err(lost)?;
        let readied = asked.elapsed();
        let go = Instant::now();
        if let Some(t) = &self.tcp {
            t.before_go()?;
        }
        self.session.tx.send(Kind::Go, b"").map_err(lost)?;
        let running: Confirmed = self.session.rx.expect_json(Kind::Running).map_err(|e| {
            format!(
                "{}; the receiver was told to start the copy, so it may be running there as well",
                lost(e)
            )
        })?;
        self.result.downtime_ms = ms(freeze + frozen_at.elapsed());
        self.result.restore_ms = ready.restore_ms.max(running.restore_ms);
        self.result.notes.push(format!(
            "confirmation: Ready {:.1} ms after the image was sent (the receiver's restore {:.1} ms of it), Running {:.1} ms after Go; the downtime before the dump {:.1} ms",
            ms(readied),
            ready.restore_ms,
            ms(go.elapsed()),
            ms(self.before_dump)
        ));
        self.result.dest_pids = running.pids;
        self.result.notes.extend(running.notes);
        self.result.fill = running.fill;
        if running.post_copy {
            // The copy runs: the downtime is over. Its connections are
            // let go now, not after the push (the network stays locked
            // until then).
            if let Some(mut t) = self.tcp.take() {
                let notes = t.succeeded();
                self.result.notes.extend(notes);
            }
            // What is left is the push of the pages it held, which the
            // report includes.
            let done: PostCopied = self.session.rx.expect_json(Kind::PostCopied).map_err(|e| {
                format!("the copy runs at {to}, but its post-copy did not report: {e}")
            })?;
            if let Some(why) = done.error {
                // The copy was killed (it cannot run without its pages);
                // this group, still frozen and whole, resumes instead.
                return Err(format!(
                    "the copy ran at {to} but failed while its pages were post-copied ({why}); what it did meanwhile (TCP traffic, files) is lost, and its TCP connections with it"
                ));
            }
            self.result.post_copy = done.stats;
        }
        Ok(())
    }
}

/// Whether pre-copy ran (its rounds are in the result).
fn sealed_pages(r: &MigrateResult) -> bool {
    !r.rounds.is_empty()
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

/// The threads at the barrier as the dump takes them (as the checkpoint
/// op does).
fn threads(barrier: &Barrier) -> Vec<StoppedThread> {
    barrier
        .tasks
        .iter()
        .map(|t| StoppedThread {
            pid: t.pid,
            tid: t.tid,
            state: "t".into(),
            stop: stop_name(t.stop),
            deliver: 0,
            at_syscall_entry: t.stop == StopKind::SyscallEntry,
        })
        .collect()
}

impl BarrierJob for MigrateJob {
    fn at_barrier(&mut self, barrier: Result<&Barrier, &isotrace_tracer::Error>) -> AfterFreeze {
        let frozen_at = Instant::now();
        let outcome = match barrier {
            Ok(b) if b.tasks.is_empty() => Err("the group has no process left".to_string()),
            Ok(b)
                if self
                    .drain
                    .as_mut()
                    .is_some_and(|d| d.start(b, &mut self.result.notes)) =>
            {
                return AfterFreeze::Resume
            }
            Ok(b) => {
                self.result.freeze_ms = ms(b.freeze);
                self.run(b, frozen_at)
            }
            Err(e) => Err(format!("cannot freeze the group: {e}")),
        };
        let mut tcp = self.tcp.take();
        match outcome {
            Ok(()) if self.req.purpose == "clone" => {
                let lost = tcp.as_mut().map(TcpMove::cloned).unwrap_or_default();
                self.result.notes.extend(lost);
                AfterFreeze::Resume
            }
            Ok(()) => {
                let notes = tcp.as_mut().map(TcpMove::succeeded).unwrap_or_default();
                self.result.notes.extend(notes);
                self.result.source_released = true;
                AfterFreeze::Kill
            }
            Err(mut why) => {
                // Best effort: a dead link must not hold the group longer.
                let _ = self
                    .session
                    .tx
                    .get_ref()
                    .set_write_timeout(Some(Duration::from_secs(1)));
                self.session.fail(Kind::Abort, &why);
                // After the abort: the receiver discards its copy, whose
                // sockets may hold the connections' 4-tuples.
                let lost = tcp.as_mut().map(TcpMove::failed).unwrap_or_default();
                if !lost.is_empty() {
                    why += &format!("; TCP connections not put back: {}", lost.join("; "));
                }
                self.error = Some(why);
                AfterFreeze::Resume
            }
        }
    }

    fn finish(mut self: Box<Self>, frozen: Duration) {
        if self.drain.as_mut().is_some_and(AcceptDrain::take_pending) {
            AcceptDrain::again(self, frozen, |j: &mut MigrateJob| {
                let d = j.drain.as_mut().expect("draining");
                (d, &mut j.result.notes)
            });
            return;
        }
        if let Some(d) = &mut self.drain {
            d.end(&mut self.result.notes);
        }
        self.result.bytes_sent = self.session.tx.sent;
        self.result.total_ms = ms(self.started.elapsed());
        let answer = match self.error.take() {
            Some(why) => Err(format!("{why}; the group runs on where it was")),
            None => Ok(self.result.clone()),
        };
        let _ = self.reply.send(answer);
    }
}
