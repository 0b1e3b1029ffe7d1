//! `isotrace snapshot` (#7): the target is held only while its threads'
//! registers, XSAVE areas and signal state are read and its memory is
//! made to keep the pause's contents while it runs on, by one of two
//! methods ([`Method`]):
//! - `uffd` (wp.rs): its memory is write-protected with a userfaultfd and
//!   each page is copied before its first write; the pause costs the
//!   protection's page-table walk;
//! - `fork` (cow.rs): a copy-on-write child of it is forked; the pause
//!   costs fork's copy of the page tables.
//!
//! Everything whose cost grows with the process (page contents, pagemap,
//! smaps) is read after the target runs again. `auto` uses uffd where
//! it can and fork otherwise, and takes the snapshot again by fork when
//! the target's munmap/mremap/madvise during the copy reached pages not
//! read yet (wp.rs): the image never mixes two moments.
//!
//! A process the child cannot be made for (a seccomp filter, every thread
//! stopped by a signal, a failed clone) is dumped while stopped, as a
//! checkpoint is, and the image says so and why.

use super::cow::CowChild;
use super::procfs::{creds, hex_field, parse_limits, parse_maps, parse_stat, parse_status, Stat};
use super::sigstate::{self, Handler, SigState};
use super::wp::{prearm, Prearmed, WpCopy, WpReport};
use super::{
    dump_process, fds, inject_fault, memory, pipes, precheck, thread, thread_extra, unix_pairs,
};
use super::{Dumped, Frozen, Options, ProcDir, Summary, STOPPED_LIMITATIONS};
use crate::error::{Error, Result};
use crate::image::{codec, Image, ImageWriter, Kind};
use crate::model::{Process, ProcessSignals, ProcessTree, Thread, Vma, VmaMemory};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The image section holding the [`Record`] (JSON).
pub const RECORD_SECTION: &str = "snapshot.json";
pub const RECORD_VERSION: u32 = 1;

/// What the copy-before-write method cannot see, in words (the
/// manifest's `limitations`).
pub const UFFD_LIMITATIONS: &[&str] = &[
    "memory is the pause's: each page is copied before the target's first write to it (userfaultfd write-protection), and read after the pause otherwise",
    "writable private file mappings (a library's .data) cannot be write-protected and are read during the pause; read-only ones are read after it (snapshot.json lists them)",
    "shared memory (MAP_SHARED anonymous, memfd, SysV shm) is protected against the target's writes only: another process's writes through its own mapping may be newer than the registers",
    "the fd table (with file offsets) is read during the pause; the bytes buffered in its pipes are read just after it",
    "contents of shared file mappings are not captured (they are the file's)",
    "[vvar]/[vsyscall] and device mappings are not captured",
    "pages never touched (neither present nor swapped at the pause) are not stored",
    "while the snapshot runs, the target's first write to each page not yet read waits for its copy",
];

/// How the snapshot keeps the pause's memory while the target runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// uffd where the kernel and the target allow it, else fork.
    #[default]
    Auto,
    Uffd,
    Fork,
}

/// What the copy-on-write method cannot see, in words (the manifest's
/// `limitations`).
pub const COW_LIMITATIONS: &[&str] = &[
    "memory is the copy-on-write child's: mappings fork(2) does not copy (MADV_DONTFORK, a driver's VM_DONTCOPY) and MADV_WIPEONFORK contents are not captured; each is marked in mems",
    "shared memory (MAP_SHARED anonymous, memfd, SysV shm) is read from the target after the pause, so it may be newer than the registers",
    "the fd table (with file offsets) is read during the pause; the bytes buffered in its pipes are read just after it",
    "contents of shared file mappings are not captured (they are the file's)",
    "[vvar]/[vsyscall] and device mappings are not captured",
    "pages never touched (neither present nor swapped in pagemap) are not stored",
    "while the child lives, the target's first write to each private page copies it (as after any fork)",
];

