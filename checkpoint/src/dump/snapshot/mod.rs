//! `isotrace snapshot` (#7): the target is held only while its threads'
//! registers, XSAVE areas and signal state are read and its memory is
//! made to keep the pause's contents while it runs on, by one of two
//! methods ([`Method`]):
//! - `uffd` (wp/): its memory is write-protected with a userfaultfd while
//!   it runs, before the pause, and each page is copied before its first
//!   write after it; the pause costs protecting again what the target
//!   touched since (not its size);
//! - `fork` (cow.rs): a copy-on-write child of it is forked; the pause
//!   costs fork's copy of the page tables.
//!
//! Everything whose cost grows with the process (page contents, pagemap,
//! smaps) is read after the target runs again. `auto` uses uffd where
//! it can and fork otherwise, and takes the snapshot again by fork when
//! the target's munmap/mremap/madvise during the copy reached pages not
//! read yet (wp/): the image never mixes two moments.
//!
//! A process the child cannot be made for (a seccomp filter, every thread
//! stopped by a signal, a failed clone) is dumped while stopped, as a
//! checkpoint is, and the image says so and why.
//!
//! held.rs reads one process in the pause and dumps it after; record.rs is
//! how the snapshot went (snapshot.json).

use super::sigstate::{self, SigState};
use super::wp::{prearm, Prearmed};
use super::{dump_process, inject_fault, pipes, precheck, thread_extra, unix_pairs};
use super::{Dumped, Frozen, Options, Summary};
use crate::error::{Error, Result};
use crate::image::{codec, ImageWriter, Kind};
use crate::model::{Process, ProcessTree};
use held::Held;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use std::path::Path;
use std::time::{Duration, Instant};

mod held;
mod record;

pub use held::wipeonfork_starts;
use record::method_of;
pub use record::{
    record, Phases, ProcessRecord, Record, COW_LIMITATIONS, RECORD_SECTION, RECORD_VERSION,
    UFFD_LIMITATIONS,
};

/// How the snapshot keeps the pause's memory while the target runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// uffd where the kernel and the target allow it, else fork.
    #[default]
    Auto,
    Uffd,
    Fork,
}

