//! Metadata changes made through an fd (fchmod, fchown, futimens,
//! f*xattr). An fd the tracee opened read-only may still name a host
//! object; the change must land on the environment's copy instead. The
//! object is copied up and the change applied to the copy by the
//! supervisor; the tracee's fd keeps pointing at the host object, whose
//! later fstat shows the old metadata until it is reopened (as after a
//! copy-up in overlayfs).

use super::paths;
use isotrace_idb::{self as idb, cow, Cache, Loc, RealFs, View};
use isotrace_tracer::{Call, TraceeView};
use nix::sys::stat::{utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::path::Path;

/// What to do with an fd-based metadata call.
pub enum FdOp {
    /// The fd names an object of the environment or an exception: the
    /// kernel may act on it directly.
    Kernel,
    /// Carried out by the supervisor on the copy; the call's result.
    Done(i64),
}

/// Where a change through an fd on a host object goes instead.
enum Instead {
    /// The environment's name still shows the host object: copy it up.
    CopyUp(idb::Resolved),
    /// An earlier change copied it up already (the fd still names the host
    /// object, as in overlayfs after a copy-up): the environment's copy.
    Copy(std::path::PathBuf),
}

/// For an fd on a host object outside the exceptions (the only case that
/// needs help), where its change goes. A name the environment removed
/// since leaves nothing of the environment's to change, and the host
/// object must not be: EROFS, as overlayfs gives for a lower file it
/// cannot copy up.
fn host_object(view: &View, cache: &mut Cache, real: &Path) -> Result<Option<Instead>, i32> {
    let Some(public) = idb::public_of(view, real) else {
        return Err(libc::EBADF);
    };
    if public.as_path() != real || view.is_exception(&public) {
        return Ok(None);
    }
    let r = idb::resolve_cached(
        view,
        &RealFs,
        cache,
        Path::new("/"),
        &paths::bytes(&public),
        false,
    )
    .map_err(|e| e.errno())?;
    match r.loc {
        Some(Loc::Host) => Ok(Some(Instead::CopyUp(r))),
        Some(Loc::Upper) => Ok(Some(Instead::Copy(r.real))),
        _ => Err(libc::EROFS),
    }
}

/// An fd on an upper file that `env copy` shares with another environment
/// (idb::share) is the same case as an fd on a host file: the kernel would
/// change the other environment's file too. The name gets its own copy
/// (unless an earlier change already gave it one: then the fd's path reads
/// "NAME (deleted)", proc(5), as the fd's dentry was renamed over) and the
/// change goes there. A shared inode with no name left in the environment
/// is refused.
fn shared_upper(
    view: &View,
    cache: &mut Cache,
    fd: i32,
    real: &Path,
    tv: &mut dyn TraceeView,
) -> Result<Option<std::path::PathBuf>, i32> {
    if !real.starts_with(view.upper()) {
        return Ok(None);
    }
    let file = std::fs::File::from(tv.dup_fd(fd).ok_or(libc::EBADF)?);
    let meta = file
        .metadata()
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    use std::os::unix::fs::MetadataExt;
    let same = |m: &std::fs::Metadata| m.ino() == meta.ino() && m.dev() == meta.dev();
    if meta.nlink() < 2 && std::fs::symlink_metadata(real).is_ok_and(|m| same(&m)) {
        // The fast path: the fd's inode has this one name, here.
        return Ok(None);
    }
    if !idb::share::was_shared(view, &meta).map_err(|e| e.errno())? {
        return Ok(None);
    }
    let name = match real.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(stripped) if std::fs::symlink_metadata(real).is_err() => Path::new(stripped),
        _ => real,
    };
    let Ok(now) = std::fs::symlink_metadata(name) else {
        return Err(libc::EROFS);
    };
    if !now.is_file() {
        return Err(libc::EROFS);
    }
    if same(&now) {
        // Still the environment's name for it: shared only while another
        // name (the other environment's) remains.
        if meta.nlink() < 2 {
            return Ok(None);
        }
        idb::share::break_link(view, name, false).map_err(|e| e.errno())?;
    }
    if let Some(public) = idb::public_of(view, name) {
        cache.invalidate(&public);
    }
    Ok(Some(name.to_path_buf()))
}

