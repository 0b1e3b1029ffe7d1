//! The boundary between mechanism and policy.
//!
//! The tracer decodes each trapped syscall into a [`Call`] and asks a
//! [`Policy`] what to do; the policy answers with a [`Verdict`] and never
//! touches ptrace. What the policy may learn about a tracee beyond the call
//! itself goes through [`TraceeView`], a read-only window the mechanism
//! implements.

use crate::sys::Tid;
use isotrace_arch::Syscall;
use nix::errno::Errno;

/// One path argument as the tracee passed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathArg {
    /// Argument index (0..6).
    pub idx: usize,
    /// The bytes up to the NUL, or the errno reading them failed with
    /// (EFAULT, ENAMETOOLONG): the kernel would fail the call the same way.
    pub path: Result<Vec<u8>, Errno>,
}

/// A trapped syscall, decoded into typed form at its seccomp stop.
#[derive(Clone, Debug)]
pub struct Call {
    pub tid: Tid,
    /// Thread-group id of the caller.
    pub pid: Tid,
    pub sc: &'static Syscall,
    pub args: [u64; 6],
    /// Decoded `Arg::Path` arguments, in argument order.
    pub paths: Vec<PathArg>,
}

impl Call {
    pub fn path(&self, idx: usize) -> Option<&[u8]> {
        self.paths
            .iter()
            .find(|p| p.idx == idx)
            .and_then(|p| p.path.as_deref().ok())
    }
}

/// What the mechanism does with the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the kernel run it as the tracee issued it.
    Continue,
    /// Run it with these arguments replaced. Each path is written into the
    /// caller's scratch slot, memory no tracee thread can change before the
    /// kernel reads it, and the argument is pointed there. A policy that
    /// decided on a path's *content* must re-issue it here, even unchanged,
    /// so that the kernel reads the bytes that were checked.
    ///
    /// In `args`, index [`SYSCALL_NR`] replaces the syscall number itself
    /// (the kernel re-runs the filter on the new number).
    Rewrite {
        paths: Vec<(usize, Vec<u8>)>,
        args: Vec<(usize, u64)>,
    },
    /// A [`Action::Rewrite`] of `paths` that also replaces the string array
    /// at argument `argv_idx` (execve's argv): new strings and the array
    /// itself go into the scratch slot, existing strings are referred to by
    /// their tracee address. Used to run a `#!` script's interpreter
    /// directly with the script's public name.
    RewriteArgv {
        paths: Vec<(usize, Vec<u8>)>,
        argv_idx: usize,
        argv: Vec<ArgvItem>,
    },
    /// Skip the syscall; it returns this value (>= 0, or -errno).
    Emulate(i64),
    /// Skip the syscall after writing these bytes into tracee memory (the
    /// call's output buffers, e.g. an emulated getdents64); it returns `ret`.
    EmulateWrite { ret: i64, writes: Vec<MemWrite> },
    /// Skip the syscall; it fails with this errno.
    Deny(Errno),
}

/// The pseudo argument index that names the syscall number in
/// [`Action::Rewrite`]'s `args`.
pub const SYSCALL_NR: usize = 6;

/// One element of a rewritten string array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgvItem {
    /// A string already in tracee memory, by address.
    Tracee(u64),
    /// A new string (without its NUL).
    New(Vec<u8>),
}

/// Bytes to store at an address of the tracee (its own writable buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemWrite {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// What to change at a syscall-exit stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitAction {
    /// Replace the return value.
    pub ret: Option<i64>,
    /// Store these first (e.g. a translated getcwd result).
    pub writes: Vec<MemWrite>,
}

impl ExitAction {
    pub const NONE: ExitAction = ExitAction {
        ret: None,
        writes: Vec::new(),
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// Stop again at syscall exit and call [`Policy::on_exit`].
    pub exit_stop: bool,
}

impl Verdict {
    pub const CONTINUE: Verdict = Verdict {
        action: Action::Continue,
        exit_stop: false,
    };
    pub fn deny(errno: Errno) -> Verdict {
        Verdict {
            action: Action::Deny(errno),
            exit_stop: false,
        }
    }
    pub fn emulate(ret: i64) -> Verdict {
        Verdict {
            action: Action::Emulate(ret),
            exit_stop: false,
        }
    }
    pub fn with_exit_stop(mut self, yes: bool) -> Verdict {
        self.exit_stop = yes;
        self
    }
}

/// How a task came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnKind {
    /// The first process, started by the supervisor.
    Root,
    /// A new thread in the parent's thread group.
    Thread,
    /// fork(), or clone() without CLONE_VM.
    Fork,
    /// vfork() or clone(CLONE_VM|CLONE_VFORK), as posix_spawn does.
    Vfork,
    /// clone(CLONE_VM) without CLONE_THREAD.
    CloneVm,
}

