//! Restore of an image (#5): every process and thread it holds, with
//! ptrace, /proc and injected syscalls only: no code of ours runs in the
//! restored processes.
//!
//! The restorer creates a root vessel, a copy of itself that stops at
//! once: a plain fork (new pids) or, for [`Options::same_pids`], a child
//! in a new pid namespace (`ns`). Everything else is done to stopped
//! vessels through a gadget page (`inject`). In the root, before any
//! other process exists: the pipes and socketpairs the processes share
//! (`fds::prepare`, `sockets`), refilled with the bytes the image
//! recorded. Then every other process is cloned by an injected clone3 in
//! its parent's vessel, parents first, with its session and process group
//! (`tree`). Then, per process (`process`): its vDSO is moved and its
//! memory rebuilt (`memory`), the mm fields set (`mm`), its fd table
//! rebuilt (`fds`), cwd, umask, name, limits and signal dispositions set;
//! its other threads are cloned with injected clone3s (`tasks`), its
//! pending signals queued again, each thread given its own state (robust
//! list, rseq, clear_child_tid, capabilities), and last the registers and
//! XSAVE area (`thread`). Every task ends in a PTRACE_EVENT_STOP owned by
//! the calling thread, to be released with [`release_all`] or taken over
//! by a supervisor.
//!
//! Call [`restore`] from the thread that is to trace the tasks, while no
//! other thread of the process waits for any child (waitpid(-1)): the
//! restore waits for each task by its pid.

pub mod anon;
pub mod deleted;
pub mod dgrams;
pub mod fdplan;
pub mod fds;
pub mod fifo;
pub mod inflight;
pub mod inject;
pub mod inotify;
pub mod lazy;
pub mod memory;
pub mod mm;
pub mod ns;
pub mod objects;
pub mod open_files;
pub mod process;
pub mod shm;
pub mod sockets;
pub mod tasks;
pub mod tcp;
pub mod tcp_fin;
pub mod thread;
pub mod timers;
pub mod tree;
pub mod udp;
pub mod uffd;
pub mod unix_dgram;
pub mod zombie;

use crate::error::{Error, Result};
use crate::model::Process;
use crate::{sys, Image};
use inject::{Vessel, GADGET_CODE, GADGET_LEN};
use isotrace_tracer::sys as tsys;

/// Maps a path the restored tasks had open to the one to open now.
pub type PathMap = Box<dyn Fn(&str) -> String>;

/// How to restore. `Default` is a native restore with new pids.
#[derive(Default)]
pub struct Options {
    /// Put the restored root process in a new session (setsid(2)), out of
    /// the restorer's process group and away from its terminal's job
    /// control: for a restore that is not waited for. With `same_pids` the
    /// namespace's init gets a session of its own too, so nothing sent to
    /// the restorer's process group reaches the namespace.
    pub new_session: bool,
    /// Give every process and thread its pid/tid from the image, in a new
    /// pid namespace (see [`ns`]); otherwise each gets a new pid.
    pub same_pids: bool,
    /// Applied to every path the restorer opens for the restored tasks
    /// (fd paths, file-backed mappings, the exe link, the cwd): a restore
    /// into an environment maps a public path to its private copy.
    pub map_path: Option<PathMap>,
    /// A classic BPF program installed as the LAST injected calls of each
    /// process: prctl(PR_SET_NO_NEW_PRIVS) then seccomp(2)
    /// SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC (all threads).
    /// Nothing is injected after it: a SECCOMP_RET_TRACE verdict on a
    /// tracee without PTRACE_O_TRACESECCOMP fails the call with ENOSYS
    /// (kernel/seccomp.c, __seccomp_filter).
    pub seccomp_filter: Option<Vec<libc::sock_filter>>,
    /// Fill the pages an image holds in a migration receiver's pre-copy
    /// store (`Image::elsewhere`) after the release, on demand and in the
    /// background ([`lazy`]), instead of before it. The caller gets the
    /// server in [`Restored::post_copy`] and must [`lazy::PostCopy::go`]
    /// it once the tasks run.
    pub post_copy: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("new_session", &self.new_session)
            .field("same_pids", &self.same_pids)
            .field("map_path", &self.map_path.is_some())
            .field(
                "seccomp_filter",
                &self.seccomp_filter.as_ref().map(Vec::len),
            )
            .finish()
    }
}

impl Options {
    /// `path` as the restored tasks must see it opened (see `map_path`).
    pub fn path(&self, path: &str) -> String {
        match &self.map_path {
            Some(f) => f(path),
            None => path.to_owned(),
        }
    }
}

