//! Per-thread and per-address-space bookkeeping of the supervisor.

use crate::error::Result;
use crate::policy::{Call, PathArg, SpawnKind, TraceeView, Verdict};
use crate::remote::{self, MemFile, RemotePtr, PATH_MAX};
use crate::scratch::Pool;
use crate::sys::{self, Tid};
use isotrace_arch::{RegAccess, Syscall};
use std::cell::RefCell;
use std::rc::Rc;

/// One address space (mm), shared by the threads of a process and by
/// CLONE_VM children (vfork, posix_spawn).
#[derive(Default)]
pub struct AddrSpace {
    pub pool: Pool,
    pub mem: Option<MemFile>,
}

impl AddrSpace {
    pub fn shared_new() -> Rc<RefCell<AddrSpace>> {
        Rc::new(RefCell::new(AddrSpace::default()))
    }

    /// The copy a fork() child gets: the scratch mapping is inherited, the
    /// /proc/PID/mem file is not (it names the parent's mm).
    pub fn forked_from(parent: &Rc<RefCell<AddrSpace>>) -> Rc<RefCell<AddrSpace>> {
        Rc::new(RefCell::new(AddrSpace {
            pool: parent.borrow().pool.forked(),
            mem: None,
        }))
    }
}

/// A syscall waiting for its exit stop.
pub struct Pending {
    pub call: Call,
    pub rewritten: Vec<(usize, Vec<u8>)>,
}

/// One traced thread.
pub struct Task {
    /// Thread-group id.
    pub pid: Tid,
    pub mm: Rc<RefCell<AddrSpace>>,
    /// False until the initial PTRACE_EVENT_STOP of an auto-attached child
    /// has been consumed.
    pub attached: bool,
    pub pending: Option<Pending>,
    /// Scratch slot in flight (freed at the task's next stop).
    pub slot: Option<u16>,
    /// A verdict decided for syscall `.0` before an injected syscall made
    /// the tracee re-issue it: applied as is when it traps again.
    pub replay: Option<(u64, Call, Verdict)>,
    /// The registers of a call set aside while the tracee faults in a page
    /// of one of its arguments (probe.rs): put back at the probe's exit
    /// stop.
    pub probe: Option<isotrace_arch::native::Regs>,
    /// Probes made for the call this task is issuing; 0 once the call
    /// goes on.
    pub probes: u8,
}

impl Task {
    /// Whether the task must stop at its current syscall's exit.
    pub fn exit_due(&self) -> bool {
        self.pending.is_some() || self.probe.is_some()
    }

    pub fn new(pid: Tid, mm: Rc<RefCell<AddrSpace>>) -> Task {
        Task {
            pid,
            mm,
            attached: false,
            pending: None,
            slot: None,
            replay: None,
            probe: None,
            probes: 0,
        }
    }
}

/// The policy's read-only window onto one stopped tracee.
pub struct View {
    pub tid: Tid,
    pub pid: Tid,
    /// Its address space: memory is read through its /proc/PID/mem (opened
    /// on first use), which never waits for a userfaultfd the program
    /// serves itself (remote.rs); process_vm_readv if it cannot be opened.
    pub mm: Rc<RefCell<AddrSpace>>,
    /// Where a read of an argument first failed (8-aligned, in the page
    /// that could not be read): the supervisor may have the tracee fault
    /// it in and issue its call again (probe.rs).
    pub fault: Option<u64>,
}

impl View {
    /// Opens the address space's /proc/PID/mem if no call has yet.
    fn with_mem<T>(&mut self, read: impl FnOnce(Option<&MemFile>) -> T) -> T {
        let mut space = self.mm.borrow_mut();
        if space.mem.is_none() {
            space.mem = MemFile::open(self.pid).ok();
        }
        read(space.mem.as_ref())
    }
}

impl TraceeView for View {
    fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>> {
        let (tid, ptr) = (self.tid, RemotePtr::new(addr));
        let (got, fault) = self.with_mem(|mem| match mem {
            Some(mem) => match remote::read_cstr_in(mem, tid, ptr, max) {
                Ok(s) => (Some(s), None),
                Err(_) => (None, remote::unreadable_at(mem, tid, ptr, max)),
            },
            None => (remote::read_cstr(tid, ptr, max).ok(), None),
        });
        self.fault = self.fault.or(fault);
        got
    }
    fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let tid = self.tid;
        let (got, fault) = self.with_mem(|mem| match mem {
            Some(mem) => match remote::read_bytes_in(mem, tid, addr, len) {
                Ok(b) => (Some(b), None),
                Err(_) => (None, remote::unreadable_bytes_at(mem, tid, addr, len)),
            },
            None => (remote::read_bytes(tid, addr, len).ok(), None),
        });
        self.fault = self.fault.or(fault);
        got
    }
    fn cwd(&mut self) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/{}/cwd", self.tid)).ok()
    }
    fn fd_path(&mut self, fd: i32) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid)).ok()
    }
    fn dup_fd(&mut self, fd: i32) -> Option<std::os::fd::OwnedFd> {
        sys::dup_remote_fd(self.pid, fd).ok()
    }
}

/// Reads every `Arg::Path` argument of a trapped call.
pub fn decode_paths(
    tid: Tid,
    sc: &Syscall,
    args: &[u64; 6],
    mem: Option<&MemFile>,
) -> Vec<PathArg> {
    sc.path_args()
        .map(|idx| {
            let ptr = RemotePtr::new(args[idx]);
            let path = match mem {
                Some(m) => remote::read_cstr_in(m, tid, ptr, PATH_MAX - 1),
                None => remote::read_cstr(tid, ptr, PATH_MAX - 1),
            };
            PathArg {
                idx,
                path: path.map_err(|e| e.guest_errno()),
            }
        })
        .collect()
}

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;

/// How the child just reported by a fork/vfork/clone event of `parent` was
/// made, from the parent's registers: it is still inside that syscall.
pub fn spawn_kind(parent: Tid) -> Result<SpawnKind> {
    let regs = sys::get_regs(parent)?;
    let name = isotrace_arch::by_nr(regs.syscall_nr()).map_or("", |s| s.name);
    let flags = match name {
        "fork" => 0,
        "vfork" => CLONE_VM | CLONE_VFORK,
        "clone" => regs.arg(0),
        // struct clone_args starts with the u64 flags (clone3(2)).
        "clone3" => {
            let b = remote::read_bytes(parent, regs.arg(0), 8)?;
            u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))
        }
        _ => 0,
    };
    Ok(if flags & CLONE_THREAD != 0 {
        SpawnKind::Thread
    } else if flags & CLONE_VM != 0 && flags & CLONE_VFORK != 0 {
        SpawnKind::Vfork
    } else if flags & CLONE_VM != 0 {
        SpawnKind::CloneVm
    } else {
        SpawnKind::Fork
    })
}
