//! The supervisor's own signals and job control.
//!
//! The supervisor shares its process group with the first tracee, so the
//! terminal's SIGINT, SIGQUIT and SIGTSTP reach the program directly; the
//! supervisor ignores them and lets the program decide. SIGTERM, SIGHUP and
//! SIGUSR1 sent to the supervisor itself (by `timeout`, a closing terminal,
//! a service manager) are forwarded to the first process. When the first
//! process enters a group-stop while the supervisor is in the terminal's
//! foreground process group (Ctrl-Z), the supervisor stops too, so that the
//! shell that started it sees a stopped job; the shell's SIGCONT (`fg`)
//! wakes both.
//!
//! SIGUSR2 sent to the supervisor by a user (kill(2)) asks for a
//! checkpoint of the group (`freeze`); the supervisor's own SIGUSR2
//! (tgkill(2) from an API thread) only wakes the event loop.

use crate::error::{Error, Result};
use crate::sys::Tid;
use std::sync::atomic::{AtomicU64, Ordering};

static PENDING: AtomicU64 = AtomicU64::new(0);
static TIMER_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const FORWARDED: [i32; 3] = [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];
const IGNORED: [i32; 5] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

extern "C" fn on_signal(sig: libc::c_int) {
    PENDING.fetch_or(1 << sig, Ordering::SeqCst);
}

static CHECKPOINT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_usr2(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // si_pid is valid for SI_USER and SI_TKILL; getpid is async-signal-safe.
    let own_wake =
        unsafe { (*info).si_code == libc::SI_TKILL && (*info).si_pid() == libc::getpid() };
    if !own_wake {
        CHECKPOINT.store(true, Ordering::SeqCst);
    }
}

/// Whether a user sent SIGUSR2 since the last call.
pub fn take_checkpoint_signal() -> bool {
    CHECKPOINT.swap(false, Ordering::SeqCst)
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    TIMER_ARMED.store(false, Ordering::SeqCst);
}

/// Keeps a one-shot timer pending while `wanted`, so that a blocking
/// waitpid returns EINTR within one sweep period.
pub fn arm_sweep_timer(wanted: bool) {
    if !wanted || TIMER_ARMED.swap(true, Ordering::SeqCst) {
        return;
    }
    let period = crate::placement::SWEEP;
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: period.as_secs() as libc::time_t,
            tv_usec: period.subsec_micros() as libc::suseconds_t,
        },
    };
    // SAFETY: setitimer reads one live itimerval; no old value is requested.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
}

/// The write end of [`notify_on_signal`]'s pipe, or -1.
static NOTIFY_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_notify(sig: libc::c_int) {
    let fd = NOTIFY_FD.load(Ordering::SeqCst);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; it reads one byte of a live
    // local. A full pipe (EAGAIN, the fd is non-blocking) only means an
    // earlier signal is still unread, which asks for the same thing.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Turns `sig` sent to the supervisor into a byte on the returned pipe,
/// for a thread that acts on it (the `--migrate-to*` trigger, SIGPWR).
/// SA_RESTART: the tracer's waitpid need not notice. One signal per
/// process: a second call is refused with EBUSY.
pub fn notify_on_signal(sig: i32) -> Result<std::fs::File> {
    let (rx, tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| Error::Setup {
            op: "pipe2".into(),
            errno,
        })?;
    let flags = nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&tx, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|errno| Error::Setup {
        op: "fcntl(O_NONBLOCK)".into(),
        errno,
    })?;
    use std::os::fd::IntoRawFd;
    let raw = tx.into_raw_fd();
    if NOTIFY_FD
        .compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: `raw` came from into_raw_fd above and is ours alone.
        unsafe { libc::close(raw) };
        return Err(Error::Setup {
            op: format!("a second handler for signal {sig}"),
            errno: nix::errno::Errno::EBUSY,
        });
    }
    set_handler(sig, on_notify as *const () as usize, libc::SA_RESTART)?;
    Ok(std::fs::File::from(rx))
}

pub struct JobControl {
    tty: Option<i32>,
}

impl JobControl {
    pub fn install(_root: Tid) -> Result<JobControl> {
        for sig in IGNORED {
            set_handler(sig, libc::SIG_IGN, 0)?;
        }
        // No SA_RESTART: the blocking waitpid returns EINTR so the loop
        // forwards the signal at once.
        for sig in FORWARDED {
            set_handler(sig, on_signal as *const () as usize, 0)?;
        }
        set_handler(
            crate::freeze::WAKE_SIGNAL,
            on_usr2 as *const () as usize,
            libc::SA_SIGINFO,
        )?;
        // SIGALRM only interrupts waitpid for the placement sweep.
        set_handler(libc::SIGALRM, on_alarm as *const () as usize, 0)?;
        // SAFETY: isatty only inspects the fd.
        let tty = (0..3).find(|&fd| unsafe { libc::isatty(fd) } == 1);
        Ok(JobControl { tty })
    }

    pub fn forward_pending(&self, root: Tid) {
        let mask = PENDING.swap(0, Ordering::SeqCst);
        for sig in FORWARDED {
            if mask & (1 << sig) != 0 {
                // SAFETY: plain kill(2) with integer arguments.
                unsafe { libc::kill(root, sig) };
            }
        }
    }

    /// Stops the supervisor if it runs in the terminal's foreground.
    pub fn mirror_stop(&self) {
        let Some(fd) = self.tty else { return };
        // SAFETY: tcgetpgrp/getpgrp/raise take and return plain integers.
        unsafe {
            if libc::tcgetpgrp(fd) == libc::getpgrp() {
                libc::raise(libc::SIGSTOP);
            }
        }
    }
}

fn set_handler(sig: i32, handler: usize, flags: i32) -> Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler is SIG_IGN or an async-signal-safe extern "C" fn.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc == -1 {
        return Err(Error::Setup {
            op: format!("sigaction({sig})"),
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}
