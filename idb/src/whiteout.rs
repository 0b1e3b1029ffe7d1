//! The OCI whiteout format inside the upper layer (image-spec layer.md,
//! "Whiteouts"): `.wh.NAME` hides `NAME` of the host, `.wh..wh..opq` inside a
//! directory hides all of the host directory's entries. Unlike overlayfs'
//! 0/0 character devices these are plain empty files, which an unprivileged
//! supervisor can create and which survive tar export.

use crate::path::{child, split_last};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Prefix of every whiteout; guest names starting with it are reserved.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub const OPAQUE_NAME: &str = ".wh..wh..opq";

/// Whether a single component is reserved (it would collide with the
/// whiteout format). Such names are refused on create (EPERM), do not exist
/// for lookups and never appear in merged listings.
pub fn is_reserved_name(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// `upper/<parent>/.wh.<name>` for the real upper path of an object.
pub(crate) fn whiteout_of(upper_obj: &Path) -> Option<PathBuf> {
    let (parent, name) = split_last(upper_obj)?;
    let mut n = Vec::with_capacity(WHITEOUT_PREFIX.len() + name.len());
    n.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    n.extend_from_slice(name.as_bytes());
    Some(child(parent, &n))
}

/// `upper/<dir>/.wh..wh..opq` for the real upper path of a directory.
pub(crate) fn opaque_marker(upper_dir: &Path) -> PathBuf {
    child(upper_dir, OPAQUE_NAME.as_bytes())
}

/// The host name a whiteout entry hides, if `name` is a whiteout (and not
/// the opaque marker).
pub(crate) fn hidden_by(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    if b == OPAQUE_NAME.as_bytes() {
        return None;
    }
    b.strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .filter(|rest| !rest.is_empty())
        .map(OsStr::from_bytes)
}
