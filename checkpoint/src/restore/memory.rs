//! Rebuilding the address space inside the vessel: unmap what it inherited
//! from the restorer, move its vDSO to where the image had it, then map
//! every mapping of the image at its address and fill it from the pages
//! section: the restorer reads the section once, front to back, hashing
//! it on the way (`SectionReader`), and puts each run into the vessel in
//! large pieces, without a ptrace stop: private anonymous memory with
//! UFFDIO_COPY through a userfaultfd of the vessel (`uffd`: no page is
//! zeroed before it is copied into), the rest (file mappings' dirty
//! pages, shared memory) with process_vm_writev(2).

use super::inject::{Vessel, GADGET_LEN};
use super::lazy::{Pending, Piece, PostCopy};
use super::uffd::Filler;
use crate::dump::procfs::parse_maps;
use crate::error::{Error, Result};
use crate::image::Extent;
use crate::image::SectionReader;
use crate::model::{Process, Vma, VmaMemory};
use crate::PAGE_SIZE;
use std::fs::File;
use std::sync::Arc;

/// Top of the x86_64 user address space with 4-level paging (TASK_SIZE).
pub const TASK_TOP: u64 = 0x7fff_ffff_f000;

/// The kernel's special mappings: never unmapped, only moved ([vsyscall]
/// cannot even be moved: it is not a VMA of the process).
pub fn is_special(path: &str) -> bool {
    matches!(path, "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]")
}

/// How one mapping of the image is recreated.
#[derive(Debug, PartialEq, Eq)]
pub enum MapKind {
    /// The vDSO and friends: moved, not mapped.
    Special,
    Anon {
        shared: bool,
        stack: bool,
    },
    File {
        path: String,
        shared: bool,
    },
}

fn refuse(pid: i32, vma: &Vma, why: &str) -> Error {
    Error::Invalid {
        what: format!(
            "cannot restore pid {pid}: mapping {:#x}-{:#x} {} {}: {why}",
            vma.start, vma.end, vma.perms, vma.path
        ),
    }
}

/// Decides how to recreate `vma`, or refuses what cannot be recreated.
pub fn classify(pid: i32, vma: &Vma) -> Result<MapKind> {
    if is_special(&vma.path) {
        return Ok(MapKind::Special);
    }
    if vma.path.ends_with(" (deleted)") && !super::shm::is_shm(&vma.path) {
        return Err(refuse(
            pid,
            vma,
            "a deleted file's mapping is not restored yet",
        ));
    }
    let anon_like = !vma.file_backed()
        || vma.path.starts_with("/memfd:")
        || vma.path.starts_with("/dev/zero")
        || vma.path.starts_with("/SYSV");
    if vma.path.starts_with("/dev/") && !vma.path.starts_with("/dev/zero") {
        return Err(refuse(pid, vma, "device mappings are not restored"));
    }
    if anon_like {
        if vma.shared() && !matches!(vma.memory, VmaMemory::Dumped { .. }) {
            return Err(refuse(pid, vma, "its shared memory is not in the image"));
        }
        return Ok(MapKind::Anon {
            shared: vma.shared(),
            stack: vma.path == "[stack]",
        });
    }
    Ok(MapKind::File {
        path: vma.path.clone(),
        shared: vma.shared(),
    })
}

/// The first free `len` bytes at or above `min` that overlap none of
/// `taken` (ranges as start, end), below [`TASK_TOP`].
pub fn free_range(taken: &[(u64, u64)], len: u64, min: u64) -> Option<u64> {
    let mut ranges = taken.to_vec();
    ranges.sort_unstable();
    let mut at = min.next_multiple_of(PAGE_SIZE);
    for (start, end) in ranges {
        if at.checked_add(len)? <= start {
            break;
        }
        at = at.max(end);
    }
    (at.checked_add(len)? <= TASK_TOP).then_some(at)
}

pub fn vessel_maps(pid: i32) -> Result<Vec<Vma>> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))?;
    Ok(parse_maps(&text))
}

fn ranges(vmas: &[Vma]) -> impl Iterator<Item = (u64, u64)> + '_ {
    vmas.iter().map(|v| (v.start, v.end))
}

/// The lowest address the kernel lets user space map (mmap_min_addr).
pub fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65536)
        .max(PAGE_SIZE)
}

