//! Crash-safe record replacement: write a temp file beside the target,
//! fsync it, rename(2) it over the target (atomic: a reader sees the old
//! file or the new one), then fsync the directory so the rename itself
//! survives a power loss (fsync(2): syncing a file does not sync its
//! directory entry).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other supervisor (other pid) or thread (counter) of this
/// machine picks at the same time: `<prefix><pid>-<counter>-<nanos>`.
pub(crate) fn temp_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{nanos}", std::process::id())
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(temp_name(".tmp-"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir)
}

/// A file written in full before it gets its name, so that a writer killed
/// at any point (kill -9, a full disk) leaves no partial file behind: it is
/// opened with O_TMPFILE in the target's directory (an inode with no name,
/// freed by the kernel with its last fd) and named by [`Unnamed::publish`].
/// Where the filesystem has no O_TMPFILE (EOPNOTSUPP, EISDIR on old
/// kernels) it is a named temp file beside the target, removed on drop.
pub struct Unnamed {
    file: File,
    dir: PathBuf,
    /// The fallback's temp name; None for an O_TMPFILE file.
    temp: Option<PathBuf>,
}

impl Unnamed {
    /// A new, empty file to become `target` (mode 0644 less the umask).
    pub fn create(target: &Path) -> io::Result<Unnamed> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let unnamed = OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE)
            .open(&dir);
        match unnamed {
            Ok(file) => Ok(Unnamed {
                file,
                dir,
                temp: None,
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let temp = dir.join(temp_name(".tmp-"));
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&temp)?;
                Ok(Unnamed {
                    file,
                    dir,
                    temp: Some(temp),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// fsyncs the file, names it `target` (replacing any file there,
    /// atomically) and fsyncs the directory.
    pub fn publish(mut self, target: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        let temp = match self.temp.take() {
            Some(t) => t,
            None => {
                // linkat cannot replace a name: link to a temp name, then
                // rename over the target.
                let t = self.dir.join(temp_name(".tmp-"));
                crate::sys::link_unnamed(&self.file, &t)?;
                t
            }
        };
        let renamed = std::fs::rename(&temp, target);
        if renamed.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        renamed?;
        fsync_dir(&self.dir)
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_has_no_name_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.tar");
        let u = Unnamed::create(&target).unwrap();
        let mut f = u.file();
        f.write_all(b"whole").unwrap();
        let names = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names(), 0, "a name appeared before publish");
        u.publish(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(names(), 1);
        // Dropped unpublished: nothing left.
        drop(Unnamed::create(&target).unwrap());
        assert_eq!(names(), 1);
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    }
}
