//! Byte-level helpers for public paths. A *normalized* public path is
//! absolute, has no `.`, `..` or empty components and no trailing slash
//! (except `/` itself). The hot path compares bytes instead of iterating
//! `Path::components`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// PATH_MAX from linux/limits.h: a path string of this many bytes or more
/// (not counting the NUL) fails with ENAMETOOLONG.
pub const PATH_MAX: usize = 4096;
/// NAME_MAX: the longest single component.
pub const NAME_MAX: usize = 255;

pub(crate) fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

pub(crate) fn from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// Whether normalized `path` equals `prefix` or lies below it, matching whole
/// components: `/dev` covers `/dev` and `/dev/null`, not `/devices`.
pub(crate) fn within(path: &Path, prefix: &Path) -> bool {
    let (p, q) = (bytes(path), bytes(prefix));
    if q == b"/" {
        return p.first() == Some(&b'/');
    }
    p.starts_with(q) && (p.len() == q.len() || p[q.len()] == b'/')
}

/// `dir/name` for a normalized `dir` and a single component `name`.
pub(crate) fn child(dir: &Path, name: &[u8]) -> PathBuf {
    let d = bytes(dir);
    let mut out = Vec::with_capacity(d.len() + 1 + name.len());
    out.extend_from_slice(d);
    if d != b"/" {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    from_bytes(out)
}

/// The parent of a normalized path and the last component; `/` has neither.
pub(crate) fn split_last(public: &Path) -> Option<(&Path, &OsStr)> {
    let b = bytes(public);
    let i = b.iter().rposition(|&c| c == b'/')?;
    if i + 1 == b.len() {
        return None;
    }
    let parent = if i == 0 { &b[..1] } else { &b[..i] };
    Some((
        Path::new(OsStr::from_bytes(parent)),
        OsStr::from_bytes(&b[i + 1..]),
    ))
}

/// The components of a path, without empty ones (`a//b` is `a/b`).
pub(crate) fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    p.split(|&c| c == b'/').filter(|c| !c.is_empty())
}

/// The path relative to `/`, for joining under the upper root.
pub(crate) fn relative(public: &Path) -> &Path {
    let b = bytes(public);
    let start = b.iter().position(|&c| c != b'/').unwrap_or(b.len());
    Path::new(OsStr::from_bytes(&b[start..]))
}

/// Lexically normalize an absolute path; `None` if it is relative or has a
/// `..` component (a rule must not depend on symlinks or on `..`).
pub(crate) fn normalize_absolute(p: &Path) -> Option<PathBuf> {
    let b = bytes(p);
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    for c in components(b) {
        match c {
            b"." => {}
            b".." => return None,
            c => {
                out.push(b'/');
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(from_bytes(out))
}
