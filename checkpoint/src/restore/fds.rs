//! The fd table of the restored processes.
//!
//! `fdplan` decides, without touching anything, where each recorded fd
//! comes from. [`prepare`] works in the root vessel before the other
//! processes are cloned from it: it parks the restorer's own
//! stdin/stdout/stderr above every fd number of the image (the line),
//! closes everything below, and makes the objects processes share (pipes,
//! sockets, shared memory) above the line too. [`apply`] then, in each
//! vessel, creates each fd's source above the line, dup3()s it onto its
//! number, and finally closes everything above the line. Sources never
//! collide with targets that way, whatever the numbers.

pub use super::fdplan::{plan, rebuilt_pipes, FdPlan, Shape, Source};
use super::inject::Vessel;
use crate::dump::pipes::PipeData;
use crate::dump::unix_pairs::Pairs;
use crate::error::{Error, Result};
use crate::model::{FdKind, Process};
use std::collections::BTreeMap;

/// fcntl(2) F_DUPFD: a copy of `fd` at the lowest free number >= `min`.
pub fn dup_above(v: &Vessel, fd: u64, min: u64) -> Result<u64> {
    v.call(
        "fcntl F_DUPFD",
        libc::SYS_fcntl,
        [fd, libc::F_DUPFD as u64, min, 0, 0, 0],
    )
}

pub fn close(v: &Vessel, fd: u64) -> Result<()> {
    v.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])
        .map(drop)
}

/// The fds every vessel of a restore inherits from the root vessel, all
/// at or above `line`, which is above every fd number of the image: the
/// restorer's stdio, and both ends of every pipe of the image. Created in
/// the root before any other process is cloned from it, they are shared
/// the way the image's processes shared them (fork(2) duplicates the fd
/// table, and both copies refer to the same open file).
#[derive(Debug, Default)]
pub struct Shared {
    pub line: u64,
    pub stdio: [Option<u64>; 3],
    pub pipes: BTreeMap<u64, [u64; 2]>,
    /// Socket inode -> the vessel's fd of its end.
    pub sockets: BTreeMap<u64, u64>,
    /// Inet sockets whose port was taken on this host and which joined
    /// its holders through SO_REUSEPORT (`sockets::bind`): a same-host
    /// clone's copy of a listener or UDP socket.
    pub joined: std::collections::BTreeSet<u64>,
    /// Shared memory objects (see `shm`).
    pub shm: super::shm::ShmFds,
    /// Nameless files made from the image (see `deleted`).
    pub nameless: super::deleted::Made,
    /// Open files several fds share, by their first holder (pid, fd).
    pub open_files: super::open_files::Opened,
    /// Notes from making them.
    pub notes: Vec<String>,
}

