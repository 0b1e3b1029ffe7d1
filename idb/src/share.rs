//! Regular files that `env copy` shares between two environments by hard
//! link, and how a change breaks the link first.
//!
//! # Why a record, and which
//! After `env copy A B` on a filesystem without reflinks, `A/upper/f` and
//! `B/upper/f` are one inode. A write through either name would show in
//! both environments, so before any change to such a file's data or
//! metadata the environment first gets its own copy ([`break_link`]). A
//! program's own `ln a b` inside one environment makes the same kind of
//! inode (two names, link count 2) and there the write *must* show through
//! both names: the link count alone cannot tell the two apart.
//!
//! Each environment therefore keeps `ENV/shared`: the inodes that copies
//! made, one `INO BTIME_SEC BTIME_NSEC` line each (the birth time of
//! statx(2) tells an inode from a later one that reuses its number; where
//! the filesystem has none it is 0 and the inode number alone decides). It
//! is written like every IDB record, whole, fsynced and renamed over
//! ([`write_atomic`]): after a kill -9 a reader sees the old list or the
//! new one. The copy writes the destination's list inside its staging
//! directory (so it appears with the environment) and adds the same inodes
//! to the source's list before the destination is placed. A list that
//! names more than is shared (a copy killed before it was placed) only
//! costs one needless copy per file; one that names less cannot happen in
//! a placed environment.
//!
//! The rule that keeps the two kinds of links apart: an inode in an
//! environment's list has exactly one name in that environment's layer.
//! `env copy` links only files with one name (or already in the list), and
//! link(2) of a listed file breaks it first, so a program's own links are
//! always made to a private inode. A listed inode whose link count has
//! fallen to 1 (the other environment broke its link or was removed) is no
//! longer shared and is written in place.
//!
//! Several supervisors may share an environment: a break holds the flock
//! of `ENV/shared.lock` and checks again under it that the name still
//! names the shared inode, so exactly one of them copies and none copies
//! over a copy that a program is already writing.

use crate::attrs;
use crate::durable::{temp_name, write_atomic};
use crate::error::{Error, Result};
use crate::sys;
use crate::view::View;
use std::collections::HashSet;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The list of shared inodes, in the environment's directory.
pub(crate) const SHARED: &str = "shared";
const LOCK: &str = "shared.lock";
const HEADER: &str = "isotrace-shared 1";

/// One inode instance: its number and its birth time.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Key {
    ino: u64,
    born: (i64, u32),
}

impl Key {
    pub(crate) fn of(meta: &Metadata) -> Key {
        // std's created() is statx(2)'s stx_btime (ext4, XFS, btrfs, tmpfs).
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos()));
        Key {
            ino: meta.ino(),
            born,
        }
    }
}

/// The inodes environment directory `env_dir` shares; empty if it has no
/// list. A malformed line is an error naming the file.
pub(crate) fn load(env_dir: &Path) -> Result<HashSet<Key>> {
    let path = env_dir.join(SHARED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let corrupt = |what: String| Error::Corrupt {
        path: path.clone(),
        what,
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(corrupt(format!("does not start with {HEADER:?}")));
    }
    let mut keys = HashSet::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let key = match f.as_slice() {
            [i, s, ns] => (|| {
                Some(Key {
                    ino: i.parse().ok()?,
                    born: (s.parse().ok()?, ns.parse().ok()?),
                })
            })(),
            _ => None,
        };
        keys.insert(key.ok_or_else(|| corrupt(format!("line {}: {line:?}", n + 2)))?);
    }
    Ok(keys)
}

/// Replace the list of `env_dir` with `keys`, atomically.
pub(crate) fn store(env_dir: &Path, keys: &HashSet<Key>) -> Result<()> {
    let mut text = String::with_capacity(32 * keys.len() + 20);
    text.push_str(HEADER);
    text.push('\n');
    for k in keys {
        text.push_str(&format!("{} {} {}\n", k.ino, k.born.0, k.born.1));
    }
    let path = env_dir.join(SHARED);
    write_atomic(&path, text.as_bytes()).map_err(|e| Error::io("write", &path, e))
}