/// `as_tracee`: the credentials to change the private copy with (the
/// tracee's, when they are not the supervisor's); the copy-up itself is
/// the supervisor's own work.
pub fn fd_metadata(
    view: &View,
    cache: &mut Cache,
    call: &Call,
    fd: i32,
    tv: &mut dyn TraceeView,
    as_tracee: Option<&isotrace_tracer::sys::FsCreds>,
) -> Result<FdOp, i32> {
    let Some(real) = tv.fd_path(fd) else {
        return Err(libc::EBADF);
    };
    if !real.is_absolute() {
        return Ok(FdOp::Kernel);
    }
    let copy = match host_object(view, cache, &real)? {
        Some(Instead::CopyUp(r)) => {
            let copy = cow::copy_up(view, &r).map_err(|e| e.errno())?;
            cache.invalidate(&r.public);
            copy
        }
        Some(Instead::Copy(copy)) => copy,
        None => match shared_upper(view, cache, fd, &real, tv)? {
            Some(copy) => copy,
            None => return Ok(FdOp::Kernel),
        },
    };
    let res = match as_tracee {
        Some(c) => {
            let (_fd, link) = super::creds::via_fd(&copy)?;
            isotrace_tracer::sys::with_fs_creds(c, || apply(call, &link, tv))
                .unwrap_or(Err(libc::EPERM))
        }
        None => apply(call, &copy, tv),
    };
    Ok(FdOp::Done(match res {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }))
}

fn apply(call: &Call, copy: &Path, tv: &mut dyn TraceeView) -> Result<(), i32> {
    let a = &call.args;
    match call.sc.name {
        "fchmod" => {
            let mode = Mode::from_bits_truncate(a[1] as libc::mode_t);
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                copy,
                mode,
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| e as i32)
        }
        "fchown" => {
            let id = |v: u64| (v as i32 != -1).then_some(v as u32);
            nix::unistd::chown(
                copy,
                id(a[1]).map(nix::unistd::Uid::from_raw),
                id(a[2]).map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| e as i32)
        }
        "utimensat" => {
            let (atime, mtime) = times(a[2], tv)?;
            utimensat(
                nix::fcntl::AT_FDCWD,
                copy,
                &atime,
                &mtime,
                UtimensatFlags::FollowSymlink,
            )
            .map_err(|e| e as i32)
        }
        // fsetxattr(fd, name, value, size, flags) / fremovexattr(fd, name),
        // on the copy. XATTR_NAME_MAX is 255 and XATTR_SIZE_MAX 64 KiB
        // (xattr(7)): larger is ERANGE / E2BIG, as the kernel says.
        "fsetxattr" | "fremovexattr" => {
            let name = tv.read_cstr(a[1], 256).ok_or(libc::EFAULT)?;
            if name.len() > 255 {
                return Err(libc::ERANGE);
            }
            let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
            if call.sc.name == "fremovexattr" {
                return idb::xattr::remove(copy, &name).map_err(io);
            }
            let size = a[3] as usize;
            if size > 65536 {
                return Err(libc::E2BIG);
            }
            let value = if size == 0 {
                Vec::new()
            } else {
                tv.read_bytes(a[2], size).ok_or(libc::EFAULT)?
            };
            idb::xattr::set(copy, &name, &value, a[4] as i32).map_err(io)
        }
        _ => Err(libc::EROFS),
    }
}

/// utimensat's `times`: NULL means now for both; UTIME_NOW/UTIME_OMIT
/// pass through in tv_nsec.
fn times(ptr: u64, tv: &mut dyn TraceeView) -> Result<(TimeSpec, TimeSpec), i32> {
    if ptr == 0 {
        let now = TimeSpec::UTIME_NOW;
        return Ok((now, now));
    }
    let raw = tv.read_bytes(ptr, 32).ok_or(libc::EFAULT)?;
    let word = |i: usize| i64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let ts = |s, ns| {
        TimeSpec::from(libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        })
    };
    Ok((ts(word(0), word(1)), ts(word(2), word(3))))
}
