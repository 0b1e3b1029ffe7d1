//! Reading a section front to back while checking its digest: a restore
//! reads each pages section once, straight into the restored process, and
//! hashes the same bytes on the way, instead of hashing the whole image in
//! `Image::open` and then reading it again.
//!
//! A second thread reads the section ahead in [`CHUNK`]-sized buffers and
//! hashes each one; the caller writes them into the restored process
//! meanwhile (process_vm_writev, whose page faults are most of a restore's
//! time), so the read, the hash and the faults overlap on two CPUs.
//!
//! The bytes handed out are not proven until [`SectionReader::finish`]
//! has compared the digest. That is enough for "no partial restore": the
//! restored tasks stay in ptrace-stops until every process is rebuilt
//! (restore/mod.rs), and a digest mismatch fails the restore, which kills
//! them, so nothing of a corrupt image ever runs.

use super::digest::{Algo, Hasher};
use super::reader::{Extent, Image};
use super::writer::CHUNK;
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Buffers the read-ahead thread may fill before the caller takes them.
const BUFFERS: usize = 4;

type Chunk = io::Result<Vec<u8>>;

pub struct SectionReader {
    name: String,
    file: File,
    size: u64,
    /// Bytes [0, pos) of the stream were handed out or skipped.
    pos: u64,
    /// The chunk holding `pos`, and the offset it starts at.
    cur: Option<(Vec<u8>, u64)>,
    /// Where the next chunk from the thread starts.
    next_at: u64,
    chunks: Receiver<Chunk>,
    free: Option<Sender<Vec<u8>>>,
    /// Returns the hex digest of the whole section, when checking.
    thread: Option<JoinHandle<Option<String>>>,
    /// The algorithm and expected digest, for a section the image has not
    /// verified yet.
    want: Option<(Algo, String)>,
    /// Buffer of reads before `pos` (a hand-made image's runs out of order).
    own: Vec<u8>,
    /// Ranges whose bytes are in another file (`Image::elsewhere`), in
    /// order.
    extents: Arc<Vec<Extent>>,
    /// Held ranges never read (`open_skipping`), sorted.
    skip: Arc<Vec<(u64, u64)>>,
}

/// Reads `buf.len()` bytes at `at` of the section: from the extents that
/// cover them, the rest from the section's own file, which alone `hash`
/// covers (a held section's digest is of its own bytes, `Section::held`).
pub(super) fn fill(
    file: &File,
    extents: &[Extent],
    buf: &mut [u8],
    at: u64,
    hash: Option<&mut Hasher>,
) -> io::Result<()> {
    fill_skipping(file, extents, &[], buf, at, hash)
}

