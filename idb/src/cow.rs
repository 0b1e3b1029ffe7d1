//! Mutations of the private layer, on real files, each crash-safe: every
//! new object is built under `work/` and renamed into upper in one step
//! (renameat2 RENAME_NOREPLACE), so a crash leaves at worst a stray temp in
//! `work/`, never a half-copied file in the view; and when several
//! supervisors race on one name exactly one rename lands.
//!
//! None of these functions checks the *tracee's* permissions: they run with
//! the supervisor's credentials. The policy decides whether the guest may
//! do the operation before calling them.

use crate::attrs;
use crate::durable::temp_name;
use crate::env::remove_tree;
use crate::error::{Error, Result};
use crate::fs::{Kind, RealFs};
use crate::listing::merged_listing;
use crate::lookup::{self, Dir};
use crate::path::{bytes, child, components, split_last};
use crate::resolve::{Loc, Resolved};
use crate::sys;
use crate::view::View;
use crate::whiteout::{is_reserved_name, opaque_marker, whiteout_of};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Give `dst` the metadata of `src` (best effort owner, see `attrs`).
pub(crate) fn copy_attrs(src: &Path, dst: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| Error::io("lstat", src, e))?;
    attrs::apply(src, dst, &meta, src)
}

/// Make the object `r` names exist in upper before a write to it (open for
/// write, truncate, chmod, chown, utimes, setxattr), and return its real
/// path there. Missing parents are created in upper as copies of the host
/// directories (mode, owner where permitted, times, xattrs). A regular file
/// is copied with its content, mode, owner, times and xattrs, and fsynced
/// before it is renamed into place; a symlink is re-created with the same
/// target; a directory is created empty (its host entries stay merged);
/// fifos and devices are re-created with mknod(2).
///
/// Objects already in upper, and those inside an exception (which are
/// written in place on the host, by design), are returned as they are.
/// On failure (ENOSPC: `errno()` is ENOSPC) nothing is left in upper or
/// `work/` but the parent directories already copied up.
///
/// Afterwards call `Cache::invalidate(&r.public)`.
pub fn copy_up(view: &View, r: &Resolved) -> Result<PathBuf> {
    match r.loc {
        None => Err(Error::NotFound(r.public.clone())),
        Some(Loc::Upper) | Some(Loc::Exception) => Ok(r.real.clone()),
        Some(Loc::Host) => {
            let (parent, name) =
                split_last(&r.public).ok_or_else(|| Error::NotFound(r.public.clone()))?;
            if is_reserved_name(name.as_bytes()) {
                return Err(Error::Reserved(r.public.clone()));
            }
            ensure_dirs(view, parent)?;
            copy_node(view, &r.public)?;
            Ok(view.upper_path(&r.public))
        }
    }
}

/// Prepare the creation of the missing object `target` (mkdir, mknod,
/// symlink, link, open with O_CREAT, bind of a unix socket): copy its
/// parent chain up and return the real path to create it at. Inside an
/// exception that is the public path itself.
///
/// EEXIST if the target exists (the caller handles O_CREAT without O_EXCL
/// on an existing file with [`copy_up`] instead), EPERM for a reserved
/// `.wh.*` name. A whiteout over the name is left in place: an object in
/// upper wins over a whiteout beside it, so the view is right before and
/// after the create, and if the create fails the deleted host object stays
/// hidden. After the create succeeded call [`finish_create`].
pub fn prepare_create(view: &View, target: &Resolved) -> Result<PathBuf> {
    if target.loc.is_some() {
        return Err(Error::Exists(target.public.clone()));
    }
    prepare_rename_target(view, target)
}

/// Like [`prepare_create`], but the target may exist: for the destination
/// of rename(2), which replaces it. When a directory replaces a directory
/// that exists on the host, call [`whiteout`] for the target first (after
/// checking that it is empty in the merged view), so that the renamed
/// directory is opaque, then [`finish_create`] after the rename.
pub fn prepare_rename_target(view: &View, target: &Resolved) -> Result<PathBuf> {
    let public = &target.public;
    if view.is_hidden(public) {
        return Err(Error::NotFound(public.clone()));
    }
    if view.is_exception(public) {
        return Ok(public.clone());
    }
    let (parent, name) = split_last(public).ok_or_else(|| Error::Exists(public.clone()))?;
    if is_reserved_name(name.as_bytes()) {
        return Err(Error::Reserved(public.clone()));
    }
    // Fast path: upper directories are only ever made by ensure_dirs or a
    // copy-up, ancestors first, so a parent already in upper needs nothing
    // (one lstat instead of a walk of every component).
    // The walk that resolved `target` may have seen the parent in upper
    // already (upper directories go only through the supervisor).
    let parent_in_upper = target.parent_in_upper
        || std::fs::symlink_metadata(view.upper_path(parent)).is_ok_and(|m| m.is_dir());
    if !parent_in_upper {
        ensure_dirs(view, parent)?;
    }
    Ok(view.upper_path(public))
}

