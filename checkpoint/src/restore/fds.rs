//! The fd table of the restored process.
//!
//! [`plan`] decides, without touching anything, where each recorded fd
//! comes from, and refuses kinds that are not restored yet. [`apply`] then
//! works in the vessel: it parks the restorer's own stdin/stdout/stderr
//! (which the vessel inherited) above every recorded fd, closes the rest,
//! creates each source above that line too, dup3()s it onto its number,
//! and finally closes everything above the line. Sources never collide
//! with targets that way, whatever the numbers.

use super::inject::Vessel;
use crate::error::{Error, Result};
use crate::model::{FdEntry, FdKind, Process};
use std::collections::BTreeMap;

/// Where one fd of the restored process comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The restorer's own fd 0, 1 or 2 (a terminal, or a pipe or socket
    /// whose other end was outside the image): the restored program talks
    /// to whoever runs `isotrace restore`.
    Stdio(i32),
    /// Reopened by path, then seeked to `pos` (if any).
    Open {
        path: String,
        flags: i32,
        pos: Option<u64>,
    },
    /// One end of a new pipe shared by every fd recorded with this inode.
    Pipe { ino: u64, write: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdPlan {
    pub fd: i32,
    pub source: Source,
    pub cloexec: bool,
}

/// open(2) flags the kernel clears after open (fs/open.c do_dentry_open),
/// and O_CLOEXEC, which belongs to the fd, not the open file.
const NOT_REOPENED: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC;

fn unsupported(pid: i32, e: &FdEntry, why: &str) -> Error {
    Error::Invalid {
        what: format!(
            "cannot restore pid {pid}: fd {} ({} {}): {why}",
            e.fd,
            e.kind.name(),
            e.target
        ),
    }
}

/// Plans every fd of `proc`. `tty_stdio` is the first of the restorer's
/// fds 0..2 that is a terminal, if any. Also returns notes for the user.
pub fn plan(proc: &Process, tty_stdio: Option<i32>) -> Result<(Vec<FdPlan>, Vec<String>)> {
    let mut plans = Vec::new();
    let mut notes = Vec::new();
    let mut ends: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for e in proc.fds.iter().filter(|e| e.kind == FdKind::Pipe) {
        let end = ends.entry(e.ino).or_default();
        if is_write(e) {
            end.1 = true;
        } else {
            end.0 = true;
        }
    }
    for e in &proc.fds {
        let flags = e.flags as i32;
        let both_ends = ends.get(&e.ino) == Some(&(true, true));
        let source = match &e.kind {
            FdKind::Tty if e.fd <= 2 => Source::Stdio(e.fd),
            FdKind::Tty => match tty_stdio {
                Some(fd) => Source::Stdio(fd),
                None => reopen(e, false),
            },
            FdKind::Pipe | FdKind::Fifo | FdKind::Socket(_) if e.fd <= 2 && !both_ends => {
                notes.push(format!(
                    "fd {} was a {} to outside the image; it is now isotrace restore's own fd {}",
                    e.fd,
                    e.kind.name(),
                    e.fd
                ));
                Source::Stdio(e.fd)
            }
            FdKind::Pipe => {
                if !both_ends {
                    notes.push(format!(
                        "fd {}: the pipe's other end was outside the image; it is now closed",
                        e.fd
                    ));
                }
                Source::Pipe {
                    ino: e.ino,
                    write: is_write(e),
                }
            }
            FdKind::File { deleted: false } => reopen(e, true),
            FdKind::Dir | FdKind::Device { .. } => reopen(e, false),
            FdKind::File { deleted: true } => {
                return Err(unsupported(
                    proc.pid,
                    e,
                    "a deleted file's contents are not in the image",
                ))
            }
            _ => {
                return Err(unsupported(
                    proc.pid,
                    e,
                    "this kind of fd is not restored yet",
                ))
            }
        };
        plans.push(FdPlan {
            fd: e.fd,
            source,
            cloexec: flags & libc::O_CLOEXEC != 0,
        });
    }
    Ok((plans, notes))
}

fn is_write(e: &FdEntry) -> bool {
    e.flags as i32 & libc::O_ACCMODE == libc::O_WRONLY
}

fn reopen(e: &FdEntry, seek: bool) -> Source {
    Source::Open {
        path: e.target.clone(),
        flags: e.flags as i32 & !(NOT_REOPENED | libc::O_CLOEXEC),
        pos: seek.then_some(e.pos),
    }
}

/// fcntl(2) F_DUPFD: a copy of `fd` at the lowest free number >= `min`.
fn dup_above(v: &Vessel, fd: u64, min: u64) -> Result<u64> {
    v.call(
        "fcntl F_DUPFD",
        libc::SYS_fcntl,
        [fd, libc::F_DUPFD as u64, min, 0, 0, 0],
    )
}

fn close(v: &Vessel, fd: u64) -> Result<()> {
    v.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])
        .map(drop)
}

