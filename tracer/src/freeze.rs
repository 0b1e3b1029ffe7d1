//! The freeze barrier (#5): every tracee of the group held in a ptrace-stop
//! at once, for a checkpoint, by the supervisor that already traces them.
//!
//! Only the tracer thread may issue ptrace requests for its tracees
//! (ptrace(2): "the tracer" is a thread), so other threads hand a
//! [`BarrierJob`] to the event loop over a channel and interrupt its
//! blocking waitpid with a signal ([`Waker`]). The loop then:
//! 1. PTRACE_INTERRUPTs every known thread, rescanning until no new one
//!    appears: a fork, clone or exec event that arrives meanwhile is handled
//!    as usual (which registers the child), then the task is interrupted
//!    again;
//! 2. hands the stopped tasks to the job;
//! 3. resumes every task as its stop requires (or SIGKILLs the group).
//!
//! A vfork child that has not exec'd yet is not stopped but let run until
//! it execs or exits: its parent sleeps in vfork(2) until then, where no
//! ptrace request can stop it (kernel/fork.c, wait_for_vfork_done).
//!
//! A stop collected during the freeze is either kept as the task's barrier
//! stop (an interrupt, group-stop or initial stop; a seccomp stop at
//! syscall entry, where nothing of the call has run yet, is first taken
//! back to an interrupt stop before the `syscall` instruction, see
//! [`rewind_entry`], so that a job can run syscalls in it; only calls the
//! gate parked stay at their entry) or handled at once (a
//! syscall exit whose result the policy may rewrite, a signal to deliver, an
//! event), after which the task is interrupted again: any ptrace-stop clears
//! a pending PTRACE_INTERRUPT (kernel/signal.c, ptrace_stop: "any trap
//! clears pending STOP trap").

use crate::error::{Error, Result};
use crate::supervisor::Supervisor;
use crate::sys::{self, Tid, WaitEvent};
use nix::errno::Errno;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// How long every thread together may take to reach its stop. A vfork
/// parent waiting for its child, or a task in uninterruptible sleep, fails
/// the checkpoint after this instead of hanging the group.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The signal that interrupts the event loop's waitpid. A user's SIGUSR2
/// (kill(2), SI_USER) also triggers a checkpoint; the waker's own
/// (tgkill(2) from this process, SI_TKILL) only wakes the loop.
pub const WAKE_SIGNAL: i32 = libc::SIGUSR2;

/// Jobs sent and not yet taken by the event loop.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// How one task sits at the barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// PTRACE_INTERRUPT's stop: between two instructions, or inside an
    /// interrupted syscall (rax holds -ERESTART*, orig_rax the call).
    Interrupt,
    /// A group-stop by this signal (SIGSTOP, SIGTSTP...).
    GroupStop(i32),
    /// The first stop of a new child that had not run yet.
    NewChild,
    /// A seccomp stop at syscall entry: the call has not run. Its registers
    /// hold rax = -ENOSYS; a restore must issue the call again.
    SyscallEntry,
}

#[derive(Clone, Copy, Debug)]
pub struct FrozenTask {
    /// Thread-group id.
    pub pid: Tid,
    pub tid: Tid,
    pub stop: StopKind,
}

/// Every task of the group, stopped.
#[derive(Debug)]
pub struct Barrier {
    pub root: Tid,
    /// Threads in order of pid then tid.
    pub tasks: Vec<FrozenTask>,
    /// How long reaching the barrier took.
    pub freeze: Duration,
}

impl Barrier {
    /// Every process, the root first when it is still there.
    pub fn pids(&self) -> Vec<Tid> {
        let mut pids: Vec<Tid> = self.tasks.iter().map(|t| t.pid).collect();
        pids.sort_unstable_by_key(|&p| (p != self.root, p));
        pids.dedup();
        pids
    }
}

/// What happens to the group after the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFreeze {
    /// Every task carries on as if nothing happened.
    Resume,
    /// Every process is SIGKILLed (checkpoint-terminate).
    Kill,
}

/// Work done with the whole group stopped, on the tracer thread.
pub trait BarrierJob: Send {
    /// Called with the barrier, or with why it could not be reached (then
    /// the group is resumed whatever this returns).
    fn at_barrier(&mut self, barrier: std::result::Result<&Barrier, &Error>) -> AfterFreeze;
    /// Called once every task was resumed or killed, with the whole pause.
    fn finish(self: Box<Self>, frozen: Duration);
}

pub type Job = Box<dyn BarrierJob>;

/// Hands jobs to the event loop from any thread.
#[derive(Clone)]
pub struct Waker {
    pid: Tid,
    tid: Tid,
    jobs: Sender<Job>,
}