/// One restored thread. `pid`/`tid` are as the restorer's pid namespace
/// sees them (what ptrace, kill and /proc take); with
/// [`Options::same_pids`] the restored program itself sees `old_pid` and
/// `old_tid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub old_pid: i32,
    pub old_tid: i32,
    pub pid: i32,
    pub tid: i32,
}

/// Everything a restore rebuilt. Every task is in a PTRACE_EVENT_STOP
/// (an interrupt stop, as after PTRACE_INTERRUPT) owned by the thread that
/// called [`restore`] (ptrace(2): the tracer is a thread), seized with
/// [`ns::TRACE_OPTIONS`] (EXITKILL|TRACECLONE|TRACEFORK|TRACEVFORK). Its
/// registers are the image's, with orig_rax -1 (an interrupted syscall is
/// already rewound to be issued again), and it has its own blocked mask
/// and pending signals. The caller may PTRACE_SETOPTIONS each task and
/// resume it (signal 0) under its supervisor, or let all go with
/// [`release_all`].
#[derive(Debug)]
pub struct Restored {
    /// The image's root process and its pid now (in the restorer's ns).
    pub old_pid: i32,
    pub pid: i32,
    /// Every thread of every process, processes in creation order (a
    /// parent before its children), each process's main thread first.
    pub tasks: Vec<Task>,
    /// With `same_pids`: the pid (restorer's ns) of the namespace's init,
    /// our reaper, which is the restorer's child. It exits once every
    /// process of the namespace is gone, with the root process's status
    /// (128+S if a signal S killed it). Killing it kills the whole tree.
    pub init: Option<i32>,
    /// Processes that were stopped by job control at the dump (pid in the
    /// restorer's namespace, stop signal): [`release_all`] stops them
    /// again; a supervisor taking the tasks over should too.
    pub stopped: Vec<(i32, i32)>,
    /// What was not restored exactly, in words, for the user.
    pub notes: Vec<String>,
    /// The post-copy server (`Options::post_copy`), when some process has
    /// pages left to fill: start it with `go` once the tasks run.
    pub post_copy: Option<lazy::PostCopy>,
}

impl Restored {
    /// (old pid, new pid) of every process, parents first.
    pub fn processes(&self) -> Vec<(i32, i32)> {
        let mut out: Vec<(i32, i32)> = Vec::new();
        for t in &self.tasks {
            if t.old_pid == t.old_tid {
                out.push((t.old_pid, t.pid));
            }
        }
        out
    }

    /// The pid to wait for: init's exit status is the root's (see `init`);
    /// without `same_pids` the root is the restorer's child.
    pub fn waitable(&self) -> i32 {
        self.init.unwrap_or(self.pid)
    }
}

/// Kills everything a restore created unless it got to the end, so a
/// failed restore leaves nothing running: the namespace's init (which
/// takes every process of its namespace with it, pid_namespaces(7)) and
/// every vessel.
struct Built {
    init: Option<i32>,
    pids: Vec<i32>,
    armed: bool,
}

impl Drop for Built {
    fn drop(&mut self) {
        if self.armed {
            for &pid in self.pids.iter().rev() {
                ns::kill_and_reap(pid);
            }
            if let Some(init) = self.init {
                ns::kill_and_reap(init);
            }
        }
    }
}