/// Rebuilds the vessel's fd table from `plans`.
pub fn apply(v: &Vessel, plans: &[FdPlan]) -> Result<()> {
    let line = plans.iter().map(|p| p.fd as u64).max().unwrap_or(0).max(2) + 1;
    let mut stdio = [None; 3];
    for (k, slot) in stdio.iter_mut().enumerate() {
        let rc = v.raw(
            libc::SYS_fcntl,
            [k as u64, libc::F_DUPFD as u64, line, 0, 0, 0],
        )?;
        *slot = (rc >= 0).then_some(rc as u64);
    }
    v.call(
        "close_range",
        libc::SYS_close_range,
        [0, line - 1, 0, 0, 0, 0],
    )?;
    let mut pipes: BTreeMap<u64, [u64; 2]> = BTreeMap::new();
    for p in plans {
        let src = match &p.source {
            Source::Stdio(k) => stdio[*k as usize].ok_or_else(|| Error::Invalid {
                what: format!(
                    "fd {} should be isotrace restore's fd {k}, which is closed",
                    p.fd
                ),
            })?,
            Source::Open { path, flags, pos } => open(v, p.fd, path, *flags, *pos, line)?,
            Source::Pipe { ino, write } => {
                let ends = match pipes.get(ino) {
                    Some(e) => *e,
                    None => {
                        let e = pipe(v, line)?;
                        pipes.insert(*ino, e);
                        e
                    }
                };
                ends[usize::from(*write)]
            }
        };
        let flags = if p.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        let what = format!("dup3 onto fd {}", p.fd);
        v.call(&what, libc::SYS_dup3, [src, p.fd as u64, flags, 0, 0, 0])?;
    }
    v.call(
        "close_range",
        libc::SYS_close_range,
        [line, u32::MAX as u64, 0, 0, 0, 0],
    )?;
    Ok(())
}

fn open(v: &Vessel, fd: i32, path: &str, flags: i32, pos: Option<u64>, line: u64) -> Result<u64> {
    let at = v.stage_path(path)?;
    let rc = v.raw(
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, at, flags as u64, 0, 0, 0],
    )?;
    if rc < 0 {
        return Err(Error::Invalid {
            what: format!(
                "cannot reopen fd {fd} ({path}): {}",
                nix::errno::Errno::from_raw(-rc as i32)
            ),
        });
    }
    let high = dup_above(v, rc as u64, line)?;
    close(v, rc as u64)?;
    if let Some(pos) = pos {
        let what = format!("lseek {path} to {pos}");
        v.call(
            &what,
            libc::SYS_lseek,
            [high, pos, libc::SEEK_SET as u64, 0, 0, 0],
        )?;
    }
    Ok(high)
}

/// A new pipe with both ends above `line`: [read, write].
fn pipe(v: &Vessel, line: u64) -> Result<[u64; 2]> {
    let at = v.stage(0, &[0u8; 8])?;
    v.call("pipe2", libc::SYS_pipe2, [at, 0, 0, 0, 0, 0])?;
    let mut raw = [0u8; 8];
    v.peek(at, &mut raw)?;
    let mut ends = [0u64; 2];
    for (i, end) in ends.iter_mut().enumerate() {
        let fd = u32::from_ne_bytes(raw[i * 4..i * 4 + 4].try_into().expect("4 bytes")) as u64;
        *end = dup_above(v, fd, line)?;
        close(v, fd)?;
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(n: i32, kind: FdKind, target: &str, flags: u32, ino: u64) -> FdEntry {
        FdEntry {
            fd: n,
            target: target.into(),
            flags,
            ino,
            kind,
            pos: 42,
            ..Default::default()
        }
    }

    #[test]
    fn plans_each_kind() {
        let proc = Process {
            pid: 7,
            fds: vec![
                fd(0, FdKind::Tty, "/dev/pts/1", 0o2, 1),
                fd(1, FdKind::Pipe, "pipe:[9]", 0o1, 9),
                fd(3, FdKind::File { deleted: false }, "/tmp/out", 0o2101101, 5),
                fd(4, FdKind::Pipe, "pipe:[8]", 0o0, 8),
                fd(5, FdKind::Pipe, "pipe:[8]", 0o2000001, 8),
            ],
            ..Default::default()
        };
        let (plans, notes) = plan(&proc, Some(0)).unwrap();
        assert_eq!(plans[0].source, Source::Stdio(0));
        assert_eq!(plans[1].source, Source::Stdio(1));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            plans[2].source,
            Source::Open {
                path: "/tmp/out".into(),
                flags: 0o100001,
                pos: Some(42)
            }
        );
        assert!(plans[2].cloexec);
        assert_eq!(
            plans[3].source,
            Source::Pipe {
                ino: 8,
                write: false
            }
        );
        assert_eq!(
            plans[4].source,
            Source::Pipe {
                ino: 8,
                write: true
            }
        );
        assert!(plans[4].cloexec && !plans[3].cloexec);
    }

    #[test]
    fn refuses_unsupported_kinds() {
        let proc = Process {
            pid: 7,
            fds: vec![fd(
                6,
                FdKind::AnonInode("[eventfd]".into()),
                "anon_inode:[eventfd]",
                2,
                1,
            )],
            ..Default::default()
        };
        let err = plan(&proc, None).unwrap_err().to_string();
        assert!(
            err.contains("pid 7") && err.contains("fd 6") && err.contains("anon_inode"),
            "{err}"
        );
    }
}