/// Tidy up after a successful create at `public`: drop the whiteout over its
/// name, and if the new object is a directory created over a deleted one,
/// first mark it opaque (`.wh..wh..opq`) so that the old host entries stay
/// hidden. Until this runs the directory is opaque anyway (a directory
/// beside its own whiteout is), so a crash in between changes nothing.
/// Idempotent; does nothing if the create did not happen.
/// Whether a create at `public` will need [`finish_create`]: only when a
/// whiteout hides a deleted object of that name. Most creates need nothing,
/// so the caller can skip waiting for the syscall's exit.
pub fn needs_finish(view: &View, public: &Path) -> bool {
    if view.is_exception(public) || view.is_hidden(public) {
        return false;
    }
    whiteout_of(&view.upper_path(public)).is_some_and(|wh| std::fs::symlink_metadata(wh).is_ok())
}

pub fn finish_create(view: &View, public: &Path) -> Result<()> {
    if view.is_exception(public) || view.is_hidden(public) {
        return Ok(());
    }
    let up = view.upper_path(public);
    let Some(wh) = whiteout_of(&up) else {
        return Ok(());
    };
    if std::fs::symlink_metadata(&wh).is_err() {
        return Ok(());
    }
    let Ok(meta) = std::fs::symlink_metadata(&up) else {
        return Ok(());
    };
    if meta.is_dir() {
        create_marker(view, &opaque_marker(&up), public)?;
    }
    match std::fs::remove_file(&wh) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", &wh, e)),
        _ => Ok(()),
    }
}

/// Record that `public` is deleted in the environment: create the whiteout
/// `upper/<parent>/.wh.<name>` if the host still shows an object there
/// (returns whether one was created). Call it *before* removing an upper
/// copy: an upper object wins over a whiteout beside it, so there is no
/// moment at which the host object shows through. Inside an exception
/// nothing is recorded (the caller deletes the host object for real).
pub fn whiteout(view: &View, public: &Path) -> Result<bool> {
    if view.is_hidden(public) {
        return Err(Error::NotFound(public.to_path_buf()));
    }
    if view.is_exception(public) {
        return Ok(false);
    }
    let Some((parent, name)) = split_last(public) else {
        return Err(Error::io(
            "whiteout",
            public,
            io::Error::from_raw_os_error(libc::EBUSY),
        ));
    };
    if is_reserved_name(name.as_bytes()) {
        return Err(Error::Reserved(public.to_path_buf()));
    }
    if std::fs::symlink_metadata(public).is_err() {
        return Ok(false);
    }
    let dir = ensure_dirs(view, parent)?;
    if !dir.host_visible {
        return Ok(false);
    }
    let wh = whiteout_of(&view.upper_path(public)).expect("public has a name");
    create_marker(view, &wh, public)?;
    Ok(true)
}

/// unlink(2) in the merged view: whiteout, then remove the upper copy.
/// EISDIR for a directory. Afterwards call `Cache::invalidate`.
pub fn unlink(view: &View, r: &Resolved) -> Result<()> {
    let io_err = |errno| Error::io("unlink", &r.public, io::Error::from_raw_os_error(errno));
    match (r.loc, r.kind) {
        (None, _) => Err(Error::NotFound(r.public.clone())),
        (_, Some(Kind::Dir)) => Err(io_err(libc::EISDIR)),
        (Some(Loc::Exception), _) => {
            std::fs::remove_file(&r.real).map_err(|e| Error::io("unlink", &r.real, e))
        }
        (Some(loc), _) => {
            whiteout(view, &r.public)?;
            if loc == Loc::Upper {
                std::fs::remove_file(&r.real).map_err(|e| Error::io("unlink", &r.real, e))?;
            }
            Ok(())
        }
    }
}

/// rmdir(2) in the merged view: ENOTEMPTY unless the directory is empty in
/// the merged view (the upper copy may still hold whiteouts, which the
/// kernel's rmdir would refuse); then whiteout, and the upper copy is moved
/// to `work/` in one rename and deleted there. Afterwards call
/// `Cache::invalidate`.
pub fn rmdir(view: &View, r: &Resolved) -> Result<()> {
    let io_err = |errno| Error::io("rmdir", &r.public, io::Error::from_raw_os_error(errno));
    match (r.loc, r.kind) {
        (None, _) => return Err(Error::NotFound(r.public.clone())),
        (_, Some(k)) if k != Kind::Dir => return Err(io_err(libc::ENOTDIR)),
        (Some(Loc::Exception), _) => {
            return std::fs::remove_dir(&r.real).map_err(|e| Error::io("rmdir", &r.real, e))
        }
        _ if bytes(&r.public) == b"/" => return Err(io_err(libc::EBUSY)),
        _ => {}
    }
    if merged_listing(view, &RealFs, r)?.len() > 2 {
        return Err(io_err(libc::ENOTEMPTY));
    }
    whiteout(view, &r.public)?;
    if r.loc == Some(Loc::Upper) {
        let trash = view.work().join(temp_name("#rm-"));
        std::fs::rename(&r.real, &trash).map_err(|e| Error::io("rename", &r.real, e))?;
        remove_tree(&trash).map_err(|e| Error::io("remove", &trash, e))?;
    }
    Ok(())
}

