//! clone3(2) without glibc for a restore: the child in new namespaces
//! (`clone_ns_child`) and the namespace's init. Part of `sys`: `unsafe`
//! lives here and in `sys.rs` only.

use isotrace_tracer::sys::Tid;
use isotrace_tracer::{Error, Result};
use nix::errno::Errno;

/// struct clone_args of clone3(2) (<linux/sched.h>, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

impl CloneArgs {
    /// The struct's bytes, to stage in a vessel for an injected clone3.
    pub fn to_bytes(&self) -> Vec<u8> {
        [
            self.flags,
            self.pidfd,
            self.child_tid,
            self.parent_tid,
            self.exit_signal,
            self.stack,
            self.stack_size,
            self.tls,
            self.set_tid,
            self.set_tid_size,
            self.cgroup,
        ]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect()
    }
}

/// What the child of [`clone_ns_child`] does once the parent says go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsChild {
    /// Stop itself (SIGSTOP), to be rebuilt as the image's pid 1.
    Vessel,
    /// Be the namespace's init: clone3 a vessel with pid `root` (set_tid),
    /// report the result, then only reap (see [`init_main`]).
    Init { root: i32, new_session: bool },
}

/// A child of [`clone_ns_child`]: its pid (our namespace) and our ends of
/// its pipes.
pub struct NsHandle {
    pub pid: Tid,
    /// Each byte written lets the next waiter go: the first the child
    /// itself, then (for an init) the vessel it cloned.
    pub go: std::os::fd::OwnedFd,
    /// An init writes clone3's result here: the vessel's pid or -errno.
    pub report: std::os::fd::OwnedFd,
}

fn setup_err(op: &str) -> Error {
    Error::Setup {
        op: op.into(),
        errno: Errno::last(),
    }
}

fn pipe_pair() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a live array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(setup_err("pipe2"));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Raw clone3 without a new stack: like fork(2) in both processes, but
/// glibc's fork handlers do not run, so the child may only make raw
/// syscalls (it never returns into code that takes locks).
fn raw_clone3(args: &CloneArgs) -> libc::c_long {
    // SAFETY: `args` is a live, correctly laid out struct clone_args the
    // kernel only reads; with no stack given the child continues on a
    // copy of this stack exactly like a fork child.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// Reads one byte, retrying on EINTR; true if a byte came.
fn read_go(fd: i32) -> bool {
    let mut b = 0u8;
    loop {
        // SAFETY: reads one byte into a live local.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        // SAFETY: errno is thread-local and valid to read.
        if n != -1 || unsafe { *libc::__errno_location() } != libc::EINTR {
            return n == 1;
        }
    }
}

/// Clones a child into new namespaces (`flags`: CLONE_NEWPID, and
/// CLONE_NEWUSER for a rootless restore), where it is pid 1. It waits for
/// a byte on `go` (so the parent can write its uid/gid maps and seize it)
/// and then does what `role` says. The caller must not have other threads
/// that hold locks the child could need: the child makes raw syscalls only.
pub fn clone_ns_child(flags: u64, role: NsChild) -> Result<NsHandle> {
    use std::os::fd::AsRawFd;
    let (go_rd, go_wr) = pipe_pair()?;
    let (rep_rd, rep_wr) = pipe_pair()?;
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let pid = raw_clone3(&args);
    if pid == 0 {
        let (go, rep) = (go_rd.as_raw_fd(), rep_wr.as_raw_fd());
        // SAFETY: closing the parent's ends in the child, so that a parent
        // that dies early gives EOF instead of a child blocked forever.
        unsafe {
            libc::close(go_wr.as_raw_fd());
            libc::close(rep_rd.as_raw_fd());
        }
        if !read_go(go) {
            // SAFETY: leaving the child without running any destructor.
            unsafe { libc::_exit(127) };
        }
        if flags & libc::CLONE_NEWNS as u64 != 0 {
            own_proc();
        }
        match role {
            NsChild::Vessel => {
                // SAFETY: raw syscalls in the child, then _exit.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGSTOP);
                    libc::_exit(127);
                }
            }
            NsChild::Init { root, new_session } => {
                if new_session {
                    // SAFETY: plain setsid(2) in the child.
                    unsafe { libc::setsid() };
                }
                init_main(root, go, rep)
            }
        }
    }
    if pid == -1 {
        return Err(setup_err("clone3 into a new pid namespace"));
    }
    Ok(NsHandle {
        pid: pid as Tid,
        go: go_wr,
        report: rep_rd,
    })
}

/// In a new mount namespace: a procfs of the new pid namespace over
/// /proc, so that /proc/PID names the restored processes by the pids they
/// see (getpid(2)) rather than the host's. Mounts are made private first
/// so that nothing propagates back to the host's namespace
/// (mount_namespaces(7)). Best effort: without it /proc stays the host's.
fn own_proc() {
    let root = c"/";
    let proc_ = c"/proc";
    let fstype = c"proc";
    // SAFETY: mount(2) with NUL-terminated literals and null data, in the
    // child, before any other thread exists.
    unsafe {
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
        {
            libc::mount(
                fstype.as_ptr(),
                proc_.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
        }
    }
}

/// The namespace's init: clones the root vessel with pid `root` (which
/// waits for the next byte on `go`, then stops itself), writes clone3's
/// result to `rep`, then reaps every process of the namespace (orphans
/// are reparented to it, pid_namespaces(7)). When none is left it exits
/// with the root's status, a signal S as 128+S like a shell.
fn init_main(root: i32, go: i32, rep: i32) -> ! {
    let set_tid = [root];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    let pid = raw_clone3(&args);
    if pid == 0 {
        // SAFETY: raw syscalls in the vessel child, then _exit. It keeps
        // the restorer's other fds: the restore takes stdio from them.
        unsafe {
            libc::close(rep);
            if read_go(go) {
                libc::kill(libc::getpid(), libc::SIGSTOP);
            }
            libc::_exit(127);
        }
    }
    // SAFETY: errno is thread-local and valid to read.
    let result: i32 = if pid == -1 {
        -unsafe { *libc::__errno_location() }
    } else {
        pid as i32
    };
    // SAFETY: writes four bytes from a live local, then closes every fd:
    // init must hold nothing of the restorer's (a pipe a caller reads to
    // EOF, a terminal).
    unsafe {
        libc::write(rep, (&result as *const i32).cast(), 4);
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
    }
    let mut code = 127;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int through a pointer to a live local.
        let got = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if got == -1 {
            // SAFETY: errno is thread-local and valid to read.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            // SAFETY: leaving without destructors: ECHILD, nobody is left.
            unsafe { libc::_exit(code) };
        }
        if got == pid as i32 {
            code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    }
}
