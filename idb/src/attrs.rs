//! Copying an object's metadata to its private copy, as overlayfs copy-up
//! does (ovl_copy_up_inode: owner, mode, xattrs, then times).

use crate::error::{Error, Result};
use crate::sys;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Extended-attribute namespaces that are copied (xattr(7)). `user.` and
/// `security.` (SELinux labels, file capabilities) are best effort;
/// `trusted.` needs CAP_SYS_ADMIN and is copied where permitted; POSIX ACLs
/// travel as `system.posix_acl_*`.
const XATTR_NAMESPACES: [&[u8]; 4] = [b"user.", b"security.", b"trusted.", b"system.posix_acl_"];

/// Errors that mean "this attribute cannot be carried here", not "the copy
/// failed": no permission, or no support on the upper filesystem.
fn is_best_effort(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM)
            | Some(libc::EACCES)
            | Some(libc::ENOTSUP)
            | Some(libc::EINVAL)
            | Some(libc::ERANGE)
    )
}

/// Give `dst` the owner, mode, xattrs and times of `src` (described by
/// `meta`), without following a final symlink on either side.
///
/// Order matters: chown(2) clears set-user-ID/set-group-ID bits and
/// `security.capability`, so the owner goes first; setting xattrs and mode
/// bumps ctime only, so times go last.
pub(crate) fn apply(src: &Path, dst: &Path, meta: &Metadata, public: &Path) -> Result<()> {
    let err = |op, e| Error::io(op, public, e);
    chown_best_effort(dst, meta).map_err(|e| err("chown", e))?;
    if !meta.file_type().is_symlink() {
        let mode = std::fs::Permissions::from_mode(meta.mode() & 0o7777);
        std::fs::set_permissions(dst, mode).map_err(|e| err("chmod", e))?;
    }
    copy_xattrs(src, dst).map_err(|e| err("setxattr", e))?;
    sys::set_times_nofollow(
        dst,
        (meta.atime(), meta.atime_nsec()),
        (meta.mtime(), meta.mtime_nsec()),
    )
    .map_err(|e| err("utimensat", e))
}

/// lchown to the source's owner; an unprivileged supervisor may only keep
/// the group (if it is a member), or neither: EPERM is not an error here
/// (the brief's "owner where permitted").
fn chown_best_effort(dst: &Path, meta: &Metadata) -> io::Result<()> {
    match std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())) {
        Err(e) if is_best_effort(&e) => {
            match std::os::unix::fs::lchown(dst, None, Some(meta.gid())) {
                Err(e) if is_best_effort(&e) => Ok(()),
                r => r,
            }
        }
        r => r,
    }
}

/// Copy the xattrs of the copied namespaces. Only running out of space
/// (ENOSPC, EDQUOT) or an I/O error fails the copy-up.
fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let names = match sys::list_xattrs(src) {
        Ok(n) => n,
        Err(e) if is_best_effort(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names {
        if !XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns)) {
            continue;
        }
        let Ok(value) = sys::get_xattr(src, &name) else {
            continue;
        };
        match sys::set_xattr(dst, &name, &value) {
            Err(e) if is_best_effort(&e) => {}
            r => r?,
        }
    }
    Ok(())
}
