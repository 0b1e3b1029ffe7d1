//! Arming a copy-before-write snapshot (wp): a first, short hold makes
//! each process's userfaultfd; then, while the target runs, its mappings
//! are registered and write-protected, and their pages present noted.

use super::seal::present_runs;
use super::{chunks, private_anonymous, protectable, retry_eagain, WpCopy};
use crate::dump::memory::skip_reason;
use crate::dump::procfs::{hex_field, parse_maps, parse_status};
use crate::dump::snapshot::Method;
use crate::dump::{Frozen, Options, ProcDir};
use crate::error::Result;
use crate::model::Vma;
use crate::precopy::sys;
use std::collections::HashMap;
use std::io;
use std::time::Instant;

impl WpCopy {
    /// While the target runs, before the snapshot's pause: registers and
    /// write-protects every mapping that takes it, private anonymous ones
    /// in missing mode too, and notes their pages present. Until the pause
    /// the fault thread only lets accesses through (un-protects a written
    /// page, maps the zero page for a missing one) and notes each page
    /// ([`State::touched`]; the snapshot's moment has not come), and the
    /// target's mmap changes: at the pause only those pages are protected
    /// again ([`WpCopy::seal`]), which costs what the target did since,
    /// not its size.
    pub fn prearm(&mut self, vmas: &[Vma]) {
        let pid = self.shared.pid;
        let uffd = &self.shared.uffd;
        for v in vmas
            .iter()
            .filter(|v| skip_reason(v).is_none() && protectable(v))
        {
            let missing = private_anonymous(v);
            // Noted before registering: an unmap reported from then on
            // takes it out again (serve.rs, handle).
            if missing {
                self.shared.lock().covered.insert(v.start, v.end);
            }
            let armed = sys::uffd_register(uffd, v.start, v.len(), missing, true)
                .inspect(|()| self.registered.push((v.start, v.len())))
                .and_then(|()| {
                    chunks(v.start, v.end).try_for_each(|(s, e)| {
                        retry_eagain(|| sys::uffd_writeprotect(uffd, s, e - s))
                    })
                })
                .and_then(|()| {
                    if missing {
                        self.note_present(v)
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = armed {
                tracing::debug!("pid {pid}: {:#x}-{:#x}: {e}", v.start, v.end);
                self.shared.lock().covered.remove(v.start, v.end);
            }
        }
    }

    /// Notes the pages of `v` present or swapped now (after its
    /// protection: a page mapped or written since was reported).
    fn note_present(&self, v: &Vma) -> io::Result<()> {
        for (s, e) in chunks(v.start, v.end) {
            let runs = present_runs(&self.pagemap, s, e)?;
            let mut state = self.shared.lock();
            for (s, e, _) in runs {
                state.present.insert(s, e);
            }
        }
        Ok(())
    }
}

/// Copy-before-write prepared while the targets run: one short
/// hold makes each process's userfaultfd, then its memory is
/// write-protected while it runs, so that the pause only seals it.
#[derive(Default)]
pub(in crate::dump) struct Prearmed {
    /// None for the fork method.
    pub(in crate::dump) method: Option<Method>,
    pub(in crate::dump) copies: HashMap<i32, WpCopy>,
    pub(in crate::dump) unavailable: HashMap<i32, String>,
    /// The first hold, from its first seize to its last detach.
    pub(in crate::dump) pause_us: u64,
}

pub(in crate::dump) fn prearm(
    pid: i32,
    opts: &Options,
    method: Method,
    t_start: Instant,
) -> Result<Prearmed> {
    let frozen = Frozen::freeze(pid, opts.tree)?;
    let mut out = Prearmed {
        method: Some(method),
        ..Prearmed::default()
    };
    let mut layouts = Vec::new();
    for &p in frozen.pids() {
        let threads: Vec<_> = frozen.threads_of(p).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            continue;
        }
        let proc = ProcDir::of(&frozen, p)?;
        let vmas = parse_maps(&proc.text("maps")?);
        let status = parse_status(&proc.text("status")?);
        if let Some(why) = refused(&status) {
            out.unavailable.insert(p, why);
            continue;
        }
        let caught = hex_field(&status, "SigCgt");
        match WpCopy::open(&threads, &vmas, caught)? {
            Ok(copy) => {
                out.copies.insert(p, copy);
                layouts.push((p, vmas));
            }
            Err(why) => {
                out.unavailable.insert(p, why);
            }
        }
    }
    frozen.release();
    out.pause_us = t_start.elapsed().as_micros() as u64;
    for (p, vmas) in layouts {
        if let Some(copy) = out.copies.get_mut(&p) {
            copy.prearm(&vmas);
        }
    }
    Ok(out)
}
/// CAP_SYS_PTRACE's bit in /proc's CapEff (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u64 = 1 << 19;

/// Why userfaultfd(2) without UFFD_USER_MODE_ONLY would be refused in the
/// process whose /proc status is `status`, known without asking it: the
/// kernel wants vm.unprivileged_userfaultfd=1 or CAP_SYS_PTRACE
/// (fs/userfaultfd.c, userfaultfd_syscall_allowed). A capability held only
/// in a user namespace passes this test and is refused by the call.
fn refused(status: &HashMap<String, String>) -> Option<String> {
    let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    let caps = hex_field(status, "CapEff");
    (!sysctl && caps & CAP_SYS_PTRACE == 0).then(|| {
        "userfaultfd(2) for kernel-mode faults needs CAP_SYS_PTRACE in the process or vm.unprivileged_userfaultfd=1 (with UFFD_USER_MODE_ONLY its syscalls would fail with EFAULT on protected pages)".into()
    })
}
