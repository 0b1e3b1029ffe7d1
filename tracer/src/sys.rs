//! Thin, typed wrappers over the raw ptrace, wait and remote-memory syscalls.
//!
//! This is one of the two files of the tracer that hold `unsafe` (the other is
//! `spawn.rs`). Every function maps -1/errno into [`Error`] with the tid and
//! the operation, and ESRCH into [`Error::Died`].

use crate::error::{Error, Result};
use isotrace_arch::native::Regs;
use nix::errno::Errno;

pub type Tid = i32;

pub const PTRACE_EVENT_STOP: i32 = 128;

/// Options set on every tracee at seize time; children inherit them.
pub const SEIZE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL;

fn check(tid: Tid, op: &'static str, rc: libc::c_long) -> Result<libc::c_long> {
    if rc == -1 {
        Err(Error::from_errno(tid, op, Errno::last()))
    } else {
        Ok(rc)
    }
}

fn ptrace_raw(req: libc::c_uint, tid: Tid, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: ptrace with integer or pointer arguments; every caller passes
    // either plain integers or a pointer to a live, correctly sized local
    // that outlives the call. The kernel validates the tid.
    unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    }
}

pub fn seize(tid: Tid, options: libc::c_int) -> Result<()> {
    check(
        tid,
        "PTRACE_SEIZE",
        ptrace_raw(libc::PTRACE_SEIZE, tid, 0, options as usize),
    )
    .map(drop)
}

/// PTRACE_SETOPTIONS on a tracee already stopped under us (one that was
/// attached by other code of this thread, such as a restore).
pub fn set_options(tid: Tid, options: libc::c_int) -> Result<()> {
    check(
        tid,
        "PTRACE_SETOPTIONS",
        ptrace_raw(libc::PTRACE_SETOPTIONS, tid, 0, options as usize),
    )
    .map(drop)
}

/// Resumes a stopped tracee, delivering `sig` (0 for none).
pub fn cont(tid: Tid, sig: i32) -> Result<()> {
    check(
        tid,
        "PTRACE_CONT",
        ptrace_raw(libc::PTRACE_CONT, tid, 0, sig as usize),
    )
    .map(drop)
}

/// Resumes and stops again at the next syscall boundary (here: the exit of
/// the syscall whose seccomp stop we are in).
pub fn cont_syscall(tid: Tid, sig: i32) -> Result<()> {
    check(
        tid,
        "PTRACE_SYSCALL",
        ptrace_raw(libc::PTRACE_SYSCALL, tid, 0, sig as usize),
    )
    .map(drop)
}

/// Leaves a group-stopped tracee stopped but lets the kernel report the stop
/// to its real parent and wake it on SIGCONT (ptrace(2), PTRACE_LISTEN).
pub fn listen(tid: Tid) -> Result<()> {
    check(
        tid,
        "PTRACE_LISTEN",
        ptrace_raw(libc::PTRACE_LISTEN, tid, 0, 0),
    )
    .map(drop)
}

pub fn interrupt(tid: Tid) -> Result<()> {
    check(
        tid,
        "PTRACE_INTERRUPT",
        ptrace_raw(libc::PTRACE_INTERRUPT, tid, 0, 0),
    )
    .map(drop)
}

pub fn detach(tid: Tid, sig: i32) -> Result<()> {
    check(
        tid,
        "PTRACE_DETACH",
        ptrace_raw(libc::PTRACE_DETACH, tid, 0, sig as usize),
    )
    .map(drop)
}

pub fn get_regs(tid: Tid) -> Result<Regs> {
    let mut regs = std::mem::MaybeUninit::<Regs>::uninit();
    check(
        tid,
        "PTRACE_GETREGS",
        ptrace_raw(libc::PTRACE_GETREGS, tid, 0, regs.as_mut_ptr() as usize),
    )?;
    // SAFETY: PTRACE_GETREGS succeeded, so the kernel filled the whole struct.
    Ok(unsafe { regs.assume_init() })
}

