//! Starting the first tracee: fork, seize, install the filter, exec.
//!
//! The order matters. The child blocks on a pipe until the parent has
//! PTRACE_SEIZEd it with PTRACE_O_EXITKILL, so that not one instruction of
//! the program runs untraced and the child dies if the supervisor does. Only
//! then does it install the seccomp filter (which needs a tracer attached,
//! otherwise RET_TRACE fails the call with ENOSYS) and exec. Between fork and
//! exec the child calls only async-signal-safe functions on data prepared
//! before the fork.
//!
//! With a [`ReadOnlyHost`] plan the child first moves into a mount namespace
//! of its own in which every host mount is read-only but the plan's
//! writable paths (before the filter: it traps the mount API).

use crate::error::{Error, Result};
use crate::sys::{self, Tid};
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct SpawnSpec {
    /// Resolved path of the program (execve does no PATH search).
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub filter: Vec<libc::sock_filter>,
    /// Set PR_SET_NO_NEW_PRIVS: required by seccomp(2) without
    /// CAP_SYS_ADMIN. It makes set-user-ID bits inert for the whole tree.
    pub no_new_privs: bool,
    /// `filter` was built with `lazy_listings` (listings.rs).
    pub lazy_listings: bool,
    /// Start in a mount namespace of its own with a read-only host (needs
    /// CAP_SYS_ADMIN).
    pub read_only_host: Option<ReadOnlyHost>,
}

/// The tracee's mount namespace: a copy of the supervisor's (unshare(2)
/// CLONE_NEWNS), every mount a slave of the host's (mount(2) MS_SLAVE: host
/// mounts and unmounts still show, nothing propagates back), and every
/// mount read-only (mount_setattr(2) MOUNT_ATTR_RDONLY, per mount: the
/// superblocks stay writable for the host) except the `writable` trees.
/// Paths keep their meaning, so the supervisor's rewrites are valid in both
/// namespaces.
#[derive(Clone, Debug, Default)]
pub struct ReadOnlyHost {
    /// Trees that stay writable, each with the mounts below it
    /// (AT_RECURSIVE). With `true`, the path is first bound onto itself
    /// (MS_BIND|MS_REC), since mount attributes belong to mounts and the
    /// path may be a plain directory of a read-only mount.
    pub writable: Vec<(CString, bool)>,
    /// Mount points below a writable tree that were read-only already: read-only again at the end.
    pub keep_read_only: Vec<CString>,
    /// The working directory, entered again at the end: a bind over it
    /// would otherwise leave the tracee on the covered (read-only) mount.
    pub cwd: Option<CString>,
}

/// Why the child failed before its program started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildFailure {
    /// Setting up the read-only-host mount namespace failed.
    Mounts(Errno),
    Seccomp(Errno),
    Exec(Errno),
}

pub struct Spawned {
    pub pid: Tid,
    /// Read end of a CLOEXEC pipe: EOF once the exec succeeded; otherwise
    /// the child wrote a [`ChildFailure`] and exited.
    report: OwnedFd,
}

const STAGE_SECCOMP: u8 = 1;
const STAGE_EXEC: u8 = 2;
const STAGE_MOUNTS: u8 = 3;

impl Spawned {
    /// After the child exited without exec'ing: what went wrong.
    pub fn failure(&self) -> Option<ChildFailure> {
        let mut buf = [0u8; 5];
        // SAFETY: read into a live local buffer of the given length.
        let n = unsafe { libc::read(self.report.as_raw_fd(), buf.as_mut_ptr().cast(), 5) };
        if n != 5 {
            return None;
        }
        let errno = Errno::from_raw(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]));
        match buf[0] {
            STAGE_SECCOMP => Some(ChildFailure::Seccomp(errno)),
            STAGE_MOUNTS => Some(ChildFailure::Mounts(errno)),
            _ => Some(ChildFailure::Exec(errno)),
        }
    }
}

fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a live array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(Error::Setup {
            op: "pipe2".into(),
            errno: Errno::last(),
        });
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn spawn(spec: &SpawnSpec) -> Result<Spawned> {
    let (go_r, go_w) = pipe_cloexec()?;
    let (rep_r, rep_w) = pipe_cloexec()?;
    let mut argv: Vec<*const libc::c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = spec.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let prog = libc::sock_fprog {
        len: spec.filter.len() as u16,
        filter: spec.filter.as_ptr() as *mut libc::sock_filter,
    };

    // SAFETY: the supervisor is single-threaded when it spawns, and the child
    // only calls async-signal-safe functions on memory prepared above.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(Error::Setup {
            op: "fork".into(),
            errno: Errno::last(),
        });
    }
    if pid == 0 {
        // SAFETY: child side; see child_main.
        unsafe {
            child_main(
                go_r.as_raw_fd(),
                go_w.as_raw_fd(),
                rep_w.as_raw_fd(),
                spec,
                &prog,
                &argv,
                &envp,
            )
        }
    }
    drop(go_r);
    drop(rep_w);
    if let Err(e) = sys::seize(pid, sys::SEIZE_OPTIONS) {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(e);
    }
    // Closing the write end wakes the child (read returns 0).
    drop(go_w);
    Ok(Spawned { pid, report: rep_r })
}

/// # Safety
/// Must only run in the child right after fork.
unsafe fn child_main(
    go_r: i32,
    go_w: i32,
    rep_w: i32,
    spec: &SpawnSpec,
    prog: &libc::sock_fprog,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    libc::close(go_w);
    let mut b = 0u8;
    while libc::read(go_r, (&mut b as *mut u8).cast(), 1) == -1
        && *libc::__errno_location() == libc::EINTR
    {}
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    // The Rust runtime set SIGPIPE to SIG_IGN in the supervisor at start-up;
    // the program must get the default back, as std::process::Command does.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    if let Some(plan) = &spec.read_only_host {
        if !enter_read_only_host(plan) {
            report(rep_w, STAGE_MOUNTS);
        }
    }
    if spec.no_new_privs {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    let rc = libc::syscall(
        libc::SYS_seccomp,
        1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
        0 as libc::c_ulong,
        prog as *const libc::sock_fprog,
    );
    if rc != 0 {
        report(rep_w, STAGE_SECCOMP);
    }
    libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    report(rep_w, STAGE_EXEC);
}

/// struct mount_attr of <linux/mount.h> (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// mount_setattr(2) on `path` (AT_FDCWD-relative); false with errno set.
///
/// # Safety
/// `path` is a live NUL-terminated string.
unsafe fn set_read_only(path: *const libc::c_char, read_only: bool, recursive: bool) -> bool {
    let attr = MountAttr {
        attr_set: if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if read_only { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path,
        if recursive { AT_RECURSIVE } else { 0 },
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    ) == 0
}

/// Carries out `plan` in the child; false with errno set on the first
/// failure. Only syscalls on memory prepared before the fork.
///
/// # Safety
/// Must only run in the child right after fork.
unsafe fn enter_read_only_host(plan: &ReadOnlyHost) -> bool {
    let none = std::ptr::null::<libc::c_char>();
    let root = c"/".as_ptr();
    if libc::unshare(libc::CLONE_NEWNS) != 0
        || libc::mount(
            none,
            root,
            none,
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
    {
        return false;
    }
    for (path, bind) in &plan.writable {
        let flags = libc::MS_BIND | libc::MS_REC;
        if *bind && libc::mount(path.as_ptr(), path.as_ptr(), none, flags, std::ptr::null()) != 0 {
            return false;
        }
    }
    if !set_read_only(root, true, true) {
        return false;
    }
    for (path, _) in &plan.writable {
        if !set_read_only(path.as_ptr(), false, true) {
            return false;
        }
    }
    for path in &plan.keep_read_only {
        if !set_read_only(path.as_ptr(), true, false) {
            return false;
        }
    }
    if let Some(cwd) = &plan.cwd {
        // A cwd that vanished meanwhile stays where it is.
        libc::chdir(cwd.as_ptr());
    }
    true
}

unsafe fn report(fd: i32, stage: u8) -> ! {
    let e = (*libc::__errno_location()).to_ne_bytes();
    let msg = [stage, e[0], e[1], e[2], e[3]];
    libc::write(fd, msg.as_ptr().cast(), msg.len());
    libc::_exit(127);
}