/// Rebuilds every process and thread of the image. Everything that can
/// be refused is refused before the first vessel exists. On success every
/// task is stopped under the calling thread's ptrace (see [`Restored`]);
/// on failure nothing of the restore is left running.
pub fn restore(image: &Image, opts: &Options) -> Result<Restored> {
    let tty = (0..3).find(|&fd| is_tty(fd));
    let pipe_data = crate::dump::pipes::read(image)?;
    let extras = crate::dump::thread_extra::read(image)?;
    let pairs = crate::dump::unix_pairs::read(image)?;
    let signals = crate::dump::sigstate::read(image)?;
    let sections = objects::Sections::read(image)?;
    let tcp_conns = crate::dump::tcp::read(image)?;
    let plan = tree::plan(image, tty, &pipe_data, &pairs, &sections)?;
    let root_proc = plan.order[0];
    // Declared before `built`, so dropped after it on failure: the
    // processes are killed before their faults stop being served.
    let post_copy = match opts.post_copy && !image.elsewhere.is_empty() {
        true => Some(lazy::PostCopy::start()?),
        false => None,
    };
    let root = ns::root_vessel(opts, root_proc.pid)?;
    let mut built = Built {
        init: root.init,
        pids: vec![root.vessel],
        armed: true,
    };
    let current = sys::get_xstate(root.vessel)?;
    for p in &plan.order {
        for t in &p.threads {
            thread::check_xstate(p.pid, t, &current)?;
        }
    }
    let v = bootstrap(root.vessel, &plan.order)?;
    let mut shared = fds::prepare(&v, &plan.order, &pipe_data, &pairs, &sections.seals)?;
    tcp::create(
        &v,
        &plan.order,
        &tcp_conns,
        shared.line,
        &mut shared.sockets,
    )?;
    objects::prepare(&v, image, &plan, &pairs, &sections, opts, &mut shared)?;
    let tree::Created {
        vessels,
        zombies,
        mut notes,
    } = tree::create(v, &plan, &sections.zombies, opts, &mut built.pids)?;
    // Every process exists; none is restored yet, so each vessel can
    // still take the SIGCHLD its zombie's end sends it.
    let parents: Vec<(i32, &inject::Vessel)> =
        plan.order.iter().map(|p| p.pid).zip(&vessels).collect();
    notes.extend(zombie::finish(zombies, &parents)?);
    notes.splice(0..0, plan.notes.iter().chain(&shared.notes).cloned());
    let cx = process::Context {
        image,
        opts,
        shared: &shared,
        drop_caps: opts.same_pids && nix::unistd::geteuid().as_raw() != 0,
        extras: &extras,
        signals: &signals,
        may_setgroups: nix::unistd::geteuid().is_root(),
        timers: &sections.timers,
        post_copy: post_copy.as_ref(),
    };
    let mut tasks = Vec::new();
    for (i, v) in vessels.iter().enumerate() {
        let (p, fds) = (plan.order[i], &plan.fds[i]);
        notes.extend(process::restore(&cx, p, v, fds, &mut tasks)?);
    }
    notes.extend(thread_notes(&plan.order, opts, extras.is_empty()));
    // Per-thread steps repeat the same note for every thread.
    let mut seen = std::collections::BTreeSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    built.armed = false;
    let post_copy = post_copy.filter(|p| p.lazy() > 0 || p.eagerly_filled() > 0);
    Ok(Restored {
        post_copy,
        old_pid: root_proc.pid,
        pid: root.vessel,
        stopped: job_stopped(&plan.order, &tasks),
        tasks,
        init: root.init,
        notes,
    })
}

/// The processes whose main thread the dump found in a group-stop (its
/// `stop` is "group-stop SIGxxx"), with their new pid and stop signal.
fn job_stopped(procs: &[&Process], tasks: &[Task]) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for p in procs {
        let main = p.threads.iter().find(|t| t.tid == p.pid);
        let sig = main
            .and_then(|t| t.stop.strip_prefix("group-stop "))
            .and_then(|name| name.parse::<nix::sys::signal::Signal>().ok());
        let pid = tasks.iter().find(|t| t.old_tid == p.pid).map(|t| t.pid);
        if let (Some(sig), Some(pid)) = (sig, pid) {
            out.push((pid, sig as i32));
        }
    }
    out
}

fn thread_notes(procs: &[&Process], opts: &Options, no_extras: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if no_extras {
        notes.push("rseq registrations are not restored (the image does not record them): glibc's sched_getcpu() may return a stale cpu".into());
    }
    if !opts.same_pids && procs.len() > 1 {
        notes.push("processes have new pids: a pid the program remembers (a child's, for waitpid or kill) is the old one".into());
    }
    if !procs.iter().any(|p| p.threads.len() > 1) {
        return notes;
    }
    if !opts.same_pids {
        notes.push("threads have new tids: a tid the program cached (glibc's pthread tid, used by pthread_kill) is the old one".into());
    }
    notes
}

fn is_tty(fd: i32) -> bool {
    use std::io::IsTerminal;
    match fd {
        0 => std::io::stdin().is_terminal(),
        1 => std::io::stdout().is_terminal(),
        _ => std::io::stderr().is_terminal(),
    }
}

