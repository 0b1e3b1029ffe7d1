//! The post-copy server thread (see the module above): reads every
//! userfaultfd's messages, resolves the faults, follows the events, and
//! between them pushes the next chunk of pending pages.

use super::pending::{Pending, Piece};
use super::{Cmd, Done};
use crate::precopy::sys;
use crate::PAGE_SIZE;
use isotrace_tracer::remote::LazyFill;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Bytes the pusher fills per step: large enough that the ioctls cost
/// little, small enough that a fault never waits long behind one.
const PUSH: u64 = 1 << 20;
/// Pages a fault fills: the faulting one and the pending ones after it
/// (a program that touches one page is likely to touch the next).
const FAULT_WINDOW: u64 = 16 * PAGE_SIZE;
/// Test hook (not a user feature): with ISOTRACE_TEST_POSTCOPY_HOLD=FILE
/// the pusher waits until FILE exists (faults are served meanwhile), so a
/// test decides how long pages stay missing after the group runs, and acts
/// in that window whatever the load.
const HOLD_VAR: &str = "ISOTRACE_TEST_POSTCOPY_HOLD";
/// Test hook (not a user feature): ISOTRACE_FAULT=post-copy-store-unreadable
/// makes the pusher fail as if the pre-copy store could not be read.
const FAULT: &str = "post-copy-store-unreadable";
/// How often the pusher looks for the hold file.
const HOLD_POLL: Duration = Duration::from_millis(10);

/// What post-copy did, for the migration report.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Stats {
    /// Processes filled by post-copy, and filled eagerly (and why).
    pub processes: usize,
    pub eager: usize,
    pub eager_why: Vec<String>,
    /// Pages left to fill at the release (held from pre-copy, in private
    /// anonymous mappings), summed over the processes.
    pub pages: u64,
    /// Pages the background pusher filled.
    pub pushed_pages: u64,
    /// Pages filled because a fault waited for them (the faulting pages
    /// and the pending pages right after them), and the faults read.
    pub fault_pages: u64,
    pub faults: u64,
    /// Faults on pages with nothing held (never written, or dropped by
    /// munmap/madvise): given a zero page.
    pub zero_pages: u64,
    /// Pending pages found mapped already (a fork's child has its parent's
    /// filled pages), or whose mapping was gone.
    pub skipped_pages: u64,
    /// fork, mremap, munmap and madvise events read.
    pub forks: u64,
    pub events: u64,
    /// From the release of the group until the last page was in.
    pub ms: f64,
}

struct Ctx {
    id: u64,
    uffd: OwnedFd,
    pending: Pending,
}

struct Server {
    ctxs: Vec<Ctx>,
    next_id: u64,
    /// Faults read and not resolved yet (EAGAIN): (ctx id, page).
    faults: Vec<(u64, u64)>,
    stats: Stats,
    go: Option<(Vec<i32>, Done)>,
    started: Instant,
    failed: Option<String>,
    buf: Vec<u8>,
    hold: Option<std::path::PathBuf>,
    /// The FAULT test hook is on.
    broken_store: bool,
    next_push: Instant,
    turn: usize,
    /// Dropped with the server, when every page is in (or the post-copy
    /// failed) and `done` was told: a dump may then go ahead.
    _running: LazyFill,
}

