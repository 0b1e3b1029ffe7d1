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
        let tree: ProcessTree = codec::decode(PROCS, &bytes)?;
        check_tree(&manifest, &tree)?;
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
            page += PAGE_SIZE;
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

/// The metadata must agree with the sections: every pages section exists
/// and every run lies inside it (a decoder can't check that on its own).
fn check_tree(manifest: &Manifest, tree: &ProcessTree) -> Result<()> {
    for proc in &tree.processes {
        let Some(section) = manifest.section(&proc.pages_section) else {
            return Err(Error::corrupt(
                PROCS,
                format!("pid {}: no section {:?}", proc.pid, proc.pages_section),
            ));
        };
        for vma in &proc.vmas {
            let VmaMemory::Dumped { runs } = &vma.memory else {
                continue;
            };
            for run in runs {
                let bytes = run.pages.checked_mul(PAGE_SIZE);
                let end = bytes.and_then(|b| run.offset.checked_add(b));
                let in_vma = bytes
                    .and_then(|b| run.addr.checked_add(b))
                    .is_some_and(|e| run.addr >= vma.start && e <= vma.end);
                if !in_vma || end.is_none_or(|e| e > section.size) {
                    return Err(Error::corrupt(
                        PROCS,
                        format!(
                            "pid {}: page run at {:#x} out of bounds",
                            proc.pid, run.addr
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
