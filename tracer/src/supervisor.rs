//! The event loop: one `waitpid(-1, __WALL)` at a time, one handler per
//! kind of stop (ptrace(2), "Stopped states").

use crate::error::{Error, Result};
use crate::policy::{Call, Event, ExitKind, PathArg, Policy, SpawnKind, Verdict};
use crate::remote::MemFile;
use crate::spawn::{self, ChildFailure, SpawnSpec, Spawned};
use crate::sys::{self, Tid, WaitEvent};
use crate::task::{AddrSpace, Pending, Task, View};
use crate::{apply, jobctl};
use isotrace_arch::native::Regs;
use isotrace_arch::RegAccess;
use nix::errno::Errno;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// How the supervised group ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The first process exited or was killed; every tracee is gone.
    Exited(ExitKind),
    /// The first process never started its program.
    NotStarted(ChildFailure),
}

/// One thread handed to [`Supervisor::adopt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adopted {
    pub tid: Tid,
    /// Its thread group.
    pub pid: Tid,
    /// The thread group's parent, if it is one of the adopted processes.
    pub parent: Option<Tid>,
}

/// Counters for `--stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub stops: u64,
    pub seccomp_stops: u64,
    pub exit_stops: u64,
    pub rewrites: u64,
    pub injections: u64,
    /// Calls set aside while the tracee faulted in a page of a path
    /// (probe.rs).
    pub probes: u64,
    pub tasks_seen: u64,
}

pub struct Supervisor<'p> {
    pub(crate) policy: &'p mut dyn Policy,
    pub(crate) tasks: HashMap<Tid, Task>,
    /// Tids that stopped before their parent's fork/clone event told us
    /// who they are; resumed when the event arrives.
    early: HashSet<Tid>,
    /// Wait statuses consumed out of order (during an injected syscall).
    pub(crate) deferred: VecDeque<(Tid, i32)>,
    pub(crate) root: Tid,
    root_exit: Option<ExitKind>,
    root_execd: bool,
    /// The spawn of the first process; None for an adopted group.
    spawned: Option<Spawned>,
    pub(crate) me: Tid,
    pub(crate) stats: Stats,
    jobctl: jobctl::JobControl,
    placement: crate::placement::Placement,
    /// The thread running the event loop: the only one that may ptrace.
    pub(crate) main_tid: Tid,
    pub(crate) barriers: crate::freeze::Barriers,
    /// vfork children that have not exec'd or exited yet: their parent
    /// cannot stop until they do (vfork(2)), so a freeze lets them run.
    pub(crate) vforked: HashSet<Tid>,
    /// Serializes name-changing calls against symlink planting (gate.rs).
    pub(crate) gate: crate::gate::NamespaceGate,
    /// Whether getdents64 is trapped yet, and where (listings.rs).
    listings: crate::listings::Listings,
    /// Threads interrupted to give their process the listing filter.
    listing_stops: HashSet<Tid>,
}

impl<'p> Supervisor<'p> {
    /// Forks, seizes and execs the program of `spec` under `policy`.
    pub fn spawn(spec: &SpawnSpec, policy: &'p mut dyn Policy) -> Result<Self> {
        let spawned = spawn::spawn(spec)?;
        let root = spawned.pid;
        let mut sup = Supervisor::empty(root, Some(spawned), policy)?;
        sup.listings = crate::listings::Listings::new(spec.lazy_listings);
        let mut task = Task::new(root, AddrSpace::shared_new());
        // The root was seized while blocked before exec: it needs no
        // initial-stop handling.
        task.attached = true;
        sup.tasks.insert(root, task);
        sup.stats.tasks_seen = 1;
        sup.policy.on_event(&Event::Spawned {
            tid: root,
            pid: root,
            parent: None,
            kind: SpawnKind::Root,
        });
        Ok(sup)
    }

