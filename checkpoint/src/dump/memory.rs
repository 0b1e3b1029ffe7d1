//! Page data of a stopped process: which pages exist comes from
//! /proc/PID/pagemap, their bytes from /proc/PID/mem, read straight into
//! the section writer's buffer, and they are streamed into the process's
//! pages section in address order.
//!
//! Pages mapped only by this process (pagemap bit 56, "exclusively
//! mapped") are read with process_vm_readv(2), which copies straight into
//! the buffer; a read of /proc/PID/mem copies each page twice (fs/proc/
//! base.c mem_rw bounces it through a kernel page: perf showed that copy
//! as the dumping thread's largest cost). Not for shared pages:
//! process_vm_readv pins them (FOLL_PIN), and a read-only pin of an
//! anonymous page shared copy-on-write (a forked child's, and every page
//! of a snapshot's copy-on-write child) makes the kernel unshare it first
//! (mm/gup.c, gup_must_unshare): it copied every page of a 1 GiB snapshot
//! child. /proc/PID/mem takes plain references (FOLL_GET), so sharing
//! holds; it also serves the page-by-page retry, and swapped pages.
//!
//! At the freeze of a pre-copied migration, pages the receiver already
//! holds (`held`) are not read at all: they keep their place in the runs
//! and become holes in the section (`SectionWriter::skip`), so the frozen
//! dump costs the dirty set, not the whole memory (#6).
//!
//! A copy-before-write snapshot (wp/) reads a running process through a
//! [`Guard`]: which pages to read is what was present at its pause, and
//! each chunk read is settled (pages copied before a write replace what
//! was read, then the range is un-protected).
//!
//! pagemap (Documentation/admin-guide/mm/pagemap.rst) has one u64 per
//! virtual page: bit 63 "present in RAM", bit 62 "swapped". Both kinds are
//! dumped (reading a swapped page through /proc/PID/mem swaps it in). Pages
//! with neither bit were never touched (or were dropped clean file pages):
//! they read as zeros, or as the file's contents for file mappings, and are
//! not stored.

use super::{vanished, ProcDir};
use crate::error::{Error, Result};
use crate::image::{SectionWriter, WRITE_CHUNK};
use crate::model::{PageRun, Vma, VmaMemory};
use crate::pageset::PageSet;
use crate::PAGE_SIZE;
use isotrace_tracer::sys::vm_read;
use nix::errno::Errno;
use std::fs::File;
use std::os::unix::fs::FileExt;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_EXCLUSIVE: u64 = 1 << 56;
/// pagemap entries read per pread: 16 MiB of address space.
const PAGEMAP_BATCH: u64 = 4096;
/// Bytes copied per process_vm_readv: a quarter of a section buffer, so
/// that the section writer hashes each piece while it is still in this
/// CPU's L2 cache (SectionWriter::commit), not after it was evicted.
const COPY_CHUNK: u64 = WRITE_CHUNK as u64 / 4;

/// Why a mapping's contents are not captured, or None to capture it.
pub fn skip_reason(vma: &Vma) -> Option<&'static str> {
    match vma.path.as_str() {
        "[vvar]" | "[vvar_vclock]" => return Some("kernel data page ([vvar]), not process memory"),
        "[vsyscall]" => return Some("legacy [vsyscall] page, the same in every process"),
        _ => {}
    }
    let anon_like = !vma.file_backed()
        || vma.path.starts_with("/memfd:")
        || vma.path.starts_with("/dev/zero")
        || vma.path.starts_with("/SYSV");
    if vma.path.starts_with("/dev/") && !vma.path.starts_with("/dev/zero") {
        return Some("device mapping");
    }
    if vma.shared() && !anon_like {
        return Some("shared file mapping: its contents are the file's");
    }
    // A PROT_NONE mapping (a guard region, a reservation, a page a GC or
    // sandbox hid) is read like any other: only its present pages, through
    // /proc/PID/mem, whose FOLL_FORCE reads what the mapping may be made
    // readable to (VM_MAYREAD, mm/gup.c check_vma_flags); process_vm_readv
    // would refuse it. Guards and reservations have no pages.
    None
}

/// What a copy-before-write snapshot (wp/) tells the dump of a process
/// that runs while it is read.
pub trait Guard {
    /// The page runs (address, pages) of [start, end) to read: those
    /// present (or swapped) at the pause, not those present now.
    fn runs(&self, start: u64, end: u64) -> Vec<(u64, u64)>;
    /// Taken before each read, and given to the settle after it.
    fn mark(&self) -> usize;
    /// Called with `buf`, just read from `addr` (`read`: whether the read
    /// succeeded): pages saved before a write replace what was read.
    /// Returns whether `buf` now holds the pause's contents (it may hold
    /// them though the read failed). The range is then released.
    fn settle(&self, mark: usize, addr: u64, buf: &mut [u8], read: bool) -> bool;
}

