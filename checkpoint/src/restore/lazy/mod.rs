//! Post-copy of the pages a migration's receiver already holds (#6).
//!
//! With pre-copy, most of a group's memory reaches the destination while
//! the source still runs (the receiver's store, `stream/pages.rs`). An
//! eager restore copies all of it into the new processes inside the
//! downtime. Here the restore fills only what came at the freeze, and
//! leaves the held pages of private anonymous mappings missing: each such
//! mapping is registered, in missing mode, with a userfaultfd of its
//! process, the group is released, and a thread of the restoring
//! supervisor ([`serve`]) fills the held pages from the store: first those
//! a fault waits for, and in the background every other one, in large
//! chunks. When a process has nothing left to fill its userfaultfd is
//! closed, which unregisters every range (fs/userfaultfd.c,
//! userfaultfd_release): the process is then as an eager restore leaves
//! it, and a checkpoint or another migration may follow.
//!
//! CRIU's lazy-pages daemon is the model (criu/uffd.c); the differences:
//! the server is a thread of the supervisor, the pages come from a local
//! file, not a page server, and the userfaultfd is made by an injected
//! syscall and never stays in the process's fd table (restore/uffd.rs).
//!
//! The userfaultfd must serve the kernel's own accesses too (a read(2)
//! into a page not filled yet, the supervisor's process_vm_readv): it is
//! made without UFFD_USER_MODE_ONLY, which needs CAP_SYS_PTRACE or
//! vm.unprivileged_userfaultfd=1. Where the kernel refuses that, or the
//! events below, the process is filled eagerly as before, and the
//! [`Stats::eager`] count says so.
//!
//! The process's own changes to its memory while pages are pending come
//! as events (UFFD_FEATURE_EVENT_*), each of which the process waits on
//! until it is read, and during which every fill is refused with EAGAIN
//! (ctx->mmap_changing), so the server's view never lags the kernel's:
//! - fork: the child's mm has a userfaultfd of its own, with the same
//!   ranges registered and the same pages missing: it gets a copy of the
//!   parent's pending set (pages the fork copied come back EEXIST);
//! - mremap: the pending pages move with the mapping;
//! - munmap, madvise(MADV_DONTNEED/REMOVE): the pending pages there are
//!   dropped (a later access must see zeroes, which UFFDIO_ZEROPAGE gives).
//!
//! Known gap (CRIU's as well): a fork in one thread racing an munmap of
//! pending pages in another thread of the same process may report the
//! munmap before the fork, and the child then lacks those pages.
//!
//! When serving fails (the store cannot be read, an ioctl fails other than
//! as above), the group is killed and the error logged: a thread waiting
//! on a fault would otherwise wait for ever, and closing the userfaultfd
//! instead would let it read zeroes where its data was.
//!
//! A dump of the group while pages are still missing is refused
//! ([`refuse_dump`]): pagemap shows a missing page exactly as one never
//! touched (no bit set), so the dump would leave it out and the image
//! would restore zeroes where the data was. [`wait_done`] lets a
//! checkpoint wait, for a bounded time, for the post-copy to finish.

mod pending;
mod serve;

pub use pending::{Pending, Piece};
pub use serve::Stats;

use crate::error::{Error, Result};
use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether a post-copy in this process still has pages to fill: a server
/// holds a `LazyFill` (tracer remote.rs, whose count also makes the
/// supervisor wait for missing pages when it reads a path) from
/// [`PostCopy::start`] until every page is in, or it failed, or it was
/// dropped before `go`.
pub fn running() -> bool {
    isotrace_tracer::remote::LazyFill::active()
}

