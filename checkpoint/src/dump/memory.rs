//! Page data of a stopped process: which pages exist comes from
//! /proc/PID/pagemap, their bytes from /proc/PID/mem, and they are streamed
//! into the process's pages section in address order.
//!
//! pagemap (Documentation/admin-guide/mm/pagemap.rst) has one u64 per
//! virtual page: bit 63 "present in RAM", bit 62 "swapped". Both kinds are
//! dumped (reading a swapped page through /proc/PID/mem swaps it in). Pages
//! with neither bit were never touched (or were dropped clean file pages):
//! they read as zeros, or as the file's contents for file mappings, and are
//! not stored.

use super::{vanished, ProcDir};
use crate::error::{Error, Result};
use crate::image::SectionWriter;
use crate::model::{PageRun, Vma, VmaMemory};
use crate::PAGE_SIZE;
use std::fs::File;
use std::os::unix::fs::FileExt;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
/// pagemap entries read per pread: 16 MiB of address space.
const PAGEMAP_BATCH: u64 = 4096;
/// Bytes copied per pread of /proc/PID/mem.
const COPY_CHUNK: u64 = 1 << 20;

/// Why a mapping's contents are not captured, or None to capture it.
pub fn skip_reason(vma: &Vma) -> Option<&'static str> {
    match vma.path.as_str() {
        "[vvar]" | "[vvar_vclock]" => return Some("kernel data page ([vvar]), not process memory"),
        "[vsyscall]" => return Some("legacy [vsyscall] page, the same in every process"),
        _ => {}
    }
    if !vma.readable() {
        return Some("not readable (PROT_NONE or guard region)");
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
    None
}

struct Source {
    pid: i32,
    base: String,
    pagemap: File,
    mem: File,
}

pub fn dump(proc: &ProcDir, vmas: &mut [Vma], out: &mut SectionWriter) -> Result<()> {
    let open = |name: &str| {
        let path = proc.path(name);
        File::open(&path).map_err(|e| vanished(proc.pid, &path, e))
    };
    let src = Source {
        pid: proc.pid,
        base: proc.base.clone(),
        pagemap: open("pagemap")?,
        mem: open("mem")?,
    };
    let mut buf = vec![0u8; COPY_CHUNK as usize];
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
                    vec![(vma.start, vma.len() / PAGE_SIZE)]
                } else {
                    src.present_runs(vma.start, vma.end)?
                };
                for (addr, pages) in present {
                    src.copy_run(addr, pages, &mut buf, out, &mut runs)?;
                }
                VmaMemory::Dumped { runs }
            }
        };
    }
    Ok(())
}

impl Source {
    /// Maximal runs of present-or-swapped pages in [start, end).
    fn present_runs(&self, start: u64, end: u64) -> Result<Vec<(u64, u64)>> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
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
                match runs.last_mut() {
                    Some((a, p)) if *a + *p * PAGE_SIZE == addr => *p += 1,
                    _ => runs.push((addr, 1)),
                }
            }
            page += n * PAGE_SIZE;
        }
        Ok(runs)
    }

    /// Copies one run into `out`, recording what landed where. A chunk the
    /// kernel refuses (EIO on a page that cannot be faulted in) is retried
    /// page by page, and pages that still fail are left out of the image.
    fn copy_run(
        &self,
        addr: u64,
        pages: u64,
        buf: &mut [u8],
        out: &mut SectionWriter,
        runs: &mut Vec<PageRun>,
    ) -> Result<()> {
        let end = addr + pages * PAGE_SIZE;
        let mut at = addr;
        while at < end {
            let len = (end - at).min(COPY_CHUNK);
            if self.read(&mut buf[..len as usize], at)? {
                append(runs, out, at, &buf[..len as usize])?;
            } else {
                for page in (at..at + len).step_by(PAGE_SIZE as usize) {
                    let one = &mut buf[..PAGE_SIZE as usize];
                    if self.read(one, page)? {
                        append(runs, out, page, one)?;
                    }
                }
            }
            at += len;
        }
        Ok(())
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

fn append(runs: &mut Vec<PageRun>, out: &mut SectionWriter, addr: u64, data: &[u8]) -> Result<()> {
    let pages = data.len() as u64 / PAGE_SIZE;
    let offset = out.offset();
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
    out.write(data)
}
