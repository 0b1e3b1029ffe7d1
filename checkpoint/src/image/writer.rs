//! Writing an image so that a crash or a full disk never leaves a
//! valid-looking half image: everything goes into `DIR.tmp-XXXXXX` next to
//! DIR, every file and the directory are fsynced, and only then is the
//! directory renamed to DIR (rename(2) is atomic within a filesystem).
//! Dropping an uncommitted writer removes the temporary directory.

use super::digest::{Algo, Hasher};
use super::manifest::{valid_section_name, Manifest, Section, MANIFEST};
use super::write_behind::{Op, WriteBehind};
use crate::error::{Error, Result};
use crate::pageset::PageSet;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes gathered before one hand-over to the write thread.
pub const CHUNK: usize = 2 << 20;
/// Buffers in flight between the dumping and the writing thread: with the
/// one being filled, at most 5 * CHUNK = 10 MiB of the supervisor's RSS,
/// whatever the size of the section (IMAGE.md: a dump streams).
const BUFFERS: usize = 4;

pub struct ImageWriter {
    dir: PathBuf,
    tmp: PathBuf,
    sections: Vec<Section>,
    /// Finished sections, fsynced at commit: a snapshot finishes its pages
    /// sections while the target is frozen, and must not wait for the disk
    /// there.
    unsynced: Vec<(PathBuf, File)>,
    committed: bool,
    /// Pages (pid, then address) the dump must not read: a migration's
    /// receiver holds them from pre-copy.
    held: HashMap<i32, Arc<PageSet>>,
    /// Whether sections start their disk writes as they go (see
    /// [`ImageWriter::no_early_writeback`]).
    writeback: bool,
}

/// One section being streamed: counts and hashes what passes through.
/// Bytes are gathered in a [`CHUNK`]-sized buffer (a caller can read
/// straight into it: [`SectionWriter::spare`]) and hashed as they are
/// committed, while the caller's read has just left them in this CPU's
/// cache (read in pieces of a few hundred KiB, they stay in its L2); a
/// full buffer is written with one write(2) on a write thread while the
/// next one fills. A section that never fills a buffer (the metadata
/// ones) is written inline, and starts no thread.
pub struct SectionWriter {
    name: String,
    path: PathBuf,
    /// The file, until the write thread takes it.
    file: Option<File>,
    hasher: Hasher,
    behind: Option<WriteBehind>,
    /// The buffer being filled, and how much of it is.
    cur: Option<Vec<u8>>,
    fill: usize,
    /// Bytes of the file so far, holes included.
    flushed: u64,
    /// Bytes left as holes ([`SectionWriter::skip`]).
    held: u64,
    /// Whether the write thread starts writeback as it goes.
    writeback: bool,
}

/// A finished section: its name, file, size and digest.
type Closed = (String, PathBuf, File, Section);

impl SectionWriter {
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(CHUNK);
            self.spare(n)?.copy_from_slice(&bytes[..n]);
            self.commit(n);
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// `len` (at most [`CHUNK`]) bytes of room at the end of the section
    /// to read into; [`SectionWriter::commit`] then appends the first n.
    pub fn spare(&mut self, len: usize) -> Result<&mut [u8]> {
        assert!(len <= CHUNK, "spare of {len} bytes");
        if self.fill + len > CHUNK {
            self.flush()?;
        }
        let cur = match self.cur.take() {
            Some(b) => b,
            None => match self.behind.as_ref() {
                Some(b) => match b.take() {
                    Some(buf) => buf,
                    None => return Err(self.write_error()),
                },
                None => Vec::new(),
            },
        };
        let buf = self.cur.insert(cur);
        if buf.len() < self.fill + len {
            buf.resize(self.fill + len, 0);
        }
        Ok(&mut buf[self.fill..self.fill + len])
    }

    /// Appends the first `n` bytes of the last [`SectionWriter::spare`].
    pub fn commit(&mut self, n: usize) {
        let cur = self.cur.as_deref().unwrap_or_default();
        assert!(self.fill + n <= cur.len(), "commit past the spare room");
        self.hasher.update(&cur[self.fill..self.fill + n]);
        self.fill += n;
    }

    /// Bytes written so far: the offset the next write lands at.
    pub fn offset(&self) -> u64 {
        self.flushed + self.fill as u64
    }

    /// The write thread, started on first use.
    fn behind(&mut self) -> &WriteBehind {
        if self.behind.is_none() {
            let file = self.file.take().expect("the file until the write thread");
            self.behind = Some(WriteBehind::start(file, BUFFERS, CHUNK, self.writeback));
        }
        self.behind.as_ref().expect("started")
    }

    /// Hands the filled buffer to the write thread.
    fn flush(&mut self) -> Result<()> {
        let Some(buf) = self.cur.take() else {
            return Ok(());
        };
        let fill = std::mem::take(&mut self.fill);
        let failed = {
            let behind = self.behind();
            behind.send(Op::Data(buf, fill));
            behind.failed()
        };
        self.flushed += fill as u64;
        if failed {
            return Err(self.write_error());
        }
        Ok(())
    }

    /// The write thread's error, once it has failed.
    fn write_error(&mut self) -> Error {
        let (_, res) = self.behind.take().expect("started").finish();
        let e = res
            .err()
            .unwrap_or_else(|| std::io::Error::other("write failed"));
        Error::io(&self.path, e)
    }