/// Gets a gadget page into the vessel: `syscall; int3` is first written
/// over the code at its stop (its copy of our text, never run again),
/// used once to map the real gadget page at an address free in both the
/// vessel and the image, and the vessel's rseq registration (glibc's, at
/// an address that is about to be unmapped) is dropped so the kernel does
/// not write into the restored memory on preemption (rseq(2)).
fn bootstrap(pid: i32, procs: &[&Process]) -> Result<Vessel> {
    let rip = tsys::get_regs(pid)?.rip;
    let mut v = Vessel::new(pid, rip)?;
    v.poke(rip, &GADGET_CODE)?;
    if let Some((ptr, size, sig)) = sys::rseq_config(pid)? {
        const RSEQ_FLAG_UNREGISTER: u64 = 1;
        let args = [ptr, size as u64, RSEQ_FLAG_UNREGISTER, sig as u64, 0, 0];
        v.call("rseq unregister", libc::SYS_rseq, args)?;
    }
    let current = memory::vessel_maps(pid)?;
    let taken: Vec<(u64, u64)> = procs
        .iter()
        .flat_map(|p| &p.vmas)
        .chain(&current)
        .map(|m| (m.start, m.end))
        .collect();
    let gadget =
        memory::free_range(&taken, GADGET_LEN, memory::mmap_min_addr()).ok_or_else(|| {
            Error::Invalid {
                what: "no free address for the restore's gadget page".into(),
            }
        })?;
    let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let got = v.call(
        "mmap the gadget page",
        libc::SYS_mmap,
        [gadget, GADGET_LEN, prot, flags, u64::MAX, 0],
    )?;
    if got != gadget {
        return Err(Error::Invalid {
            what: format!("the gadget page landed at {got:#x}, not {gadget:#x}"),
        });
    }
    v.poke(gadget, &GADGET_CODE)?;
    v.use_gadget(gadget);
    Ok(v)
}

/// cwd, umask, the thread name, and resource limits.
fn settings(v: &Vessel, proc: &Process, opts: &Options) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(cwd) = &proc.cwd {
        let at = v.stage_path(&opts.path(cwd))?;
        if v.raw(libc::SYS_chdir, [at, 0, 0, 0, 0, 0])? != 0 {
            notes.push(format!("cwd {cwd} is gone; the cwd is isotrace restore's"));
        }
    }
    if let Some(mask) = proc.umask {
        v.call("umask", libc::SYS_umask, [mask as u64, 0, 0, 0, 0, 0])?;
    }
    let mut comm = proc.comm.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = v.stage(0, &comm)?;
    let set_name = libc::PR_SET_NAME as u64;
    v.call(
        "prctl PR_SET_NAME",
        libc::SYS_prctl,
        [set_name, at, 0, 0, 0, 0],
    )?;
    for limit in &proc.limits {
        let Some(resource) = rlimit_resource(&limit.name) else {
            continue;
        };
        let inf = libc::RLIM64_INFINITY;
        let (soft, hard) = (limit.soft.unwrap_or(inf), limit.hard.unwrap_or(inf));
        if sys::prlimit(v.pid, resource, soft, hard).is_err() {
            notes.push(format!("limit \"{}\" not restored", limit.name));
        }
    }
    Ok(notes)
}

/// The RLIMIT_* of a /proc/PID/limits row name (fs/proc/base.c lnames).
fn rlimit_resource(name: &str) -> Option<u32> {
    const NAMES: [&str; 16] = [
        "Max cpu time",
        "Max file size",
        "Max data size",
        "Max stack size",
        "Max core file size",
        "Max resident set",
        "Max processes",
        "Max open files",
        "Max locked memory",
        "Max address space",
        "Max file locks",
        "Max pending signals",
        "Max msgqueue size",
        "Max nice priority",
        "Max realtime priority",
        "Max realtime timeout",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Lets one restored thread run: PTRACE_DETACH with no signal.
pub fn release(tid: i32) -> Result<()> {
    tsys::detach(tid, 0).map_err(Into::into)
}

/// Lets every restored thread run, in `tasks` order. Threads of one
/// process are detached one by one: until the last is released the others
/// run while it is still stopped, as after a PTRACE_INTERRUPT barrier.
/// A process that was stopped by job control first gets its stop signal
/// queued ([`stop_again`]).
pub fn release_all(restored: &Restored) -> Result<()> {
    stop_again(restored)?;
    for t in &restored.tasks {
        release(t.tid)?;
    }
    Ok(())
}

/// Queues its stop signal to each process that job control had stopped
/// when it was dumped, so that it stops again before it runs any code once
/// released (the signal is dequeued before the first return to user
/// space; under a supervisor, whose signal-delivery stop comes first).
pub fn stop_again(restored: &Restored) -> Result<()> {
    for &(pid, sig) in &restored.stopped {
        let sig = nix::sys::signal::Signal::try_from(sig).map_err(|e| Error::Invalid {
            what: format!("stop signal {sig}: {e}"),
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| {
            Error::Invalid {
                what: format!("stopping pid {pid} again: {e}"),
            }
        })?;
    }
    Ok(())
}
