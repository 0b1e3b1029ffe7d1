//! Calls answered through a seccomp user-notification listener instead of a
//! ptrace stop (seccomp_unotify(2)).
//!
//! A ptrace stop costs the tracee two context switches through the tracer's
//! wait loop plus the ptrace requests that read and resume it: about 7.6 us
//! per call on this VM, pinned. A user notification is one hand-over to a
//! thread blocked in SECCOMP_IOCTL_NOTIF_RECV and one back: about 5.3 us,
//! and the same unpinned with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
//! (../shared/PERF-NOTES.md, measured 2026-11-26). The price: the listener
//! cannot change the call's registers. It can let the call run as issued,
//! make it return a value, or write the call's output buffers and make it
//! return. So only calls whose every outcome is one of those go to the
//! listener ([`crate::filter::NOTIFIED`]); every path-taking call stays on
//! ptrace, where the path is pinned in the scratch region.
//!
//! The listener is created by the first tracee's filter
//! (SECCOMP_FILTER_FLAG_NEW_LISTENER, spawn.rs) and inherited with the filter
//! by every process and thread of the group. A tracee cannot make one of its
//! own: guard.rs refuses SECCOMP_FILTER_FLAG_NEW_LISTENER, and the kernel
//! allows one listener per filter chain.
//!
//! Failure modes:
//! - The supervisor dies: the listener is closed, a waiting call fails with
//!   ENOSYS, and PTRACE_O_EXITKILL kills the tracees anyway.
//! - A freeze: PTRACE_INTERRUPT wakes a thread waiting for its answer; the
//!   call returns -ERESTARTSYS, the thread stops in its interrupt stop with
//!   the call to be restarted (like any interrupted blocking call), and an
//!   answer sent after that fails with ENOENT and is dropped.
//! - The policy has no handler: every notified call fails with ENOSYS
//!   (closed, never let through unseen).

use crate::policy::{MemWrite, TraceeView};
use crate::sys::{self, Notif, Tid};
use isotrace_arch::Syscall;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A call waiting in the listener.
#[derive(Clone, Debug)]
pub struct NotifCall {
    /// The calling thread.
    pub tid: Tid,
    pub sc: &'static Syscall,
    pub args: [u64; 6],
}

/// How a notified call ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Run it as the tracee issued it.
    Continue,
    /// It returns this value (>= 0) or fails with -value (< 0).
    Return(i64),
    /// These bytes are written into the caller's memory first (its output
    /// buffers), then it returns `ret`.
    WriteReturn { ret: i64, writes: Vec<MemWrite> },
}

/// The policy's side of the listener: runs on the listener's thread.
pub trait NotifPolicy: Send {
    fn on_notif(&mut self, call: &NotifCall, tv: &mut dyn TraceeView) -> Reply;
}

/// The listener of a group's filter.
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Listener {
        // A refusal (before Linux 6.6) costs only the cross-CPU wake-ups.
        let _ = sys::notif_sync_wake_up(fd.as_raw_fd());
        Listener { fd }
    }
}

/// A running listener thread. It ends by itself once no task has the
/// filter (its next receive fails with ENOENT); it is not joined, so that
/// a tracee that somehow outlives the supervisor's loop cannot hang it.
pub struct Server {
    pub handled: Arc<AtomicU64>,
}

impl Server {
    /// Serves `listener` on a thread of its own until no tracee has the
    /// filter any more. `policy` None answers every call with ENOSYS.
    pub fn start(
        listener: Listener,
        policy: Option<Box<dyn NotifPolicy>>,
    ) -> std::io::Result<Server> {
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        std::thread::Builder::new()
            .name("isotrace-notif".into())
            .spawn(move || serve(&listener, policy, &count))?;
        Ok(Server { handled })
    }
}

fn serve(listener: &Listener, mut policy: Option<Box<dyn NotifPolicy>>, count: &AtomicU64) {
    let fd = listener.fd.as_raw_fd();
    loop {
        let n = match sys::notif_recv(fd) {
            Ok(n) => n,
            // ENOENT: the call that woke us was withdrawn before we took it
            // (its thread was interrupted: a freeze, a signal; it will be
            // restarted), or no task has the filter any more (the listener
            // then polls as hung up). Anything else is a listener we
            // cannot use: the tracees' calls then fail with ENOSYS.
            Err(Errno::ENOENT) if !sys::notif_hung_up(fd) => continue,
            Err(Errno::ENOENT) => return,
            Err(e) => {
                tracing::warn!("seccomp listener: {e}");
                return;
            }
        };
        count.fetch_add(1, Ordering::Relaxed);
        let reply = match (&mut policy, isotrace_arch::by_nr(n.nr as u64)) {
            (Some(p), Some(sc)) if n.arch == isotrace_arch::native::AUDIT_ARCH => {
                let call = NotifCall {
                    tid: n.tid,
                    sc,
                    args: n.args,
                };
                p.on_notif(&call, &mut NotifView { tid: n.tid })
            }
            _ => Reply::Return(-(libc::ENOSYS as i64)),
        };
        answer(fd, &n, reply);
    }
}

fn answer(fd: i32, n: &Notif, reply: Reply) {
    const CONTINUE: u32 = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    let sent = match reply {
        Reply::Continue => sys::notif_send(fd, n.id, 0, 0, CONTINUE),
        Reply::Return(v) if v < 0 => sys::notif_send(fd, n.id, 0, v as i32, 0),
        Reply::Return(v) => sys::notif_send(fd, n.id, v, 0, 0),
        Reply::WriteReturn { ret, writes } => {
            // The tid is only known to be the caller while the call waits.
            if !sys::notif_id_valid(fd, n.id) {
                return;
            }
            let mut failed = None;
            for w in &writes {
                if let Err(e) = sys::vm_write(n.tid, w.addr, &w.bytes) {
                    failed = Some(e.guest_errno());
                    break;
                }
            }
            match failed {
                Some(e) => sys::notif_send(fd, n.id, 0, -(e as i32), 0),
                None if ret < 0 => sys::notif_send(fd, n.id, 0, ret as i32, 0),
                None => sys::notif_send(fd, n.id, ret, 0, 0),
            }
        }
    };
    match sent {
        // ENOENT: the call was interrupted (restarted later) or its thread
        // died; nothing to do.
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => tracing::warn!("seccomp listener: answer to {}: {e}", n.tid),
    }
}

/// A waiting thread seen from the listener's thread: it is blocked in the
/// call, not in a ptrace stop, so its memory is reached with
/// process_vm_readv and its fds through pidfd_getfd.
struct NotifView {
    tid: Tid,
}

impl TraceeView for NotifView {
    fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>> {
        crate::remote::read_cstr(self.tid, crate::remote::RemotePtr::new(addr), max).ok()
    }
    fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        crate::remote::read_bytes(self.tid, addr, len).ok()
    }
    fn cwd(&mut self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/cwd", self.tid)).ok()
    }
    fn fd_path(&mut self, fd: i32) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/fd/{fd}", self.tid)).ok()
    }
    fn dup_fd(&mut self, fd: i32) -> Option<OwnedFd> {
        sys::dup_thread_fd(self.tid, fd).ok()
    }
}
