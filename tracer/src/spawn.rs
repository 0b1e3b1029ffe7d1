//! Starting the first tracee: fork, seize, install the filter, exec.
//!
//! The order matters. The child blocks on a pipe until the parent has
//! PTRACE_SEIZEd it with PTRACE_O_EXITKILL, so that not one instruction of
//! the program runs untraced and the child dies if the supervisor does. Only
//! then does it install the seccomp filter (which needs a tracer attached,
//! otherwise RET_TRACE fails the call with ENOSYS) and exec. Between fork and
//! exec the child calls only async-signal-safe functions on data prepared
//! before the fork.

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
}

/// Why the child failed before its program started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildFailure {
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

unsafe fn report(fd: i32, stage: u8) -> ! {
    let e = (*libc::__errno_location()).to_ne_bytes();
    let msg = [stage, e[0], e[1], e[2], e[3]];
    libc::write(fd, msg.as_ptr().cast(), msg.len());
    libc::_exit(127);
}