/// struct ptrace_syscall_info of <linux/ptrace.h> (Linux 6.16 layout: the
/// three bytes after `op` became `reserved` and `flags`), as far as a
/// seccomp stop fills it: the union is its `seccomp` member.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SyscallInfo {
    op: u8,
    reserved: u8,
    flags: u16,
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    nr: u64,
    args: [u64; 6],
    ret_data: u32,
    pad: u32,
}

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
/// Linux 6.16 and later.
const PTRACE_SET_SYSCALL_INFO: libc::c_uint = 0x4212;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;

/// Whether PTRACE_SET_SYSCALL_INFO was found missing (EIO from a kernel
/// older than 6.16): then [`set_seccomp_call`] says so at once.
static NO_SET_SYSCALL_INFO: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The number and arguments of the syscall a tracee is in a seccomp stop
/// for (PTRACE_GET_SYSCALL_INFO: about half the cost of PTRACE_GETREGS on
/// this VM, 0.55 against 1.0 us, since it copies seven words instead of the
/// whole register set). `None` when the stop is not a seccomp stop of the
/// native ABI (an `int 0x80` call, a kernel without the request): the
/// caller then reads the registers.
pub fn seccomp_call(tid: Tid) -> Result<Option<(u64, [u64; 6])>> {
    let mut info = SyscallInfo::default();
    let rc = ptrace_raw(
        PTRACE_GET_SYSCALL_INFO,
        tid,
        std::mem::size_of::<SyscallInfo>(),
        &mut info as *mut SyscallInfo as usize,
    );
    if rc == -1 {
        return match Errno::last() {
            Errno::EIO | Errno::EINVAL => Ok(None),
            e => Err(Error::from_errno(tid, "PTRACE_GET_SYSCALL_INFO", e)),
        };
    }
    let native = info.op == PTRACE_SYSCALL_INFO_SECCOMP
        && info.arch == isotrace_arch::native::AUDIT_ARCH
        && info.nr & u64::from(isotrace_arch::native::X32_SYSCALL_BIT) == 0;
    Ok(native.then_some((info.nr, info.args)))
}

/// Sets the number and all six arguments of the syscall a tracee is in a
/// seccomp stop for, in one request (PTRACE_SET_SYSCALL_INFO, Linux 6.16:
/// 0.53 us here, where PTRACE_SETREGS costs 1.2 us and needs a
/// PTRACE_GETREGS first). Returns false, having changed nothing, on a
/// kernel without the request.
pub fn set_seccomp_call(tid: Tid, nr: u64, args: &[u64; 6]) -> Result<bool> {
    use std::sync::atomic::Ordering;
    if NO_SET_SYSCALL_INFO.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let info = SyscallInfo {
        op: PTRACE_SYSCALL_INFO_SECCOMP,
        arch: isotrace_arch::native::AUDIT_ARCH,
        nr,
        args: *args,
        ..SyscallInfo::default()
    };
    let rc = ptrace_raw(
        PTRACE_SET_SYSCALL_INFO,
        tid,
        std::mem::size_of::<SyscallInfo>(),
        &info as *const SyscallInfo as usize,
    );
    if rc == -1 {
        let e = Errno::last();
        if e == Errno::EIO {
            // ptrace(2): EIO for an unknown request.
            NO_SET_SYSCALL_INFO.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        return Err(Error::from_errno(tid, "PTRACE_SET_SYSCALL_INFO", e));
    }
    Ok(true)
}

/// Writes register word `index` of the tracee's `user_regs_struct` (which
/// is struct user's first member, <sys/user.h>) with PTRACE_POKEUSER.
pub fn poke_reg(tid: Tid, index: usize, value: u64) -> Result<()> {
    check(
        tid,
        "PTRACE_POKEUSER",
        ptrace_raw(libc::PTRACE_POKEUSER, tid, index * 8, value as usize),
    )
    .map(drop)
}

pub fn set_regs(tid: Tid, regs: &Regs) -> Result<()> {
    check(
        tid,
        "PTRACE_SETREGS",
        ptrace_raw(libc::PTRACE_SETREGS, tid, 0, regs as *const Regs as usize),
    )
    .map(drop)
}

/// Stores `new` as the tracee's registers, knowing they were `old`: when
/// exactly one register differs (a rewritten path argument, the usual case)
/// one PTRACE_POKEUSER of it is half the cost of a PTRACE_SETREGS on this
/// VM (the kernel validates every register of a SETREGS one by one); when
/// none differs nothing is written.
pub fn set_regs_changed(tid: Tid, old: &Regs, new: &Regs) -> Result<()> {
    const N: usize = std::mem::size_of::<Regs>() / 8;
    const _: () = assert!(std::mem::size_of::<Regs>() == N * 8);
    // SAFETY: user_regs_struct is a repr(C) struct of unsigned 64-bit
    // fields only (the assert above checks there is no tail), so it has the
    // size, alignment and layout of [u64; N]; both borrows are live for the
    // whole function and only read.
    let (a, b) = unsafe {
        (
            &*(old as *const Regs as *const [u64; N]),
            &*(new as *const Regs as *const [u64; N]),
        )
    };
    let mut differ = (0..N).filter(|&i| a[i] != b[i]);
    match (differ.next(), differ.next()) {
        (None, _) => Ok(()),
        // The offset into struct user of register i: user_regs_struct is
        // struct user's first member (<sys/user.h>).
        (Some(i), None) => check(
            tid,
            "PTRACE_POKEUSER",
            ptrace_raw(libc::PTRACE_POKEUSER, tid, i * 8, b[i] as usize),
        )
        .map(drop),
        _ => set_regs(tid, new),
    }
}

pub fn event_msg(tid: Tid) -> Result<u64> {
    let mut msg: libc::c_ulong = 0;
    check(
        tid,
        "PTRACE_GETEVENTMSG",
        ptrace_raw(
            libc::PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut msg as *mut libc::c_ulong as usize,
        ),
    )?;
    Ok(msg)
}

/// One result of `waitpid(-1, __WALL)`: the tid and the raw status word.
pub fn wait_any(nohang: bool) -> std::result::Result<Option<(Tid, i32)>, Errno> {
    let mut status = 0;
    let flags = libc::__WALL | if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: waitpid writes one int through a pointer to a live local.
    let rc = unsafe { libc::waitpid(-1, &mut status, flags) };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        tid => Ok(Some((tid, status))),
    }
}