/// How the snapshot went, stored as `snapshot.json` and shown by inspect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// From the first PTRACE_SEIZE to the last PTRACE_DETACH.
    pub pause_us: u64,
    /// Where the pause went, cumulative from the first seize.
    pub phases_us: Phases,
    /// Copy-before-write's first, short hold (to make the userfaultfd),
    /// before the pause: from its first seize to its last detach.
    #[serde(default)]
    pub prearm_pause_us: u64,
    /// From that first seize to the memory write-protected, when the
    /// pause's hold begins (`pause_us` and `phases_us` count from there).
    #[serde(default)]
    pub prearm_us: u64,
    /// The method asked for: "auto", "uffd" or "fork".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Why a first copy-before-write attempt was abandoned and the
    /// snapshot taken again by fork (`--method auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd_abandoned: Option<String>,
    /// The longest second hold of one thread per process, to reap the
    /// copy-on-write child (cow.rs).
    pub reap_pause_us: u64,
    /// From the first seize (of the first hold) to the committed image.
    pub total_us: u64,
    pub processes: Vec<ProcessRecord>,
}

/// Time since the first seize at the end of each step, in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Every thread seized and in its interrupt stop.
    pub freeze: u64,
    /// Registers, XSAVE areas, siginfos, stat/status/maps read.
    pub capture: u64,
    /// The memory write-protected (copy-before-write method).
    #[serde(default)]
    pub protect: u64,
    /// The copy-on-write children forked.
    pub fork: u64,
    /// Processes without a child dumped while stopped.
    pub stopped_dump: u64,
    /// Every thread detached: the pause.
    pub release: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    /// "uffd-wp", "cow-fork" or "stopped".
    pub memory_method: String,
    /// Why the copy-before-write method was not used (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd_unavailable: Option<String>,
    /// What the copy-before-write method did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd: Option<WpReport>,
    /// Why a process was dumped while stopped.
    pub why_stopped: Option<String>,
    /// The pid the copy-on-write child had (gone by now).
    pub cow_child: Option<i32>,
    /// Why its signal handlers are not in the image (read in the child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers_unread: Option<String>,
}

/// What [`Held::finish`] gives.
type Finished = (
    Process,
    ProcessRecord,
    Duration,
    Option<BTreeMap<i32, Handler>>,
);

pub struct Taken {
    pub summary: Summary,
    pub record: Record,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// The [`Record`] of a snapshot image (None for checkpoints and images
/// written before it existed). The section's checksum was verified when
/// the image was opened.
pub fn record(image: &Image) -> Result<Option<Record>> {
    if image.manifest.section(RECORD_SECTION).is_none() {
        return Ok(None);
    }
    let path = image.dir.join(RECORD_SECTION);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::corrupt(RECORD_SECTION, e.to_string()))
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

/// The manifest's memory_method and limitations for the processes' methods.
fn method_of(record: &Record) -> (&'static str, Vec<String>) {
    let count = |m: &str| {
        record
            .processes
            .iter()
            .filter(|p| p.memory_method == m)
            .count()
    };
    let (uffd, cow) = (count("uffd-wp"), count("cow-fork"));
    let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = record.processes.len();
    if uffd == all {
        ("uffd-wp", lines(UFFD_LIMITATIONS))
    } else if cow == all {
        ("cow-fork", lines(COW_LIMITATIONS))
    } else if cow + uffd == 0 {
        ("stopped", lines(STOPPED_LIMITATIONS))
    } else {
        let mut all = Vec::new();
        if uffd > 0 {
            all.extend(lines(UFFD_LIMITATIONS));
        }
        if cow > 0 {
            all.extend(lines(COW_LIMITATIONS));
        }
        all.push("processes were captured by different methods (see snapshot.json)".into());
        ("mixed", all)
    }
}

/// What is read of one process while it is held.
struct Held {
    pid: i32,
    /// The stopped thread whose /proc directory was read.
    tid: i32,
    stat: Stat,
    status: HashMap<String, String>,
    maps: String,
    threads: Vec<Thread>,
    shared_siginfo: Vec<Vec<u8>>,
    child: Option<CowChild>,
    /// Copy-before-write, when armed.
    wp: Option<WpCopy>,
    /// Its first hold, to make the userfaultfd.
    prearm_pause_us: u64,
    uffd_unavailable: Option<String>,
    why_stopped: Option<String>,
    /// The whole process, when it was dumped while stopped.
    stopped: Option<Process>,
    /// The fd table with each file's offset, read while held: the
    /// offsets belong with the registers and memory of that moment (the
    /// child shares the target's open files, whose offsets move on).
    fds: Vec<crate::model::FdEntry>,
}

impl Held {
    fn capture(frozen: &Frozen, pid: i32) -> Result<Held> {
        let proc = ProcDir::of(frozen, pid)?;
        let threads = frozen
            .threads_of(pid)
            .map(thread::dump)
            .collect::<Result<Vec<_>>>()?;
        let shared_siginfo = crate::sys::peek_siginfo(proc.tid, true).map_err(|e| {
            if e.is_died() {
                Error::Exited { pid }
            } else {
                e.into()
            }
        })?;
        let fds = fds::dump(&proc)?;
        Ok(Held {
            pid,
            tid: proc.tid,
            fds,
            stat: parse_stat(&proc.text("stat")?).ok_or(Error::Exited { pid })?,
            status: parse_status(&proc.text("status")?),
            maps: proc.text("maps")?,
            threads,
            shared_siginfo,
            child: None,
            wp: None,
            prearm_pause_us: 0,
            uffd_unavailable: None,
            why_stopped: None,
            stopped: None,
        })
    }

