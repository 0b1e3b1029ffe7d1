//! The freeze: PTRACE_SEIZE + PTRACE_INTERRUPT every thread of every
//! process in scope, rescanning until no new thread or process appears,
//! and PTRACE_DETACH them all afterwards so the target runs on unmodified.
//!
//! No ptrace options are set: we want no event stops, and a seized task
//! keeps its ordinary signal behaviour except for the stops we ask for.

use super::vanished;
use crate::error::{Error, Result};
use isotrace_tracer::sys::{self, WaitEvent};
use nix::errno::Errno;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long one thread may take to reach its ptrace-stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One thread in a ptrace-stop, ours until [`Frozen`] is dropped.
#[derive(Debug)]
pub struct StoppedThread {
    pub pid: i32,
    pub tid: i32,
    /// The scheduler state letter before we stopped it.
    pub state: String,
    /// What kind of stop we got: "interrupt", "group-stop SIGSTOP",
    /// "signal-delivery SIGUSR1".
    pub stop: String,
    /// A signal we intercepted in signal-delivery-stop; handed back to the
    /// thread by PTRACE_DETACH so it is not lost.
    pub deliver: i32,
    /// Stopped at a syscall's entry (a supervisor's seccomp stop), before
    /// the call ran: recorded as interrupted so that a restore issues it.
    pub at_syscall_entry: bool,
}

impl StoppedThread {
    /// Whether syscalls can be run in it (`lend.rs`): an interrupt stop, or
    /// a group-stop (the call runs, then an interrupt stop reports the
    /// group-stop again: kernel/signal.c, do_jobctl_trap), but not a stop
    /// at a syscall's entry, which must be kept as it is.
    pub fn lendable(&self) -> bool {
        (self.stop == "interrupt" || self.stop.starts_with("group-stop")) && !self.at_syscall_entry
    }
}

/// Every stopped thread, in freeze order; detached on drop unless adopted.
#[derive(Debug, Default)]
pub struct Frozen {
    pids: Vec<i32>,
    threads: Vec<StoppedThread>,
    /// Threads that exited (or were zombies) while we froze their process.
    gone: BTreeSet<i32>,
    /// Stopped by the caller, who traces them and resumes them: never
    /// detached here.
    adopted: bool,
}

fn sig_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

fn read_status(pid: i32, path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| vanished(pid, path, e))
}

fn field(status: &str, key: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Refuses what cannot or must not be snapshotted, before touching it.
pub fn precheck(pid: i32) -> Result<()> {
    let path = format!("/proc/{pid}/status");
    let status = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoProcess { pid }),
        Err(e) => return Err(Error::io(path, e)),
    };
    if field(&status, "Tgid") != Some(pid) {
        return Err(Error::Invalid {
            what: format!(
                "{pid} is a thread, not a process (its process is {})",
                field(&status, "Tgid").unwrap_or(0)
            ),
        });
    }
    if let Some(tracer) = field(&status, "TracerPid").filter(|&t| t != 0) {
        return Err(Error::AlreadyTraced { pid, tracer });
    }
    // A zombie leader with live threads (it called pthread_exit) is a live
    // process; only a group with no live thread has exited.
    let live = |tid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"));
        let state = stat
            .ok()
            .and_then(|s| super::procfs::parse_stat(&s))
            .map(|s| s.state);
        state.is_some_and(|s| s != "Z" && s != "X")
    };
    if !list_dir_ints(&format!("/proc/{pid}/task")).iter().any(live) {
        return Err(Error::Exited { pid });
    }
    Ok(())
}