impl Waker {
    /// Queues `job` and interrupts the event loop until it has taken it
    /// (at most a few seconds: a loop that already ended never will, and
    /// then the job is dropped with the supervisor). A signal that arrives
    /// just before the loop blocks in waitpid would be missed once, hence
    /// the retries. Err: the supervisor is gone.
    pub fn submit(&self, job: Job) -> std::result::Result<(), Job> {
        QUEUED.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.jobs.send(job) {
            QUEUED.fetch_sub(1, Ordering::SeqCst);
            return Err(e.0);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut pause = Duration::from_millis(2);
        while QUEUED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            let _ = sys::tgkill(self.pid, self.tid, WAKE_SIGNAL);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(())
    }
}

/// The supervisor's side: where jobs arrive, and what a user's SIGUSR2
/// starts.
#[derive(Default)]
pub(crate) struct Barriers {
    jobs: Option<Receiver<Job>>,
    on_signal: Option<Box<dyn FnMut() -> Job>>,
}

/// Takes a thread caught in a seccomp stop back to just before its
/// `syscall` instruction and interrupts it there: the call is skipped
/// (syscall number -1: seccomp(2), "the tracer can skip the system call"),
/// rip is rewound over the instruction and the number put back where the
/// instruction reads it (as `inject::at_entry` leaves a tracee), then
/// PTRACE_INTERRUPT and PTRACE_CONT: the interrupt stop comes as the
/// thread returns to user space, before its first instruction. Nothing of
/// the call had run (the policy had not seen it), so the thread is in the
/// state it had before issuing it, in an ordinary interrupt stop: a job
/// can run syscalls in it (a checkpoint reads its process's signal
/// handlers and timers there), and once released it issues the call
/// again, which the filter traps again.
fn rewind_entry(tid: Tid) -> Result<()> {
    use isotrace_arch::native::SYSCALL_INSN_LEN;
    use isotrace_arch::RegAccess;
    let saved = sys::get_regs(tid)?;
    let mut regs = saved;
    regs.set_ip(saved.ip() - SYSCALL_INSN_LEN);
    regs.set_ret(saved.syscall_nr() as i64);
    regs.set_syscall_nr(u64::MAX);
    sys::set_regs(tid, &regs)?;
    if let Err(e) = sys::interrupt(tid).and_then(|()| sys::cont(tid, 0)) {
        // Put it back as it was: still at its entry.
        let _ = sys::set_regs(tid, &saved);
        return Err(e);
    }
    Ok(())
}

impl Supervisor<'_> {
    /// Creates the channel jobs come through; the waker may be cloned and
    /// moved to other threads.
    pub fn waker(&mut self) -> Waker {
        let (tx, rx) = std::sync::mpsc::channel();
        self.barriers.jobs = Some(rx);
        Waker {
            pid: self.me,
            tid: self.main_tid,
            jobs: tx,
        }
    }

    /// What a SIGUSR2 sent to the supervisor (by a user) runs.
    pub fn on_checkpoint_signal(&mut self, make: Box<dyn FnMut() -> Job>) {
        self.barriers.on_signal = Some(make);
    }

    /// Runs every queued job and a signalled one, each at its own barrier.
    pub(crate) fn run_barriers(&mut self) {
        if crate::jobctl::take_checkpoint_signal() {
            match self.barriers.on_signal.as_mut() {
                Some(make) => {
                    let job = make();
                    self.barrier(job);
                }
                None => tracing::warn!("SIGUSR2: this supervisor cannot checkpoint"),
            }
        }
        while let Some(job) = self
            .barriers
            .jobs
            .as_ref()
            .and_then(|rx| rx.try_recv().ok())
        {
            QUEUED.fetch_sub(1, Ordering::SeqCst);
            self.barrier(job);
        }
    }

    fn barrier(&mut self, mut job: Job) {
        let started = Instant::now();
        let mut stops = HashMap::new();
        let after = match self.freeze(&mut stops) {
            Ok(()) => {
                let barrier = self.describe(&stops, started.elapsed());
                job.at_barrier(Ok(&barrier))
            }
            Err(e) => {
                job.at_barrier(Err(&e));
                AfterFreeze::Resume
            }
        };
        self.release(stops, after);
        job.finish(started.elapsed());
    }