/// The parts of `[from, to)` outside every range of `skip` (sorted, not
/// overlapping).
fn outside(from: u64, to: u64, skip: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = from;
    let i = skip.partition_point(|r| r.1 <= from);
    for &(s, e) in skip[i..].iter().take_while(|r| r.0 < to) {
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < to {
        out.push((pos, to));
    }
    out
}

/// [`fill`], leaving the bytes of held ranges in `skip` unread (whatever
/// `buf` held): a post-copy restore fills those from the store itself,
/// after the release (restore/lazy).
fn fill_skipping(
    file: &File,
    extents: &[Extent],
    skip: &[(u64, u64)],
    buf: &mut [u8],
    at: u64,
    mut hash: Option<&mut Hasher>,
) -> io::Result<()> {
    let end = at + buf.len() as u64;
    let mut pos = at;
    let mut i = extents.partition_point(|e| e.offset + e.len <= at);
    while pos < end {
        let next = extents.get(i).filter(|e| e.offset < end);
        let part = |to: u64| (pos - at) as usize..(to - at) as usize;
        match next {
            Some(e) if e.offset <= pos => {
                let to = end.min(e.offset + e.len);
                for (from, upto) in outside(pos, to, skip) {
                    let range = (from - at) as usize..(upto - at) as usize;
                    e.file
                        .read_exact_at(&mut buf[range], e.at + (from - e.offset))?;
                }
                pos = to;
                i += 1;
            }
            _ => {
                let to = next.map_or(end, |e| e.offset);
                file.read_exact_at(&mut buf[part(to)], pos)?;
                if let Some(h) = hash.as_deref_mut() {
                    h.update(&buf[part(to)]);
                }
                pos = to;
            }
        }
    }
    Ok(())
}

/// What receives the bytes: `(offset into the requested range, bytes)`.
pub type Sink<'a> = dyn FnMut(u64, &[u8]) -> Result<()> + 'a;

/// The read-ahead thread: every chunk of the section, in order, hashed.
fn read_ahead(
    file: File,
    extents: Arc<Vec<Extent>>,
    skip: Arc<Vec<(u64, u64)>>,
    size: u64,
    algo: Option<Algo>,
    out: Sender<Chunk>,
    free: Receiver<Vec<u8>>,
) -> Option<String> {
    let mut hasher = algo.map(Hasher::new);
    let mut at = 0;
    while at < size {
        // The caller is gone (it failed) once its end of the pool is.
        let mut buf = free.recv().ok()?;
        let n = (size - at).min(CHUNK as u64) as usize;
        buf.resize(n, 0);
        if let Err(e) = fill_skipping(&file, &extents, &skip, &mut buf, at, hasher.as_mut()) {
            let _ = out.send(Err(e));
            return None;
        }
        out.send(Ok(buf)).ok()?;
        at += n as u64;
    }
    hasher.map(Hasher::hex)
}

impl SectionReader {
    /// Opens section `name` of `image`. If the image left it unverified
    /// (`Image::open_for_restore`), it is hashed as it is read.
    pub fn open(image: &Image, name: &str) -> Result<SectionReader> {
        Self::open_skipping(image, name, Vec::new())
    }

    /// [`SectionReader::open`], but the held bytes in `skip` (ranges of
    /// the section, each within the image's `elsewhere` extents) are never
    /// read, and may not be asked for: a post-copy restore fills them
    /// later from the store (restore/lazy). The digest does not cover held
    /// bytes anyway.
    pub fn open_skipping(
        image: &Image,
        name: &str,
        mut skip: Vec<(u64, u64)>,
    ) -> Result<SectionReader> {
        let section = image
            .manifest
            .section(name)
            .ok_or_else(|| Error::corrupt(name, "not in the manifest"))?;
        let path = image.dir.join(name);
        let file =
            File::open(&path).map_err(|e| Error::corrupt(name, format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| Error::corrupt(name, format!("cannot stat: {e}")))?
            .len();
        if len != section.size {
            return Err(size_error(name, len, section.size));
        }
        let want = image.unverified.iter().any(|u| u == name).then(|| {
            let (algo, hex) = section.digest();
            (algo, hex.to_owned())
        });
        let ahead = file
            .try_clone()
            .map_err(|e| Error::corrupt(name, format!("cannot open: {e}")))?;
        let (chunk_tx, chunks) = channel();
        let (free, free_rx) = channel();
        for _ in 0..BUFFERS {
            free.send(Vec::with_capacity(CHUNK)).expect("receiver held");
        }
        let (size, algo) = (section.size, want.as_ref().map(|w| w.0));
        let mut extents = image.elsewhere.get(name).cloned().unwrap_or_default();
        extents.sort_by_key(|e| e.offset);
        let extents = Arc::new(extents);
        let theirs = Arc::clone(&extents);
        skip.sort_unstable();
        let skip = Arc::new(skip);
        let skipped = Arc::clone(&skip);
        let thread = std::thread::Builder::new()
            .name("isotrace-pages".into())
            .spawn(move || {
                crate::sys::cpus::spread();
                read_ahead(ahead, theirs, skipped, size, algo, chunk_tx, free_rx)
            })
            .map_err(|e| Error::io(&path, e))?;
        Ok(SectionReader {
            name: name.into(),
            file,
            size,
            pos: 0,
            cur: None,
            next_at: 0,
            chunks,
            free: Some(free),
            thread: Some(thread),
            want,
            own: Vec::new(),
            extents,
            skip,
        })
    }

    /// Hands the `len` bytes at `offset` of the section to `sink`, in
    /// pieces of at most [`CHUNK`]. Reads in increasing offsets stream;
    /// bytes skipped over are still read and hashed, and a range before
    /// the current position (a hand-made image) is read again.
    pub fn read(&mut self, offset: u64, len: u64, sink: &mut Sink) -> Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| Error::corrupt(&self.name, "a page run lies past its end"))?;
        if outside(offset, end, &self.skip) != [(offset, end)] && len > 0 {
            return Err(Error::Invalid {
                what: format!(
                    "{}: bytes {offset}..{end} are left to post-copy, not read",
                    self.name
                ),
            });
        }
        let mut at = offset;
        while at < end.min(self.pos) {
            let n = (end.min(self.pos) - at).min(CHUNK as u64) as usize;
            self.own.resize(n, 0);
            fill(&self.file, &self.extents, &mut self.own, at, None)
                .map_err(|e| read_error(&self.name, at, e))?;
            sink(at - offset, &self.own)?;
            at += n as u64;
        }
        while self.pos < end {
            let start = self.chunk()?;
            let buf = &self.cur.as_ref().expect("chunk() sets it").0;
            let from = self.pos.max(offset);
            let to = end.min(start + buf.len() as u64);
            if from < to {
                let piece = &buf[(from - start) as usize..(to - start) as usize];
                sink(from - offset, piece)?;
            }
            self.pos = to.max(self.pos);
        }
        Ok(())
    }

    /// Makes `cur` the chunk holding `pos`, taking the next ones from the
    /// thread; returns where it starts.
    fn chunk(&mut self) -> Result<u64> {
        loop {
            if let Some((buf, start)) = &self.cur {
                if self.pos < start + buf.len() as u64 {
                    break;
                }
            }
            if let Some((buf, _)) = self.cur.take() {
                if let Some(free) = &self.free {
                    let _ = free.send(buf);
                }
            }
            let buf = match self.chunks.recv() {
                Ok(Ok(buf)) => buf,
                Ok(Err(e)) => return Err(read_error(&self.name, self.next_at, e)),
                Err(_) => return Err(Error::corrupt(&self.name, "ended early")),
            };
            let start = self.next_at;
            self.next_at += buf.len() as u64;
            self.cur = Some((buf, start));
        }
        Ok(self.cur.as_ref().expect("set above").1)
    }

    /// Checks the digest, after reading whatever was not read yet.
    pub fn finish(mut self) -> Result<()> {
        while self.pos < self.size {
            let start = self.chunk()?;
            self.pos = start + self.cur.as_ref().map_or(0, |c| c.0.len() as u64);
        }
        drop(self.free.take());
        let got = self
            .thread
            .take()
            .expect("joined once")
            .join()
            .expect("the read-ahead thread does not panic");
        match (&self.want, got) {
            (None, _) => Ok(()),
            (Some((_, want)), Some(got)) if *want == got => Ok(()),
            (Some((algo, _)), _) => {
                let algo = match algo {
                    Algo::Blake3 => "blake3",
                    Algo::Sha256 => "sha256",
                };
                Err(Error::corrupt(&self.name, format!("{algo} mismatch")))
            }
        }
    }
}

impl Drop for SectionReader {
    fn drop(&mut self) {
        // Without its pool the thread ends at its next buffer.
        drop(self.free.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_error(name: &str, at: u64, e: io::Error) -> Error {
    Error::corrupt(name, format!("cannot read at byte {at}: {e}"))
}

pub(super) fn size_error(name: &str, len: u64, size: u64) -> Error {
    Error::corrupt(name, format!("{len} bytes, the manifest says {size}"))
}