    /// Writes what is left; returns the file, the size and the digest.
    fn close(mut self) -> Result<Closed> {
        let file = match self.behind.is_some() {
            true => {
                self.flush()?;
                let (file, res) = self.behind.take().expect("started").finish();
                res.map_err(|e| Error::io(&self.path, e))?;
                file
            }
            false => {
                let mut file = self.file.take().expect("no write thread");
                let buf = self.cur.take().unwrap_or_default();
                file.write_all(&buf[..self.fill])
                    .map_err(|e| Error::io(&self.path, e))?;
                self.flushed += self.fill as u64;
                file
            }
        };
        let digest = std::mem::replace(&mut self.hasher, Hasher::new(Algo::Blake3)).hex();
        if self.held > 0 {
            // A hole at the end: the file still has the section's size.
            file.set_len(self.flushed)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        let mut section = Section::blake3(&self.name, self.flushed, digest);
        section.held = self.held;
        Ok((self.name, self.path, file, section))
    }

    /// Leaves `len` bytes as a hole that the digest does not cover: pages
    /// the reader of this image already holds (see [`Section::held`]).
    pub fn skip(&mut self, len: u64) -> Result<()> {
        self.flush()?;
        match (&self.behind, &mut self.file) {
            (Some(behind), _) => behind.send(Op::Hole(len)),
            (None, Some(file)) => {
                let by = i64::try_from(len).expect("a hole below 2^63 bytes");
                file.seek(SeekFrom::Current(by))
                    .map_err(|e| Error::io(&self.path, e))?;
            }
            (None, None) => unreachable!("the file or its write thread"),
        }
        self.flushed += len;
        self.held += len;
        Ok(())
    }
}

/// fsync(2) of a directory, so the entries in it (and a rename into it)
/// are durable, not only the files' data.
fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(path, e))
}

impl ImageWriter {
    /// Starts an image that will appear at `dir` on commit. `dir` must not
    /// exist yet.
    pub fn create(dir: &Path) -> Result<ImageWriter> {
        if fs::symlink_metadata(dir).is_ok() {
            return Err(Error::Exists { path: dir.into() });
        }
        let name = dir
            .file_name()
            .ok_or_else(|| Error::Invalid {
                what: format!("{}: not a directory name", dir.display()),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = (0..100)
            .map(|i| parent.join(format!(".{name}.tmp-{}-{i}", std::process::id())))
            .find(|p| fs::create_dir(p).is_ok())
            .ok_or_else(|| {
                let e = fs::create_dir(parent.join(format!(".{name}.tmp-probe")));
                Error::io(
                    &parent,
                    e.err().unwrap_or_else(std::io::Error::last_os_error),
                )
            })?;
        Ok(ImageWriter {
            dir: dir.into(),
            tmp,
            sections: Vec::new(),
            unsynced: Vec::new(),
            committed: false,
            held: HashMap::new(),
            writeback: true,
        })
    }

    /// Sections no longer start their disk writes while they are written
    /// (`write_behind`), only the commit's fsync does. For a group that
    /// runs on during the commit (`--leave-running`): the early writeback
    /// shortens the whole checkpoint (the fsync waits for the tail only)
    /// but lengthens the dump, which is its frozen part.
    pub fn no_early_writeback(&mut self) {
        self.writeback = false;
    }

    /// Pages of `pid` the dump must not read (their addresses), because
    /// the reader of this image holds them: the freeze of a pre-copied
    /// migration (STREAM.md). Their bytes become holes ([`Section::held`]).
    pub fn hold_pages(&mut self, pid: i32, pages: Arc<PageSet>) {
        self.held.insert(pid, pages);
    }

    /// The pages of `pid` not to read, if any.
    pub fn held_pages(&self, pid: i32) -> Option<Arc<PageSet>> {
        self.held.get(&pid).cloned()
    }

    pub fn section(&mut self, name: &str) -> Result<SectionWriter> {
        assert!(valid_section_name(name), "bad section name {name}");
        let path = self.tmp.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(SectionWriter {
            name: name.to_owned(),
            path,
            file: Some(file),
            hasher: Hasher::new(Algo::Blake3),
            behind: None,
            cur: None,
            fill: 0,
            flushed: 0,
            held: 0,
            writeback: self.writeback,
        })
    }

    /// Flushes a section and records it for the manifest (it is fsynced by
    /// [`ImageWriter::commit`]).
    pub fn finish(&mut self, section: SectionWriter) -> Result<()> {
        let (_, path, file, section) = section.close()?;
        self.unsynced.push((path, file));
        self.sections.push(section);
        Ok(())
    }

    /// An optional section: `data` encoded with the codec, or nothing at
    /// all when it is `T::default()` (nothing recorded; readers take the
    /// section's absence for that, [`super::Image::optional`]).
    pub fn write_optional<T: serde::Serialize + Default + PartialEq>(
        &mut self,
        name: &str,
        data: &T,
    ) -> Result<()> {
        if *data == T::default() {
            return Ok(());
        }
        self.write_section(name, &super::codec::encode(data)?)
    }

    pub fn write_section(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut s = self.section(name)?;
        s.write(bytes)?;
        self.finish(s)
    }

    /// Writes the manifest (with every finished section), makes it all
    /// durable and renames the directory into place.
    pub fn commit(mut self, mut manifest: Manifest) -> Result<PathBuf> {
        for (path, file) in self.unsynced.drain(..) {
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        manifest.sections = std::mem::take(&mut self.sections);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Invalid {
            what: format!("manifest: {e}"),
        })?;
        let path = self.tmp.join(MANIFEST);
        let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all(&text)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.tmp)?;
        if fs::symlink_metadata(&self.dir).is_ok() {
            return Err(Error::Exists {
                path: self.dir.clone(),
            });
        }
        fs::rename(&self.tmp, &self.dir).map_err(|e| Error::io(&self.dir, e))?;
        self.committed = true;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(self.dir.clone())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}
