//! The pause of a copy-before-write snapshot (wp): what the target did
//! since the arming is protected again, what the arming does not cover is
//! scanned, and from then on pages are copied before writes.

use super::serve::drain;
use super::{private_anonymous, protectable, retry_eagain, WpCopy};
use crate::dump::memory::skip_reason;
use crate::dump::ranges::Ranges;
use crate::error::{Error, Result};
use crate::model::Vma;
use crate::precopy::sys;
use crate::PAGE_SIZE;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

impl WpCopy {
    /// At the pause (the process fully stopped, `vmas` its mappings now):
    /// reads the faults and mmap changes queued, protects again the pages
    /// let through since [`WpCopy::prearm`], registers, scans and protects
    /// what the prearm does not cover (mappings made, moved or grown
    /// since, ranges the target unmapped or madvised, shmem), notes the
    /// present pages, reads the writable mappings that cannot be
    /// protected, and from then on copies pages before writes.
    pub fn seal(&mut self, vmas: &[Vma]) -> Result<()> {
        let pid = self.shared.pid;
        // The process held now may run another program than at the
        // first hold, whose mm this uffd belongs to.
        self.check_mm("between the first hold and the pause")?;
        // Every thread is stopped: the target's faults and changes are
        // all queued by now (a thread waiting in a fault was interrupted
        // and faults again once released).
        let (covered, dirty) = {
            let mut state = self.shared.lock();
            drain(&self.shared, &mut state);
            (state.covered.clone(), std::mem::take(&mut state.dirty))
        };
        let mut plan = Seal {
            copy_budget: COPY_IN_PAUSE,
            ..Seal::default()
        };
        for v in vmas.iter().filter(|v| skip_reason(v).is_none()) {
            if !private_anonymous(v) || !self.register(v, !covered.covers(v.start, v.end)) {
                self.seal_whole(v, &mut plan)?;
                continue;
            }
            // What the prearm did not protect and note (mapped, moved or
            // grown since), and what the target's mmap changes touched.
            let mut rescan = Ranges::default();
            for (s, e) in covered.gaps(v.start, v.end) {
                rescan.insert(s, e);
            }
            for (s, e) in dirty.within(v.start, v.end) {
                rescan.insert(s, e);
            }
            plan.protected.insert(v.start, v.end);
            for (s, e) in rescan.iter() {
                let runs = plan
                    .scan(&self.pagemap, s, e, false)
                    .map_err(|e| crate::dump::vanished(pid, "pagemap", e))?;
                plan.copy_or_protect(runs);
            }
        }
        // Sealed before the protection below, and without holding the
        // state while protecting: an EAGAIN (an mmap change of a CLONE_VM
        // sibling being reported) needs the fault thread to read it.
        let touched = {
            let mut state = self.shared.lock();
            for &(s, e) in &plan.rescanned {
                state.present.remove(s, e);
            }
            for (s, e) in plan.present.iter() {
                state.present.insert(s, e);
            }
            self.present = std::mem::take(&mut state.present);
            let mut pending = Ranges::default();
            for (s, e) in plan.protected.iter() {
                for (s, e) in self.present.within(s, e) {
                    pending.insert(s, e);
                }
            }
            state.pending = pending;
            state.sealed = true;
            std::mem::take(&mut state.touched)
        };
        self.report.present_bytes = self.present.bytes();
        self.report.protected_bytes = plan.protected.bytes();
        let touched: Vec<_> = plan
            .protected
            .iter()
            .flat_map(|(s, e)| touched.within(s, e))
            .collect();
        self.report.touched_before_pause_bytes = touched.iter().map(|(s, e)| e - s).sum();
        let again = touched.into_iter().chain(plan.written.iter().copied());
        for (s, e) in again {
            retry_eagain(|| sys::uffd_writeprotect(&self.shared.uffd, s, e - s)).map_err(
                |err| Error::Torn {
                    pid,
                    why: format!("write-protecting {s:#x}-{e:#x} at the pause: {err}"),
                },
            )?;
        }
        let mut store = HashMap::new();
        for (s, e) in std::mem::take(&mut plan.unprotected) {
            self.report.read_in_pause_bytes += e - s;
            read_into(&self.mem, s, e, &mut store)
                .map_err(|e| crate::dump::vanished(pid, "mem", e))?;
        }
        for (s, e) in std::mem::take(&mut plan.copied) {
            self.report.copied_in_pause_bytes += e - s;
            read_into(&self.mem, s, e, &mut store)
                .map_err(|e| crate::dump::vanished(pid, "mem", e))?;
        }
        self.shared.lock().store.extend(store);
        Ok(())
    }

    /// Registers `v` when `needed` (in missing mode too when private
    /// anonymous; again is a no-op where it is): whether it is.
    fn register(&mut self, v: &Vma, needed: bool) -> bool {
        if !needed {
            return true;
        }
        let missing = private_anonymous(v);
        match sys::uffd_register(&self.shared.uffd, v.start, v.len(), missing, true) {
            Ok(()) => {
                self.registered.push((v.start, v.len()));
                true
            }
            Err(e) => {
                let pid = self.shared.pid;
                tracing::debug!("pid {pid}: {:#x}-{:#x}: {e}", v.start, v.end);
                false
            }
        }
    }