    /// Takes over tasks that other code of this thread put in ptrace-stops
    /// (a restore, #5): sets the supervisor's ptrace options on each, tells
    /// the policy about them, and resumes them. `tasks` lists every thread,
    /// each with its thread group and the thread group's parent; `root` is
    /// the process whose exit ends the group. Their seccomp filter must
    /// already be installed: a filter cannot be added from outside (the
    /// restore injects it as its last call).
    pub fn adopt(root: Tid, tasks: &[Adopted], policy: &'p mut dyn Policy) -> Result<Self> {
        let mut sup = Supervisor::empty(root, None, policy)?;
        let mut spaces: HashMap<Tid, Rc<RefCell<AddrSpace>>> = HashMap::new();
        for t in tasks {
            sys::set_options(t.tid, sys::SEIZE_OPTIONS)?;
            let mm = spaces
                .entry(t.pid)
                .or_insert_with(AddrSpace::shared_new)
                .clone();
            let mut task = Task::new(t.pid, mm);
            task.attached = true;
            sup.tasks.insert(t.tid, task);
            sup.stats.tasks_seen += 1;
            let kind = match (t.tid == t.pid, t.pid == root) {
                (false, _) => SpawnKind::Thread,
                (true, true) => SpawnKind::Root,
                (true, false) => SpawnKind::Fork,
            };
            let parent = if t.tid == t.pid {
                t.parent
            } else {
                Some(t.pid)
            };
            sup.policy.on_event(&Event::Spawned {
                tid: t.tid,
                pid: t.pid,
                parent,
                kind,
            });
        }
        for t in tasks {
            sys::cont(t.tid, 0).or_else(ignore_died)?;
        }
        Ok(sup)
    }

    /// Takes over the running process `pid` (#2, `attach.rs`): seizes and
    /// stops its threads, installs `filter` in it by injected syscalls, and
    /// resumes it under `policy`. Its existing children are left alone;
    /// those it creates from now on are traced.
    pub fn attach(
        pid: Tid,
        filter: &[libc::sock_filter],
        no_new_privs: bool,
        policy: &'p mut dyn Policy,
    ) -> Result<Self> {
        let seized = crate::attach::seize_all(pid)?;
        let Some(via) = seized
            .iter()
            .find(|s| sys::decode_status(s.status) == WaitEvent::EventStop(libc::SIGTRAP))
            .map(|s| s.tid)
        else {
            for s in &seized {
                let _ = sys::detach(s.tid, 0);
            }
            return Err(Error::Tracee {
                tid: pid,
                what:
                    "no thread reached an interrupt stop (is the process stopped? SIGCONT it first)"
                        .into(),
            });
        };
        if let Err(e) = crate::attach::install_filter(via, filter, no_new_privs) {
            for s in &seized {
                let _ = sys::detach(s.tid, 0);
            }
            return Err(e);
        }
        let mut sup = Supervisor::empty(pid, None, policy)?;
        let mm = AddrSpace::shared_new();
        for s in &seized {
            let mut task = Task::new(pid, mm.clone());
            task.attached = true;
            sup.tasks.insert(s.tid, task);
            sup.stats.tasks_seen += 1;
            let kind = if s.tid == pid {
                SpawnKind::Root
            } else {
                SpawnKind::Thread
            };
            let parent = (s.tid != pid).then_some(pid);
            sup.policy.on_event(&Event::Spawned {
                tid: s.tid,
                pid,
                parent,
                kind,
            });
            if s.tid == via {
                // At the injected call's exit stop, its own registers back.
                sys::cont(via, 0).or_else(ignore_died)?;
            } else {
                // Its first stop is handled as if it had just arrived.
                sup.deferred.push_back((s.tid, s.status));
            }
        }
        Ok(sup)
    }

    /// A supervisor with no task yet; `spawned` is None for an adopted
    /// group, whose program has started long ago.
    fn empty(root: Tid, spawned: Option<Spawned>, policy: &'p mut dyn Policy) -> Result<Self> {
        Ok(Supervisor {
            policy,
            tasks: HashMap::new(),
            early: HashSet::new(),
            deferred: VecDeque::new(),
            root,
            root_exit: None,
            root_execd: spawned.is_none(),
            spawned,
            me: std::process::id() as Tid,
            stats: Stats::default(),
            jobctl: jobctl::JobControl::install(root)?,
            placement: crate::placement::Placement::settle(),
            main_tid: nix::unistd::gettid().as_raw(),
            barriers: Default::default(),
            vforked: HashSet::new(),
            gate: Default::default(),
            listings: Default::default(),
            listing_stops: HashSet::new(),
        })
    }