    /// Seals the copy-before-write prepared for this process (wp.rs), or
    /// says why there is none.
    fn seal(&mut self, frozen: &Frozen, pre: &mut Prearmed) -> Result<()> {
        let threads: Vec<_> = frozen.threads_of(self.pid).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            self.why_stopped = Some("the process is stopped by job control".into());
            return Ok(());
        }
        let Some(mut wp) = pre.copies.remove(&self.pid) else {
            self.uffd_unavailable = Some(
                pre.unavailable
                    .remove(&self.pid)
                    .unwrap_or_else(|| "it was not there at the first hold".into()),
            );
            return Ok(());
        };
        wp.seal(&parse_maps(&self.maps))?;
        self.wp = Some(wp);
        self.prearm_pause_us = pre.pause_us;
        Ok(())
    }

    fn fork(&mut self, frozen: &Frozen) -> Result<()> {
        let threads: Vec<_> = frozen.threads_of(self.pid).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            self.why_stopped = Some("the process is stopped by job control".into());
            return Ok(());
        }
        match CowChild::fork(&threads, &parse_maps(&self.maps))? {
            Ok(child) => self.child = Some(child),
            Err(why) => self.why_stopped = Some(why),
        }
        Ok(())
    }

    /// The process from its child (or as dumped while stopped), its
    /// record, how long reaping the child held the target, and its signal
    /// handlers (read in the child).
    fn finish(mut self, writer: &mut ImageWriter) -> Result<Finished> {
        let mut rec = ProcessRecord {
            pid: self.pid,
            memory_method: "stopped".into(),
            why_stopped: self.why_stopped.take(),
            cow_child: None,
            handlers_unread: None,
            uffd_unavailable: self.uffd_unavailable.take(),
            uffd: None,
        };
        if let Some(process) = self.stopped.take() {
            rec.handlers_unread = Some("dumped while stopped".into());
            return Ok((process, rec, Duration::ZERO, None));
        }
        if let Some(mut wp) = self.wp.take() {
            rec.memory_method = "uffd-wp".into();
            let handlers = std::mem::replace(&mut wp.handlers, Ok(BTreeMap::new()));
            let target = ProcDir {
                pid: self.pid,
                tid: self.tid,
                base: format!("/proc/{}/task/{}", self.pid, self.tid),
            };
            let dumped = self.dump_memory(&target, writer, Some(&wp), None);
            // Un-protected whatever happened: the target runs on freely.
            let report = wp.finish();
            // A torn copy first: reads through an mm that exec(2) replaced
            // fail like those of a process that exited.
            if let Err(e @ Error::Torn { .. }) = report {
                return Err(e);
            }
            let process = dumped?;
            rec.uffd = Some(report?);
            let handlers = handlers
                .map_err(|e| rec.handlers_unread = Some(e.to_string()))
                .ok();
            return Ok((process, rec, Duration::ZERO, handlers));
        }
        let child = self.child.take().ok_or(Error::Exited { pid: self.pid })?;
        rec.memory_method = "cow-fork".into();
        rec.cow_child = Some(child.pid);
        let result = self.dump_from_child(&child, writer).map(|p| {
            // After the memory is read: the calls use the child's stack.
            let handlers = sigstate::handlers_in_child(child.pid, &p.vmas, p.signals.caught);
            (p, handlers)
        });
        // Reaped whatever happened, so the target is left as it was.
        let reap = child.finish();
        let (process, handlers) = result?;
        let handlers = handlers
            .map_err(|e| rec.handlers_unread = Some(e.to_string()))
            .ok();
        Ok((process, rec, reap?, handlers))
    }

    fn dump_from_child(self, child: &CowChild, writer: &mut ImageWriter) -> Result<Process> {
        self.dump_memory(&child.proc_dir(), writer, None, Some(child))
    }

    /// The process, its memory read from `from`: the copy-on-write
    /// child's /proc (with `child`), or the target's under `wp`.
    fn dump_memory(
        self,
        from: &ProcDir,
        writer: &mut ImageWriter,
        wp: Option<&WpCopy>,
        child: Option<&CowChild>,
    ) -> Result<Process> {
        let cp = from;
        let pid = self.pid;
        let target = ProcDir {
            pid,
            tid: self.tid,
            base: format!("/proc/{pid}/task/{}", self.tid),
        };
        let pages_section = format!("pages-{pid}.img");
        let mut pages = writer.section(&pages_section)?;
        let mut vmas: Vec<Vma> = match (wp, child) {
            (Some(wp), _) => {
                let mut vmas = parse_maps(&self.maps);
                memory::dump_guarded(&target, &mut vmas, &mut pages, wp)?;
                vmas
            }
            _ => {
                let child_maps = parse_maps(&cp.text("maps")?);
                let wiped = wipeonfork_starts(&cp.text("smaps")?);
                let (mut private, mut shared, left_out) =
                    partition(parse_maps(&self.maps), &child_maps, &wiped);
                memory::dump(cp, &mut private, &mut pages, None)?;
                // Shared pages are not copied into the child's page tables by
                // fork(2) (mm/memory.c, copy_page_range skips VMAs without an
                // anon_vma), so which exist is the target's pagemap's to say.
                memory::dump(&target, &mut shared, &mut pages, None)?;
                private.into_iter().chain(shared).chain(left_out).collect()
            }
        };
        writer.finish(pages)?;
        vmas.sort_by_key(|v| v.start);
        Ok(Process {
            pid,
            ppid: self.stat.ppid,
            pgid: self.stat.pgrp,
            sid: self.stat.session,
            comm: self.stat.comm,
            exe: cp.link("exe"),
            cwd: cp.link("cwd"),
            root: cp.link("root"),
            cmdline: cp.bytes("cmdline")?,
            environ: cp.bytes("environ")?,
            auxv: cp.bytes("auxv")?,
            creds: creds(&self.status),
            umask: self
                .status
                .get("Umask")
                .and_then(|u| u32::from_str_radix(u, 8).ok()),
            limits: parse_limits(&cp.text("limits")?),
            signals: ProcessSignals {
                ignored: hex_field(&self.status, "SigIgn"),
                caught: hex_field(&self.status, "SigCgt"),
                shared_pending: hex_field(&self.status, "ShdPnd"),
                shared_siginfo: self.shared_siginfo,
            },
            threads: self.threads,
            vmas,
            fds: self.fds,
            pages_section,
        })
    }
}