struct Source<'g> {
    guard: Option<&'g dyn Guard>,
    pid: i32,
    /// The stopped thread to read through: process_vm_readv takes any
    /// thread's id, and a zombie leader has no mm left to read.
    tid: i32,
    base: String,
    pagemap: File,
    mem: File,
}

pub fn dump(
    proc: &ProcDir,
    vmas: &mut [Vma],
    out: &mut SectionWriter,
    held: Option<&PageSet>,
) -> Result<()> {
    dump_with(proc, vmas, out, held, None)
}

/// [`dump`] of a running process under a copy-before-write [`Guard`].
pub fn dump_guarded(
    proc: &ProcDir,
    vmas: &mut [Vma],
    out: &mut SectionWriter,
    guard: &dyn Guard,
) -> Result<()> {
    dump_with(proc, vmas, out, None, Some(guard))
}

fn dump_with(
    proc: &ProcDir,
    vmas: &mut [Vma],
    out: &mut SectionWriter,
    held: Option<&PageSet>,
    guard: Option<&dyn Guard>,
) -> Result<()> {
    let open = |name: &str| {
        let path = proc.path(name);
        File::open(&path).map_err(|e| vanished(proc.pid, &path, e))
    };
    let src = Source {
        guard,
        pid: proc.pid,
        tid: proc.tid,
        base: proc.base.clone(),
        pagemap: open("pagemap")?,
        mem: open("mem")?,
    };
    for vma in vmas.iter_mut() {
        vma.memory = match skip_reason(vma) {
            Some(reason) => VmaMemory::Skipped {
                reason: reason.into(),
            },
            None => {
                let mut runs = Vec::new();
                // The vDSO is an ELF image gdb parses from the core: keep
                // all of it, not only the pages this process touched.
                let present = if vma.path == "[vdso]" {
                    vec![(vma.start, vma.len() / PAGE_SIZE, false)]
                } else if let Some(g) = guard {
                    src.exclusive_runs(&g.runs(vma.start, vma.end))?
                } else {
                    src.present_runs(vma.start, vma.end)?
                };
                for (addr, pages, exclusive) in present {
                    // process_vm_readv honours the protection.
                    let exclusive = exclusive && vma.readable();
                    for (addr, pages, is_held) in split_held(addr, pages, held) {
                        if is_held {
                            let offset = out.offset();
                            out.skip(pages * PAGE_SIZE)?;
                            record(&mut runs, addr, pages * PAGE_SIZE, offset);
                        } else {
                            src.copy_run(addr, pages, exclusive, out, &mut runs)?;
                        }
                    }
                }
                VmaMemory::Dumped { runs }
            }
        };
    }
    Ok(())
}

