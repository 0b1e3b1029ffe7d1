//! Nameless files of a restore (`dump::deleted`): each is made once in
//! the root vessel, above the fd line, before the other processes are
//! cloned from it, and filled from its section of the image with
//! sendfile(2) run in the vessel (no copy through the restorer). Every
//! fd of the image with that inode is then a new open of it through
//! /proc/self/fd (its own offset and flags, as for a file reopened by
//! path).

use super::fds::{close, dup_above};
use super::inject::Vessel;
use crate::dump::deleted::{DeletedFile, Files, Nameless};
use crate::dump::seals::Seals;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Inode -> the root vessel's fd (above the line) of its new file.
pub type Made = BTreeMap<u64, u64>;

fn failed(ino: u64, what: &str, rc: i64) -> Error {
    Error::Invalid {
        what: format!(
            "cannot recreate the deleted file of inode {ino}: {what}: {}",
            nix::errno::Errno::from_raw(-rc as i32)
        ),
    }
}

/// Makes and fills every file of `files`; `image_dir` holds their
/// sections (absolute), `map` maps an original path to the one to use.
pub fn prepare(
    v: &Vessel,
    files: &Files,
    image_dir: &Path,
    line: u64,
    map: &dyn Fn(&str) -> String,
    seals: &Seals,
) -> Result<(Made, Vec<String>)> {
    let mut made = Made::new();
    let mut notes = Vec::new();
    for (&ino, file) in files {
        let (fd, note) = create(v, ino, file, map, seals)?;
        notes.extend(note);
        let section = image_dir.join(DeletedFile::section(ino));
        fill(v, ino, fd, &section.to_string_lossy(), file.size)?;
        // Sealed only now: F_SEAL_WRITE would refuse the fill.
        super::shm::add_seals(v, fd, seals, ino)?;
        made.insert(ino, dup_above(v, fd, line)?);
        close(v, fd)?;
    }
    Ok((made, notes))
}

/// A new nameless file for `file`: an O_TMPFILE in the directory the
/// unlinked file was in (open(2): an unnamed regular file on that
/// directory's filesystem), or where the filesystem cannot do that, a
/// file created there and unlinked at once; or a memfd.
fn create(
    v: &Vessel,
    ino: u64,
    file: &DeletedFile,
    map: &dyn Fn(&str) -> String,
    seals: &Seals,
) -> Result<(u64, Option<String>)> {
    let path = match &file.kind {
        Nameless::Memfd { name } => {
            let mut bytes: Vec<u8> = name.bytes().take(249).collect();
            bytes.push(0);
            let at = v.stage(0, &bytes)?;
            let flags = super::shm::memfd_flags(seals, ino);
            let rc = v.raw(libc::SYS_memfd_create, [at, flags, 0, 0, 0, 0])?;
            if rc < 0 {
                return Err(failed(ino, "memfd_create", rc));
            }
            return Ok((rc as u64, None));
        }
        Nameless::Unlinked { path } => map(path),
    };
    let dir = Path::new(&path)
        .parent()
        .map_or("/".into(), |d| d.to_string_lossy().into_owned());
    let mode = u64::from(file.mode);
    let at = v.stage_path(&dir)?;
    let flags = (libc::O_TMPFILE | libc::O_RDWR) as u64;
    let rc = v.raw(
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, at, flags, mode, 0, 0],
    )?;
    let (fd, note) = if rc >= 0 {
        (rc as u64, None)
    } else {
        // EOPNOTSUPP (or EISDIR from kernels that predate it): the
        // filesystem has no O_TMPFILE.
        let name = format!("{dir}/.isotrace-deleted-{ino}");
        let at = v.stage_path(&name)?;
        let flags = (libc::O_CREAT | libc::O_EXCL | libc::O_RDWR) as u64;
        let rc2 = v.raw(
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, at, flags, mode, 0, 0],
        )?;
        if rc2 < 0 {
            return Err(failed(ino, &format!("open in {dir}"), rc2));
        }
        let rc3 = v.raw(libc::SYS_unlink, [at, 0, 0, 0, 0, 0])?;
        if rc3 < 0 {
            return Err(failed(ino, &format!("unlink {name}"), rc3));
        }
        let note = format!("{path}: no O_TMPFILE in {dir}; recreated there and unlinked");
        (rc2 as u64, Some(note))
    };
    // The restorer's umask applied to the mode: set it exactly.
    v.call("fchmod", libc::SYS_fchmod, [fd, mode, 0, 0, 0, 0])?;
    Ok((fd, note))
}

/// Copies `size` bytes of section `section` into the vessel's `fd`.
fn fill(v: &Vessel, ino: u64, fd: u64, section: &str, size: u64) -> Result<()> {
    let at = v.stage_path(section)?;
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let src = v.call(
        &format!("open {section}"),
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
    )?;
    let mut left = size;
    while left > 0 {
        // sendfile(2) moves at most 0x7ffff000 bytes per call.
        let n = v.raw(libc::SYS_sendfile, [fd, src, 0, left.min(1 << 30), 0, 0])?;
        if n < 0 {
            return Err(failed(ino, &format!("sendfile from {section}"), n));
        }
        if n == 0 {
            return Err(Error::Invalid {
                what: format!("{section} ends {left} bytes before the file it holds"),
            });
        }
        left -= n as u64;
    }
    close(v, src)
}
