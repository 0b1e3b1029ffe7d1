//! Building an environment out of sight, for `env create`, `env copy` and
//! `env import`: the new environment is filled under a dot-named temp
//! directory of the store (which no listing shows and no lookup finds), made
//! durable, and only then renamed to its name with RENAME_NOREPLACE. A kill
//! -9 at any point leaves either no environment or a complete one; an
//! unfinished one is removed when its [`Staged`] is dropped. After a crash
//! it stays as an invisible `.new-*` directory, until the next staging in
//! the store sweeps it away: a builder holds an flock(2) on its directory,
//! which the kernel releases when the builder dies, so an unlocked
//! directory is one nobody is building any more ([`Store::sweep`]).

use crate::attrs;
use crate::durable::{fsync_dir, temp_name};
use crate::env::{remove_tree, validate_name, Environment, Store};
use crate::error::{Error, Result};
use crate::share;
use crate::sys;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an unlocked `.new-*` or `.rm-*` directory is left alone: its
/// maker takes the lock right after creating it, so only a directory that
/// has not changed for this long and is unlocked was abandoned.
/// Whether `path` has not changed for [`STALE_AFTER`]: its maker is done
/// with it, or dead (a builder at work touches its tree all the time).
pub(crate) fn idle(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= STALE_AFTER)
}

pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10);

/// An environment being built; see the module doc.
#[derive(Debug)]
pub struct Staged {
    store: Store,
    env: Environment,
    placed: bool,
    /// The flock on the staging directory (see the module doc).
    _lock: Option<File>,
}

impl Store {
    /// Start building environment `name`. EnvExists if the name is already
    /// taken (checked again, atomically, by [`Staged::commit`]).
    pub fn stage(&self, name: &str) -> Result<Staged> {
        validate_name(name)?;
        if std::fs::symlink_metadata(self.envs().join(name)).is_ok() {
            return Err(Error::EnvExists(name.to_string()));
        }
        self.sweep();
        let tmp = self.envs().join(temp_name(".new-"));
        let built = self.build(&tmp, name).and_then(|env| {
            let lock = sys::try_lock_dir(&tmp).map_err(|e| Error::io("flock", &tmp, e))?;
            Ok((env, lock))
        });
        match built {
            Ok((env, lock)) => Ok(Staged {
                store: self.clone(),
                env,
                placed: false,
                _lock: lock,
            }),
            Err(e) => {
                let _ = remove_tree(&tmp);
                Err(e)
            }
        }
    }

    /// `env copy SRC DST`: a new environment whose private layer holds
    /// the files of SRC's, cheaply where the filesystem allows: each regular
    /// file is a reflink (FICLONE) where the filesystem has them, else a
    /// hard link recorded as shared in both environments (see `share`),
    /// which a change in either breaks first. Directories, symlinks,
    /// whiteouts and special files are made anew with modes, owners (where
    /// permitted), times and xattrs. A file the layer itself hard-links
    /// (a program's own `ln`) is copied, as separate files.
    pub fn copy(&self, src: &str, dst: &str) -> Result<Environment> {
        self.copy_with(src, dst, &|_| {})
    }

    /// [`Store::copy`], calling `copied` with the size of each file once
    /// it is in (for a progress display).
    pub fn copy_with(&self, src: &str, dst: &str, copied: &dyn Fn(u64)) -> Result<Environment> {
        self.copy_as(src, dst, true, copied)
    }

    /// [`Store::copy_with`] copying every byte (reflinks aside), sharing
    /// nothing: for a source in which programs run and may be writing
    /// through fds opened before the copy.
    pub fn copy_full(&self, src: &str, dst: &str, copied: &dyn Fn(u64)) -> Result<Environment> {
        self.copy_as(src, dst, false, copied)
    }

    fn copy_as(
        &self,
        src: &str,
        dst: &str,
        link: bool,
        copied: &dyn Fn(u64),
    ) -> Result<Environment> {
        let from = self.get(src)?;
        let staged = self.stage(dst)?;
        let mut c = Copier {
            reflink: Cell::new(true),
            link,
            src_shared: share::load(from.dir())?,
            linked: RefCell::new(HashSet::new()),
            copied,
        };
        c.copy_tree(&from.upper(), &staged.upper())?;
        let linked = std::mem::take(c.linked.get_mut());
        if !linked.is_empty() {
            // The destination's list is placed with it; the source's grows
            // first, so that once B exists A breaks before writing.
            share::store(staged.env.dir(), &linked)?;
            share::add(from.dir(), &linked)?;
        }
        staged.commit()
    }