/// Waits at most `within` for every post-copy of this process to finish;
/// true when none runs (any more).
pub fn wait_done(within: Duration) -> bool {
    let until = Instant::now() + within;
    while running() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The error of a dump asked for while a post-copy of this process still
/// has pages to fill: a missing page looks in pagemap like one never
/// touched, so the image would hold zeroes in its place.
pub fn refuse_dump() -> Result<()> {
    match running() {
        false => Ok(()),
        true => Err(Error::Invalid {
            what: "the group is still receiving its memory from a post-copy migration \
                   (pages not in yet cannot be dumped); try again when the migration \
                   has finished"
                .into(),
        }),
    }
}

/// What is told the outcome of a post-copy, from the server thread.
pub type Done = Box<dyn FnOnce(std::result::Result<Stats, String>) + Send>;

/// What the server thread is told.
pub(crate) enum Cmd {
    /// A process's userfaultfd and its pages still to fill.
    Add { uffd: OwnedFd, pending: Pending },
    /// A process filled eagerly (post-copy was refused for it): why.
    Eager(String),
    /// The group runs: push in the background; when everything is in,
    /// tell `done`; on failure kill `victims` (SIGKILL) first.
    Go { victims: Vec<i32>, done: Done },
}

/// The running fault server of one restore.
pub struct PostCopy {
    tx: Sender<Cmd>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
    /// Processes with pages left to fill, and filled eagerly.
    lazy: Cell<usize>,
    eager: Cell<usize>,
}

impl std::fmt::Debug for PostCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostCopy")
            .field("lazy", &self.lazy.get())
            .field("eager", &self.eager.get())
            .finish()
    }
}

impl PostCopy {
    /// Starts the server thread; it serves faults at once (the restore's
    /// own injected syscalls may touch a registered range), and pushes
    /// only after [`PostCopy::go`].
    pub fn start() -> Result<PostCopy> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| Error::Invalid {
                    what: format!("post-copy: pipe: {e}"),
                })?;
        let (tx, rx) = channel();
        let running = isotrace_tracer::remote::LazyFill::begin();
        let thread = std::thread::Builder::new()
            .name("isotrace-postcopy".into())
            .spawn(move || serve::run(rd, rx, running))
            .map_err(|e| Error::Invalid {
                what: format!("post-copy: starting its thread: {e}"),
            })?;
        Ok(PostCopy {
            tx,
            wake: wr,
            thread: Some(thread),
            lazy: Cell::new(0),
            eager: Cell::new(0),
        })
    }

    fn send(&self, cmd: Cmd) {
        // A send fails only once the thread ended (after a failure it
        // reported itself).
        let _ = self.tx.send(cmd);
        let _ = nix::unistd::write(&self.wake, b"x");
    }

    /// Hands a process's userfaultfd (ranges registered, missing mode)
    /// and the pages to fill there to the server.
    pub fn add(&self, uffd: OwnedFd, pending: Pending) {
        self.lazy.set(self.lazy.get() + 1);
        self.send(Cmd::Add { uffd, pending });
    }

    /// Notes a process that is filled eagerly, and why.
    pub fn eager(&self, why: String) {
        self.eager.set(self.eager.get() + 1);
        self.send(Cmd::Eager(why));
    }

    /// Processes with pages left to fill after the release.
    pub fn lazy(&self) -> usize {
        self.lazy.get()
    }

    /// Processes filled eagerly because post-copy was refused for them.
    pub fn eagerly_filled(&self) -> usize {
        self.eager.get()
    }

    /// The group runs: fill everything left, then call `done` (from the
    /// server thread) and end. On failure `victims` are killed first.
    pub fn go(mut self, victims: Vec<i32>, done: Done) {
        self.send(Cmd::Go { victims, done });
        // The thread runs on its own from here.
        drop(self.thread.take());
    }
}

impl Drop for PostCopy {
    /// Without `go` (the restore failed): the server ends, closing every
    /// userfaultfd; the restore's own cleanup kills the processes.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let (tx, _) = channel();
            drop(std::mem::replace(&mut self.tx, tx));
            let _ = nix::unistd::write(&self.wake, b"x");
            let _ = t.join();
        }
    }
}
