//! The dump of stopped processes into an image (#5's dump, used by #7's
//! snapshot): freeze, per-process and per-thread state, memory, fds.
//! [`checkpoint`] dumps a group its supervisor already holds stopped.

mod attach;
pub mod backlog;
pub mod checkpoint;
pub(crate) mod cow;
pub mod deleted;
pub mod dgrams;
pub mod embryos;
pub mod fds;
pub mod inet_diag;
pub mod inflight;
pub mod inotify;
pub(crate) mod lend;
pub mod memory;
pub mod open_files;
pub mod pipes;
pub mod procfs;
pub mod ranges;
pub mod seals;
pub mod sigstate;
pub mod snapshot;
pub mod sockets;
pub mod tcp;
pub mod tcp_held;
pub mod tcp_share;
pub mod thread;
pub mod thread_extra;
pub mod timers;
pub mod udp;
pub mod unix_diag;
pub mod unix_pairs;
pub mod unread;
pub mod wp;
pub mod zombies;

pub use attach::{precheck, Frozen, StoppedThread};

use crate::error::{Error, Result};
use crate::image::{codec, Host, ImageWriter, Kind, Manifest, FORMAT_NAME, FORMAT_VERSION, PROCS};
use crate::model::{Process, ProcessSignals, ProcessTree};
use procfs::{creds, hex_field, parse_limits, parse_maps, parse_stat, parse_status};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An I/O error on /proc/PID/...: ENOENT or ESRCH mean the process is gone.
pub(crate) fn vanished(pid: i32, path: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
        Error::Exited { pid }
    } else {
        Error::io(path, e)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also every descendant of the process.
    pub tree: bool,
}

#[derive(Debug)]
pub struct Summary {
    pub dir: PathBuf,
    pub pids: Vec<i32>,
    pub threads: usize,
    pub bytes: u64,
    /// From the first PTRACE_SEIZE to the last PTRACE_DETACH.
    pub paused: Duration,
}

/// What memory capture by reading a stopped process cannot see.
pub const STOPPED_LIMITATIONS: &[&str] = &[
    "the target is stopped while its memory is copied: the pause grows with its resident memory",
    "contents of shared file mappings are not captured (they are the file's)",
    "[vvar]/[vsyscall] and device mappings are not captured",
    "pages never touched (neither present nor swapped in pagemap) are not stored",
];

/// Snapshots `pid` (and with `opts.tree` its descendants) into `dir`:
/// freeze, dump, release, then commit the image. On any error nothing is
/// left at `dir` and the targets are released.
pub fn snapshot(pid: i32, dir: &Path, opts: &Options) -> Result<Summary> {
    snapshot::take(pid, dir, opts).map(|taken| taken.summary)
}

/// An image whose every process was dumped, not yet committed: writing
/// its metadata and syncing it to disk can wait until the group runs on.
pub struct Dumped {
    writer: ImageWriter,
    tree: ProcessTree,
    threads: usize,
    kind: Kind,
    /// Why a checkpoint of this image must be refused, found while
    /// dumping (files in flight that cannot be carried, `inflight`).
    refusals: Vec<String>,
}

impl Dumped {
    /// Dumps every process of `frozen` (`root` first in the tree), then
    /// checks that none died meanwhile.
    pub fn new(frozen: &Frozen, root: i32, mut writer: ImageWriter, kind: Kind) -> Result<Dumped> {
        let mut tree = ProcessTree {
            root,
            processes: Vec::new(),
        };
        for &p in frozen.pids() {
            tree.processes.push(dump_process(frozen, p, &mut writer)?);
        }
        pipes::write(&tree, &mut writer)?;
        thread_extra::write(&tree, &mut writer)?;
        let mut pending = inflight::Pending::new();
        let pairs = unix_pairs::write(&tree, &mut writer, &mut pending)?;
        sigstate::write(frozen, &tree, &mut writer)?;
        zombies::write(&tree, &mut writer)?;
        timers::write(frozen, &tree, &mut writer)?;
        deleted::write(&tree, &mut writer)?;
        inotify::write(&tree, &mut writer)?;
        dgrams::write(&tree, &mut writer, &mut pending)?;
        let (embryos, mut refusals) = embryos::write(&tree, &mut writer)?;
        refusals.extend(sockets::unrebuilt(&tree, &pairs, &embryos));
        let known = inflight::Known::of(&tree, &pairs, &embryos);
        refusals.extend(inflight::write(&tree, pending, &known, &mut writer)?);
        refusals.extend(seals::write(&tree, &mut writer)?);
        open_files::write(&tree, &mut writer)?;
        frozen.check_alive()?;
        Ok(Dumped {
            writer,
            tree,
            threads: frozen.thread_count(),
            kind,
            refusals,
        })
    }