/// The target's mappings, split by where their pages are read: from the
/// child (private ones, and those memory::dump skips anyway), from the
/// target (shared ones), or nowhere (not in the child, or wiped in it:
/// marked with the reason).
fn partition(
    vmas: Vec<Vma>,
    child_maps: &[Vma],
    wiped: &HashSet<u64>,
) -> (Vec<Vma>, Vec<Vma>, Vec<Vma>) {
    let in_child: HashSet<u64> = child_maps.iter().map(|v| v.start).collect();
    let (mut private, mut shared, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for mut v in vmas {
        let skipped = |reason: &str| VmaMemory::Skipped {
            reason: reason.into(),
        };
        if memory::skip_reason(&v).is_some() {
            private.push(v);
        } else if !in_child.contains(&v.start) {
            v.memory = skipped("not copied by fork(2) (MADV_DONTFORK or a driver's VM_DONTCOPY)");
            left_out.push(v);
        } else if wiped.contains(&v.start) {
            v.memory = skipped("MADV_WIPEONFORK: empty in the copy-on-write child");
            left_out.push(v);
        } else if v.shared() {
            shared.push(v);
        } else {
            private.push(v);
        }
    }
    (private, shared, left_out)
}

/// Start addresses of the mappings /proc/PID/smaps flags "wf"
/// (MADV_WIPEONFORK; proc(5), VmFlags).
pub fn wipeonfork_starts(smaps: &str) -> HashSet<u64> {
    let mut out = HashSet::new();
    let mut current = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "wf") {
                out.extend(current);
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if let Ok(start) = u64::from_str_radix(start, 16) {
                    current = Some(start);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipeonfork_flags() {
        let smaps = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n\
                     Size:                  4 kB\n\
                     VmFlags: rd wr mr mw me ac wf \n\
                     7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n\
                     Size:                  4 kB\n\
                     VmFlags: rd wr mr mw me ac \n";
        let starts = wipeonfork_starts(smaps);
        assert_eq!(starts.len(), 1);
        assert!(starts.contains(&0x7f0000000000));
    }

    #[test]
    fn mappings_are_read_where_their_pages_are() {
        let maps = parse_maps(
            "1000-2000 rw-p 00000000 00:00 0 \n\
             3000-4000 rw-p 00000000 00:00 0 \n\
             5000-6000 rw-p 00000000 00:00 0 \n\
             7000-8000 rw-s 00000000 00:01 9 /dev/zero (deleted)\n\
             9000-a000 r--p 00000000 00:00 0 [vvar]\n",
        );
        // 0x3000 was MADV_DONTFORK (absent in the child), 0x5000 wiped.
        let child: Vec<Vma> = maps.iter().filter(|v| v.start != 0x3000).cloned().collect();
        let wiped = HashSet::from([0x5000]);
        let (private, shared, left_out) = partition(maps, &child, &wiped);
        let starts = |v: &[Vma]| v.iter().map(|v| v.start).collect::<Vec<_>>();
        assert_eq!(starts(&private), [0x1000, 0x9000]);
        assert_eq!(starts(&shared), [0x7000]);
        assert_eq!(starts(&left_out), [0x3000, 0x5000]);
        let reason = |v: &Vma| match &v.memory {
            VmaMemory::Skipped { reason } => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reason(&left_out[0]).contains("MADV_DONTFORK"));
        assert!(reason(&left_out[1]).contains("MADV_WIPEONFORK"));
    }

    #[test]
    fn methods() {
        let p = |m: &str| ProcessRecord {
            memory_method: m.into(),
            ..Default::default()
        };
        let mut r = Record {
            processes: vec![p("cow-fork")],
            ..Default::default()
        };
        assert_eq!(method_of(&r).0, "cow-fork");
        r.processes.push(p("stopped"));
        assert_eq!(method_of(&r).0, "mixed");
        r.processes.remove(0);
        assert_eq!(method_of(&r).0, "stopped");
    }
}