/// Builds [`Shared`] in the root vessel and closes every fd below the
/// line (the rest of what it inherited from the restorer goes in
/// [`apply`]). Each pipe gets back the bytes `data` has for its inode.
pub fn prepare(
    v: &Vessel,
    procs: &[&Process],
    data: &PipeData,
    pairs: &Pairs,
    seals: &crate::dump::seals::Seals,
) -> Result<Shared> {
    let max = procs.iter().flat_map(|p| &p.fds).map(|e| e.fd as u64).max();
    let line = max.unwrap_or(0).max(2) + 1;
    let mut shared = Shared {
        line,
        ..Default::default()
    };
    for (k, slot) in shared.stdio.iter_mut().enumerate() {
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
    for e in procs.iter().flat_map(|p| &p.fds) {
        if e.kind == FdKind::Pipe && !shared.pipes.contains_key(&e.ino) {
            let ends = pipe(v, line)?;
            if let Some(bytes) = data.get(&e.ino) {
                refill(v, ends[1], bytes)?;
            }
            shared.pipes.insert(e.ino, ends);
        }
    }
    shared.sockets = super::sockets::create(v, procs, pairs, line)?;
    shared.joined = super::sockets::create_inet(v, procs, line, &mut shared.sockets)?;
    (shared.shm, shared.notes) = super::shm::prepare(v, procs, line, seals)?;
    Ok(shared)
}

/// Rebuilds the vessel's fd table from `plans`; the vessel holds
/// `shared` (see [`prepare`]) and nothing else below its line. Returns
/// notes.
pub fn apply(
    v: &Vessel,
    plans: &[FdPlan],
    shared: &Shared,
    opts: &super::Options,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for p in plans {
        let src = source_fd(v, p, shared, opts, &mut notes)?;
        let flags = if p.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        let what = format!("dup3 onto fd {}", p.fd);
        v.call(&what, libc::SYS_dup3, [src, p.fd as u64, flags, 0, 0, 0])?;
        if p.nonblock {
            // O_NONBLOCK belongs to the open file: every fd sharing it
            // sees it, as in the image.
            let (setfl, nb) = (libc::F_SETFL as u64, libc::O_NONBLOCK as u64);
            let args = [p.fd as u64, setfl, nb, 0, 0, 0];
            v.call("fcntl F_SETFL", libc::SYS_fcntl, args)?;
        }
    }
    for p in plans {
        if let Source::Anon { kind, info } = &p.source {
            if kind == "[eventpoll]" {
                notes.extend(super::anon::add_interests(v, p.fd as u64, info)?);
            }
        }
    }
    let (line, max) = (shared.line, u32::MAX as u64);
    v.call(
        "close_range",
        libc::SYS_close_range,
        [line, max, 0, 0, 0, 0],
    )?;
    Ok(notes)
}

/// The vessel's fd (above the line) that fd `p.fd` is to be a copy of.
pub(super) fn source_fd(
    v: &Vessel,
    p: &FdPlan,
    shared: &Shared,
    opts: &super::Options,
    notes: &mut Vec<String>,
) -> Result<u64> {
    let line = shared.line;
    let missing = |what: String| Error::Invalid {
        what: format!("fd {}: {what} was not created", p.fd),
    };
    Ok(match &p.source {
        Source::Stdio(k) => shared.stdio[*k as usize].ok_or_else(|| Error::Invalid {
            what: format!(
                "fd {} should be isotrace restore's fd {k}, which is closed",
                p.fd
            ),
        })?,
        Source::Open { path, flags, pos } => open(v, p.fd, &opts.path(path), *flags, *pos, line)?,
        Source::Pipe { ino, write } => {
            let ends = shared
                .pipes
                .get(ino)
                .ok_or_else(|| missing(format!("pipe {ino}")))?;
            ends[usize::from(*write)]
        }
        Source::Socket { ino } => *shared
            .sockets
            .get(ino)
            .ok_or_else(|| missing(format!("socket {ino}")))?,
        Source::Memfd { ino, pos } => {
            let fd = shared
                .shm
                .get(ino)
                .ok_or_else(|| missing(format!("memfd {ino}")))?;
            // A new open file of the memfd, so the offset is this fd's own.
            let path = format!("/proc/self/fd/{fd}");
            open(v, p.fd, &path, libc::O_RDWR, Some(*pos), line)?
        }
        Source::Nameless { ino, flags, pos } => {
            let fd = shared
                .nameless
                .get(ino)
                .ok_or_else(|| missing(format!("deleted file {ino}")))?;
            let path = format!("/proc/self/fd/{fd}");
            open(v, p.fd, &path, *flags, Some(*pos), line)?
        }
        Source::Shared { of, .. } => *shared
            .open_files
            .get(of)
            .ok_or_else(|| missing(format!("the open file of pid {} fd {}", of.0, of.1)))?,
        Source::Inotify { watches } => {
            // Created non-blocking; apply sets O_NONBLOCK again if the
            // image had it.
            let (fd, n) = super::inotify::create(v, watches, false, &|p| opts.path(p))?;
            notes.extend(n);
            let high = dup_above(v, fd, line)?;
            close(v, fd)?;
            high
        }
        Source::Anon { kind, info } => {
            let (fd, n) = super::anon::create(v, kind, info)?;
            notes.extend(n);
            let high = dup_above(v, fd, line)?;
            close(v, fd)?;
            high
        }
    })
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

/// Writes `bytes` into the new, empty pipe whose write end is `wfd`,
/// first growing it if they exceed its default 64 KiB (fcntl(2),
/// F_SETPIPE_SZ), so no write blocks.
fn refill(v: &Vessel, wfd: u64, bytes: &[u8]) -> Result<()> {
    if bytes.len() > 65536 {
        v.call(
            "fcntl F_SETPIPE_SZ",
            libc::SYS_fcntl,
            [wfd, libc::F_SETPIPE_SZ as u64, bytes.len() as u64, 0, 0, 0],
        )?;
    }
    write_all(v, wfd, bytes)
}

/// Writes `bytes` to the vessel's `fd` through the data page, in chunks
/// that leave its path area alone; a short write is an error (the fd is
/// new and empty, and the bytes fit it).
pub fn write_all(v: &Vessel, fd: u64, bytes: &[u8]) -> Result<()> {
    const CHUNK: usize = 2048;
    for chunk in bytes.chunks(CHUNK) {
        let at = v.stage(0, chunk)?;
        let n = v.call(
            "write of buffered data",
            libc::SYS_write,
            [fd, at, chunk.len() as u64, 0, 0, 0],
        )?;
        if n as usize != chunk.len() {
            return Err(Error::Invalid {
                what: format!("refilling fd {fd}: wrote {n} of {} bytes", chunk.len()),
            });
        }
    }
    Ok(())
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