/// Add `keys` to the list of the (live) environment `env_dir`, under its
/// lock, so that no concurrent addition is lost.
pub(crate) fn add(env_dir: &Path, keys: &HashSet<Key>) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let _lock = lock(env_dir)?;
    let mut all = load(env_dir)?;
    let before = all.len();
    all.extend(keys.iter().copied());
    if all.len() == before {
        return Ok(());
    }
    store(env_dir, &all)
}

fn lock(env_dir: &Path) -> Result<std::fs::File> {
    let path = env_dir.join(LOCK);
    sys::lock_file(&path).map_err(|e| Error::io("flock", &path, e))
}

/// Whether `meta` (of a file in the layer) is shared with another
/// environment by a copy. With `strict` (before link(2)), a listed inode
/// counts even with one link: the new name must go to a private inode.
fn shared(meta: &Metadata, keys: &HashSet<Key>, strict: bool) -> bool {
    meta.is_file() && (strict || meta.nlink() > 1) && keys.contains(&Key::of(meta))
}

/// Before a change to the upper file `real` of `view` (open for writing,
/// truncate, chmod, chown, utimes, xattrs; `strict` for the source of
/// link(2)): if a copy shares it with another environment, give this
/// environment its own copy, made in `work/` with the same content, mode,
/// owner, times and xattrs, fsynced, and renamed over the name. Returns
/// whether it copied. The parent directory's times are kept: for the
/// guest nothing but the inode changed (as after an overlayfs copy-up).
///
/// An fd opened on the file before keeps the shared inode (as an fd on a
/// host file keeps it after a copy-up); see src/isolate/fdops.rs.
pub fn break_link(view: &View, real: &Path, strict: bool) -> Result<bool> {
    let Ok(meta) = std::fs::symlink_metadata(real) else {
        return Ok(false);
    };
    if !meta.is_file() || !strict && meta.nlink() < 2 {
        return Ok(false);
    }
    let Some(env_dir) = view.upper().parent() else {
        return Ok(false);
    };
    if !shared(&meta, &load(env_dir)?, strict) {
        return Ok(false);
    }
    let _lock = lock(env_dir)?;
    // Again under the lock: another supervisor may have broken it already.
    let meta = match std::fs::symlink_metadata(real) {
        Ok(m) if shared(&m, &load(env_dir)?, strict) => m,
        _ => return Ok(false),
    };
    own_copy(view, real, &meta)?;
    Ok(true)
}

/// Whether the open file `meta` describes (an fd's inode) is one that a
/// copy made shared with another environment: it is in the list, whatever
/// its link count now (an fd opened before a break keeps the old inode,
/// whose only name is then in the other environment).
pub fn was_shared(view: &View, meta: &Metadata) -> Result<bool> {
    let Some(env_dir) = view.upper().parent() else {
        return Ok(false);
    };
    Ok(shared(meta, &load(env_dir)?, true))
}

/// Whether the environment of `view` shares any inode with another
/// environment (its list is not empty). A supervisor that lets fd-based
/// changes reach the kernel untrapped must not, for such an environment:
/// an fd opened read-only on a shared file would change both.
pub fn shares_any(view: &View) -> Result<bool> {
    let Some(env_dir) = view.upper().parent() else {
        return Ok(false);
    };
    Ok(!load(env_dir)?.is_empty())
}

fn own_copy(view: &View, real: &Path, meta: &Metadata) -> Result<()> {
    let err = |op, e| Error::io(op, real, e);
    let tmp = view.work().join(temp_name("#own-"));
    let made = (|| {
        let f = crate::cow::copy_content(real, &tmp).map_err(|e| err("copy", e))?;
        attrs::apply(real, &tmp, meta, real)?;
        f.sync_all().map_err(|e| err("fsync", e))?;
        let parent = real.parent().unwrap_or(Path::new("/"));
        let pmeta = std::fs::symlink_metadata(parent).map_err(|e| err("lstat", e))?;
        std::fs::rename(&tmp, real).map_err(|e| err("rename", e))?;
        let _ = sys::set_times_nofollow(
            parent,
            (pmeta.atime(), pmeta.atime_nsec()),
            (pmeta.mtime(), pmeta.mtime_nsec()),
        );
        Ok(())
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}
