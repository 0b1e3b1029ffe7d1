//! Pre-copy (#6): memory is sent while the group runs, in rounds, and
//! only what was written since goes after the freeze.
//!
//! Round 0 tracks every writable mapping ([`tracker`]: userfaultfd
//! write-protection in async mode, PAGEMAP_SCAN) and sends every page the
//! dump would capture. Each later round sends the pages written since the
//! previous one, plus every page of mappings that appeared meanwhile or
//! were replaced in place (munmap + mmap MAP_FIXED, which drops the
//! registration): they count as wholly dirty. Rounds stop when the dirty set stops
//! shrinking, or after [`MAX_ROUNDS`]. After the freeze, [`PreCopy::clean`]
//! says which pages the receiver already holds as they are now; the image
//! then carries only the others (see `stream::transfer`).
//!
//! The frozen dump does not read the pages the receiver holds
//! ([`PreCopy::clean`], `dump::checkpoint::dump_tcp_holding`): that is the
//! point of pre-copy, as the freeze then costs the dirty set only. So the
//! copy's correctness rests on the write tracking (the kernel's uffd-wp,
//! as CRIU's and QEMU's rest on theirs), and the authenticity of the held
//! pages on [`group::GroupPreCopy::sent_digest`]: a BLAKE3 over every PrePages
//! payload, which the source commits to in a tagged frame (STREAM.md).
//!
//! Shared mappings (MAP_SHARED anonymous memory, memfd, SysV) are neither
//! tracked nor sent: uffd-wp lives in this process's page table, so a
//! write through another process's mapping of the same page would leave
//! it looking clean here. They are read whole at the freeze, in every
//! process that maps them.
//!
//! A group of several processes has one [`PreCopy`] per process (per
//! address space), driven together by [`group::GroupPreCopy`].
//!
//! This kernel has no CONFIG_MEM_SOFT_DIRTY; [`soft_dirty_works`] probes
//! for it so the mode can be named, but tracking uses uffd-wp only.

pub mod group;
pub mod inject;
pub mod sys;
pub mod tracker;

use crate::dump::memory::skip_reason;
use crate::dump::procfs::parse_maps;
use crate::model::Vma;
use crate::pageset::PageSet;
use crate::PAGE_SIZE;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;
use tracker::{vma_key, WpTracker};

/// Rounds after the first, at most.
pub const MAX_ROUNDS: usize = 8;
/// A dirty set this small is sent after the freeze rather than chased.
pub const SMALL_SET: u64 = 64;
/// The name of the mode, for reports.
pub const MODE_UFFD_WP: &str = "pre-copy (userfaultfd write-protect async + PAGEMAP_SCAN)";

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
/// Bytes read and sent at once.
const CHUNK_PAGES: u64 = 256;

#[derive(Clone, Debug)]
pub struct Round {
    pub pages: u64,
    pub bytes: u64,
    pub ms: f64,
}

/// One process being pre-copied.
pub struct PreCopy {
    pub pid: i32,
    tracker: WpTracker,
    mem: File,
    pagemap: File,
    /// Pages whose current contents the receiver holds.
    clean: PageSet,
    /// Read-only mappings sent whole in round 0.
    sent_read_only: HashSet<tracker::Key>,
    /// The process itself: a pid may be reused once it exits.
    pidfd: OwnedFd,
    pub rounds: Vec<Round>,
}

fn proc_io(pid: i32, name: &str) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("/proc/{pid}/{name}: {e}"))
}

impl PreCopy {
    /// Starts tracking `pid` through `uffd`, a userfaultfd of its mm
    /// (from [`inject::open_uffd`]).
    pub fn start(pid: i32, uffd: OwnedFd) -> io::Result<PreCopy> {
        Ok(PreCopy {
            pid,
            tracker: WpTracker::new(pid, uffd)?,
            mem: File::open(format!("/proc/{pid}/mem")).map_err(proc_io(pid, "mem"))?,
            pagemap: File::open(format!("/proc/{pid}/pagemap")).map_err(proc_io(pid, "pagemap"))?,
            clean: PageSet::new(),
            sent_read_only: HashSet::new(),
            pidfd: sys::pidfd_open(pid).map_err(proc_io(pid, "pidfd"))?,
            rounds: Vec::new(),
        })
    }

    fn maps(&self) -> io::Result<Vec<Vma>> {
        let text = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(proc_io(self.pid, "maps"))?;
        Ok(parse_maps(&text)
            .into_iter()
            .filter(|v| skip_reason(v).is_none() && !v.shared())
            .collect())
    }