/// Unmaps everything of the vessel but the gadget and the special mappings.
pub fn teardown(v: &Vessel) -> Result<()> {
    let gadget = v.gadget();
    for vma in vessel_maps(v.pid)? {
        if is_special(&vma.path) || (vma.start >= gadget && vma.end <= gadget + GADGET_LEN) {
            continue;
        }
        v.call(
            &format!("munmap {:#x}-{:#x} {}", vma.start, vma.end, vma.path),
            libc::SYS_munmap,
            [vma.start, vma.len(), 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Moves the vessel's [vdso]/[vvar]... to the image's addresses with
/// mremap, which the kernel supports for these special mappings (it
/// updates mm->context.vdso, arch/x86/entry/vdso/vma.c). Each must have
/// the image's size, and the vDSO's code must be the image's: another
/// kernel's vDSO would not match the pointers the program holds into it.
pub fn move_vdso(v: &Vessel, proc: &Process, image: &crate::Image) -> Result<()> {
    let current = vessel_maps(v.pid)?;
    let mut moves = Vec::new();
    for cur in current
        .iter()
        .filter(|m| is_special(&m.path) && m.path != "[vsyscall]")
    {
        let want = proc.vmas.iter().find(|m| m.path == cur.path);
        match want {
            Some(w) if w.len() == cur.len() => moves.push((cur.start, w.start, cur.len())),
            _ => {
                return Err(Error::Invalid {
                    what: format!(
                        "cannot restore pid {}: this kernel's {} ({} bytes) differs from the image's; restore on the kernel that wrote the image ({})",
                        proc.pid,
                        cur.path,
                        cur.len(),
                        image.manifest.host.kernel
                    ),
                })
            }
        }
    }
    check_vdso_code(v, proc, image, &current)?;
    let overlaps = moves.iter().any(|&(_, to, len)| {
        moves
            .iter()
            .any(|&(from, _, l)| from != to && to < from + l && from < to + len)
    });
    if overlaps {
        // Park them in a hole first so no move lands on another.
        let taken: Vec<_> = ranges(&proc.vmas).chain(ranges(&current)).collect();
        let span: u64 = moves.iter().map(|m| m.2).sum();
        let hole = free_range(&taken, span, mmap_min_addr()).ok_or_else(|| Error::Invalid {
            what: "no free address range to move the vDSO through".into(),
        })?;
        let mut at = hole;
        for m in moves.iter_mut() {
            remap(v, m.0, at, m.2)?;
            m.0 = at;
            at += m.2;
        }
    }
    for (from, to, len) in moves {
        if from != to {
            remap(v, from, to, len)?;
        }
    }
    Ok(())
}

fn remap(v: &Vessel, from: u64, to: u64, len: u64) -> Result<()> {
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    v.call(
        &format!("mremap {from:#x} -> {to:#x}"),
        libc::SYS_mremap,
        [from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0],
    )
    .map(drop)
}

fn check_vdso_code(v: &Vessel, proc: &Process, image: &crate::Image, cur: &[Vma]) -> Result<()> {
    let (Some(mine), Some(theirs)) = (
        cur.iter().find(|m| m.path == "[vdso]"),
        proc.vmas.iter().find(|m| m.path == "[vdso]"),
    ) else {
        return Ok(());
    };
    let mut code = vec![0u8; mine.len() as usize];
    v.peek(mine.start, &mut code)?;
    let pages = image.read_memory(proc.pid, theirs.start, theirs.len())?;
    let same = pages.iter().enumerate().all(|(i, (_, data))| {
        let at = i * PAGE_SIZE as usize;
        data.as_ref()
            .is_none_or(|d| d[..] == code[at..at + PAGE_SIZE as usize])
    });
    if same {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!(
                "cannot restore pid {}: the image's [vdso] is another kernel's (the image was written on {}); restore on that kernel",
                proc.pid, image.manifest.host.kernel
            ),
        })
    }
}

/// PROT_* of a maps perms string.
pub fn prot(perms: &str) -> u64 {
    let b = perms.as_bytes();
    let mut p = 0;
    if b.first() == Some(&b'r') {
        p |= libc::PROT_READ;
    }
    if b.get(1) == Some(&b'w') {
        p |= libc::PROT_WRITE;
    }
    if b.get(2) == Some(&b'x') {
        p |= libc::PROT_EXEC;
    }
    p as u64
}

/// Maps and fills every non-special mapping of `proc` from `pages`, its
/// pages section (checked by the caller's `SectionReader::finish` before
/// anything runs). File mappings open the
/// path as `opts` maps it; shared memory objects are mapped from their
/// memfd in `shm`.
pub fn rebuild(
    v: &Vessel,
    proc: &Process,
    pages: &mut SectionReader,
    opts: &super::Options,
    shm: &super::shm::ShmFds,
    lazy: Option<Lazy<'_>>,
) -> Result<()> {
    let (mut filler, lazy) = match lazy {
        Some(l) => (Some(l.filler), Some((l.server, l.extents))),
        None if whole_pages(proc) => (Filler::open(v)?, None),
        None => (None, None),
    };
    let mut pending = Pending::default();
    for vma in &proc.vmas {
        let kind = classify(proc.pid, vma)?;
        let runs = match &vma.memory {
            VmaMemory::Dumped { runs } if !runs.is_empty() => runs.as_slice(),
            _ => &[],
        };
        let private_anon = matches!(kind, MapKind::Anon { shared: false, .. });
        let final_prot = prot(&vma.perms);
        let map_prot = if runs.is_empty() {
            final_prot
        } else {
            (libc::PROT_READ | libc::PROT_WRITE) as u64
        };
        match kind {
            MapKind::Special => continue,
            MapKind::Anon { shared: true, .. } if shm.contains_key(&vma.inode) => {
                super::shm::map(v, vma, shm[&vma.inode], map_prot)?
            }
            MapKind::Anon { shared, stack } => {
                let mut flags = libc::MAP_FIXED | libc::MAP_ANONYMOUS;
                flags |= if shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                };
                if stack {
                    flags |= libc::MAP_GROWSDOWN;
                }
                let what = format!("mmap {:#x}-{:#x} {}", vma.start, vma.end, vma.path);
                let args = [vma.start, vma.len(), map_prot, flags as u64, u64::MAX, 0];
                v.call(&what, libc::SYS_mmap, args)?;
            }
            MapKind::File { path, shared } => {
                map_file(v, vma, &opts.path(&path), shared, map_prot)?
            }
        }
        match filler.as_mut() {
            Some(f) if private_anon && !runs.is_empty() => {
                f.register(vma.start, vma.len())?;
                for run in runs {
                    let len = run.pages * PAGE_SIZE;
                    let held = lazy.map_or(&[][..], |l| l.1);
                    for (rel, n, held) in split_held(run.offset, len, held) {
                        let addr = run.addr + rel;
                        match held {
                            // Left missing, for the post-copy server.
                            Some((file, at)) => pending.insert(Piece {
                                start: addr,
                                end: addr + n,
                                file,
                                at,
                            }),
                            None => pages.read(run.offset + rel, n, &mut |done, bytes| {
                                f.copy(addr + done, bytes)
                            })?,
                        }
                    }
                }
            }
            _ => {
                for run in runs {
                    fill(v, pages, run.addr, run.pages * PAGE_SIZE, run.offset)?;
                }
            }
        }
        if map_prot != final_prot {
            let what = format!("mprotect {:#x}-{:#x} {}", vma.start, vma.end, vma.perms);
            v.call(
                &what,
                libc::SYS_mprotect,
                [vma.start, vma.len(), final_prot, 0, 0, 0],
            )?;
        }
    }
    match (filler, lazy) {
        // The ranges stay registered; the uffd goes to the server, ours
        // is closed.
        (Some(f), Some((server, _))) if !pending.is_empty() => {
            server.add(f.share()?, pending);
            Ok(())
        }
        (f, _) => f.map_or(Ok(()), Filler::finish),
    }
}

/// Post-copy for one process: its userfaultfd made for it
/// (`Filler::open_lazy`), the server, and the held extents of its pages
/// section (`Image::elsewhere`).
pub struct Lazy<'a> {
    pub server: &'a PostCopy,
    pub filler: Filler,
    pub extents: &'a [Extent],
}

