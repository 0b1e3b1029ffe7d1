//! The libc calls std does not offer: renameat2, utimensat on a symlink,
//! the l*xattr family, mknod and linkat of an O_TMPFILE file. This is the only file of the crate with
//! `unsafe`. Every function takes real paths and returns `io::Result` with
//! the kernel's errno.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) const O_NOFOLLOW: i32 = libc::O_NOFOLLOW;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of
/// replacing `to`, atomically. Through the raw syscall, so it works with any
/// libc.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: both pointers are NUL-terminated strings that live across the
    // call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    check(rc).map(drop)
}

/// Set atime and mtime (seconds, nanoseconds) without following a final
/// symlink: utimensat(2) with AT_SYMLINK_NOFOLLOW, the only way to set a
/// symlink's own times.
pub(crate) fn set_times_nofollow(
    path: &Path,
    atime: (i64, i64),
    mtime: (i64, i64),
) -> io::Result<()> {
    let p = cstr(path)?;
    let ts = |(sec, nsec): (i64, i64)| libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts(atime), ts(mtime)];
    // SAFETY: `p` is NUL-terminated and `times` is an array of exactly the
    // two timespecs utimensat reads; both outlive the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// llistxattr(2): the names of a file's extended attributes, without
/// following a final symlink.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes; `p` is
        // NUL-terminated; the kernel writes at most `size` bytes.
        let rc = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check(rc as libc::c_long) {
            Ok(n) => {
                buf.truncate(n as usize);
                let names = buf.split(|&b| b == 0).filter(|n| !n.is_empty());
                return Ok(names.map(<[u8]>::to_vec).collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// lgetxattr(2): one attribute's value.
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let (p, n) = (
        cstr(path)?,
        CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: as in list_xattrs; `n` is NUL-terminated too.
        let rc =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check(rc as libc::c_long) {
            Ok(len) => {
                buf.truncate(len as usize);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// lsetxattr(2): create or replace one attribute.
pub(crate) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (p, n) = (
        cstr(path)?,
        CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    // SAFETY: `value` is readable for `value.len()` bytes; the strings are
    // NUL-terminated; nothing is retained after the call.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// mknod(2) for fifos, sockets and device nodes (the latter need
/// CAP_MKNOD).
pub(crate) fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: `p` is NUL-terminated and lives across the call.
    let rc = unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    check(rc as libc::c_long).map(drop)
}

/// Gives the unnamed (O_TMPFILE) `file` the name `to`: linkat(2) of its
/// /proc/self/fd link with AT_SYMLINK_FOLLOW, which needs no capability
/// (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH); open(2), O_TMPFILE.
pub(crate) fn link_unnamed(file: &std::fs::File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let from = cstr(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
    let to = cstr(to)?;
    // SAFETY: both pointers are NUL-terminated strings that live across the
    // call; the fd they name stays open (borrowed `file`).
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// syncfs(2) on the filesystem holding `path`: one call that makes a whole
/// freshly written tree durable, instead of an fsync per file.
pub(crate) fn syncfs(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is open for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    check(rc as libc::c_long).map(drop)
}

/// Open directory `dir` and take an exclusive flock(2) on it without
/// waiting: `Ok(None)` if another open file description holds it. The lock
/// lives as long as the returned file, and the kernel drops it when its
/// holder dies, kill -9 included (flock(2): locks belong to the open file
/// description), which is how a builder that crashed is told from one
/// still at work.
pub(crate) fn try_lock_dir(dir: &Path) -> io::Result<Option<std::fs::File>> {
    let f = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is open for the duration of the call; flock takes no
    // pointers.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match check(rc as libc::c_long) {
        Ok(_) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A u64 shared between processes through a mapped file, updated
/// atomically.
pub(crate) struct SharedU64 {
    map: memmap2::MmapMut,
}

impl SharedU64 {
    /// Maps the first 8 bytes of `file` (extended to 8 bytes if shorter).
    pub(crate) fn open(file: &std::fs::File) -> io::Result<SharedU64> {
        if file.metadata()?.len() < 8 {
            file.set_len(8)?;
        }
        // SAFETY: the file is at least 8 bytes; every process maps it
        // shared and only ever accesses it through the atomic below.
        let map = unsafe { memmap2::MmapOptions::new().len(8).map_mut(file)? };
        Ok(SharedU64 { map })
    }

    fn atomic(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), 8 bytes
        // long and lives as long as `self`; AtomicU64 has u64's layout.
        unsafe { &*(self.map.as_ptr() as *const std::sync::atomic::AtomicU64) }
    }

    pub(crate) fn load(&self) -> u64 {
        self.atomic().load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn bump(&self) -> u64 {
        self.atomic()
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1
    }
}

/// ioctl(FICLONE): make `dst` share all of `src`'s extents (a reflink, as
/// `cp --reflink=always` does), so that neither sees the other's later
/// writes. Filesystems without shared extents (ext4, tmpfs) fail with
/// EOPNOTSUPP (or ENOTTY/EINVAL); two filesystems give EXDEV
/// (ioctl_ficlone(2)).
pub(crate) fn ficlone(src: &std::fs::File, dst: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both fds are open for the duration of the call; FICLONE takes
    // the source fd as an integer argument, no pointer.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    check(rc as libc::c_long).map(drop)
}

/// Open (creating it, mode 0600) `path` and take an exclusive flock(2) on
/// it, waiting for it. The lock lives as long as the returned file; the
/// kernel drops it when its holder dies (flock(2)).
pub(crate) fn lock_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    loop {
        // SAFETY: the fd is open for the duration of the call; flock takes
        // no pointers.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        match check(rc as libc::c_long) {
            Ok(_) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// setxattr(2), following a final symlink (the supervisor may name the file
/// by a /proc/self/fd/N magic link), with the caller's XATTR_CREATE /
/// XATTR_REPLACE `flags`.
pub(crate) fn set_xattr_follow(
    path: &Path,
    name: &[u8],
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    let (p, n) = (
        cstr(path)?,
        CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    // SAFETY: `value` is readable for `value.len()` bytes; the strings are
    // NUL-terminated; nothing is retained after the call.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// removexattr(2), following a final symlink (see [`set_xattr_follow`]).
pub(crate) fn remove_xattr_follow(path: &Path, name: &[u8]) -> io::Result<()> {
    let (p, n) = (
        cstr(path)?,
        CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    // SAFETY: both strings are NUL-terminated and live across the call.
    let rc = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    check(rc as libc::c_long).map(drop)
}