    /// At the pause, a shmem mapping, or one that cannot be registered:
    /// registered (again: a no-op where it is) and scanned whole, or read
    /// during the pause when it cannot be protected and can be written.
    fn seal_whole(&mut self, v: &Vma, plan: &mut Seal) -> Result<()> {
        let pid = self.shared.pid;
        let registered = protectable(v) && !private_anonymous(v) && self.register(v, true);
        if registered {
            plan.protected.insert(v.start, v.end);
            plan.scan(&self.pagemap, v.start, v.end, true)
                .map_err(|e| crate::dump::vanished(pid, "pagemap", e))?;
            return Ok(());
        }
        let runs = plan
            .scan(&self.pagemap, v.start, v.end, false)
            .map_err(|e| crate::dump::vanished(pid, "pagemap", e))?;
        if v.writable() || v.shared() {
            let runs = runs.into_iter().map(|(s, e, _)| (s, e));
            let why = if protectable(v) {
                "registration refused (another userfaultfd?)"
            } else {
                "private file mapping (sync write-protection is for anonymous and shmem mappings)"
            };
            self.report
                .read_in_pause
                .push(format!("{:#x}-{:#x} {}: {why}", v.start, v.end, v.path));
            plan.unprotected.extend(runs);
        } else {
            self.report.unprotected_read_only += 1;
        }
        Ok(())
    }
}

/// [start, end) ranges of pages present or swapped, by PAGEMAP_SCAN, each
/// with whether it lacks the uffd-wp bit (PAGE_IS_WRITTEN: not protected).
pub(super) fn present_runs(
    pagemap: &OwnedFd,
    start: u64,
    end: u64,
) -> io::Result<Vec<(u64, u64, bool)>> {
    let mut out = Vec::new();
    let mut regions = vec![sys::PageRegion::default(); 512];
    let any = sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED;
    let mut at = start;
    while at < end {
        let (n, walk_end) = sys::pagemap_scan_masks(
            pagemap,
            (at, end),
            0,
            (0, any),
            sys::PAGE_IS_WRITTEN,
            &mut regions,
        )?;
        out.extend(
            regions[..n]
                .iter()
                .map(|r| (r.start, r.end, r.categories & sys::PAGE_IS_WRITTEN != 0)),
        );
        if n < regions.len() || walk_end <= at {
            break;
        }
        at = walk_end;
    }
    Ok(out)
}

/// Reads [start, end) page by page into `store` (pages the kernel will
/// not read are left out, as memory.rs leaves them out).
fn read_into(
    mem: &File,
    start: u64,
    end: u64,
    store: &mut HashMap<u64, Box<[u8]>>,
) -> io::Result<()> {
    for page in (start..end).step_by(PAGE_SIZE as usize) {
        let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
        match mem.read_at(&mut buf, page) {
            Ok(n) if n == buf.len() => {
                store.insert(page, buf);
            }
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EFAULT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
/// How many bytes of pages the arming did not see (mapped since, or in
/// ranges the target unmapped or madvised since) the pause copies rather
/// than protects: a short-lived buffer (a large malloc is an mmap) that the
/// target unmaps just after the pause, before the dump reads it, would
/// otherwise tear the snapshot. Reading 2 MiB costs the pause about 1 ms.
const COPY_IN_PAUSE: u64 = 2 << 20;

/// What the pause scanned and must protect or read.
#[derive(Default)]
struct Seal {
    /// Mappings registered and write-protected at the pause.
    protected: Ranges,
    /// Ranges scanned again, and the pages present in them.
    rescanned: Vec<(u64, u64)>,
    present: Ranges,
    /// Pages present without protection, to protect.
    written: Vec<(u64, u64)>,
    /// Pages of writable mappings that cannot be protected, read now.
    unprotected: Vec<(u64, u64)>,
    /// Pages the arming did not see, copied now (within `copy_budget`).
    copied: Vec<(u64, u64)>,
    copy_budget: u64,
}

impl Seal {
    /// Scans [start, end) (of a mapping registered when `protect`),
    /// noting what is present and what needs protecting; returns the
    /// present runs, each with whether it lacks protection.
    fn scan(
        &mut self,
        pagemap: &OwnedFd,
        start: u64,
        end: u64,
        protect: bool,
    ) -> io::Result<Vec<(u64, u64, bool)>> {
        let runs = present_runs(pagemap, start, end)?;
        self.rescanned.push((start, end));
        for &(s, e, written) in &runs {
            self.present.insert(s, e);
            if protect && written {
                self.written.push((s, e));
            }
        }
        Ok(runs)
    }

    /// Pages of a registered mapping the arming did not see: copied now
    /// while the budget lasts, else protected (those not protected yet).
    fn copy_or_protect(&mut self, runs: Vec<(u64, u64, bool)>) {
        let bytes: u64 = runs.iter().map(|&(s, e, _)| e - s).sum();
        if bytes <= self.copy_budget {
            self.copy_budget -= bytes;
            self.copied.extend(runs.into_iter().map(|(s, e, _)| (s, e)));
        } else {
            self.written
                .extend(runs.into_iter().filter(|r| r.2).map(|(s, e, _)| (s, e)));
        }
    }
}