/// Where a piece of a pages section's bytes is: the pre-copy store and
/// the offset in it, or None for the section itself.
pub type HeldAt = Option<(Arc<File>, u64)>;

/// Where the bytes `[off, off+len)` of a pages section are: pieces as
/// (offset from `off`, length, Some((file, offset in it)) when held in
/// the pre-copy store by `extents` (sorted by offset), None when in the
/// section itself).
pub fn split_held(off: u64, len: u64, extents: &[Extent]) -> Vec<(u64, u64, HeldAt)> {
    let end = off + len;
    let mut out = Vec::new();
    let mut pos = off;
    let mut i = extents.partition_point(|e| e.offset + e.len <= off);
    while pos < end {
        match extents.get(i).filter(|e| e.offset < end) {
            Some(e) if e.offset <= pos => {
                let to = end.min(e.offset + e.len);
                let at = e.at + (pos - e.offset);
                out.push((pos - off, to - pos, Some((Arc::clone(&e.file), at))));
                pos = to;
                i += 1;
            }
            next => {
                let to = next.map_or(end, |e| e.offset);
                out.push((pos - off, to - pos, None));
                pos = to;
            }
        }
    }
    out
}

/// The ranges of `proc`'s pages section that post-copy fills (held bytes
/// of private anonymous mappings): the section reader skips them.
pub fn post_copied(proc: &Process, extents: &[Extent]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for vma in &proc.vmas {
        let private_anon = matches!(
            classify(proc.pid, vma)?,
            MapKind::Anon { shared: false, .. }
        );
        let VmaMemory::Dumped { runs } = &vma.memory else {
            continue;
        };
        for run in runs.iter().filter(|_| private_anon) {
            for (rel, n, held) in split_held(run.offset, run.pages * PAGE_SIZE, extents) {
                if held.is_some() {
                    out.push((run.offset + rel, run.offset + rel + n));
                }
            }
        }
    }
    Ok(out)
}