    /// Why this tracking no longer describes the process, if it does not:
    /// it exited (its pidfd says so; an error counts, as nothing more can
    /// be known of it), or it ran execve(2) and has another mm. Our
    /// /proc/PID/mem and pagemap hold the mm they were opened on; once
    /// it has no users, a read of mem returns 0 bytes (fs/proc/base.c,
    /// mem_rw: mmget_not_zero fails), where a live mm answers EIO for
    /// the unmapped address 0.
    pub fn gone(&self) -> Option<&'static str> {
        if sys::pidfd_exited(&self.pidfd).unwrap_or(true) {
            return Some("exited");
        }
        match self.mem.read_at(&mut [0u8; 1], 0) {
            Ok(0) => Some("ran execve(2)"),
            _ => None,
        }
    }

    /// Present (or swapped) pages of [start, end), as runs.
    fn present(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut buf = vec![0u8; 8 * 4096];
        let mut page = start;
        while page < end {
            let n = ((end - page) / PAGE_SIZE).min(4096);
            let bytes = &mut buf[..(n * 8) as usize];
            self.pagemap
                .read_exact_at(bytes, page / PAGE_SIZE * 8)
                .map_err(proc_io(self.pid, "pagemap"))?;
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_ne_bytes(e.try_into().expect("8 bytes"));
                if e & (PM_PRESENT | PM_SWAPPED) != 0 {
                    push_page(&mut runs, page + i as u64 * PAGE_SIZE);
                }
            }
            page += n * PAGE_SIZE;
        }
        Ok(runs)
    }

    /// Reads the runs and hands them to `send` (address, bytes); pages the
    /// kernel will not read are left out (and stay unclean).
    fn copy(
        &mut self,
        runs: &[(u64, u64)],
        send: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut buf = vec![0u8; (CHUNK_PAGES * PAGE_SIZE) as usize];
        let mut sent = 0;
        for &(addr, pages) in runs {
            let mut at = 0;
            while at < pages {
                let n = (pages - at).min(CHUNK_PAGES);
                let a = addr + at * PAGE_SIZE;
                let b = &mut buf[..(n * PAGE_SIZE) as usize];
                if self.mem.read_exact_at(b, a).is_ok() {
                    send(a, b)?;
                    self.clean.insert(a, n);
                    sent += n;
                }
                at += n;
            }
        }
        Ok(sent)
    }

    /// One round while the process runs; returns its pages.
    pub fn round(&mut self, send: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<u64> {
        let t = Instant::now();
        if let Some(why) = self.gone() {
            return Err(io::Error::other(format!("pid {}: {why}", self.pid)));
        }
        let maps = self.maps()?;
        // Dirty pages first (scanning protects them again), then newly
        // tracked mappings (protected before they are read): a write after
        // either is seen by the next scan.
        let mut todo = self.tracker.dirty(&maps)?;
        for &(a, n) in &todo {
            self.clean.remove(a, n);
        }
        let new: Vec<Vma> = self.tracker.track(&maps).into_iter().cloned().collect();
        let first = self.rounds.is_empty();
        for v in &maps {
            let fresh = new.iter().any(|n| vma_key(n) == vma_key(v));
            if first && !v.writable() {
                self.sent_read_only.insert(vma_key(v));
            } else if !fresh {
                continue;
            }
            todo.extend(self.present(v.start, v.end)?);
        }
        let pages = self.copy(&todo, send)?;
        self.rounds.push(Round {
            pages,
            bytes: pages * PAGE_SIZE,
            ms: t.elapsed().as_secs_f64() * 1000.0,
        });
        Ok(pages)
    }

    /// Whether another round is worth it: the last one was not small and
    /// sent fewer pages than the one before.
    pub fn converging(&self) -> bool {
        let n = self.rounds.len();
        if n > MAX_ROUNDS {
            return false;
        }
        match self.rounds.as_slice() {
            [] | [_] => true,
            [.., a, b] => b.pages > SMALL_SET && b.pages < a.pages,
        }
    }

    /// After the freeze: the pages the receiver holds as they are now.
    /// Pages written since the last round, and every page of a mapping
    /// that is not one tracked (new, changed, or never registered), are
    /// not clean.
    ///
    /// The tracking stays armed: dropping the `PreCopy` closes its
    /// userfaultfd, which unregisters every range and clears the
    /// write-protect bit of every page (userfaultfd_release walks all of
    /// the tracked memory: tens of ms per GiB), so the caller drops it
    /// after the downtime, not inside it.
    pub fn clean(&mut self) -> io::Result<PageSet> {
        let maps = self.maps()?;
        for (a, n) in self.tracker.dirty(&maps)? {
            self.clean.remove(a, n);
        }
        let tracked: Vec<(u64, u64)> = maps
            .iter()
            .filter(|v| self.tracker.is_tracked(v) || self.sent_read_only.contains(&vma_key(v)))
            .map(|v| (v.start, v.end))
            .collect();
        self.clean.retain_within(&tracked);
        Ok(std::mem::take(&mut self.clean))
    }
}

fn push_page(runs: &mut Vec<(u64, u64)>, addr: u64) {
    match runs.last_mut() {
        Some((a, p)) if *a + *p * PAGE_SIZE == addr => *p += 1,
        _ => runs.push((addr, 1)),
    }
}

/// Whether soft-dirty tracking works here (/proc/PID/clear_refs "4", then
/// pagemap bit 55; Documentation/admin-guide/mm/soft-dirty.rst): a kernel
/// without CONFIG_MEM_SOFT_DIRTY accepts the write but never sets the bit.
pub fn soft_dirty_works() -> bool {
    const PM_SOFT_DIRTY: u64 = 1 << 55;
    let mut page = vec![0u8; 2 * PAGE_SIZE as usize];
    let addr = (page.as_ptr() as u64).next_multiple_of(PAGE_SIZE);
    let off = (addr - page.as_ptr() as u64) as usize;
    let bit = || -> Option<bool> {
        let f = File::open("/proc/self/pagemap").ok()?;
        let mut e = [0u8; 8];
        f.read_exact_at(&mut e, addr / PAGE_SIZE * 8).ok()?;
        Some(u64::from_ne_bytes(e) & PM_SOFT_DIRTY != 0)
    };
    page[off] = 1;
    if std::fs::write("/proc/self/clear_refs", "4").is_err() || bit() != Some(false) {
        return false;
    }
    page[off] = 2;
    std::hint::black_box(&page);
    bit() == Some(true)
}
