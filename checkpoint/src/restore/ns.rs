//! The root vessel of a restore, and for a same-pid restore the new pid
//! namespace it lives in.
//!
//! A pid chosen with clone3(2) set_tid needs CAP_SYS_ADMIN in the user
//! namespace that owns the pid namespace (kernel/pid.c, alloc_pid), and
//! pids of a namespace the restore did not create are mostly taken. So a
//! same-pid restore clones a child into a new pid namespace (and, when
//! not root, a new user namespace too, whose owner holds every capability
//! in it: user_namespaces(7)). That child is pid 1 there:
//! - if the image's root process is pid 1, the child is its vessel;
//! - otherwise it is our init, which clones the root's vessel with
//!   set_tid and then only reaps (`sys::NsChild::Init`). Every other
//!   process and thread is cloned by an injected clone3 with set_tid in
//!   its parent's vessel, which inherits those capabilities.
//!
//! The restorer itself never changes namespace, so it may be
//! multi-threaded and may restore more than once. What differs from the
//! original: the root's parent is our init (getppid() is 1) or, for an
//! image whose root is pid 1, outside the namespace (getppid() is 0);
//! without root, ids other than the user's own show as the overflow id
//! 65534 (user_namespaces(7), "Unmapped user and group IDs").

use crate::error::{Error, Result};
use crate::sys::{self, NsChild, NsHandle};
use isotrace_tracer::sys::{self as tsys, WaitEvent};
use std::io::{Read, Write};

/// The options every restored task is traced with.
pub const TRACE_OPTIONS: libc::c_int = libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK;

/// The root vessel, stopped under our ptrace, and the namespace's init.
pub struct Root {
    pub vessel: i32,
    pub init: Option<i32>,
}

/// Creates the root vessel: a plain fork with a new pid, or in a new pid
/// namespace with pid `root_pid`. With `new_session` the namespace's init
/// leads a session of its own, out of the restorer's process group (whose
/// end, or a terminal's job control, must not kill the namespace).
pub fn root_vessel(opts: &super::Options, root_pid: i32) -> Result<Root> {
    let new_session = opts.new_session;
    if !opts.same_pids {
        let pid = sys::fork_vessel()?;
        let root = Root {
            vessel: pid,
            init: None,
        };
        expect_sigstop(pid)?;
        tsys::set_options(pid, TRACE_OPTIONS)?;
        return Ok(root);
    }
    let rootless = nix::unistd::geteuid().as_raw() != 0;
    // A mount namespace too, for a procfs of the new pid namespace: there
    // /proc/PID names a restored process by the pid it knows.
    let mut flags = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;
    if rootless {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    let role = if root_pid == 1 {
        NsChild::Vessel
    } else {
        NsChild::Init {
            root: root_pid,
            new_session,
        }
    };
    let child = sys::clone_ns_child(flags, role).map_err(|e| Error::Invalid {
        what: format!(
            "cannot create the new {} namespace a same-pid restore needs ({e}); restore with new pids instead",
            if rootless { "user and pid" } else { "pid" }
        ),
    })?;
    let mut guard = KillGuard(Some(child.pid));
    if rootless {
        write_id_maps(child.pid)?;
    }
    let root = match role {
        NsChild::Vessel => {
            tsys::seize(child.pid, TRACE_OPTIONS)?;
            go(&child)?;
            Root {
                vessel: child.pid,
                init: None,
            }
        }
        NsChild::Init { root, .. } => {
            let vessel = init_vessel(&child, root)?;
            Root {
                vessel,
                init: Some(child.pid),
            }
        }
    };
    expect_sigstop(root.vessel)?;
    guard.0 = None;
    Ok(root)
}

/// SIGKILLs and reaps a child unless disarmed.
struct KillGuard(Option<i32>);

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_and_reap(pid);
        }
    }
}

/// SIGKILL, then reap (it is our child, or our tracee).
pub fn kill_and_reap(pid: i32) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL));
}

fn go(child: &NsHandle) -> Result<()> {
    let mut f = std::fs::File::from(child.go.try_clone().map_err(io("go pipe"))?);
    f.write_all(b"g").map_err(io("go pipe"))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn expect_sigstop(pid: i32) -> Result<()> {
    let status = tsys::wait_tid(pid)?;
    if tsys::decode_status(status) != WaitEvent::Signal(libc::SIGSTOP) {
        return Err(Error::Invalid {
            what: format!("the restore vessel (pid {pid}) did not stop: status {status:#x}"),
        });
    }
    Ok(())
}

/// Maps our own uid and gid to themselves in the child's new user
/// namespace, so getuid() inside is the user's uid. An unprivileged
/// writer may map only its own ids, and only after denying setgroups(2)
/// for the gid map (user_namespaces(7), "Defining user and group ID
/// mappings").
fn write_id_maps(pid: i32) -> Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    for (file, text) in [
        ("uid_map", format!("{uid} {uid} 1\n")),
        ("setgroups", "deny\n".to_owned()),
        ("gid_map", format!("{gid} {gid} 1\n")),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Lets init go, reads which pid its clone3 gave the root vessel, finds
/// that vessel's pid in our namespace, seizes it and lets it stop.
fn init_vessel(child: &NsHandle, root: i32) -> Result<i32> {
    go(child)?;
    let mut rep = std::fs::File::from(child.report.try_clone().map_err(io("init pipe"))?);
    let mut buf = [0u8; 4];
    rep.read_exact(&mut buf).map_err(io("init's report"))?;
    let got = i32::from_ne_bytes(buf);
    if got == -libc::EEXIST {
        return Err(Error::Invalid {
            what: format!("pid {root} is taken in the new pid namespace; cannot restore the root process with its pid"),
        });
    }
    if got < 0 {
        return Err(Error::Invalid {
            what: format!(
                "clone3 of the root process with pid {root} in the new pid namespace: {}",
                nix::errno::Errno::from_raw(-got)
            ),
        });
    }
    let vessel = outer_pid(child.pid, got)?;
    tsys::seize(vessel, TRACE_OPTIONS)?;
    go(child)?;
    Ok(vessel)
}

/// The pid in our namespace of `parent`'s child whose pid in its own
/// namespace is `inner`: the last NSpid field of /proc/PID/status
/// (proc(5)) among /proc/PARENT/task/PARENT/children.
fn outer_pid(parent: i32, inner: i32) -> Result<i32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let list = std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))?;
    for pid in list
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|ids| ids.split_whitespace().last()?.parse::<i32>().ok());
        if last == Some(inner) {
            return Ok(pid);
        }
    }
    Err(Error::Invalid {
        what: format!(
            "the root vessel (pid {inner} in the new namespace) is not among init's children ({})",
            list.trim()
        ),
    })
}

/// In-namespace pid to our namespace's, from NSpid; for same-pid
/// restores the first is the image's pid.
pub fn ns_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
}