pub(super) fn run(wake: OwnedFd, rx: Receiver<Cmd>, running: LazyFill) {
    let hold = std::env::var_os(HOLD_VAR).map(std::path::PathBuf::from);
    let mut s = Server {
        ctxs: Vec::new(),
        next_id: 0,
        faults: Vec::new(),
        stats: Stats::default(),
        go: None,
        started: Instant::now(),
        failed: None,
        buf: vec![0; PUSH as usize],
        hold,
        broken_store: std::env::var("ISOTRACE_FAULT").as_deref() == Ok(FAULT),
        next_push: Instant::now(),
        turn: 0,
        _running: running,
    };
    loop {
        let mut fds: Vec<&OwnedFd> = vec![&wake];
        fds.extend(s.ctxs.iter().map(|c| &c.uffd));
        if let Err(e) = sys::poll_many(&fds, s.timeout()) {
            s.failed.get_or_insert(format!("poll: {e}"));
        }
        let mut byte = [0u8; 64];
        while matches!(nix::unistd::read(&wake, &mut byte), Ok(n) if n > 0) {}
        loop {
            match rx.try_recv() {
                Ok(cmd) => s.command(cmd),
                Err(TryRecvError::Empty) => break,
                // Dropped before `go`: the restore failed, and kills the
                // processes itself.
                Err(TryRecvError::Disconnected) if s.go.is_none() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        if s.failed.is_none() {
            if let Err(e) = s.step() {
                s.failed = Some(e);
            }
        }
        if s.go.is_some() && (s.failed.is_some() || s.ctxs.is_empty()) {
            return s.end();
        }
    }
}

impl Server {
    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add { uffd, pending } => {
                self.stats.processes += 1;
                self.stats.pages += pending.pages();
                self.add(uffd, pending);
            }
            Cmd::Eager(why) => {
                self.stats.eager += 1;
                if !self.stats.eager_why.contains(&why) {
                    self.stats.eager_why.push(why);
                }
            }
            Cmd::Go { victims, done } => {
                self.started = Instant::now();
                self.next_push = self.started;
                self.go = Some((victims, done));
            }
        }
    }

    fn add(&mut self, uffd: OwnedFd, pending: Pending) {
        self.next_id += 1;
        self.ctxs.push(Ctx {
            id: self.next_id,
            uffd,
            pending,
        });
    }

    /// How long poll may sleep: not at all while there is pushing to do.
    fn timeout(&self) -> i32 {
        if !self.faults.is_empty() {
            return 1;
        }
        if self.go.is_none() || self.failed.is_some() {
            return -1;
        }
        let wait = self.next_push.saturating_duration_since(Instant::now());
        wait.as_millis().min(1000) as i32
    }

    fn step(&mut self) -> Result<(), String> {
        let mut i = 0;
        while i < self.ctxs.len() {
            self.read_msgs(i)?;
            i += 1;
        }
        for (id, page) in std::mem::take(&mut self.faults) {
            if !self.resolve(id, page)? {
                self.faults.push((id, page));
            }
        }
        if self.go.is_some() && self.faults.is_empty() && Instant::now() >= self.next_push {
            match self.hold.as_ref().filter(|h| !h.exists()) {
                Some(_) => self.next_push = Instant::now() + HOLD_POLL,
                None => {
                    self.hold = None;
                    self.push()?;
                }
            }
        }
        if self.go.is_some() {
            // Closing the userfaultfd unregisters its ranges and wakes
            // whatever waits there (userfaultfd_release).
            let before = self.ctxs.len();
            self.ctxs.retain(|c| !c.pending.is_empty());
            if self.ctxs.len() != before {
                let live: Vec<u64> = self.ctxs.iter().map(|c| c.id).collect();
                self.faults.retain(|f| live.contains(&f.0));
            }
        }
        Ok(())
    }

    fn read_msgs(&mut self, i: usize) -> Result<(), String> {
        let mut msgs = [0u8; sys::UFFD_MSG_SIZE * 64];
        loop {
            let n = match nix::unistd::read(&self.ctxs[i].uffd, &mut msgs) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("reading a userfaultfd: {e}")),
            };
            if n == 0 {
                return Ok(());
            }
            for msg in msgs[..n].chunks_exact(sys::UFFD_MSG_SIZE) {
                self.handle(i, msg)?;
            }
        }
    }

    /// One struct uffd_msg (include/uapi/linux/userfaultfd.h): the event
    /// byte, then from offset 8 its arguments.
    fn handle(&mut self, i: usize, msg: &[u8]) -> Result<(), String> {
        let word = |at: usize| u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
        let (a, b, c) = (word(8), word(16), word(24));
        match msg[0] {
            sys::UFFD_EVENT_PAGEFAULT => {
                self.stats.faults += 1;
                self.faults.push((self.ctxs[i].id, b & !(PAGE_SIZE - 1)));
            }
            sys::UFFD_EVENT_FORK => {
                let uffd = sys::uffd_from_fork(a as u32).map_err(|e| e.to_string())?;
                let pending = self.ctxs[i].pending.clone();
                self.stats.forks += 1;
                self.add(uffd, pending);
            }
            sys::UFFD_EVENT_REMAP => {
                self.ctxs[i].pending.moved(a, b, c);
                self.stats.events += 1;
            }
            sys::UFFD_EVENT_REMOVE | sys::UFFD_EVENT_UNMAP => {
                self.ctxs[i].pending.take(a, b);
                self.stats.events += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// Resolves one fault; false to try again after the next events.
    fn resolve(&mut self, id: u64, page: u64) -> Result<bool, String> {
        let Some(ctx) = self.ctxs.iter_mut().find(|c| c.id == id) else {
            // Closed: that woke it.
            return Ok(true);
        };
        if ctx.pending.contains(page) {
            let mut pieces = ctx.pending.take(page, page + FAULT_WINDOW).into_iter();
            while let Some(p) = pieces.next() {
                if let Some(rest) = fill(ctx, p, &mut self.buf, &mut self.stats, true)? {
                    ctx.pending.insert(rest);
                    pieces.for_each(|p| ctx.pending.insert(p));
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        match sys::uffd_zeropage_raw(&ctx.uffd, page, PAGE_SIZE) {
            Ok(()) => {
                self.stats.zero_pages += 1;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            // Mapped meanwhile: the ioctl that lost woke nobody.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = sys::uffd_wake(&ctx.uffd, page, PAGE_SIZE);
                Ok(true)
            }
            // The mm is gone (ESRCH), or the mapping (ENOENT): nobody
            // waits there any more.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) => Ok(true),
            Err(e) => Err(format!("zero page at {page:#x}: {e}")),
        }
    }

    /// Fills the next chunk of the next process with pages left.
    fn push(&mut self) -> Result<(), String> {
        if self.ctxs.is_empty() {
            return Ok(());
        }
        if self.broken_store {
            return Err(format!(
                "reading the pre-copy store: {FAULT} (ISOTRACE_FAULT)"
            ));
        }
        self.turn = (self.turn + 1) % self.ctxs.len();
        let ctx = &mut self.ctxs[self.turn];
        let Some(p) = ctx.pending.take_first(PUSH) else {
            return Ok(());
        };
        if let Some(rest) = fill(ctx, p, &mut self.buf, &mut self.stats, false)? {
            ctx.pending.insert(rest);
        }
        Ok(())
    }

    fn end(mut self) {
        self.stats.ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (victims, done) = self.go.take().expect("ends after go");
        match self.failed.take() {
            None => done(Ok(self.stats)),
            Some(why) => {
                // Killed, not left waiting on a fault for ever, nor let
                // read zeroes where its data was (see the module).
                for pid in victims {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let why = format!("post-copy failed, the group was killed: {why}");
                eprintln!("isotrace: {why}");
                drop(self.ctxs);
                done(Err(why));
            }
        }
    }
}

/// Copies piece `p` from the store into `ctx`'s process, waking whoever
/// waits there. Some(rest): an mmap change is being reported (EAGAIN),
/// the rest must wait until its event is read.
fn fill(
    ctx: &mut Ctx,
    p: Piece,
    buf: &mut Vec<u8>,
    stats: &mut Stats,
    fault: bool,
) -> Result<Option<Piece>, String> {
    let len = p.len() as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    p.file
        .read_exact_at(&mut buf[..len], p.at)
        .map_err(|e| format!("reading {len} bytes at {} of the pre-copy store: {e}", p.at))?;
    let mut off = 0u64;
    while off < len as u64 {
        let (n, r) = sys::uffd_copy_wake(&ctx.uffd, p.start + off, &buf[off as usize..len]);
        off += n;
        let pages = n / PAGE_SIZE;
        if fault {
            stats.fault_pages += pages;
        } else {
            stats.pushed_pages += pages;
        }
        match r {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut rest = p.clone();
                rest.start += off;
                rest.at += off;
                return Ok(Some(rest));
            }
            // A page there already (a fork's copy), or no mapping there
            // any more (its event is read before the next fill).
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    || e.raw_os_error() == Some(libc::ENOENT) =>
            {
                stats.skipped_pages += 1;
                off += PAGE_SIZE;
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                // The process is gone (exit, or exec dropped this mm).
                ctx.pending = Pending::default();
                return Ok(None);
            }
            Err(e) => return Err(format!("filling {:#x}-{:#x}: {e}", p.start + off, p.end)),
        }
    }
    Ok(None)
}