/// Make every directory of the canonical public path `dir` exist in upper,
/// copying the host ones, and return its state in the view. Each step is
/// looked up in the merged view first, so a deleted host directory is never
/// brought back.
fn ensure_dirs(view: &View, dir: &Path) -> Result<Dir> {
    let fs = RealFs;
    let mut cur = lookup::root(view, &fs)?;
    for name in components(bytes(dir)) {
        let public = child(&cur.public, name);
        if view.is_hidden(&public) || view.is_exception(&public) {
            return Err(Error::NotFound(public));
        }
        let found = lookup::merged(view, &fs, &cur, name, &public)?;
        let f = found.ok_or_else(|| Error::NotFound(public.clone()))?;
        if f.kind != Kind::Dir {
            return Err(Error::io(
                "copy-up",
                &public,
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        if f.loc == Loc::Host {
            copy_node(view, &public)?;
        }
        cur = Dir {
            public,
            loc: Loc::Upper,
            host_visible: f.host_visible,
            id: 0,
        };
    }
    Ok(cur)
}

/// Removes a temp object in `work/` unless it was placed.
struct Temp(Option<PathBuf>);

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
        }
    }
}

/// Copy the host object at `public` to `upper/<public>` (its parent exists).
fn copy_node(view: &View, public: &Path) -> Result<()> {
    let err = |op, e| Error::io(op, public, e);
    let meta = std::fs::symlink_metadata(public).map_err(|e| err("lstat", e))?;
    let mut tmp = Temp(Some(view.work().join(temp_name("#"))));
    let path = tmp.0.clone().expect("set above");
    let ft = meta.file_type();
    let file = if ft.is_dir() {
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| err("mkdir", e))?;
        None
    } else if ft.is_symlink() {
        let target = std::fs::read_link(public).map_err(|e| err("readlink", e))?;
        std::os::unix::fs::symlink(target, &path).map_err(|e| err("symlink", e))?;
        None
    } else if ft.is_file() {
        Some(copy_content(public, &path).map_err(|e| err("copy", e))?)
    } else {
        sys::mknod(&path, meta.mode(), meta.rdev()).map_err(|e| err("mknod", e))?;
        None
    };
    attrs::apply(public, &path, &meta, public)?;
    if let Some(f) = file {
        // The content must be on disk before the name is: otherwise a crash
        // could expose a renamed but empty file (ext4 auto_da_alloc aside).
        f.sync_all().map_err(|e| err("fsync", e))?;
    }
    if place(&path, &view.upper_path(public), true).map_err(|e| err("rename", e))? {
        tmp.0 = None;
    }
    Ok(())
}

pub(crate) fn copy_content(src: &Path, dst: &Path) -> io::Result<File> {
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(sys::O_NOFOLLOW)
        .open(src)?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    // std uses copy_file_range(2)/sendfile(2) here; ENOSPC surfaces as is.
    io::copy(&mut from, &mut to)?;
    Ok(to)
}

/// An empty marker file (whiteout or opaque), mode 0600, placed atomically.
fn create_marker(view: &View, dst: &Path, public: &Path) -> Result<()> {
    let mut tmp = Temp(Some(view.work().join(temp_name("#wh-"))));
    let path = tmp.0.clone().expect("set above");
    let made = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    made.map_err(|e| Error::io("create", public, e))?;
    // A marker that lost the race to an identical one is simply dropped.
    if place(&path, dst, false).map_err(|e| Error::io("rename", public, e))? {
        tmp.0 = None;
    }
    Ok(())
}

/// Rename `tmp` to `dst` unless `dst` exists (another supervisor won the
/// race: `Ok(false)`, and `tmp` stays for the caller's guard to remove).
/// With `keep_parent_times`, the parent's atime/mtime are restored, as
/// overlayfs does after a copy-up: from the guest's point of view the
/// directory did not change. An unprivileged supervisor gets through a
/// parent without owner write permission (copied from a 0555 host
/// directory) by lending itself u+wx for the rename.
fn place(tmp: &Path, dst: &Path, keep_parent_times: bool) -> io::Result<bool> {
    let parent = dst.parent().unwrap_or(Path::new("/"));
    let pmeta = std::fs::symlink_metadata(parent)?;
    let mut r = sys::rename_noreplace(tmp, dst);
    if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EACCES)) {
        use std::os::unix::fs::PermissionsExt;
        let mode = pmeta.mode() & 0o7777;
        if std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o300)).is_ok() {
            r = sys::rename_noreplace(tmp, dst);
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode))?;
        }
    }
    if keep_parent_times {
        let at = (pmeta.atime(), pmeta.atime_nsec());
        let mt = (pmeta.mtime(), pmeta.mtime_nsec());
        let _ = sys::set_times_nofollow(parent, at, mt);
    }
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}
