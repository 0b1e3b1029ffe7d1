//! Opening an image: the manifest's format and version, then the size and
//! digest of `procs.bin` before it is decoded, then those of the other
//! sections. A mismatch names the section. For a restore, the pages
//! sections are checked as they are read into place instead
//! ([`Image::open_for_restore`], `SectionReader`).

use super::codec;
use super::digest::{buf_mut, Algo, Hasher, Pipeline};
use super::held::HELD;
use super::manifest::{Manifest, Section, MANIFEST};
use super::section_reader::size_error;
use super::writer::CHUNK;
use crate::error::{Error, Result};
use crate::model::{PageRun, Process, ProcessTree, VmaMemory};
use crate::PAGE_SIZE;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The section holding the encoded [`ProcessTree`].
pub const PROCS: &str = "procs.bin";

pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tree: ProcessTree,
    /// Sections whose digest has not been checked yet: the pages sections
    /// of an image opened for a restore, which checks them as it reads
    /// them (`SectionReader`). Empty after [`Image::open`].
    pub unverified: Vec<String>,
    /// Byte ranges of sections that live in another file: in an image a
    /// migration receiver rebuilt, the pages it holds from pre-copy stay
    /// in its pre-copy store, and the section has holes there
    /// (`stream::transfer`). Empty for an image read from a directory.
    pub elsewhere: HashMap<String, Vec<Extent>>,
}

/// `len` bytes at `offset` of a section that are at `at` of `file`.
#[derive(Clone, Debug)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub file: Arc<File>,
    pub at: u64,
}

fn mismatch(section: &Section) -> Error {
    let algo = match section.digest().0 {
        Algo::Blake3 => "blake3",
        Algo::Sha256 => "sha256",
    };
    Error::corrupt(&section.name, format!("{algo} mismatch"))
}

/// Checks the size and digest of one section; returns its bytes when
/// `keep` (procs.bin, which is then decoded from the very bytes checked).
fn verify_section(dir: &Path, section: &Section, keep: bool) -> Result<Vec<u8>> {
    let name = &section.name;
    if section.held > 0 {
        return Err(Error::corrupt(
            name,
            format!(
                "a migration delta ({} bytes are held by the receiver), not a whole section",
                section.held
            ),
        ));
    }
    let file = File::open(dir.join(name))
        .map_err(|e| Error::corrupt(name, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| Error::corrupt(name, format!("cannot stat: {e}")))?
        .len();
    if len != section.size {
        return Err(size_error(name, len, section.size));
    }
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| Error::corrupt(name, format!("cannot read: {e}")))
    };
    let (algo, want) = section.digest();
    if keep || section.size <= CHUNK as u64 {
        let mut bytes = vec![0u8; section.size as usize];
        read(&mut bytes, 0)?;
        let mut h = Hasher::new(algo);
        h.update(&bytes);
        if h.hex() != want {
            return Err(mismatch(section));
        }
        return Ok(if keep { bytes } else { Vec::new() });
    }
    // A large section: the next buffer is read while the last is hashed.
    let mut pipe = Pipeline::new(algo, 3, CHUNK);
    let mut at = 0;
    while at < section.size {
        let n = (section.size - at).min(CHUNK as u64) as usize;
        let mut buf = pipe.take();
        read(&mut buf_mut(&mut buf)[..n], at)?;
        pipe.hash(buf, n);
        at += n as u64;
    }
    if pipe.finish() != want {
        return Err(mismatch(section));
    }
    Ok(Vec::new())
}

impl Image {
    /// An optional bincode section, decoded; `T::default()` (nothing
    /// recorded) when the image has no such section.
    pub fn optional<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        if self.manifest.section(name).is_none() {
            return Ok(T::default());
        }
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(path, e))?;
        super::codec::decode(name, &bytes)
    }

    /// Opens the image at `dir`, checking every section's size and digest.
    pub fn open(dir: &Path) -> Result<Image> {
        Image::open_checking(dir, false)
    }

    /// Opens the image for a restore: every section is checked but the
    /// pages sections, which are only checked for size here and are left
    /// in [`Image::unverified`] for the restore to hash as it reads them
    /// into place. A restore of such an image must check them before any
    /// restored task runs.
    pub fn open_for_restore(dir: &Path) -> Result<Image> {
        Image::open_checking(dir, true)
    }

    fn open_checking(dir: &Path, defer_pages: bool) -> Result<Image> {
        let text = match std::fs::read(dir.join(MANIFEST)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAnImage { path: dir.into() })
            }
            Err(e) => return Err(Error::io(dir.join(MANIFEST), e)),
        };
        let manifest = Manifest::parse(&text)?;
        let Some(procs) = manifest.section(PROCS) else {
            return Err(Error::corrupt(MANIFEST, "lists no procs.bin section"));
        };
        let bytes = verify_section(dir, procs, true)?;
        let tree = decode_tree(&manifest, &bytes)?;
        let mut unverified = Vec::new();
        let elsewhere = match defer_pages {
            true => super::held::read(dir)?,
            false => HashMap::new(),
        };
        for s in manifest.sections.iter().filter(|s| s.name != PROCS) {
            let pages = tree.processes.iter().any(|p| p.pages_section == s.name);
            let held: u64 = elsewhere
                .get(&s.name)
                .map_or(0, |es| es.iter().map(|e| e.len).sum());
            if s.held != held && defer_pages {
                return Err(Error::corrupt(
                    &s.name,
                    format!("{} bytes held, {HELD} lists {held}", s.held),
                ));
            }
            if defer_pages && pages {
                let len = std::fs::metadata(dir.join(&s.name))
                    .map_err(|e| Error::corrupt(&s.name, format!("cannot stat: {e}")))?
                    .len();
                if len != s.size {
                    return Err(size_error(&s.name, len, s.size));
                }
                unverified.push(s.name.clone());
            } else {
                verify_section(dir, s, false)?;
            }
        }
        Ok(Image {
            dir: dir.into(),
            manifest,
            tree,
            unverified,
            elsewhere,
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
        let extents = self
            .elsewhere
            .get(&proc.pages_section)
            .map_or(&[][..], Vec::as_slice);
        let mut out = Vec::new();
        let mut page = addr & !(PAGE_SIZE - 1);
        while page < addr.saturating_add(len) {
            let data = match find_run(proc, page) {
                Some(run) => {
                    let mut buf = vec![0u8; PAGE_SIZE as usize];
                    let at = run.offset + (page - run.addr);
                    super::section_reader::fill(&file, extents, &mut buf, at, None)
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
