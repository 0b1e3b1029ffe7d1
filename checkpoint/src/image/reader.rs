//! Opening an image: the manifest's format and version, then the size and
//! SHA-256 of every section, before anything is decoded. A mismatch names
//! the section.

use super::codec;
use super::manifest::{Manifest, MANIFEST};
use crate::error::{Error, Result};
use crate::model::{PageRun, Process, ProcessTree, VmaMemory};
use crate::PAGE_SIZE;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The section holding the encoded [`ProcessTree`].
pub const PROCS: &str = "procs.bin";

pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tree: ProcessTree,
}

fn verify_section(dir: &Path, name: &str, size: u64, sha256: &str) -> Result<()> {
    let path = dir.join(name);
    let mut file =
        File::open(&path).map_err(|e| Error::corrupt(name, format!("cannot open: {e}")))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::corrupt(name, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        return Err(Error::corrupt(
            name,
            format!("{total} bytes, the manifest says {size}"),
        ));
    }
    let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != sha256 {
        return Err(Error::corrupt(name, "sha256 mismatch"));
    }
    Ok(())
}

impl Image {
    pub fn open(dir: &Path) -> Result<Image> {
        let text = match std::fs::read(dir.join(MANIFEST)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAnImage { path: dir.into() })
            }
            Err(e) => return Err(Error::io(dir.join(MANIFEST), e)),
        };
        let manifest = Manifest::parse(&text)?;
        for s in &manifest.sections {
            verify_section(dir, &s.name, s.size, &s.sha256)?;
        }
        if manifest.section(PROCS).is_none() {
            return Err(Error::corrupt(MANIFEST, "lists no procs.bin section"));
        }
        let bytes = std::fs::read(dir.join(PROCS)).map_err(|e| Error::io(dir.join(PROCS), e))?;
        let tree = decode_tree(&manifest, &bytes)?;
        Ok(Image {
            dir: dir.into(),
            manifest,
            tree,
        })
    }

    pub fn process(&self, pid: i32) -> Result<&Process> {
        self.tree.process(pid).ok_or(Error::NoSuchPid { pid })
    }

    /// Reads `len` bytes at `addr` of `pid`'s memory. Each page of the
    /// result is None where the image holds no data for it.
    pub fn read_memory(
        &self,
        pid: i32,
        addr: u64,
        len: u64,
    ) -> Result<Vec<(u64, Option<Vec<u8>>)>> {
        let proc = self.process(pid)?;
        let file = self.pages_file(proc)?;
        let mut out = Vec::new();
        let mut page = addr & !(PAGE_SIZE - 1);
        while page < addr.saturating_add(len) {
            let data = match find_run(proc, page) {
                Some(run) => {
                    let mut buf = vec![0u8; PAGE_SIZE as usize];
                    let at = run.offset + (page - run.addr);
                    file.read_exact_at(&mut buf, at)
                        .map_err(|e| Error::corrupt(&proc.pages_section, e.to_string()))?;
                    Some(buf)
                }
                None => None,
            };
            out.push((page, data));
            match page.checked_add(PAGE_SIZE) {
                Some(next) => page = next,
                None => break,
            }
        }
        Ok(out)
    }

    pub fn pages_file(&self, proc: &Process) -> Result<File> {
        let path = self.dir.join(&proc.pages_section);
        File::open(&path).map_err(|e| Error::io(path, e))
    }
}

fn find_run(proc: &Process, page: u64) -> Option<PageRun> {
    let vma = proc.vmas.iter().find(|v| v.start <= page && page < v.end)?;
    match &vma.memory {
        VmaMemory::Dumped { runs } => runs
            .iter()
            .find(|r| r.addr <= page && page < r.addr + r.pages * PAGE_SIZE)
            .copied(),
        VmaMemory::Skipped { .. } => None,
    }
}

/// Decodes `procs.bin` and checks it against the manifest. Public for the
/// fuzz target (checkpoint/fuzz), which feeds it arbitrary bytes.
pub fn decode_tree(manifest: &Manifest, bytes: &[u8]) -> Result<ProcessTree> {
    let tree: ProcessTree = codec::decode(PROCS, bytes)?;
    check_tree(manifest, &tree)?;
    Ok(tree)
}

/// The metadata must agree with the sections and with itself: every pages
/// section exists, mappings are page-aligned, ordered and disjoint, and
/// every run is page-aligned, ordered, inside its mapping and inside its
/// section. The checksums only prove the bytes are the ones written; this
/// keeps a hand-made image from steering later arithmetic out of range.
fn check_tree(manifest: &Manifest, tree: &ProcessTree) -> Result<()> {
    for proc in &tree.processes {
        let bad = |what: String| Error::corrupt(PROCS, format!("pid {}: {what}", proc.pid));
        let Some(section) = manifest.section(&proc.pages_section) else {
            return Err(bad(format!("no section {:?}", proc.pages_section)));
        };
        let mut prev_end = 0;
        for vma in &proc.vmas {
            let aligned = vma.start % PAGE_SIZE == 0 && vma.end % PAGE_SIZE == 0;
            if !aligned || vma.start >= vma.end || vma.start < prev_end {
                return Err(bad(format!(
                    "mapping {:#x}-{:#x} is malformed",
                    vma.start, vma.end
                )));
            }
            prev_end = vma.end;
            if let VmaMemory::Dumped { runs } = &vma.memory {
                check_runs(vma.start, vma.end, runs, section.size)
                    .map_err(|addr| bad(format!("page run at {addr:#x} is out of bounds")))?;
            }
        }
    }
    Ok(())
}

fn check_runs(
    start: u64,
    end: u64,
    runs: &[PageRun],
    section_size: u64,
) -> std::result::Result<(), u64> {
    let mut cursor = start;
    for run in runs {
        let bytes = run.pages.checked_mul(PAGE_SIZE).filter(|&b| b > 0);
        let run_end = bytes.and_then(|b| run.addr.checked_add(b));
        let data_end = bytes.and_then(|b| run.offset.checked_add(b));
        let ok = run.addr % PAGE_SIZE == 0
            && run.offset % PAGE_SIZE == 0
            && run.addr >= cursor
            && run_end.is_some_and(|e| e <= end)
            && data_end.is_some_and(|e| e <= section_size);
        if !ok {
            return Err(run.addr);
        }
        cursor = run_end.unwrap_or(end);
    }
    Ok(())
}