/// How a thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal { sig: i32, core: bool },
}

impl ExitKind {
    /// The shell's convention: the exit code, or 128+signal.
    pub fn shell_status(self) -> i32 {
        match self {
            ExitKind::Code(c) => c,
            ExitKind::Signal { sig, .. } => 128 + sig,
        }
    }
}

/// Lifecycle events the policy may want for bookkeeping.
#[derive(Clone, Debug)]
pub enum Event {
    Spawned {
        tid: Tid,
        pid: Tid,
        parent: Option<Tid>,
        kind: SpawnKind,
    },
    /// A successful execve; `former_tid` differs from `pid` when a
    /// non-leader thread exec'd and took over the leader's tid.
    Exec {
        pid: Tid,
        former_tid: Tid,
    },
    Exited {
        tid: Tid,
        pid: Tid,
        how: ExitKind,
    },
}

/// Read-only access to a tracee for the policy (paths of fds, the cwd,
/// strings in memory). Implemented by the mechanism with process_vm_readv,
/// /proc and pidfd_getfd; none of it needs a ptrace request.
pub trait TraceeView {
    fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>>;
    fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>>;
    /// The real path of the tracee's working directory (/proc/TID/cwd).
    fn cwd(&mut self) -> Option<std::path::PathBuf>;
    /// The real path an fd refers to (/proc/PID/fd/N), as the kernel
    /// prints it (" (deleted)" suffixes included).
    fn fd_path(&mut self, fd: i32) -> Option<std::path::PathBuf>;
    /// A duplicate of the tracee's fd sharing its open file description
    /// (pidfd_getfd(2)), so the policy can read its offset or contents.
    fn dup_fd(&mut self, fd: i32) -> Option<std::os::fd::OwnedFd>;
}

pub trait Policy {
    /// Whether the policy needs the path arguments of `sc` decoded before
    /// `on_entry`. Returning false saves the memory reads on the hot path.
    fn wants_paths(&self, sc: &Syscall) -> bool {
        let _ = sc;
        true
    }

    /// How the call takes part in the namespace gate (`gate.rs`): asked
    /// at its seccomp stop, before anything else. A policy that rewrites
    /// paths names the calls that change names (Shared) and those that can
    /// plant a symlink (Exclusive).
    fn gate(&self, sc: &Syscall, args: &[u64; 6]) -> crate::gate::Gate {
        let _ = (sc, args);
        crate::gate::Gate::Free
    }

    /// Called at the seccomp stop of every trapped syscall.
    fn on_entry(&mut self, call: &Call, view: &mut dyn TraceeView) -> Verdict;

    /// Whether directory listings (getdents64) must reach the policy from
    /// now on. Asked after each `on_entry` of a group started with lazy
    /// listings (filter.rs `lazy_listings`); once true, every process of
    /// the group traps them for the rest of its life, the asking call's
    /// own process before that call goes on.
    fn listings_must_trap(&self) -> bool {
        true
    }

    /// Called at syscall exit when the entry verdict asked for it. `ret` is
    /// the raw return value. `rewritten` lists the paths the mechanism put
    /// in place at entry.
    fn on_exit(
        &mut self,
        call: &Call,
        rewritten: &[(usize, Vec<u8>)],
        ret: i64,
        view: &mut dyn TraceeView,
    ) -> ExitAction {
        let _ = (call, rewritten, ret, view);
        ExitAction::NONE
    }

    /// A syscall that was in flight when its task was SIGKILLed, exec'd or
    /// otherwise ended without an exit stop.
    fn on_abandoned(&mut self, call: &Call, rewritten: &[(usize, Vec<u8>)]) {
        let _ = (call, rewritten);
    }

    fn on_event(&mut self, event: &Event) {
        let _ = event;
    }
}