pub struct Taken {
    pub summary: Summary,
    pub record: Record,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Snapshots `pid` (and with `opts.tree` its descendants) into `dir` by
/// the `auto` method.
pub fn take(pid: i32, dir: &Path, opts: &Options) -> Result<Taken> {
    take_with(pid, dir, opts, Method::Auto)
}

/// Snapshots `pid` (and with `opts.tree` its descendants) into `dir`. On
/// any error nothing is left at `dir`, the targets are released and the
/// children killed.
pub fn take_with(pid: i32, dir: &Path, opts: &Options, method: Method) -> Result<Taken> {
    match take_once(pid, dir, opts, method, None) {
        Err(Error::Torn { pid: p, why }) if method == Method::Auto => {
            tracing::info!("pid {p}: copy-before-write abandoned ({why}); taking it again by fork");
            take_once(
                pid,
                dir,
                opts,
                Method::Fork,
                Some(format!("pid {p}: {why}")),
            )
        }
        other => other,
    }
}

/// One attempt; `abandoned` says why an earlier one by uffd was given up.
fn take_once(
    pid: i32,
    dir: &Path,
    opts: &Options,
    method: Method,
    abandoned: Option<String>,
) -> Result<Taken> {
    precheck(pid)?;
    let _signals = HoldSignals::new();
    let mut writer = ImageWriter::create(dir)?;
    // Outlives the `Frozen` inside hold(), so that on an error it drops
    // after the targets are detached: dropping a child reaps it in its
    // target.
    let mut held: Vec<Held> = Vec::new();
    let t_start = Instant::now();
    let mut pre = match method {
        Method::Fork => Prearmed::default(),
        _ => prearm(pid, opts, method, t_start)?,
    };
    let t0 = Instant::now();
    let (extras, threads, phases) = hold(pid, opts, &mut pre, &mut held, &mut writer, t0)?;
    drop(pre);
    let pause = Duration::from_micros(phases.release);
    let pre_pause = pre_pause_of(&held);
    let mut record = Record {
        version: RECORD_VERSION,
        pause_us: phases.release,
        phases_us: phases,
        method: match (method, &abandoned) {
            (Method::Auto, _) | (_, Some(_)) => "auto",
            (Method::Uffd, None) => "uffd",
            (Method::Fork, None) => "fork",
        }
        .into(),
        uffd_abandoned: abandoned,
        prearm_pause_us: pre_pause,
        prearm_us: us(t0 - t_start),
        ..Record::default()
    };
    let mut tree = ProcessTree {
        root: pid,
        processes: Vec::new(),
    };
    let mut signals = SigState::default();
    for h in held.drain(..) {
        let (process, rec, reap, handlers) = h.finish(&mut writer)?;
        if let Some(handlers) = handlers {
            signals.handlers.insert(process.pid, handlers);
        }
        tree.processes.push(process);
        record.processes.push(rec);
        record.reap_pause_us = record.reap_pause_us.max(us(reap));
    }
    if !extras.is_empty() {
        writer.write_section(thread_extra::SECTION, &codec::encode(&extras)?)?;
    }
    if signals != SigState::default() {
        writer.write_section(sigstate::SECTION, &codec::encode(&signals)?)?;
    }
    pipes::write(&tree, &mut writer)?;
    // A snapshot is not restored: files in flight that a checkpoint
    // would refuse are only left out.
    let mut pending = super::inflight::Pending::new();
    let pairs = unix_pairs::write(&tree, &mut writer, &mut pending)?;
    let embryos = super::embryos::Embryos::new();
    let known = super::inflight::Known::of(&tree, &pairs, &embryos);
    super::inflight::write(&tree, pending, &known, &mut writer)?;
    let (method, limitations) = method_of(&record);
    record.total_us = us(t_start.elapsed());
    let json = serde_json::to_vec_pretty(&record).expect("a Record always serializes");
    writer.write_section(RECORD_SECTION, &json)?;
    let dumped = Dumped::assembled(writer, tree, threads, Kind::Snapshot);
    let summary = dumped.commit_as(pause, method, limitations)?;
    Ok(Taken { summary, record })
}

/// The pause, from the first seize (at `t0`) to the last detach: freeze,
/// per-thread state, one copy-on-write child per process (or, failing
/// that, its dump while stopped). Fills `held`; returns the threads'
/// registrations, how many threads there were, and the phases.
fn hold(
    pid: i32,
    opts: &Options,
    pre: &mut Prearmed,
    held: &mut Vec<Held>,
    writer: &mut ImageWriter,
    t0: Instant,
) -> Result<(thread_extra::Extras, usize, Phases)> {
    let frozen = Frozen::freeze(pid, opts.tree)?;
    let mut phases = Phases {
        freeze: us(t0.elapsed()),
        ..Phases::default()
    };
    inject_fault(pid);
    for &p in frozen.pids() {
        held.push(Held::capture(&frozen, p)?);
    }
    // rseq and robust-list registrations (threads.bin): two ptrace
    // requests per thread, which want it stopped.
    let extras = thread_extra::capture(&ProcessTree {
        root: pid,
        processes: held
            .iter()
            .map(|h| Process {
                pid: h.pid,
                threads: h.threads.clone(),
                ..Process::default()
            })
            .collect(),
    });
    phases.capture = us(t0.elapsed());
    if let Some(method) = pre.method {
        for h in held.iter_mut() {
            h.seal(&frozen, pre)?;
            if method == Method::Uffd && h.wp.is_none() && h.why_stopped.is_none() {
                return Err(Error::Invalid {
                    what: format!(
                        "pid {}: --method uffd is not possible: {}",
                        h.pid,
                        h.uffd_unavailable.as_deref().unwrap_or("unknown")
                    ),
                });
            }
        }
    }
    phases.protect = us(t0.elapsed());
    for h in held
        .iter_mut()
        .filter(|h| h.wp.is_none() && h.why_stopped.is_none())
    {
        h.fork(&frozen)?;
    }
    phases.fork = us(t0.elapsed());
    for h in held
        .iter_mut()
        .filter(|h| h.child.is_none() && h.wp.is_none())
    {
        h.stopped = Some(dump_process(&frozen, h.pid, writer)?);
    }
    phases.stopped_dump = us(t0.elapsed());
    frozen.check_alive()?;
    let threads = frozen.thread_count();
    frozen.release();
    phases.release = us(t0.elapsed());
    Ok((extras, threads, phases))
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in this thread until
/// dropped (the end of the snapshot; they are delivered then). Dying while
/// a target thread runs an injected syscall would leave it at our gadget
/// with our registers, and dying while a child lives leaves its zombie to
/// the target (cow.rs). SIGKILL cannot be blocked (signal(7)).
struct HoldSignals(Option<SigSet>);

impl HoldSignals {
    fn new() -> HoldSignals {
        let mut set = SigSet::empty();
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            set.add(sig);
        }
        let mut old = SigSet::empty();
        HoldSignals(
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
                .ok()
                .map(|()| old),
        )
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
        }
    }
}

/// The longest first hold of the processes copied before write.
fn pre_pause_of(held: &[Held]) -> u64 {
    held.iter().map(|h| h.prearm_pause_us).max().unwrap_or(0)
}
