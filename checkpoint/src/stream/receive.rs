//! Receiving an image (transfer.rs sends one): each section is written
//! where the caller says and hashed as it arrives, pre-copy deltas leave
//! the pages the receiver holds in its store (`Image::elsewhere`,
//! `image::held`), and the manifest that comes last must vouch for all of
//! it before the image is decoded (STREAM.md).

use super::delta::PreEnd;
use super::frame::{FrameReader, Kind};
use super::pages::PageStore;
use super::transfer::{write_file, Reuse, SectionHead};
use super::{Error, Result};
use crate::image::digest::{Algo, Hasher};
use crate::image::manifest::{valid_section_name, Manifest, MANIFEST};
use crate::image::Extent;
use crate::image::{decode_tree, PROCS};
use crate::{Image, PAGE_SIZE};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// Receives an image into the existing, empty directory `dir`, hashing
/// every section as it is written, and checks each against the manifest
/// that comes last: its size and BLAKE3, and that no section is missing
/// or extra. Then decodes `procs.bin` (with `Image::open`'s checks), so the
/// image is verified without reading it back.
pub fn recv_image<R: Read>(
    rx: &mut FrameReader<R>,
    dir: &Path,
    store: Option<&PageStore>,
) -> Result<Image> {
    let mut got: Vec<Got> = Vec::new();
    let mut sealed = false;
    let mut elsewhere = HashMap::new();
    loop {
        let frame = rx.recv()?;
        match frame.kind {
            Kind::PreEnd => {
                let pre: PreEnd = serde_json::from_slice(&frame.payload)
                    .map_err(|e| Error::Protocol(format!("pre-copy end: {e}")))?;
                let store = store
                    .ok_or_else(|| Error::Protocol("pre-copy end without a pre-copy".into()))?;
                if store.digest() != pre.blake3 || store.received != pre.pages {
                    return Err(Error::Protocol(format!(
                        "the pre-copied pages differ from what the source sent ({} pages held, {} sent)",
                        store.received, pre.pages
                    )));
                }
                sealed = true;
            }
            Kind::Section => {
                let head: SectionHead = serde_json::from_slice(&frame.payload)
                    .map_err(|e| Error::Protocol(format!("section header: {e}")))?;
                let store = store.filter(|_| sealed);
                let (section, extents) = recv_section(rx, dir, &head, store)?;
                if !extents.is_empty() {
                    elsewhere.insert(section.name.clone(), extents);
                }
                got.push(section);
            }
            Kind::Manifest => {
                let manifest = Manifest::parse(&frame.payload)
                    .map_err(|e| Error::Protocol(format!("the sent manifest: {e}")))?;
                check_sections(&manifest, &got)?;
                if let (Some(store), false) = (store, elsewhere.is_empty()) {
                    // Where the held pages are, for the restore that opens
                    // this directory (IMAGE.md, held.json).
                    crate::image::held::write(dir, store.path(), &elsewhere)
                        .map_err(|e| Error::Protocol(format!("the received image: {e}")))?;
                }
                write_file(&dir.join(MANIFEST), &frame.payload)?;
                let procs = std::fs::read(dir.join(PROCS)).map_err(|e| Error::io(PROCS, e))?;
                let tree = decode_tree(&manifest, &procs)
                    .map_err(|e| Error::Protocol(format!("the sent image: {e}")))?;
                return Ok(Image {
                    dir: dir.to_path_buf(),
                    manifest,
                    tree,
                    unverified: Vec::new(),
                    elsewhere,
                });
            }
            Kind::Abort | Kind::Failed => {
                return Err(Error::Peer(super::frame::reason(&frame.payload)))
            }
            k => return Err(Error::Protocol(format!("unexpected {k:?} in an image"))),
        }
    }
}

/// One section as it arrived.
struct Got {
    name: String,
    size: u64,
    /// BLAKE3 of the section as written (holes read as zeros).
    full: String,
    /// BLAKE3 of its `Data` bytes only, and the bytes held in the pre-copy
    /// store.
    data: String,
    reused: u64,
}