    /// Remove the `.new-*` (staging) and `.rm-*` (removal) directories that
    /// a builder or remover killed mid-way left in the store: those nobody
    /// holds locked and that have not changed for [`STALE_AFTER`]. Returns
    /// what it removed; errors only skip an entry (the next sweep retries).
    pub fn sweep(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.envs()) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let n = name.as_encoded_bytes();
            if !(n.starts_with(b".new-") || n.starts_with(b".rm-")) {
                continue;
            }
            let path = e.path();
            if !idle(&path) {
                continue;
            }
            if let Ok(Some(_lock)) = sys::try_lock_dir(&path) {
                if remove_tree(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        removed
    }
}

/// Above this many entries, a staged layer is made durable by one
/// syncfs(2) rather than an fsync per entry.
pub const FSYNC_AT_MOST: usize = 256;

fn durable_entries(upper: &Path, written: &[PathBuf]) -> Result<()> {
    if written.len() > FSYNC_AT_MOST {
        return sys::syncfs(upper).map_err(|e| Error::io("syncfs", upper, e));
    }
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    dirs.insert(upper.to_path_buf());
    for rel in written {
        let path = upper.join(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed since (a layer delta): its parent is what counts.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("lstat", &path, e)),
        };
        if meta.is_file() {
            gone_is_fine(std::fs::File::open(&path).and_then(|f| f.sync_all()))
                .map_err(|e| Error::io("fsync", &path, e))?;
        } else if meta.is_dir() {
            dirs.insert(path.clone());
        }
        // The entry's own name lives in its parent directories.
        let mut up = path.parent();
        while let Some(dir) = up.filter(|d| d.starts_with(upper)) {
            if !dirs.insert(dir.to_path_buf()) {
                break;
            }
            up = dir.parent();
        }
    }
    for dir in &dirs {
        gone_is_fine(fsync_dir(dir)).map_err(|e| Error::io("fsync", dir, e))?;
    }
    Ok(())
}

/// An entry removed meanwhile (a layer delta unpacks while the first part
/// is still being made durable) needs no fsync: its removal is made
/// durable with its parent directory by the pass that removed it.
fn gone_is_fine(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Staged {
    pub fn name(&self) -> &str {
        self.env.name()
    }

    /// The new private layer, to fill.
    pub fn upper(&self) -> PathBuf {
        self.env.upper()
    }

    /// Make everything written under the staged directory durable
    /// (syncfs(2)), then give the environment its name.
    pub fn commit(self) -> Result<Environment> {
        let upper = self.env.upper();
        sys::syncfs(&upper).map_err(|e| Error::io("syncfs", &upper, e))?;
        self.place()
    }

    /// Make the entries `written` (paths relative to the private layer)
    /// durable, on another thread: a few files get an fsync each, with
    /// their directories up to the layer's root; more than
    /// [`FSYNC_AT_MOST`] get one syncfs(2). A busy filesystem's syncfs
    /// writes back every other writer's dirty data too (100+ ms here while
    /// builds run), which a migration's downtime must not wait for. Join
    /// the handle (it gives how long that took), then
    /// [`Staged::commit_durable`].
    pub fn make_durable(&self, written: Vec<PathBuf>) -> std::thread::JoinHandle<Result<Duration>> {
        let upper = self.env.upper();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            durable_entries(&upper, &written).map(|()| t.elapsed())
        })
    }

    /// Give the environment its name once [`Staged::make_durable`] has
    /// succeeded.
    pub fn commit_durable(self) -> Result<Environment> {
        self.place()
    }

    /// Give the environment its name, without syncing its contents (an
    /// empty environment's only record, env.json, is already fsynced).
    pub(crate) fn place(mut self) -> Result<Environment> {
        let envs = self.store.envs();
        let name = self.env.name().to_string();
        let dst = envs.join(&name);
        match sys::rename_noreplace(self.env.dir(), &dst) {
            Ok(()) => self.placed = true,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                return Err(Error::EnvExists(name));
            }
            Err(e) => return Err(Error::io("rename", &dst, e)),
        }
        fsync_dir(&envs).map_err(|e| Error::io("fsync", &envs, e))?;
        Ok(Environment {
            dir: dst,
            meta: self.env.meta.clone(),
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = remove_tree(self.env.dir());
        }
    }
}