/// Whether every run of `proc` starts at a whole page of its section, as
/// the dump writes them: UFFDIO_COPY installs whole pages, so the pieces
/// the section is handed out in must fall on page boundaries.
pub fn whole_pages(proc: &Process) -> bool {
    proc.vmas.iter().all(|vma| match &vma.memory {
        VmaMemory::Dumped { runs } => runs.iter().all(|r| r.offset.is_multiple_of(PAGE_SIZE)),
        _ => true,
    })
}

fn map_file(v: &Vessel, vma: &Vma, path: &str, shared: bool, map_prot: u64) -> Result<()> {
    let access = if shared && vma.writable() {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    let at = v.stage_path(path)?;
    let fd = v.call(
        &format!("open {path} to map it"),
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            at,
            (access | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    )?;
    let flags = libc::MAP_FIXED
        | if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
    let what = format!("mmap {:#x}-{:#x} {path}", vma.start, vma.end);
    let mapped = v.call(
        &what,
        libc::SYS_mmap,
        [vma.start, vma.len(), map_prot, flags as u64, fd, vma.offset],
    );
    v.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    mapped.map(drop)
}

/// Writes `len` bytes at `offset` of the pages section to `addr` of the
/// vessel. process_vm_writev needs no stop and takes up to a whole section
/// buffer at once; it writes without FOLL_FORCE, so the mapping must be
/// writable, which `rebuild` sees to (map_prot) until the pages are in.
fn fill(v: &Vessel, pages: &mut SectionReader, addr: u64, len: u64, offset: u64) -> Result<()> {
    pages.read(offset, len, &mut |done, bytes| {
        isotrace_tracer::sys::vm_write(v.pid, addr + done, bytes).map_err(|e| Error::Invalid {
            what: format!(
                "cannot restore pid {}: writing {} bytes of pages at {:#x}: {e}",
                v.pid,
                bytes.len(),
                addr + done
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_range_skips_taken() {
        let taken = [(0x10000, 0x20000), (0x20000, 0x30000), (0x40000, 0x50000)];
        assert_eq!(free_range(&taken, 0x1000, 0x10000), Some(0x30000));
        assert_eq!(free_range(&taken, 0x10000, 0x10000), Some(0x30000));
        assert_eq!(free_range(&taken, 0x10001, 0x10000), Some(0x50000));
        assert_eq!(free_range(&[], 0x2000, 0x10000), Some(0x10000));
        assert_eq!(free_range(&[(0x10000, TASK_TOP)], 0x1000, 0x10000), None);
    }

    #[test]
    fn prot_bits() {
        assert_eq!(prot("r-xp"), (libc::PROT_READ | libc::PROT_EXEC) as u64);
        assert_eq!(prot("---p"), 0);
        assert_eq!(prot("rw-s"), (libc::PROT_READ | libc::PROT_WRITE) as u64);
    }

    #[test]
    fn classify_kinds() {
        let vma = |path: &str, perms: &str, inode| Vma {
            start: 0x1000,
            end: 0x2000,
            perms: perms.into(),
            inode,
            path: path.into(),
            ..Default::default()
        };
        assert_eq!(
            classify(1, &vma("[vdso]", "r-xp", 0)).unwrap(),
            MapKind::Special
        );
        assert_eq!(
            classify(1, &vma("[stack]", "rw-p", 0)).unwrap(),
            MapKind::Anon {
                shared: false,
                stack: true
            }
        );
        assert_eq!(
            classify(1, &vma("/usr/lib/libc.so.6", "r-xp", 7)).unwrap(),
            MapKind::File {
                path: "/usr/lib/libc.so.6".into(),
                shared: false
            }
        );
        let err = classify(1, &vma("/dev/fb0", "rw-s", 9))
            .unwrap_err()
            .to_string();
        assert!(err.contains("device"), "{err}");
        let err = classify(1, &vma("/tmp/x (deleted)", "r--p", 9)).unwrap_err();
        assert!(err.to_string().contains("deleted"));
    }
}