    /// Stops every task; `stops` gets each one's barrier stop (also on
    /// error, so that they can be resumed).
    fn freeze(&mut self, stops: &mut HashMap<Tid, i32>) -> Result<()> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut asked: HashSet<Tid> = HashSet::new();
        let mut zombies: HashSet<Tid> = HashSet::new();
        let mut idle_since = Instant::now();
        // Parked calls (gate.rs) sit in their seccomp stop already; the
        // release hands them back to the loop, which admits them again.
        for tid in self.gate.take_parked() {
            stops.insert(tid, crate::gate::SECCOMP_STOP_STATUS);
        }
        loop {
            let waiting: Vec<Tid> = self
                .tasks
                .keys()
                .filter(|t| !stops.contains_key(t) && !zombies.contains(t))
                .copied()
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            for &tid in &waiting {
                if !self.vforked.contains(&tid) && asked.insert(tid) {
                    sys::interrupt(tid).or_else(crate::supervisor::ignore_died)?;
                }
            }
            let next = match self.deferred.pop_front() {
                Some(s) => Some(s),
                None => match sys::wait_any(true) {
                    Ok(s) => s,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::ECHILD) => return Ok(()),
                    Err(errno) => {
                        return Err(Error::Setup {
                            op: "waitpid".into(),
                            errno,
                        })
                    }
                },
            };
            let Some((tid, status)) = next else {
                // A thread-group leader that called pthread_exit is a
                // zombie until its last thread exits: it never stops.
                if idle_since.elapsed() > Duration::from_millis(10) {
                    zombies.extend(waiting.iter().filter(|&&t| is_zombie(t)));
                }
                if Instant::now() >= deadline {
                    let tid = waiting.into_iter().find(|t| !zombies.contains(t));
                    if let Some(tid) = tid {
                        return Err(Error::Tracee {
                            tid,
                            what: format!(
                                "did not stop within {STOP_TIMEOUT:?} (uninterruptible sleep, or a vfork parent?)"
                            ),
                        });
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
                continue;
            };
            idle_since = Instant::now();
            let ev = sys::decode_status(status);
            // A new child's first stop is not kept: it has not run, and a
            // job could not lend it to read its state (its handlers, its
            // clear_child_tid). It is let go like any other event and
            // interrupted again, which stops it before its first
            // instruction with that state in place.
            let known = self.tasks.get(&tid).is_some_and(|t| t.attached);
            let keep = matches!(ev, WaitEvent::EventStop(_) | WaitEvent::Seccomp);
            if keep && known && !self.vforked.contains(&tid) {
                // Its interrupt stop comes next, in this loop (it stays
                // asked); one that cannot be rewound stays at its entry.
                if ev == WaitEvent::Seccomp && rewind_entry(tid).is_ok() {
                    continue;
                }
                stops.insert(tid, status);
                continue;
            }
            asked.remove(&tid);
            stops.remove(&tid);
            self.stats.stops += 1;
            if let Err(e) = self.handle(tid, status) {
                if !e.is_died() {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    fn describe(&self, stops: &HashMap<Tid, i32>, freeze: Duration) -> Barrier {
        let mut tasks: Vec<FrozenTask> = stops
            .iter()
            .filter_map(|(&tid, &status)| {
                let task = self.tasks.get(&tid)?;
                let stop = match sys::decode_status(status) {
                    WaitEvent::Seccomp => StopKind::SyscallEntry,
                    _ if !task.attached => StopKind::NewChild,
                    WaitEvent::EventStop(sig) if is_stop_signal(sig) => StopKind::GroupStop(sig),
                    _ => StopKind::Interrupt,
                };
                Some(FrozenTask {
                    pid: task.pid,
                    tid,
                    stop,
                })
            })
            .collect();
        tasks.sort_unstable_by_key(|t| (t.pid, t.tid));
        Barrier {
            root: self.root,
            tasks,
            freeze,
        }
    }

    /// Lets every task go as its barrier stop requires: a group-stop keeps
    /// listening (ptrace(2), PTRACE_LISTEN), every other stop goes back to
    /// the event loop, which handles it as if it had just arrived.
    fn release(&mut self, stops: HashMap<Tid, i32>, after: AfterFreeze) {
        if after == AfterFreeze::Kill {
            let pids: HashSet<Tid> = self.tasks.values().map(|t| t.pid).collect();
            for pid in pids {
                // SIGKILL ends traced tasks in any ptrace-stop; the event
                // loop then reaps them as usual.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return;
        }
        let mut stops: Vec<(Tid, i32)> = stops.into_iter().collect();
        stops.sort_unstable();
        for (tid, status) in stops {
            let attached = self.tasks.get(&tid).is_some_and(|t| t.attached);
            match sys::decode_status(status) {
                WaitEvent::EventStop(sig) if attached && is_stop_signal(sig) => {
                    if let Err(e) = sys::listen(tid) {
                        if !e.is_died() {
                            tracing::warn!("{e}");
                        }
                    }
                }
                _ => self.deferred.push_back((tid, status)),
            }
        }
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// A thread the kernel will never stop again (zombie or dead).
fn is_zombie(tid: Tid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap_or_default();
    // The state letter follows the last ')' (comm may hold anything).
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, None | Some("Z") | Some("X"))
}