    pub fn root(&self) -> Tid {
        self.root
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs until every tracee has exited.
    pub fn run(&mut self) -> Result<Outcome> {
        loop {
            // Checked on every turn, not only on EINTR: the signal may have
            // arrived while no waitpid was blocking.
            self.run_barriers();
            let next = match self.deferred.pop_front() {
                Some(s) => Some(s),
                None => match sys::wait_any(false) {
                    Ok(s) => s,
                    Err(Errno::EINTR) => {
                        self.jobctl.forward_pending(self.root);
                        self.sweep();
                        continue;
                    }
                    Err(Errno::ECHILD) => break,
                    Err(e) => {
                        return Err(Error::Setup {
                            op: "waitpid".into(),
                            errno: e,
                        })
                    }
                },
            };
            let Some((tid, status)) = next else { continue };
            self.stats.stops += 1;
            self.sweep();
            if let Err(e) = self.handle(tid, status) {
                if !e.is_died() {
                    tracing::warn!("{e}");
                }
            }
        }
        match (self.root_exit, self.root_execd) {
            (Some(ExitKind::Code(127)), false) | (None, false) => {
                match self.spawned.as_ref().and_then(Spawned::failure) {
                    Some(f) => Ok(Outcome::NotStarted(f)),
                    None => Ok(Outcome::Exited(
                        self.root_exit.unwrap_or(ExitKind::Code(127)),
                    )),
                }
            }
            (Some(how), _) => Ok(Outcome::Exited(how)),
            (None, true) => Ok(Outcome::Exited(ExitKind::Code(0))),
        }
    }

    /// Releases cooled-down pinned tracees, and keeps a timer running while
    /// any is pinned so that this happens even when no tracee stops.
    fn sweep(&mut self) {
        self.placement.sweep();
        jobctl::arm_sweep_timer(self.placement.any_pinned());
    }

    pub(crate) fn handle(&mut self, tid: Tid, status: i32) -> Result<()> {
        let ev = sys::decode_status(status);
        // Any stop ends the walk of the thread's previous call (gate.rs).
        for t in self.gate.stopped(tid) {
            self.deferred
                .push_back((t, crate::gate::SECCOMP_STOP_STATUS));
        }
        if let Some(task) = self.tasks.get_mut(&tid) {
            self.placement.on_stop(tid);
            // Any stop means the syscall that used the slot has read it.
            if let Some(slot) = task.slot.take() {
                task.mm.borrow_mut().pool.free(slot);
            }
        }
        match ev {
            WaitEvent::Exited(code) => self.on_gone(tid, ExitKind::Code(code)),
            WaitEvent::Signaled { sig, core } => self.on_gone(tid, ExitKind::Signal { sig, core }),
            _ if !self.tasks.contains_key(&tid) => {
                // A new child whose parent's event has not been seen yet.
                self.early.insert(tid);
                Ok(())
            }
            WaitEvent::Seccomp => {
                self.stats.seccomp_stops += 1;
                self.on_seccomp(tid)
            }
            WaitEvent::SyscallExit => {
                self.stats.exit_stops += 1;
                self.on_syscall_exit(tid)
            }
            WaitEvent::Event(e) => self.on_event(tid, e),
            WaitEvent::EventStop(sig) => self.on_event_stop(tid, sig),
            WaitEvent::Signal(sig) => sys::cont(tid, sig),
        }
    }

    fn on_gone(&mut self, tid: Tid, how: ExitKind) -> Result<()> {
        for t in self.gate.gone(tid) {
            self.deferred
                .push_back((t, crate::gate::SECCOMP_STOP_STATUS));
        }
        self.early.remove(&tid);
        self.vforked.remove(&tid);
        self.listing_stops.remove(&tid);
        self.placement.on_gone(tid);
        let Some(mut task) = self.tasks.remove(&tid) else {
            return Ok(());
        };
        if let Some(p) = task.pending.take() {
            self.policy.on_abandoned(&p.call, &p.rewritten);
        }
        if !self.tasks.values().any(|t| t.pid == task.pid) {
            self.listings.gone(task.pid);
        }
        if tid == self.root {
            self.root_exit = Some(how);
        }
        self.policy.on_event(&Event::Exited {
            tid,
            pid: task.pid,
            how,
        });
        Ok(())
    }

    fn on_seccomp(&mut self, tid: Tid) -> Result<()> {
        let entry = crate::entry::Entry::read(tid)?;
        let nr = entry.nr();
        let Some(sc) = isotrace_arch::by_nr(nr) else {
            // The filter only traps numbers it knows; be safe anyway.
            return apply::skip(tid, entry, -(libc::ENOSYS as i64));
        };
        let (pid, mm, probed) = {
            let task = self.tasks.get(&tid).expect("known task");
            (task.pid, task.mm.clone(), task.probes > 0)
        };
        if self.listings.due(pid) {
            return self.filter_listings(tid, pid, entry, None);
        }
        let args = entry.args();
        let gate = self.policy.gate(sc, &args);
        if let crate::gate::Admission::Park { interrupt } = self.gate.admit(tid, gate) {
            for t in interrupt {
                sys::interrupt(t).or_else(ignore_died)?;
            }
            return Ok(());
        }
        let task = self.tasks.get_mut(&tid).expect("known task");
        if let Some(v) = task.replay.take() {
            if v.0 == nr {
                return apply::verdict(self, tid, entry, v.1, v.2);
            }
        }
        let action = match sc.name {
            "sched_getaffinity" | "sched_setaffinity" => self.affinity(tid, sc.name, &args),
            _ => crate::guard::check(sc, &args, self.me),
        };
        if let Some(action) = action {
            let call = Call {
                tid,
                pid,
                sc,
                args,
                paths: Vec::new(),
            };
            let verdict = Verdict {
                action,
                exit_stop: false,
            };
            return apply::verdict(self, tid, entry, call, verdict);
        }
        let paths = if self.policy.wants_paths(sc) {
            // The address space's /proc/PID/mem, kept for the scratch
            // writes, reads the paths too (remote::read_cstr_in).
            let mut space = mm.borrow_mut();
            if space.mem.is_none() && sc.path_args().next().is_some() {
                space.mem = crate::remote::MemFile::open(pid).ok();
            }
            let paths = crate::task::decode_paths(tid, sc, &args, space.mem.as_ref());
            let probe_at = space
                .mem
                .as_ref()
                .and_then(|m| self.probe_at(tid, &paths, &args, m));
            drop(space);
            if let Some(addr) = probe_at {
                return crate::probe::start(self, tid, entry, addr);
            }
            paths
        } else {
            Vec::new()
        };
        let call = Call {
            tid,
            pid,
            sc,
            args,
            paths,
        };
        let mut view = View {
            tid,
            pid,
            mm,
            fault: None,
        };
        let mut verdict = self.policy.on_entry(&call, &mut view);
        if verdict.action == crate::policy::Action::Deny(Errno::EFAULT) {
            // The policy could not read an argument (a struct, a string
            // array): maybe a page the program's own userfaultfd holds.
            if let Some(addr) = view.fault.filter(|_| self.may_probe(tid)) {
                return crate::probe::start(self, tid, entry, addr);
            }
        }
        if probed {
            self.tasks.get_mut(&tid).expect("known task").probes = 0;
        }
        if sc.name == "process_madvise" {
            // It may discard scratch pages (scratch.rs): forget what the
            // pools hold now, and again once the kernel has done it.
            self.forget_scratch_contents();
            verdict.exit_stop = true;
        }
        if self.listings.is_lazy() && self.policy.listings_must_trap() {
            self.listings.switch();
            self.interrupt_for_listings(pid);
            // This call may open a directory of the environment: the
            // process traps its listings before the call goes on.
            return self.filter_listings(tid, pid, entry, Some((call, verdict)));
        }
        apply::verdict(self, tid, entry, call, verdict)
    }

    /// Where the tracee should fault in a page of a path argument that
    /// failed to read with EFAULT (probe.rs): never while a post-copy
    /// restore of this supervisor fills pages (those reads wait for it,
    /// remote.rs), and at most [`crate::probe::MAX_PROBES`] times a call.
    fn probe_at(&self, tid: Tid, paths: &[PathArg], args: &[u64; 6], mem: &MemFile) -> Option<u64> {
        let failed = paths.iter().find(|p| p.path == Err(Errno::EFAULT))?;
        if !self.may_probe(tid) {
            return None;
        }
        let ptr = crate::remote::RemotePtr::new(args[failed.idx]);
        crate::remote::unreadable_at(mem, tid, ptr, crate::remote::PATH_MAX - 1)
    }

    /// One step toward the listing filter in `pid` (listings.rs), at
    /// `tid`'s seccomp stop; `decided`, the verdict already made for its
    /// call, is applied when the call traps again.
    fn filter_listings(
        &mut self,
        tid: Tid,
        pid: Tid,
        mut entry: crate::entry::Entry,
        decided: Option<(Call, Verdict)>,
    ) -> Result<()> {
        use crate::listings::Step;
        let saved = entry.regs()?;
        if let Some((call, verdict)) = decided {
            self.tasks.get_mut(&tid).expect("known task").replay =
                Some((saved.syscall_nr(), call, verdict));
        }
        self.stats.injections += 1;
        let step = crate::listings::install_step(tid, pid, &saved)?;
        match step {
            Step::Installed => self.listings.filtered(pid),
            Step::NoNewPrivs => {}
            Step::Refused(r) => {
                // Not a way out of the view: an fd it lists it opened
                // through the supervisor. But listings of the environment's
                // directories are not merged in this process; say so, once.
                tracing::warn!(
                    "pid {pid}: cannot add the listing filter ({r}): its listings of the environment's directories are not merged"
                );
                self.listings.filtered(pid);
            }
            Step::Interrupted(status) => {
                self.deferred.push_back((tid, status));
                return Ok(());
            }
        }
        sys::cont(tid, 0)
    }

    /// Stops one thread of every process but `except`, so that each gets
    /// the listing filter now rather than at its next trapped call: a
    /// process may list a directory it opened before without making one.
    fn interrupt_for_listings(&mut self, except: Tid) {
        let mut seen = HashSet::from([except]);
        let mut picks = Vec::new();
        for (&tid, task) in &self.tasks {
            if task.attached && !self.vforked.contains(&tid) && seen.insert(task.pid) {
                picks.push(tid);
            }
        }
        for tid in picks {
            if sys::interrupt(tid).is_ok() {
                self.listing_stops.insert(tid);
            }
        }
    }

    /// At the interrupt stop [`Self::interrupt_for_listings`] asked for:
    /// the filter by injected syscalls (attach.rs), then on as before.
    fn listing_stop(&mut self, tid: Tid, pid: Tid) -> Result<()> {
        if self.listings.due(pid) {
            self.stats.injections += 1;
            let filter = crate::filter::listing_filter();
            let nnp = crate::listings::needs_no_new_privs(pid);
            match crate::attach::install_filter(tid, &filter, nnp) {
                Ok(()) => self.listings.filtered(pid),
                Err(e) if e.is_died() => return Ok(()),
                // Its next trapped call tries again (seccomp stop).
                Err(e) => tracing::debug!("listing filter at an interrupt: {e}"),
            }
        }
        self.resume(tid)
    }

    /// Whether `tid`'s call may be set aside for a probe (probe.rs).
    fn may_probe(&self, tid: Tid) -> bool {
        !crate::remote::LazyFill::active()
            && self
                .tasks
                .get(&tid)
                .is_some_and(|t| t.probes < crate::probe::MAX_PROBES)
    }

    fn forget_scratch_contents(&mut self) {
        for task in self.tasks.values() {
            task.mm.borrow_mut().pool.forget_contents();
        }
    }

    /// The supervisor's own pinning stays invisible: a pinned tracee asking
    /// for its affinity sees its original mask; one setting its affinity is
    /// never pinned again. Returns an action only when emulating.
    fn affinity(&mut self, tid: Tid, name: &str, args: &[u64; 6]) -> Option<crate::policy::Action> {
        use crate::policy::{Action, MemWrite};
        let target = if args[0] == 0 { tid } else { args[0] as Tid };
        if name == "sched_setaffinity" {
            self.placement.on_set_affinity(target);
            return None;
        }
        Some(match self.placement.shown_mask(target, args[1] as usize)? {
            Ok(bytes) => Action::EmulateWrite {
                ret: bytes.len() as i64,
                writes: vec![MemWrite {
                    addr: args[2],
                    bytes,
                }],
            },
            Err(e) => Action::Deny(Errno::from_raw(e)),
        })
    }

    fn on_syscall_exit(&mut self, tid: Tid) -> Result<()> {
        for t in self.gate.exclusive_done(tid) {
            self.deferred
                .push_back((t, crate::gate::SECCOMP_STOP_STATUS));
        }
        let task = self.tasks.get_mut(&tid).expect("known task");
        if let Some(saved) = task.probe.take() {
            return crate::probe::finish(tid, &saved);
        }
        let Some(Pending { call, rewritten }) = task.pending.take() else {
            return sys::cont(tid, 0);
        };
        let pid = task.pid;
        let mm = task.mm.clone();
        if call.sc.name == "process_madvise" {
            self.forget_scratch_contents();
        }
        let mut regs: Regs = sys::get_regs(tid)?;
        let act = self.policy.on_exit(
            &call,
            &rewritten,
            regs.ret(),
            &mut View {
                tid,
                pid,
                mm,
                fault: None,
            },
        );
        let mut ret = act.ret;
        if let Err(e) = apply::write_all(tid, &act.writes) {
            ret = Some(-(e.guest_errno() as i64));
        }
        if let Some(v) = ret {
            regs.set_ret(v);
            sys::set_regs(tid, &regs)?;
        }
        sys::cont(tid, 0)
    }

    fn on_event(&mut self, tid: Tid, event: i32) -> Result<()> {
        match event {
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                let child = sys::event_msg(tid)? as Tid;
                self.on_new_child(tid, child)?;
            }
            libc::PTRACE_EVENT_EXEC => {
                let former = sys::event_msg(tid)? as Tid;
                self.on_exec(tid, former);
            }
            _ => {}
        }
        self.resume(tid)
    }

