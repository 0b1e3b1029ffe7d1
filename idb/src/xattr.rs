//! Extended attributes changed on a guest's behalf, for fsetxattr(2) and
//! fremovexattr(2) through an fd whose object the environment must copy
//! first (a host file, or an upper file `env copy` shares): the change is
//! made by path on the copy. Both follow a final symlink, so the caller
//! may pass a /proc/self/fd/N magic link to act with the guest's
//! credentials (src/isolate/creds.rs).

use std::io;
use std::path::Path;

/// setxattr(2) of `name` to `value` on `path`; `flags` is the guest's
/// XATTR_CREATE / XATTR_REPLACE.
pub fn set(path: &Path, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    crate::sys::set_xattr_follow(path, name, value, flags)
}

/// removexattr(2) of `name` on `path`.
pub fn remove(path: &Path, name: &[u8]) -> io::Result<()> {
    crate::sys::remove_xattr_follow(path, name)
}
