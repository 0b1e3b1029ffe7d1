//! Shared memory objects: MAP_SHARED|MAP_ANONYMOUS mappings (which maps
//! shows as "/dev/zero (deleted)"), memfds and SysV segments. Each object
//! (one shmem inode) becomes one memfd made in the root vessel before any
//! other process is cloned from it, so every process that mapped it maps
//! the same memory again (at its own address and offset), and an fd of a
//! memfd refers to it. Its contents come back through the mappings: each
//! process's captured pages are read into its mapping of the object.

use super::fds::{close, dup_above};
use super::inject::Vessel;
use crate::dump::seals::Seals;
use crate::error::Result;
use crate::model::{FdKind, Process, Vma};
use std::collections::BTreeMap;

/// Shmem inode -> the vessel's fd of its memfd.
pub type ShmFds = BTreeMap<u64, u64>;

/// Whether a mapping's path is a shmem object's.
pub fn is_shm(path: &str) -> bool {
    path.starts_with("/dev/zero") || path.starts_with("/SYSV") || path.starts_with("/memfd:")
}

fn shared_object(v: &Vma) -> bool {
    v.shared() && v.inode != 0 && is_shm(&v.path)
}

/// The memfd name for an object: a memfd keeps its own.
fn name(path: &str) -> String {
    let base = path.trim_end_matches(" (deleted)");
    let name = base.strip_prefix("/memfd:").unwrap_or("isotrace-shm");
    name.chars().take(200).collect()
}

/// memfd_create(2) flags for the memfd of inode `ino`: MFD_ALLOW_SEALING
/// when the image recorded its seals (`dump::seals`), added later by
/// [`add_seals`]; without a record, none (as images before seals.bin).
pub fn memfd_flags(seals: &Seals, ino: u64) -> u64 {
    if seals.contains_key(&ino) {
        libc::MFD_ALLOW_SEALING as u64
    } else {
        0
    }
}

/// Adds the recorded seals of the memfd of inode `ino` to the vessel's
/// `fd`, once its size and (for an unmapped one) contents are back.
pub fn add_seals(v: &Vessel, fd: u64, seals: &Seals, ino: u64) -> Result<()> {
    match seals.get(&ino) {
        Some(&s) if s != 0 => v
            .call(
                "fcntl F_ADD_SEALS",
                libc::SYS_fcntl,
                [fd, libc::F_ADD_SEALS as u64, u64::from(s), 0, 0, 0],
            )
            .map(drop),
        _ => Ok(()),
    }
}

/// Makes one memfd per shared object of `procs`, at least as large as
/// the furthest any mapping reaches, above `line`, with the seals the
/// image has for it (none that forbid writing: its contents come back
/// through the mappings, and the dump refused those). Returns the fds
/// and notes.
pub fn prepare(
    v: &Vessel,
    procs: &[&Process],
    line: u64,
    seals: &Seals,
) -> Result<(ShmFds, Vec<String>)> {
    let mut objects: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    for vma in procs
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| shared_object(v))
    {
        let o = objects.entry(vma.inode).or_insert((vma.path.clone(), 0));
        o.1 = o.1.max(vma.offset + vma.len());
    }
    let mut notes = Vec::new();
    let mut fds = ShmFds::new();
    for (ino, (path, size)) in objects {
        if path.starts_with("/SYSV") {
            notes.push(format!(
                "SysV segment {path}: restored as shared memory without its SysV identity (shmget(2) cannot find it)"
            ));
        }
        let mut bytes = name(&path).into_bytes();
        bytes.push(0);
        let at = v.stage(0, &bytes)?;
        let flags = memfd_flags(seals, ino);
        let fd = v.call(
            "memfd_create",
            libc::SYS_memfd_create,
            [at, flags, 0, 0, 0, 0],
        )?;
        v.call("ftruncate", libc::SYS_ftruncate, [fd, size, 0, 0, 0, 0])?;
        add_seals(v, fd, seals, ino)?;
        let high = dup_above(v, fd, line)?;
        close(v, fd)?;
        fds.insert(ino, high);
    }
    for p in procs {
        for e in &p.fds {
            if matches!(e.kind, FdKind::Memfd(_)) && !fds.contains_key(&e.ino) {
                notes.push(format!(
                    "pid {} fd {}: a memfd nothing maps; its contents are not in the image",
                    p.pid, e.fd
                ));
            }
        }
    }
    Ok((fds, notes))
}

/// Maps `vma` from its object's memfd, shared, at its address.
pub fn map(v: &Vessel, vma: &Vma, fd: u64, prot: u64) -> Result<()> {
    let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
    let what = format!("mmap {:#x}-{:#x} {}", vma.start, vma.end, vma.path);
    let args = [vma.start, vma.len(), prot, flags, fd, vma.offset];
    v.call(&what, libc::SYS_mmap, args).map(drop)
}