/// One `env copy` walk; see [`Store::copy`].
struct Copier<'a> {
    /// Reflinks are still worth trying (no file has failed one yet).
    reflink: Cell<bool>,
    /// Hard links may be made (not [`Store::copy_full`]).
    link: bool,
    /// What the source already shares by copy (such files have two links
    /// and may still be linked again).
    src_shared: HashSet<share::Key>,
    linked: RefCell<HashSet<share::Key>>,
    copied: &'a dyn Fn(u64),
}

impl Copier<'_> {
    /// Copy the children of directory `src` into the existing directory
    /// `dst`, then give `dst` the attributes of `src` (last, so its mode
    /// cannot stop the copy and its times are not bumped by it).
    fn copy_tree(&self, src: &Path, dst: &Path) -> Result<()> {
        let rd = std::fs::read_dir(src).map_err(|e| Error::io("readdir", src, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("readdir", src, e))?;
            self.copy_node(&entry.path(), &dst.join(entry.file_name()))?;
        }
        let meta = std::fs::symlink_metadata(src).map_err(|e| Error::io("lstat", src, e))?;
        attrs::apply(src, dst, &meta, src)
    }

    fn copy_node(&self, from: &Path, to: &Path) -> Result<()> {
        let err = |op, e| Error::io(op, from, e);
        let meta = std::fs::symlink_metadata(from).map_err(|e| err("lstat", e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            DirBuilder::new()
                .mode(0o700)
                .create(to)
                .map_err(|e| err("mkdir", e))?;
            return self.copy_tree(from, to);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(from).map_err(|e| err("readlink", e))?;
            std::os::unix::fs::symlink(target, to).map_err(|e| err("symlink", e))?;
        } else if ft.is_file() {
            let reflinked = self.reflink(from, to).map_err(|e| err("reflink", e))?;
            if !reflinked {
                if self.try_link(from, to, &meta)? {
                    (self.copied)(meta.len());
                    return Ok(());
                }
                crate::cow::copy_content(from, to).map_err(|e| err("copy", e))?;
            }
            (self.copied)(meta.len());
        } else {
            sys::mknod(to, meta.mode(), meta.rdev()).map_err(|e| err("mknod", e))?;
        }
        attrs::apply(from, to, &meta, from)
    }

    /// Hard-link `from` to `to` if it may be shared: one name in the layer
    /// (so not a program's own link), or shared by an earlier copy. The
    /// inode keeps its metadata, so nothing else is applied. EXDEV (another
    /// filesystem), EMLINK (the link count's limit) and EPERM fall back to
    /// a copy of that file.
    fn try_link(&self, from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<bool> {
        // Whiteouts and opaque markers are made anew: they are records of
        // the layer, not data, and cost nothing to copy.
        let marker = from
            .file_name()
            .is_some_and(|n| crate::whiteout::is_reserved_name(n.as_encoded_bytes()));
        if !self.link || marker {
            return Ok(false);
        }
        let key = share::Key::of(meta);
        if meta.nlink() > 1 && !self.src_shared.contains(&key) {
            return Ok(false);
        }
        match std::fs::hard_link(from, to) {
            Ok(()) => {
                self.linked.borrow_mut().insert(key);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::EMLINK | libc::EPERM)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io("link", from, e)),
        }
    }

    /// Make `dst` a reflink of `src` while the filesystem takes them;
    /// false (and no `dst`) once it refuses.
    fn reflink(&self, src: &Path, dst: &Path) -> io::Result<bool> {
        if !self.reflink.get() {
            return Ok(false);
        }
        let from = OpenOptions::new()
            .read(true)
            .custom_flags(sys::O_NOFOLLOW)
            .open(src)?;
        let to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)?;
        match sys::ficlone(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if refuses_reflink(&e) => {
                // Decided once per copy: one refusal means this filesystem
                // (or pair of them) has no shared extents.
                self.reflink.set(false);
                drop(to);
                std::fs::remove_file(dst)?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// The errors by which FICLONE says "not here" (ioctl_ficlone(2)).
fn refuses_reflink(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::EBADF)
    )
}