    /// Resumes after a non-syscall stop, keeping an exit stop if one is due.
    fn resume(&mut self, tid: Tid) -> Result<()> {
        let exit_due = self.tasks.get(&tid).is_some_and(|t| t.exit_due());
        if exit_due {
            sys::cont_syscall(tid, 0)
        } else {
            sys::cont(tid, 0)
        }
    }

    fn on_new_child(&mut self, parent: Tid, child: Tid) -> Result<()> {
        let (kind, ptask) = {
            let ptask = self.tasks.get(&parent).expect("known task");
            (crate::task::spawn_kind(parent)?, ptask)
        };
        let mm = match kind {
            SpawnKind::Fork => AddrSpace::forked_from(&ptask.mm),
            _ => ptask.mm.clone(),
        };
        let pid = if kind == SpawnKind::Thread {
            ptask.pid
        } else {
            child
        };
        let mut task = Task::new(pid, mm);
        self.stats.tasks_seen += 1;
        self.placement.on_new(parent, child);
        if kind == SpawnKind::Vfork {
            self.vforked.insert(child);
        }
        let resume_now = self.early.remove(&child);
        task.attached = resume_now;
        self.tasks.insert(child, task);
        self.policy.on_event(&Event::Spawned {
            tid: child,
            pid,
            parent: Some(parent),
            kind,
        });
        if resume_now {
            // Its initial PTRACE_EVENT_STOP was consumed while unknown.
            sys::cont(child, 0).or_else(ignore_died)?;
        }
        Ok(())
    }