    pub fn tree(&self) -> &ProcessTree {
        &self.tree
    }

    /// Why a checkpoint of this image must be refused (none: it may be
    /// committed), each naming the pid, the fd and its kind.
    pub fn refusals(&self) -> &[String] {
        &self.refusals
    }

    /// Adds a section the caller made (the supervisor's state, #5): written
    /// and checksummed now, committed with the rest.
    pub fn write_section(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.writer.write_section(name, bytes)
    }

    /// An image the caller dumped process by process (#7's copy-on-write
    /// snapshot, dump/snapshot.rs).
    pub fn assembled(writer: ImageWriter, tree: ProcessTree, threads: usize, kind: Kind) -> Dumped {
        Dumped {
            writer,
            tree,
            threads,
            kind,
            refusals: Vec::new(),
        }
    }

    /// Writes the metadata and the manifest, syncs, and renames the image
    /// into place. `paused`: how long the processes were stopped.
    pub fn commit(self, paused: Duration) -> Result<Summary> {
        let limitations = STOPPED_LIMITATIONS.iter().map(|s| s.to_string()).collect();
        self.commit_as(paused, "stopped", limitations)
    }

    /// [`Dumped::commit`] with the manifest's memory method and
    /// limitations given by the caller.
    pub fn commit_as(
        mut self,
        paused: Duration,
        memory_method: &str,
        limitations: Vec<String>,
    ) -> Result<Summary> {
        self.writer
            .write_section(PROCS, &codec::encode(&self.tree)?)?;
        let bytes = self
            .tree
            .processes
            .iter()
            .flat_map(|p| &p.vmas)
            .map(|v| v.captured_bytes())
            .sum();
        let mut manifest = manifest(&self.tree, self.kind);
        manifest.memory_method = memory_method.into();
        manifest.limitations = limitations;
        let dir = self.writer.commit(manifest)?;
        Ok(Summary {
            dir,
            pids: self.tree.processes.iter().map(|p| p.pid).collect(),
            threads: self.threads,
            bytes,
            paused,
        })
    }
}

/// Test hook (ISOTRACE_FAULT=kill-after-freeze): SIGKILLs the target once
/// it is frozen, so tests can check that a process dying mid-snapshot
/// leaves no image. Not a user feature.
pub(crate) fn inject_fault(pid: i32) {
    if std::env::var("ISOTRACE_FAULT").as_deref() == Ok("kill-after-freeze") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn manifest(tree: &ProcessTree, kind: Kind) -> Manifest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let xcr0 = tree
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .map(|t| t.xcr0)
        .next()
        .unwrap_or(0);
    Manifest {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        kind,
        created: crate::image::manifest::rfc3339(now),
        host: Host {
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            arch: std::env::consts::ARCH.into(),
            xcr0: format!("{xcr0:#x}"),
        },
        root_pid: tree.root,
        pids: tree.processes.iter().map(|p| p.pid).collect(),
        memory_method: "stopped".into(),
        limitations: STOPPED_LIMITATIONS.iter().map(|s| s.to_string()).collect(),
        sections: Vec::new(),
    }
}

/// The /proc directory the dump reads a process through: that of one of
/// its stopped threads, /proc/PID/task/TID. The per-process files of
/// /proc/PID follow the thread-group leader, and a leader that called
/// pthread_exit is a zombie whose maps, mem, fd and net are empty or gone
/// while its other threads run on (proc(5)).
pub struct ProcDir {
    pub pid: i32,
    /// The stopped thread whose /proc directory this is.
    pub tid: i32,
    pub base: String,
}

