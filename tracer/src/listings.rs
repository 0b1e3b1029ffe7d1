//! Lazy listings: getdents64 left untrapped while the policy allows it.
//!
//! Under isolation a directory listing needs the supervisor only for a
//! directory of the environment (the private layer has it: merged, or
//! private only). A group that has not changed its environment and has
//! not opened one of its directories can list only host directories,
//! whose kernel listing is already the merged one; `find /usr` makes two
//! getdents64 calls per directory, a third of its stops. So a group may
//! start with a filter that leaves getdents64 untrapped
//! (`FilterConfig::lazy_listings`). When the policy says listings must be
//! trapped ([`crate::Policy::listings_must_trap`], asked after each
//! `on_entry`), each process of the group gets a second filter that traps
//! getdents64 ([`crate::filter::listing_filter`]): the asking call's
//! process before that call goes on, every other one at once through an
//! interrupt stop (supervisor.rs), or at its next trapped call if that
//! stop could not take it. A filter cannot be removed: from then on the
//! process traps its listings, as do the children it forks (filters are
//! inherited; a child is given its own anyway at its first trapped call,
//! as it may have been forked before the filter came: two identical
//! filters cost nothing the kernel's action cache does not absorb).
//!
//! The filter is installed by injected syscalls at a seccomp stop
//! (inject.rs): seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC)
//! puts it on every thread of the process at once, with the program
//! written below the thread's stack red zone (as attach.rs does). seccomp
//! needs no_new_privs or CAP_SYS_ADMIN: a process that has neither (a
//! root-started group whose process dropped its capabilities) first gets
//! prctl(PR_SET_NO_NEW_PRIVS), which it keeps.

use crate::error::Result;
use crate::inject::{self, Injected};
use crate::remote::MemFile;
use crate::sys::Tid;
use isotrace_arch::native::Regs;
use isotrace_arch::RegAccess;
use std::collections::HashSet;

/// Where a group's listings stand.
#[derive(Debug, Default)]
pub enum Listings {
    /// The first filter traps getdents64 (the default, restores, attach).
    #[default]
    Trapped,
    /// getdents64 is untrapped everywhere, and may stay so.
    Lazy,
    /// Listings must be trapped: these processes have the listing filter.
    Switched { filtered: HashSet<Tid> },
}

impl Listings {
    pub fn new(lazy: bool) -> Listings {
        if lazy {
            Listings::Lazy
        } else {
            Listings::Trapped
        }
    }

    pub fn is_lazy(&self) -> bool {
        matches!(self, Listings::Lazy)
    }

    /// From now on every process must trap its listings.
    pub fn switch(&mut self) {
        if self.is_lazy() {
            *self = Listings::Switched {
                filtered: HashSet::new(),
            };
        }
    }

    /// Whether process `pid` must get the listing filter before its
    /// current call goes on.
    pub fn due(&self, pid: Tid) -> bool {
        matches!(self, Listings::Switched { filtered } if !filtered.contains(&pid))
    }

    pub fn filtered(&mut self, pid: Tid) {
        if let Listings::Switched { filtered } = self {
            filtered.insert(pid);
        }
    }

    /// Process `pid` is gone: a process that gets its number later is
    /// another one.
    pub fn gone(&mut self, pid: Tid) {
        if let Listings::Switched { filtered } = self {
            filtered.remove(&pid);
        }
    }
}

/// What one step of [`install_step`] did.
pub enum Step {
    /// The filter is in place for every thread of the process.
    Installed,
    /// no_new_privs was set first; the filter comes at the next stop.
    NoNewPrivs,
    /// The kernel refused (errno, or the tid of a thread whose filters
    /// differ, for TSYNC): the process goes on without it.
    Refused(i64),
    /// The tracee stopped for something else or died meanwhile (wait
    /// status).
    Interrupted(i32),
}

/// One injected syscall toward the listing filter in `tid`'s process;
/// `tid` is in a seccomp stop with registers `saved`. Afterwards the
/// tracee is back at its own call's entry, rewound (inject.rs): resuming
/// it issues that call again.
pub fn install_step(tid: Tid, pid: Tid, saved: &Regs) -> Result<Step> {
    if needs_no_new_privs(pid) {
        let nnp = libc::PR_SET_NO_NEW_PRIVS as u64;
        return Ok(
            match inject::at_entry(tid, saved, libc::SYS_prctl as u64, [nnp, 1, 0, 0, 0, 0])? {
                Injected::Returned(0) => Step::NoNewPrivs,
                Injected::Returned(r) => Step::Refused(r),
                Injected::Interrupted(s) => Step::Interrupted(s),
            },
        );
    }
    let (base, blob) =
        crate::attach::fprog_below_stack(&crate::filter::listing_filter(), saved.sp());
    MemFile::open(pid)?.write(tid, base, &blob)?;
    let args = [
        libc::SECCOMP_SET_MODE_FILTER as u64,
        libc::SECCOMP_FILTER_FLAG_TSYNC,
        base,
        0,
        0,
        0,
    ];
    Ok(
        match inject::at_entry(tid, saved, libc::SYS_seccomp as u64, args)? {
            Injected::Returned(0) => Step::Installed,
            Injected::Returned(r) => Step::Refused(r),
            Injected::Interrupted(s) => Step::Interrupted(s),
        },
    )
}

/// capability(7) number.
const CAP_SYS_ADMIN: u32 = 21;

/// seccomp(2) without CAP_SYS_ADMIN (in the process's user namespace)
/// needs no_new_privs.
pub(crate) fn needs_no_new_privs(pid: Tid) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let nnp = field("NoNewPrivs:").is_some_and(|v| v == "1");
    let admin = field("CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0);
    !nnp && !admin
}
