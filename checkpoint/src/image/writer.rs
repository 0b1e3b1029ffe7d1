//! Writing an image so that a crash or a full disk never leaves a
//! valid-looking half image: everything goes into `DIR.tmp-XXXXXX` next to
//! DIR, every file and the directory are fsynced, and only then is the
//! directory renamed to DIR (rename(2) is atomic within a filesystem).
//! Dropping an uncommitted writer removes the temporary directory.

use super::manifest::{valid_section_name, Manifest, Section, MANIFEST};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct ImageWriter {
    dir: PathBuf,
    tmp: PathBuf,
    sections: Vec<Section>,
    /// Finished sections, fsynced at commit: a snapshot finishes its pages
    /// sections while the target is frozen, and must not wait for the disk
    /// there.
    unsynced: Vec<(PathBuf, File)>,
    committed: bool,
}

/// One section being streamed: counts and hashes what passes through.
pub struct SectionWriter {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    size: u64,
}

impl SectionWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far: the offset the next write lands at.
    pub fn offset(&self) -> u64 {
        self.size
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        })
    }

    pub fn section(&mut self, name: &str) -> Result<SectionWriter> {
        assert!(valid_section_name(name), "bad section name {name}");
        let path = self.tmp.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(SectionWriter {
            name: name.to_owned(),
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            size: 0,
        })
    }

    /// Flushes a section and records it for the manifest (it is fsynced by
    /// [`ImageWriter::commit`]).
    pub fn finish(&mut self, section: SectionWriter) -> Result<()> {
        let SectionWriter {
            name,
            path,
            out,
            hash,
            size,
        } = section;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        self.unsynced.push((path, file));
        self.sections.push(Section {
            name,
            size,
            sha256: hex(&hash.finalize()),
        });
        Ok(())
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
