//! openat2(2) under isolation: the tracee's `struct open_how` is checked
//! as the kernel would, its RESOLVE_* restrictions are applied to the walk
//! in the merged view, and the call then goes the way of openat (rewritten
//! to the real path, re-issued as openat2 with RESOLVE_NO_SYMLINKS).
//!
//! Supported: RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS, RESOLVE_BENEATH,
//! RESOLVE_CACHED (a hint: the supervisor's own walk is not the kernel's
//! cache). RESOLVE_IN_ROOT and RESOLVE_NO_XDEV change how the walk itself
//! goes (a root of the caller's choosing; mount points of the real
//! layout): the call gets ENOSYS, and programs fall back to openat as they
//! do on kernels before 5.6.
//!
//! RESOLVE_BENEATH is checked on the walk's components and on where it
//! ends; an absolute symlink that points back inside the directory is
//! accepted, where the kernel says EXDEV.

use isotrace_idb::is_magic_link;
use std::path::{Component, Path, PathBuf};

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;
pub const RESOLVE_CACHED: u64 = 0x20;
const RESOLVE_ALL: u64 = 0x3f;

/// OPEN_HOW_SIZE_VER0 (include/uapi/linux/openat2.h).
pub const HOW_SIZE: usize = 24;
/// Structs larger than this are refused with E2BIG (the kernel allows up to
/// a page, but only zeros beyond the fields it knows).
const HOW_MAX: usize = 4096;

/// `struct open_how` as the tracee passed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// Decodes and validates the tracee's open_how (`bytes` holds `size`
/// bytes) as fs/open.c build_open_flags does. Err: the errno to return.
pub fn parse(bytes: &[u8], valid_flags: u64) -> Result<OpenHow, i32> {
    if bytes.len() < HOW_SIZE {
        return Err(libc::EINVAL);
    }
    if bytes.len() > HOW_MAX || bytes[HOW_SIZE..].iter().any(|&b| b != 0) {
        return Err(libc::E2BIG);
    }
    let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let how = OpenHow {
        flags: word(0),
        mode: word(1),
        resolve: word(2),
    };
    let creates = how.flags & libc::O_CREAT as u64 != 0
        || how.flags & libc::O_TMPFILE as u64 == libc::O_TMPFILE as u64;
    if how.flags & !valid_flags != 0
        || how.resolve & !RESOLVE_ALL != 0
        || (how.mode != 0 && !creates)
        || how.mode & !0o7777 != 0
        || (how.resolve & RESOLVE_BENEATH != 0 && how.resolve & RESOLVE_IN_ROOT != 0)
    {
        return Err(libc::EINVAL);
    }
    Ok(how)
}

/// `path` joined to `base` with `.` and `..` applied textually (what the
/// walk would give if no component were a symlink), and whether a `..`
/// ever climbed above `base`.
pub fn lexical(base: &Path, path: &Path) -> (PathBuf, bool) {
    let mut out = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    let floor = base.components().count();
    let mut escaped = path.is_absolute();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if out.components().count() <= floor {
                    escaped = true;
                }
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (out, escaped)
}

/// Whether any prefix of the absolute `path` is a /proc magic link.
pub fn crosses_magic_link(path: &Path) -> bool {
    let mut p = PathBuf::new();
    path.components().any(|c| {
        p.push(c);
        is_magic_link(&p)
    })
}

/// The RESOLVE_* checks that come before the walk: ENOSYS for the flags
/// the supervisor does not emulate, EXDEV for an absolute path or a `..`
/// above the directory under RESOLVE_BENEATH, ELOOP for a magic link under
/// RESOLVE_NO_MAGICLINKS or RESOLVE_NO_SYMLINKS.
pub fn check_before(how: &OpenHow, base: &Path, path: &Path) -> Result<(), i32> {
    if how.resolve & (RESOLVE_IN_ROOT | RESOLVE_NO_XDEV) != 0 {
        return Err(libc::ENOSYS);
    }
    let (lex, escaped) = lexical(base, path);
    if how.resolve & RESOLVE_BENEATH != 0 && escaped {
        return Err(libc::EXDEV);
    }
    if how.resolve & (RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS) != 0 && crosses_magic_link(&lex)
    {
        return Err(libc::ELOOP);
    }
    Ok(())
}