/// Waits for one specific task's next status (used while injecting a
/// syscall, when only that task's stop matters).
pub fn wait_tid(tid: Tid) -> Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one int through a pointer to a live local.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if rc == tid {
            return Ok(status);
        }
        let errno = Errno::last();
        if errno != Errno::EINTR {
            return Err(Error::from_errno(tid, "waitpid", errno));
        }
    }
}

/// Reads tracee memory with process_vm_readv: one syscall, no stop needed.
/// Returns how many bytes were read; a short count means the range ran into
/// an unmapped page.
pub fn vm_read(tid: Tid, addr: u64, buf: &mut [u8]) -> Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which is valid for writes of its
    // length; the remote iovec is only interpreted by the kernel in the
    // target's address space.
    let rc = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    check(tid, "process_vm_readv", rc as libc::c_long).map(|n| n as usize)
}

/// Reads tracee memory through its open /proc/PID/mem with pread: no
/// access check per call (it was made at open), so 0.86 us for 256 bytes
/// where process_vm_readv takes 1.16 us on this VM. Returns how many bytes
/// were read; an unmapped start is EFAULT (the file says EIO), as
/// process_vm_readv would say.
pub fn mem_read(fd: libc::c_int, tid: Tid, addr: u64, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: pread writes at most `buf.len()` bytes into a live slice.
    let rc = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), addr as libc::off_t) };
    if rc == -1 && Errno::last() == Errno::EIO {
        return Err(Error::from_errno(tid, "pread /proc/PID/mem", Errno::EFAULT));
    }
    check(tid, "pread /proc/PID/mem", rc as libc::c_long).map(|n| n as usize)
}