fn list_dir_ints(path: &str) -> BTreeSet<i32> {
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Direct children of every thread of `pid` (/proc/PID/task/TID/children,
/// which needs CONFIG_PROC_CHILDREN; without it, scan every stat's ppid).
fn children(pid: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let mut found_file = false;
    for tid in list_dir_ints(&format!("/proc/{pid}/task")) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            found_file = true;
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    if !found_file {
        for other in list_dir_ints("/proc") {
            let stat = std::fs::read_to_string(format!("/proc/{other}/stat")).unwrap_or_default();
            if super::procfs::parse_stat(&stat).is_some_and(|s| s.ppid == pid) {
                out.insert(other);
            }
        }
    }
    out
}

impl Frozen {
    /// Threads the caller already holds in ptrace-stops (a supervisor at
    /// its freeze barrier, which is their tracer): `pids` in dump order.
    /// They are left stopped and attached when this is dropped.
    pub fn adopt(pids: Vec<i32>, threads: Vec<StoppedThread>) -> Frozen {
        Frozen {
            pids,
            threads,
            gone: BTreeSet::new(),
            adopted: true,
        }
    }

    /// Stops `root` (and with `tree` every descendant) thread by thread.
    /// On error, whatever was stopped is released by drop.
    pub fn freeze(root: i32, tree: bool) -> Result<Frozen> {
        precheck(root)?;
        let mut frozen = Frozen::default();
        let mut queue = vec![root];
        while let Some(pid) = queue.pop() {
            if frozen.pids.contains(&pid) {
                continue;
            }
            if pid != root && precheck(pid).is_err() {
                // A descendant that exited or is traced by someone else
                // (a debugger of its own) is left out, not fatal.
                continue;
            }
            frozen.freeze_process(pid)?;
            frozen.pids.push(pid);
            if tree {
                queue.extend(children(pid).into_iter().rev());
            }
        }
        Ok(frozen)
    }

    fn freeze_process(&mut self, pid: i32) -> Result<()> {
        loop {
            let task_dir = format!("/proc/{pid}/task");
            let tids = list_dir_ints(&task_dir);
            if tids.is_empty() {
                return Err(Error::Exited { pid });
            }
            let new: Vec<i32> = tids
                .into_iter()
                .filter(|t| !self.gone.contains(t) && !self.threads.iter().any(|s| s.tid == *t))
                .collect();
            if new.is_empty() {
                return Ok(());
            }
            let mut seized = Vec::new();
            for tid in new {
                if let Some(state) = self.seize(pid, tid)? {
                    seized.push((tid, state));
                }
            }
            for (tid, state) in seized {
                self.wait_stop(pid, tid, state)?;
            }
        }
    }

    /// Seizes and interrupts one thread; None if it exited first.
    fn seize(&mut self, pid: i32, tid: i32) -> Result<Option<String>> {
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
        let state = super::procfs::parse_stat(&stat)
            .map(|s| s.state)
            .unwrap_or_default();
        // A zombie thread (a leader that called pthread_exit) never reports
        // a stop; there is nothing of it left to dump.
        if state.is_empty() || state == "Z" || state == "X" {
            self.gone.insert(tid);
            return Ok(None);
        }
        match sys::seize(tid, 0) {
            Ok(()) => {}
            Err(e) if e.is_died() => {
                self.gone.insert(tid);
                return Ok(None);
            }
            Err(isotrace_tracer::Error::Sys {
                errno: Errno::EPERM,
                ..
            }) => {
                let status = read_status(pid, &format!("/proc/{pid}/task/{tid}/status"))?;
                return Err(match field(&status, "TracerPid").filter(|&t| t != 0) {
                    Some(tracer) => Error::AlreadyTraced { pid, tracer },
                    None => Error::PermissionDenied {
                        pid,
                        op: "PTRACE_SEIZE",
                    },
                });
            }
            Err(e) => return Err(e.into()),
        }
        match sys::interrupt(tid) {
            Ok(()) => Ok(Some(state)),
            Err(e) if e.is_died() => {
                self.gone.insert(tid);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the stop PTRACE_INTERRUPT asked for (or an earlier one).
    /// A thread that cannot stop (a vfork parent waiting for its child, an
    /// uninterruptible sleep) fails the freeze after [`STOP_TIMEOUT`]
    /// instead of hanging; it stays attached only until isotrace exits.
    fn wait_stop(&mut self, pid: i32, tid: i32, state: String) -> Result<()> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let (stop, deliver) = loop {
            let status = match crate::sys::wait_nohang(tid) {
                Ok(Some(status)) => status,
                Ok(None) | Err(Errno::EINTR) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Invalid {
                            what: format!(
                                "pid {pid}: thread {tid} did not stop within {STOP_TIMEOUT:?} \
                                 (uninterruptible sleep, or a vfork parent?)"
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(Errno::ECHILD) => {
                    self.gone.insert(tid);
                    return if tid == pid {
                        Err(Error::Exited { pid })
                    } else {
                        Ok(())
                    };
                }
                Err(errno) => {
                    return Err(isotrace_tracer::Error::from_errno(tid, "waitpid", errno).into())
                }
            };
            break match sys::decode_status(status) {
                WaitEvent::Exited(_) | WaitEvent::Signaled { .. } => {
                    self.gone.insert(tid);
                    return if tid == pid {
                        Err(Error::Exited { pid })
                    } else {
                        Ok(())
                    };
                }
                WaitEvent::EventStop(sig) if sig == libc::SIGTRAP => ("interrupt".to_owned(), 0),
                WaitEvent::EventStop(sig) => (format!("group-stop {}", sig_name(sig)), 0),
                WaitEvent::Signal(sig) => (format!("signal-delivery {}", sig_name(sig)), sig),
                other => (format!("{other:?}"), 0),
            };
        };
        self.threads.push(StoppedThread {
            pid,
            tid,
            state,
            stop,
            deliver,
            at_syscall_entry: false,
        });
        Ok(())
    }

    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    pub fn threads_of(&self, pid: i32) -> impl Iterator<Item = &StoppedThread> {
        self.threads.iter().filter(move |t| t.pid == pid)
    }

    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// Every thread is still in its ptrace-stop: a SIGKILL during the dump
    /// shows up here as ESRCH (ptrace(2), "Death under ptrace").
    pub fn check_alive(&self) -> Result<()> {
        for t in &self.threads {
            if let Err(e) = sys::get_regs(t.tid) {
                return Err(if e.is_died() {
                    Error::Exited { pid: t.pid }
                } else {
                    e.into()
                });
            }
        }
        Ok(())
    }

    /// Detaches every thread, handing back intercepted signals.
    pub fn release(mut self) {
        self.detach_all();
    }

    fn detach_all(&mut self) {
        if self.adopted {
            self.threads.clear();
            return;
        }
        for t in self.threads.drain(..) {
            if let Err(e) = sys::detach(t.tid, t.deliver) {
                if !e.is_died() {
                    tracing::warn!("detaching tid {}: {e}", t.tid);
                }
            }
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.detach_all();
    }
}