    fn on_exec(&mut self, tid: Tid, former: Tid) {
        // A non-leader thread that exec'd takes over the leader's tid
        // (ptrace(2), "execve(2) under ptrace"); the old leader is gone.
        let leader = self.tasks.remove(&tid);
        let execd = if former != tid {
            self.tasks.remove(&former)
        } else {
            None
        };
        // Both are known here (a new task stays stopped until its creation
        // event is seen); should neither be, start afresh rather than panic.
        let mut task = execd
            .or(leader)
            .unwrap_or_else(|| Task::new(tid, AddrSpace::shared_new()));
        let pid = task.pid;
        self.vforked.remove(&tid);
        self.vforked.remove(&former);
        self.placement.on_exec(tid, former);
        // Every other thread of the group died in de_thread().
        self.tasks.retain(|_, t| t.pid != pid);
        task.mm = AddrSpace::shared_new();
        task.slot = None;
        task.replay = None;
        self.tasks.insert(tid, task);
        if tid == self.root {
            self.root_execd = true;
        }
        self.policy.on_event(&Event::Exec {
            pid,
            former_tid: former,
        });
    }

    fn on_event_stop(&mut self, tid: Tid, sig: i32) -> Result<()> {
        let task = self.tasks.get_mut(&tid).expect("known task");
        if !task.attached {
            task.attached = true;
            return sys::cont(tid, 0);
        }
        if self.listing_stops.remove(&tid) && sig == libc::SIGTRAP {
            let pid = task.pid;
            return self.listing_stop(tid, pid);
        }
        match sig {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                // A group-stop: stay stopped, but let the real parent see it
                // and SIGCONT wake us (ptrace(2), PTRACE_LISTEN).
                sys::listen(tid)?;
                if tid == self.root {
                    self.jobctl.mirror_stop();
                }
                Ok(())
            }
            _ => self.resume(tid),
        }
    }
}

pub(crate) fn ignore_died(e: Error) -> Result<()> {
    if e.is_died() {
        Ok(())
    } else {
        Err(e)
    }
}