/// Writes tracee memory with process_vm_writev; all or nothing from the
/// caller's view (a short write is EFAULT).
pub fn vm_write(tid: Tid, addr: u64, data: &[u8]) -> Result<()> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` describes `data`, valid for reads of its length; the
    // kernel only reads through it. The remote side is the target's memory.
    let rc = unsafe { libc::process_vm_writev(tid, &local, 1, &remote, 1, 0) };
    let n = check(tid, "process_vm_writev", rc as libc::c_long)?;
    if n as usize != data.len() {
        return Err(Error::Sys {
            tid,
            op: "process_vm_writev (short)",
            errno: Errno::EFAULT,
        });
    }
    Ok(())
}

/// A duplicate of another process's fd (pidfd_getfd(2), Linux 5.6).
pub fn dup_remote_fd(pid: Tid, fd: i32) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: integer-only syscalls; each returned fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = check(pid, "pidfd_open", pidfd)? as i32;
    // SAFETY: pidfd is a fresh fd we own.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(pidfd) };
    use std::os::fd::AsRawFd;
    // SAFETY: integer-only syscall.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let got = check(pid, "pidfd_getfd", rc)? as i32;
    // SAFETY: `got` is a fresh fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(got) })
}

/// Writes tracee memory through an open /proc/PID/mem file. Unlike
/// process_vm_writev this goes through FOLL_FORCE and so writes read-only
/// pages too (proc(5), /proc/pid/mem), which is what the scratch region needs.
pub fn mem_write(fd: libc::c_int, tid: Tid, addr: u64, data: &[u8]) -> Result<()> {
    // SAFETY: pwrite reads `data.len()` bytes from a live slice.
    let rc = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), addr as libc::off_t) };
    let n = check(tid, "pwrite /proc/PID/mem", rc as libc::c_long)?;
    if n as usize != data.len() {
        return Err(Error::Sys {
            tid,
            op: "pwrite /proc/PID/mem (short)",
            errno: Errno::EIO,
        });
    }
    Ok(())
}

pub fn tgkill(tgid: Tid, tid: Tid, sig: i32) -> Result<()> {
    // SAFETY: plain integer syscall.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    check(tid, "tgkill", rc).map(drop)
}

/// Decoded form of a wait status word for a traced task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEvent {
    Exited(i32),
    Signaled {
        sig: i32,
        core: bool,
    },
    /// seccomp RET_TRACE stop (PTRACE_EVENT_SECCOMP).
    Seccomp,
    /// Syscall-exit stop (SIGTRAP|0x80 with PTRACE_O_TRACESYSGOOD).
    SyscallExit,
    /// A ptrace event stop other than seccomp/stop: fork, vfork, clone, exec.
    Event(i32),
    /// PTRACE_EVENT_STOP: a group-stop (sig is a stop signal), the initial
    /// stop of an auto-attached child, or a PTRACE_INTERRUPT stop.
    EventStop(i32),
    /// Signal-delivery stop: the tracee is about to receive `sig`.
    Signal(i32),
}

pub fn decode_status(status: i32) -> WaitEvent {
    if libc::WIFEXITED(status) {
        return WaitEvent::Exited(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        return WaitEvent::Signaled {
            sig: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        };
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    match event {
        0 if sig == (libc::SIGTRAP | 0x80) => WaitEvent::SyscallExit,
        0 => WaitEvent::Signal(sig),
        libc::PTRACE_EVENT_SECCOMP => WaitEvent::Seccomp,
        PTRACE_EVENT_STOP => WaitEvent::EventStop(sig),
        ev => WaitEvent::Event(ev),
    }
}

/// Which side of [`fork_single_threaded`] this is.
pub enum Forked {
    Parent(Tid),
    Child,
}

/// fork(2), refused unless this process has exactly one thread: a child of
/// a multi-threaded process may only call async-signal-safe functions
/// (fork(2), "The child process is created with a single thread"), while
/// a child of a single-threaded one is a full copy that may do anything.
/// Used to put a supervisor in the background (`restore --detach`).
pub fn fork_single_threaded() -> Result<Forked> {
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        });
    if threads != Some(1) {
        return Err(Error::Setup {
            op: "fork (the process is multi-threaded)".into(),
            errno: Errno::EBUSY,
        });
    }
    // SAFETY: the process has one thread (checked above), so the child is
    // a complete copy with no lock held by a vanished thread.
    match unsafe { libc::fork() } {
        -1 => Err(Error::Setup {
            op: "fork".into(),
            errno: Errno::last(),
        }),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Starts `argv[0]` with `argv` in a new session, as a grandchild that is
/// re-parented at once (double fork): it is not our child, so the
/// supervisor's waitpid(-1) never sees it and it outlives us. The
/// intermediate child exits at once; whoever reaps it (this call, or the
/// tracer's waitpid(-1), which ignores an unknown pid's exit) does not
/// matter. Between fork and exec only async-signal-safe calls are made
/// (fork(2) in a multi-threaded process): everything is prepared before.
pub fn spawn_orphan(argv: &[std::ffi::CString]) -> Result<()> {
    let Some(path) = argv.first() else {
        return Err(Error::Setup {
            op: "spawn (no program)".into(),
            errno: Errno::EINVAL,
        });
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let last_signal = libc::SIGRTMAX();
    // SAFETY: the child only calls setsid, fork, execv and _exit, all
    // async-signal-safe; `path` and `ptrs` were built before the fork and
    // point into `argv`, alive for the whole call.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => {
            return Err(Error::Setup {
                op: "fork".into(),
                errno: Errno::last(),
            })
        }
        // SAFETY: in the child of a multi-threaded process: only
        // async-signal-safe calls on data prepared before the fork.
        0 => unsafe {
            libc::setsid();
            if libc::fork() == 0 {
                // The program starts as from a shell: the supervisor's
                // ignored signals (SIGINT, SIGTSTP...) survive exec(2)
                // otherwise, and so does its signal mask.
                for sig in 1..=last_signal {
                    libc::signal(sig, libc::SIG_DFL);
                }
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                libc::execv(path.as_ptr(), ptrs.as_ptr());
                libc::_exit(127);
            }
            libc::_exit(0);
        },
        _ => {}
    }
    let mut status = 0;
    // SAFETY: waitpid writes one int through a pointer to a live local.
    // ECHILD (the tracer's waitpid(-1) reaped it first) is fine.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    Ok(())
}

/// The credentials the kernel checks file access with (credentials(7)):
/// for operations the supervisor performs on a tracee's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsCreds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Runs `f` with this thread's fsuid, fsgid and supplementary groups set
/// to `creds`, then puts its own back. Only this thread changes: the raw
/// syscalls are used, not glibc's wrappers, which apply set*id calls to
/// every thread (nptl's setxid broadcast). Setting the fsuid of a root
/// thread to non-zero also drops its file capabilities (CAP_DAC_OVERRIDE,
/// CAP_FOWNER...) until it is set back (capabilities(7)), so the kernel
/// checks exactly what it would check for the tracee. Needs CAP_SETUID
/// and CAP_SETGID; Err(EPERM) without them.
pub fn with_fs_creds<T>(creds: &FsCreds, f: impl FnOnce() -> T) -> Result<T> {
    let own_groups = nix::unistd::getgroups().map_err(|e| Error::Setup {
        op: "getgroups".into(),
        errno: e,
    })?;
    let own: Vec<libc::gid_t> = own_groups.iter().map(|g| g.as_raw()).collect();
    set_groups(&creds.groups)?;
    // SAFETY: setfsgid/setfsuid take an integer and change only this
    // thread's credentials; they return the previous value.
    let old_gid = unsafe { libc::syscall(libc::SYS_setfsgid, creds.gid) } as u32;
    // SAFETY: as above.
    let old_uid = unsafe { libc::syscall(libc::SYS_setfsuid, creds.uid) } as u32;
    // SAFETY: an invalid id (-1) changes nothing and returns the current one.
    let now_uid = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) } as u32;
    // SAFETY: as above.
    let now_gid = unsafe { libc::syscall(libc::SYS_setfsgid, u32::MAX) } as u32;
    let out = (now_uid == creds.uid && now_gid == creds.gid).then(f);
    // SAFETY: as above, putting back what was there.
    unsafe {
        libc::syscall(libc::SYS_setfsuid, old_uid);
        libc::syscall(libc::SYS_setfsgid, old_gid);
    }
    set_groups(&own)?;
    out.ok_or(Error::Setup {
        op: format!("setfsuid({})", creds.uid),
        errno: Errno::EPERM,
    })
}

fn set_groups(groups: &[libc::gid_t]) -> Result<()> {
    // SAFETY: the kernel reads `len` gids from a live slice.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc == -1 {
        return Err(Error::Setup {
            op: "setgroups".into(),
            errno: Errno::last(),
        });
    }
    Ok(())
}