/// Checks every section against the manifest: a whole one by its digest,
/// a delta one (`held` bytes the source left as holes) by the digest of
/// its Data bytes, which is what the source's covers, and by the count of
/// the bytes reused (authenticated by `PreEnd`). A delta section stays one
/// in the received image: its held pages are read from the store.
fn check_sections(manifest: &Manifest, got: &[Got]) -> Result<()> {
    if manifest.sections.len() != got.len() {
        return Err(Error::Protocol(format!(
            "{} sections arrived, the manifest lists {}",
            got.len(),
            manifest.sections.len()
        )));
    }
    for s in &manifest.sections {
        let g = got
            .iter()
            .find(|g| g.name == s.name)
            .ok_or_else(|| Error::Protocol(format!("section {} never arrived", s.name)))?;
        let want = s.blake3.as_ref();
        let ok = match s.held {
            0 => g.size == s.size && Some(&g.full) == want,
            held => g.size == s.size && g.reused == held && Some(&g.data) == want,
        };
        if !ok {
            return Err(Error::Protocol(format!(
                "image section {} is corrupt: its size or blake3 differs from the manifest's",
                s.name
            )));
        }
    }
    Ok(())
}

/// Writes to a file and hashes what it writes (BLAKE3: the handshake
/// refused a source of another image format version); `data` hashes the
/// bytes that came in Data frames only.
struct Hashed<'a> {
    file: &'a mut File,
    hash: Hasher,
    data: Option<Hasher>,
}

impl Write for Hashed<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn recv_section<R: Read>(
    rx: &mut FrameReader<R>,
    dir: &Path,
    head: &SectionHead,
    store: Option<&PageStore>,
) -> Result<(Got, Vec<Extent>)> {
    if !valid_section_name(&head.name) {
        return Err(Error::Protocol(format!("bad section name {:?}", head.name)));
    }
    let path = dir.join(&head.name);
    let io = |e| Error::io(path.display().to_string(), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io)?;
    let mut got = 0u64;
    let mut out = Hashed {
        file: &mut file,
        hash: Hasher::new(Algo::Blake3),
        data: head.delta_pid.map(|_| Hasher::new(Algo::Blake3)),
    };
    let mut reused = 0u64;
    let mut extents = Vec::new();
    let mut store_file: Option<Arc<File>> = None;
    loop {
        let frame = rx.recv()?;
        match frame.kind {
            Kind::Data => {
                got += frame.payload.len() as u64;
                if got > head.size {
                    return Err(Error::Protocol(format!(
                        "section {} is longer than its {} bytes",
                        head.name, head.size
                    )));
                }
                out.write_all(&frame.payload).map_err(io)?;
                if let Some(h) = out.data.as_mut() {
                    h.update(&frame.payload);
                }
            }
            Kind::Reuse => {
                let r: Reuse = serde_json::from_slice(&frame.payload)
                    .map_err(|e| Error::Protocol(format!("reuse frame: {e}")))?;
                let store = store
                    .filter(|_| head.delta_pid == Some(r.pid))
                    .ok_or_else(|| {
                        Error::Protocol("a reuse frame outside a delta, or before PreEnd".into())
                    })?;
                got = got.saturating_add(r.pages.saturating_mul(PAGE_SIZE));
                if got > head.size {
                    return Err(Error::Protocol(format!(
                        "section {} is longer than its {} bytes",
                        head.name, head.size
                    )));
                }
                // The held pages stay in the store: a hole here, an
                // extent for the restore to read them from.
                let at = got - r.pages * PAGE_SIZE;
                let file = match &store_file {
                    Some(f) => Arc::clone(f),
                    None => Arc::clone(store_file.insert(Arc::new(store.file()?))),
                };
                let mut offset = at;
                for (from, len) in store.extents(r.pid, r.addr, r.pages)? {
                    extents.push(Extent {
                        offset,
                        len,
                        file: Arc::clone(&file),
                        at: from,
                    });
                    offset += len;
                }
                let by = i64::try_from(r.pages * PAGE_SIZE)
                    .map_err(|_| Error::Protocol("reuse frame: too many pages".into()))?;
                out.file.seek(SeekFrom::Current(by)).map_err(io)?;
                reused += r.pages * PAGE_SIZE;
            }
            Kind::SectionEnd if got == head.size => {
                if reused > 0 {
                    // A hole at the end still counts in the size.
                    out.file.set_len(got).map_err(io)?;
                }
                let data = out.data.take().map(Hasher::hex).unwrap_or_default();
                let section = Got {
                    name: head.name.clone(),
                    size: got,
                    full: out.hash.hex(),
                    data,
                    reused,
                };
                return Ok((section, extents));
            }
            Kind::SectionEnd => {
                return Err(Error::Protocol(format!(
                    "section {} ended after {got} of {} bytes",
                    head.name, head.size
                )))
            }
            Kind::Abort | Kind::Failed => {
                return Err(Error::Peer(super::frame::reason(&frame.payload)))
            }
            k => return Err(Error::Protocol(format!("unexpected {k:?} in a section"))),
        }
    }
}
