//! Dirty-page tracking with userfaultfd write-protection in async mode
//! (Documentation/admin-guide/mm/userfaultfd.rst, "Write Protect
//! Notifications" and UFFD_FEATURE_WP_ASYNC): every tracked VMA is
//! registered with UFFDIO_REGISTER_MODE_WP and write-protected; a write
//! to a protected page is resolved by the kernel itself, which clears the
//! PTE's uffd-wp bit, so the process never blocks. PAGEMAP_SCAN with
//! PM_SCAN_WP_MATCHING then reports the pages whose bit is clear
//! (PAGE_IS_WRITTEN) and protects them again in the same walk, so a write
//! racing with the scan is either reported now or in the next scan.
//!
//! With WP_ASYNC and only WP mode asked, any VMA may be registered
//! (fs/userfaultfd.c, vma_can_userfault); a VMA that still refuses is
//! reported as untracked and its pages always count as dirty.

use super::sys::{self, PageRegion, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING};
use crate::model::Vma;
use crate::PAGE_SIZE;
use std::io;
use std::os::fd::OwnedFd;

/// What identifies a mapping across two reads of /proc/PID/maps: a VMA
/// that was unmapped and mapped again, split, or mprotect'ed is another
/// mapping, never registered, whose pages must all be sent again.
pub fn vma_key(v: &Vma) -> (u64, u64, String, u64, u64, String) {
    (
        v.start,
        v.end,
        v.perms.clone(),
        v.offset,
        v.inode,
        v.path.clone(),
    )
}

pub type Key = (u64, u64, String, u64, u64, String);

pub struct WpTracker {
    uffd: OwnedFd,
    pagemap: OwnedFd,
    tracked: Vec<Key>,
    untracked: Vec<Key>,
}

impl WpTracker {
    /// Enables async write-protection on `uffd` (a userfaultfd of `pid`'s
    /// mm). EINVAL here means the kernel lacks UFFD_FEATURE_WP_ASYNC or
    /// WP_UNPOPULATED (both Linux 6.7).
    pub fn new(pid: i32, uffd: OwnedFd) -> io::Result<WpTracker> {
        let want = sys::UFFD_FEATURE_WP_ASYNC | sys::UFFD_FEATURE_WP_UNPOPULATED;
        sys::uffd_api(&uffd, want)?;
        let path = format!("/proc/{pid}/pagemap");
        let pagemap = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        Ok(WpTracker {
            uffd,
            pagemap: pagemap.into(),
            tracked: Vec::new(),
            untracked: Vec::new(),
        })
    }

    pub fn is_tracked(&self, v: &Vma) -> bool {
        self.tracked.contains(&vma_key(v))
    }

    /// Registers and write-protects every writable mapping of `vmas` not
    /// tracked yet; returns those it tracked now (their pages are to be
    /// sent whole). Read-only mappings are not tracked: nothing writes
    /// them without an mprotect, which makes them another mapping.
    pub fn track<'a>(&mut self, vmas: &'a [Vma]) -> Vec<&'a Vma> {
        let mut new = Vec::new();
        for v in vmas.iter().filter(|v| v.writable()) {
            let key = vma_key(v);
            if self.tracked.contains(&key) || self.untracked.contains(&key) {
                continue;
            }
            let ok = sys::uffd_register(&self.uffd, v.start, v.len(), false, true)
                .and_then(|()| sys::uffd_writeprotect(&self.uffd, v.start, v.len()));
            match ok {
                Ok(()) => {
                    self.tracked.push(key);
                    new.push(v);
                }
                Err(e) => {
                    tracing::debug!("precopy: cannot track {:#x}-{:#x}: {e}", v.start, v.end);
                    self.untracked.push(key);
                }
            }
        }
        new
    }

    /// Page runs (address, pages) written since the last scan, in every
    /// tracked mapping still present in `vmas`; they are protected again.
    /// A mapping found replaced is no longer tracked afterwards.
    pub fn dirty(&mut self, vmas: &[Vma]) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let mut regions = vec![PageRegion::default(); 1024];
        let flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
        let tracked: Vec<&Vma> = vmas.iter().filter(|v| self.is_tracked(v)).collect();
        for v in tracked {
            let mut at = v.start;
            while at < v.end {
                let scanned = sys::pagemap_scan(
                    &self.pagemap,
                    (at, v.end),
                    flags,
                    PAGE_IS_WRITTEN,
                    &mut regions,
                );
                let (n, walk_end) = match scanned {
                    // PM_SCAN_CHECK_WPASYNC: a page here is not under
                    // async write-protection (fs/proc/task_mmu.c,
                    // pagemap_scan_test_walk). The mapping was replaced by
                    // one at the same place and with the same attributes
                    // (munmap + mmap MAP_FIXED): forget it, so that the
                    // next `track` registers it and it is sent whole.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        self.tracked.retain(|k| *k != vma_key(v));
                        break;
                    }
                    other => other?,
                };
                for r in &regions[..n] {
                    out.push((r.start, (r.end - r.start) / PAGE_SIZE));
                }
                // walk_end is where the kernel stopped: `end`, or earlier
                // when the vector filled up.
                if walk_end <= at || n < regions.len() {
                    break;
                }
                at = walk_end;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::procfs::parse_maps;

    /// Our own memory, tracked through a userfaultfd of our own: the kernel
    /// is the oracle for which pages were written between two scans.
    #[test]
    fn written_pages_are_found_and_protected_again() {
        let uffd = match sys::userfaultfd(sys::UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as u64) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("skipped: userfaultfd: {e}");
                return;
            }
        };
        let mut t = WpTracker::new(std::process::id() as i32, uffd).expect("uffd-wp async");
        let len = 64 * PAGE_SIZE as usize;
        let mut mem = vec![0u8; len + PAGE_SIZE as usize];
        let base = (mem.as_mut_ptr() as u64).next_multiple_of(PAGE_SIZE);
        let off = (base - mem.as_ptr() as u64) as usize;
        let region: Vec<Vma> = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap())
            .into_iter()
            .filter(|v| v.start <= base && base < v.end)
            .collect();
        assert_eq!(region.len(), 1);
        assert_eq!(t.track(&region).len(), 1);
        assert!(t.track(&region).is_empty(), "tracked once");
        let _ = t.dirty(&region).unwrap();
        for page in [3usize, 4, 40] {
            mem[off + page * PAGE_SIZE as usize + 7] = 1;
        }
        let got = t.dirty(&region).unwrap();
        let pages: Vec<u64> = got
            .iter()
            .flat_map(|&(a, n)| (0..n).map(move |i| a + i * PAGE_SIZE))
            .filter(|&a| a >= base && a < base + len as u64)
            .map(|a| (a - base) / PAGE_SIZE)
            .collect();
        assert_eq!(pages, vec![3, 4, 40], "{got:x?}");
        let again = t.dirty(&region).unwrap();
        assert!(
            again
                .iter()
                .all(|&(a, n)| a + n * PAGE_SIZE <= base || a >= base + len as u64),
            "protected again: {again:x?}"
        );
    }
}