/// The checks on where the walk (final symlink not followed) ended: under
/// RESOLVE_NO_SYMLINKS a symlink anywhere changed the canonical path from
/// the textual one, or is the final component (allowed only with
/// O_PATH|O_NOFOLLOW); under RESOLVE_BENEATH the result must be inside.
pub fn check_after(
    how: &OpenHow,
    base: &Path,
    path: &Path,
    canonical: &Path,
    final_is_symlink: bool,
) -> Result<(), i32> {
    let (lex, _) = lexical(base, path);
    if how.resolve & RESOLVE_NO_SYMLINKS != 0 {
        let opens_link =
            how.flags & libc::O_PATH as u64 != 0 && how.flags & libc::O_NOFOLLOW as u64 != 0;
        if canonical != lex || (final_is_symlink && !opens_link) {
            return Err(libc::ELOOP);
        }
    }
    if how.resolve & RESOLVE_BENEATH != 0 && !canonical.starts_with(base) {
        return Err(libc::EXDEV);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn how_bytes(flags: u64, mode: u64, resolve: u64) -> Vec<u8> {
        [flags, mode, resolve]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect()
    }

    const VALID: u64 = 0o37777777;

    #[test]
    fn open_how_is_validated_like_the_kernel() {
        let ok = parse(&how_bytes(0, 0, RESOLVE_BENEATH), VALID).unwrap();
        assert_eq!(ok.resolve, RESOLVE_BENEATH);
        assert_eq!(parse(&how_bytes(0, 0, 0)[..16], VALID), Err(libc::EINVAL));
        let mut big = how_bytes(0, 0, 0);
        big.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(parse(&big, VALID), Err(libc::E2BIG));
        big.truncate(HOW_SIZE);
        big.extend_from_slice(&[0; 8]);
        assert!(parse(&big, VALID).is_ok());
        assert_eq!(parse(&how_bytes(0, 0o644, 0), VALID), Err(libc::EINVAL));
        let creat = libc::O_CREAT as u64;
        assert!(parse(&how_bytes(creat, 0o644, 0), VALID).is_ok());
        assert_eq!(parse(&how_bytes(0, 0, 0x40), VALID), Err(libc::EINVAL));
        let both = RESOLVE_BENEATH | RESOLVE_IN_ROOT;
        assert_eq!(parse(&how_bytes(0, 0, both), VALID), Err(libc::EINVAL));
    }

    #[test]
    fn lexical_walk_and_escapes() {
        let base = Path::new("/a/b");
        assert_eq!(
            lexical(base, Path::new("c/./d")),
            ("/a/b/c/d".into(), false)
        );
        assert_eq!(lexical(base, Path::new("c/../d")), ("/a/b/d".into(), false));
        assert_eq!(lexical(base, Path::new("../b/d")), ("/a/b/d".into(), true));
        assert_eq!(lexical(base, Path::new("/etc")), ("/etc".into(), true));
        assert_eq!(
            lexical(Path::new("/"), Path::new("../x")),
            ("/x".into(), true)
        );
    }

    #[test]
    fn before_and_after_checks() {
        let how = |resolve| OpenHow {
            flags: 0,
            mode: 0,
            resolve,
        };
        let base = Path::new("/w");
        assert_eq!(
            check_before(&how(RESOLVE_IN_ROOT), base, Path::new("x")),
            Err(libc::ENOSYS)
        );
        assert_eq!(
            check_before(&how(RESOLVE_BENEATH), base, Path::new("../x")),
            Err(libc::EXDEV)
        );
        assert_eq!(
            check_before(
                &how(RESOLVE_NO_MAGICLINKS),
                base,
                Path::new("/proc/self/cwd/x")
            ),
            Err(libc::ELOOP)
        );
        assert_eq!(
            check_before(&how(RESOLVE_NO_SYMLINKS), base, Path::new("a/b")),
            Ok(())
        );
        let p = Path::new("link/f");
        assert_eq!(
            check_after(
                &how(RESOLVE_NO_SYMLINKS),
                base,
                p,
                Path::new("/w/real/f"),
                false
            ),
            Err(libc::ELOOP)
        );
        assert_eq!(
            check_after(
                &how(RESOLVE_NO_SYMLINKS),
                base,
                p,
                Path::new("/w/link/f"),
                false
            ),
            Ok(())
        );
        assert_eq!(
            check_after(
                &how(RESOLVE_NO_SYMLINKS),
                base,
                p,
                Path::new("/w/link/f"),
                true
            ),
            Err(libc::ELOOP)
        );
        assert_eq!(
            check_after(&how(RESOLVE_BENEATH), base, p, Path::new("/etc/f"), false),
            Err(libc::EXDEV)
        );
    }
}