impl Source<'_> {
    /// The runs, each split where pages go from mapped by this process
    /// alone (now) to not, for [`Source::copy_run`].
    fn exclusive_runs(&self, runs: &[(u64, u64)]) -> Result<Vec<(u64, u64, bool)>> {
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        for &(addr, pages) in runs {
            let now = self.present_runs(addr, addr + pages * PAGE_SIZE)?;
            let mut at = addr;
            for (a, p, alone) in now {
                if a > at {
                    out.push((at, (a - at) / PAGE_SIZE, false));
                }
                out.push((a, p, alone));
                at = a + p * PAGE_SIZE;
            }
            if at < addr + pages * PAGE_SIZE {
                out.push((at, (addr + pages * PAGE_SIZE - at) / PAGE_SIZE, false));
            }
        }
        Ok(out)
    }

    /// Maximal runs of present-or-swapped pages in [start, end), each
    /// with whether all its pages are present and mapped by this process
    /// alone.
    fn present_runs(&self, start: u64, end: u64) -> Result<Vec<(u64, u64, bool)>> {
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        let mut entries = vec![0u8; (PAGEMAP_BATCH * 8) as usize];
        let mut page = start;
        while page < end {
            let n = ((end - page) / PAGE_SIZE).min(PAGEMAP_BATCH);
            let bytes = &mut entries[..(n * 8) as usize];
            self.pagemap
                .read_exact_at(bytes, page / PAGE_SIZE * 8)
                .map_err(|e| self.error("pagemap", e))?;
            for (i, entry) in bytes.chunks_exact(8).enumerate() {
                let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
                if entry & (PM_PRESENT | PM_SWAPPED) == 0 {
                    continue;
                }
                let addr = page + i as u64 * PAGE_SIZE;
                let alone = entry & (PM_PRESENT | PM_EXCLUSIVE) == PM_PRESENT | PM_EXCLUSIVE;
                match runs.last_mut() {
                    Some((a, p, x)) if *a + *p * PAGE_SIZE == addr && *x == alone => *p += 1,
                    _ => runs.push((addr, 1, alone)),
                }
            }
            page += n * PAGE_SIZE;
        }
        Ok(runs)
    }

    /// Copies one run into `out`, straight into its buffer, recording
    /// what landed where. A chunk the kernel refuses (EIO on a page that
    /// cannot be faulted in) is retried page by page, and pages that
    /// still fail are left out of the image.
    fn copy_run(
        &self,
        addr: u64,
        pages: u64,
        exclusive: bool,
        out: &mut SectionWriter,
        runs: &mut Vec<PageRun>,
    ) -> Result<()> {
        let end = addr + pages * PAGE_SIZE;
        let mut at = addr;
        while at < end {
            let len = (end - at).min(COPY_CHUNK);
            let offset = out.offset();
            let buf = out.spare(len as usize)?;
            let mark = self.guard.map(|g| g.mark());
            let mut read = match exclusive {
                true => self.read_fast(buf, at)?,
                false => self.read(buf, at)?,
            };
            if read {
                if let (Some(g), Some(mark)) = (self.guard, mark) {
                    read = g.settle(mark, at, buf, true);
                }
            }
            if read {
                out.commit(len as usize);
                record(runs, at, len, offset);
            } else {
                for page in (at..at + len).step_by(PAGE_SIZE as usize) {
                    let offset = out.offset();
                    let buf = out.spare(PAGE_SIZE as usize)?;
                    let mark = self.guard.map(|g| g.mark());
                    let mut read = self.read(buf, page)?;
                    if let (Some(g), Some(mark)) = (self.guard, mark) {
                        read = g.settle(mark, page, buf, read);
                    }
                    if read {
                        out.commit(PAGE_SIZE as usize);
                        record(runs, page, PAGE_SIZE, offset);
                    }
                }
            }
            at += len;
        }
        Ok(())
    }

    /// process_vm_readv of the whole of `buf` (pages this process maps
    /// alone): Ok(false) when it comes up short or is refused, so the
    /// caller retries by page through /proc/PID/mem.
    fn read_fast(&self, buf: &mut [u8], addr: u64) -> Result<bool> {
        match vm_read(self.tid, addr, buf) {
            Ok(n) => Ok(n == buf.len()),
            Err(isotrace_tracer::Error::Died { .. }) => Err(Error::Exited { pid: self.pid }),
            Err(isotrace_tracer::Error::Sys {
                errno: Errno::EFAULT | Errno::EIO | Errno::ENOMEM | Errno::EPERM,
                ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Ok(false) for a range the kernel would not read (EIO/EFAULT); a
    /// zero-length read means the address space is gone: the process died.
    fn read(&self, buf: &mut [u8], addr: u64) -> Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.mem.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => return Err(Error::Exited { pid: self.pid }),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EFAULT)) => {
                    return Ok(false)
                }
                Err(e) => return Err(self.error("mem", e)),
            }
        }
        Ok(true)
    }

    fn error(&self, file: &str, e: std::io::Error) -> Error {
        vanished(self.pid, &format!("{}/{file}", self.base), e)
    }
}

/// The run of `pages` pages at `addr` cut where pages go from held to not
/// held: (address, pages, held).
fn split_held(addr: u64, pages: u64, held: Option<&PageSet>) -> Vec<(u64, u64, bool)> {
    match held.filter(|h| !h.is_empty()) {
        Some(held) => held.split(addr, pages),
        None => vec![(addr, pages, false)],
    }
}

/// Records that `len` bytes from `addr` landed at `offset` of the section,
/// extending the last run when they follow it in both.
fn record(runs: &mut Vec<PageRun>, addr: u64, len: u64, offset: u64) {
    let pages = len / PAGE_SIZE;
    match runs.last_mut() {
        Some(r)
            if r.addr + r.pages * PAGE_SIZE == addr && r.offset + r.pages * PAGE_SIZE == offset =>
        {
            r.pages += pages
        }
        _ => runs.push(PageRun {
            addr,
            pages,
            offset,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_pages_split_runs() {
        let p = PAGE_SIZE;
        assert_eq!(split_held(0x1000, 3, None), vec![(0x1000, 3, false)]);
        let mut held = PageSet::new();
        held.insert(0x1000 + p, 2);
        held.insert(0x1000 + 4 * p, 1);
        assert_eq!(
            split_held(0x1000, 5, Some(&held)),
            vec![
                (0x1000, 1, false),
                (0x1000 + p, 2, true),
                (0x1000 + 3 * p, 1, false),
                (0x1000 + 4 * p, 1, true),
            ]
        );
    }
}