impl ProcDir {
    pub fn of(frozen: &Frozen, pid: i32) -> Result<ProcDir> {
        let tids: Vec<i32> = frozen.threads_of(pid).map(|t| t.tid).collect();
        let tid = match tids.iter().find(|&&t| t == pid) {
            Some(&leader) => leader,
            None => *tids.first().ok_or(Error::Exited { pid })?,
        };
        Ok(ProcDir {
            pid,
            tid,
            base: format!("/proc/{pid}/task/{tid}"),
        })
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    pub fn text(&self, name: &str) -> Result<String> {
        let path = self.path(name);
        std::fs::read_to_string(&path).map_err(|e| vanished(self.pid, &path, e))
    }

    pub fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name);
        std::fs::read(&path).map_err(|e| vanished(self.pid, &path, e))
    }

    pub fn link(&self, name: &str) -> Option<String> {
        std::fs::read_link(self.path(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// The stopped threads of `pid` (through `tid`, one of them) and the
/// signals pending for the whole process.
pub(crate) fn threads_and_signals(
    frozen: &Frozen,
    pid: i32,
    tid: i32,
) -> Result<(Vec<crate::model::Thread>, Vec<Vec<u8>>)> {
    let threads = frozen
        .threads_of(pid)
        .map(thread::dump)
        .collect::<Result<Vec<_>>>()?;
    let shared_siginfo = crate::sys::peek_siginfo(tid, true).map_err(|e| {
        if e.is_died() {
            Error::Exited { pid }
        } else {
            e.into()
        }
    })?;
    Ok((threads, shared_siginfo))
}

/// Everything about one stopped process; its pages go to `pages-PID.img`.
pub(crate) fn dump_process(frozen: &Frozen, pid: i32, writer: &mut ImageWriter) -> Result<Process> {
    let proc = ProcDir::of(frozen, pid)?;
    let stat = parse_stat(&proc.text("stat")?).ok_or(Error::Exited { pid })?;
    let status = parse_status(&proc.text("status")?);
    let mut vmas = parse_maps(&proc.text("maps")?);
    let pages_section = format!("pages-{pid}.img");
    let held = writer.held_pages(pid);
    let mut pages = writer.section(&pages_section)?;
    memory::dump(&proc, &mut vmas, &mut pages, held.as_deref())?;
    writer.finish(pages)?;
    let (threads, shared_siginfo) = threads_and_signals(frozen, pid, proc.tid)?;
    let p = described(pid, &stat, &status, &proc)?;
    Ok(Process {
        signals: ProcessSignals {
            shared_siginfo,
            ..p.signals
        },
        threads,
        vmas,
        fds: fds::dump(&proc)?,
        pages_section,
        ..p
    })
}

/// A process as its stat, status and `proc` (its /proc directory, or its
/// copy-on-write child's) describe it: ids, names, creds, limits and
/// signal dispositions; its threads, memory and fds are the caller's.
pub(crate) fn described(
    pid: i32,
    stat: &procfs::Stat,
    status: &std::collections::HashMap<String, String>,
    proc: &ProcDir,
) -> Result<Process> {
    Ok(Process {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        comm: stat.comm.clone(),
        exe: proc.link("exe"),
        cwd: proc.link("cwd"),
        root: proc.link("root"),
        cmdline: proc.bytes("cmdline")?,
        environ: proc.bytes("environ")?,
        auxv: proc.bytes("auxv")?,
        creds: creds(status),
        umask: status
            .get("Umask")
            .and_then(|u| u32::from_str_radix(u, 8).ok()),
        limits: parse_limits(&proc.text("limits")?),
        signals: ProcessSignals {
            ignored: hex_field(status, "SigIgn"),
            caught: hex_field(status, "SigCgt"),
            shared_pending: hex_field(status, "ShdPnd"),
            shared_siginfo: Vec::new(),
        },
        ..Default::default()
    })
}
