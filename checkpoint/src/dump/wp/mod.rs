//! Copy-before-write snapshots (#7) with userfaultfd write-protection in
//! sync mode (Documentation/admin-guide/mm/userfaultfd.rst, "Write
//! Protect Notifications"), in three steps:
//! - arm.rs: in a first, short hold one target thread makes a userfaultfd
//!   (precopy/inject.rs); then, while the target runs, every mapping whose
//!   contents can change is registered and write-protected (private
//!   anonymous ones in missing mode too) and the pages present are noted.
//!   Until the pause the fault thread (serve.rs) only lets the target's
//!   accesses through and notes the pages: each write to a protected page
//!   un-protects it, each access to a page not mapped maps the zero page.
//! - seal.rs, in the pause: the faults and mmap changes queued are read,
//!   the pages let through since the arming are protected again, and what
//!   the arming does not cover (mappings made or grown since, ranges the
//!   target unmapped or madvised, shmem) is scanned: the pause costs what
//!   the target did since the arming, not its size.
//! - After it, the target's first write to a protected page blocks in the
//!   kernel and arrives as a message; serve.rs copies the page (its pause
//!   contents: the write has not happened) into a side store and
//!   un-protects it with a wake. The dump reads the running process
//!   (memory.rs, through [`Guard`]: guard.rs), prefers the stored copies
//!   and un-protects each range once read, so the target stops faulting
//!   there. Nothing is forked.
//!
//! Why a page written just before the pause cannot be missed: from its
//! registration on, a mapping in missing and write-protect mode reports
//! every page it gains (missing mode: the PTE was none) and every first
//! write to a page present at its protection. Both are noted before the
//! access is let through, under the lock the pause takes; the pause reads
//! every message queued before it seals (the target is stopped, so none
//! is on its way), and protects again every page noted. What could change
//! a mapping without a fault (munmap, mremap, madvise) is reported as an
//! event, and the pause scans those ranges again.
//!
//! Choices the kernel forces:
//! - The uffd is made without UFFD_USER_MODE_ONLY. With it, a protected
//!   page written by the kernel on the process's behalf (read(2) into a
//!   buffer, a futex word) is not reported but fails (handle_userfault
//!   returns VM_FAULT_SIGBUS for a fault without FAULT_FLAG_USER, so the
//!   syscall gets EFAULT). Without it, userfaultfd(2) wants
//!   CAP_SYS_PTRACE in the target or vm.unprivileged_userfaultfd=1; when
//!   it is refused the fork method is used.
//! - No UFFD_FEATURE_WP_UNPOPULATED: with it every never-touched page of
//!   an anonymous mapping gets a PTE marker (and page tables allocated),
//!   which costs the size of the mappings, not of the memory (a reserved
//!   1 TiB heap). Instead missing mode reports the pages a private
//!   anonymous mapping gains, and PAGEMAP_SCAN notes the pages present or
//!   swapped (at the arming, and at the pause where the arming does not
//!   cover); the others were zero at the pause (or the file's), and the
//!   dump reads only the noted ones. Missing mode costs the target a
//!   round trip to the fault thread for each page it gains while the
//!   snapshot runs. A shmem mapping reports only pages missing from its
//!   page cache, not those mapped from it, so it is scanned at the pause.
//! - Sync write-protection can be registered on anonymous, shmem and
//!   hugetlbfs mappings only (fs/userfaultfd.c, vma_can_userfault; any
//!   mapping only with WP_ASYNC). A writable private file mapping (a
//!   library's .data, a MAP_PRIVATE file written copy-on-write) is read
//!   during the pause instead; read-only ones are read afterwards (they
//!   change only after an mprotect), and the record says how many.
//! - A mapping another userfaultfd already holds (a target using
//!   userfaultfd itself) refuses registration (EBUSY): read during the
//!   pause as well when writable.
//! - Each UFFDIO_WRITEPROTECT walks its range's page tables under the mmap
//!   lock, and UFFDIO_UNREGISTER walks them again under the mmap lock held
//!   for writing (userfaultfd_clear_vma clears the protection): both are
//!   done in chunks of [`CHUNK`], so that the target's page faults and
//!   mmap calls wait for one chunk, not for its whole memory.
//! - Non-cooperative events: the target's munmap, mremap and
//!   madvise(MADV_DONTNEED/FREE/REMOVE) of a protected range are reported
//!   (UFFD_FEATURE_EVENT_UNMAP/REMAP/REMOVE). An unmap is reported after
//!   the pages are gone (userfaultfd_unmap_complete runs after the
//!   unmap), a remove just before they go (the madvising thread zaps
//!   once the message is read), a remap after they moved: none leaves the
//!   pause contents of a range not yet read anywhere this can read them.
//!   Such an event after the pause over pages not yet dumped (nor copied)
//!   tears the snapshot: [`WpCopy::finish`] says so and `--method auto`
//!   takes the snapshot again by fork. While an event is being reported
//!   the kernel refuses UFFDIO_WRITEPROTECT with EAGAIN
//!   (ctx->mmap_changing), so a range is read, marked done, un-protected
//!   (retrying EAGAIN), and only then checked against the events read
//!   since its read began: an event that changed it before the read is
//!   one of those.
//! - fork(2) by the target: without UFFD_FEATURE_EVENT_FORK the child's
//!   mappings lose the registration (dup_userfaultfd) and the parent keeps
//!   its protection, so the target's pages stay guarded.
//! - exec(2) or exit: the old mm goes; reads through the /proc/PID/mem
//!   opened at the first hold then return 0 bytes, which finish checks.
//! - If this process dies mid-snapshot, closing the uffd un-registers
//!   every range and wakes every waiting thread (userfaultfd_release).

use super::attach::StoppedThread;
use super::cow::{find_gadget, pick_thread, Unsuitable};
use super::lend::Lent;
use super::memory::skip_reason;
use super::ranges::Ranges;
use super::sigstate::{self, Handler};
use crate::error::{Error, Result};
use crate::model::Vma;
use crate::precopy::{inject::uffd_in, sys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod arm;
mod guard;
mod seal;
mod serve;

pub(in crate::dump) use arm::{prearm, Prearmed};
use serve::{serve, Shared, State};

/// How long an un-protect may keep meeting EAGAIN (an mmap change being
/// reported) before the snapshot gives up on the range.
const EAGAIN_LIMIT: Duration = Duration::from_secs(10);

/// What the copy-before-write method did for one process (snapshot.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WpReport {
    /// Bytes of the mappings registered and write-protected.
    pub protected_bytes: u64,
    /// Bytes present or swapped at the pause (what the dump reads).
    pub present_bytes: u64,
    /// Bytes the target wrote or gained between the first protection and
    /// the pause, protected again by the pause.
    #[serde(default)]
    pub touched_before_pause_bytes: u64,
    /// Bytes of pages the write-protection before the pause did not see
    /// (mapped since), copied during the pause rather than protected.
    #[serde(default)]
    pub copied_in_pause_bytes: u64,
    /// Writable mappings that could not be protected, read during the
    /// pause: "START-END PATH: why".
    pub read_in_pause: Vec<String>,
    pub read_in_pause_bytes: u64,
    /// Read-only mappings not protected (read after the pause).
    pub unprotected_read_only: u64,
    /// Write faults served, and pages copied before a write.
    pub faults: u64,
    pub copied_before_write: u64,
    /// The target's mmap changes reported while it ran.
    pub events: Vec<String>,
}

/// One process under copy-before-write; dropping it un-protects all.
pub struct WpCopy {
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
    registered: Vec<(u64, u64)>,
    present: Ranges,
    /// /proc/PID/mem and pagemap opened while it was held: reads return
    /// 0 bytes once that mm is gone (exec, exit).
    mem: File,
    pagemap: OwnedFd,
    /// An address whose byte `mem` read at the first hold.
    probe: Option<u64>,
    report: WpReport,
    pub handlers: Result<BTreeMap<i32, Handler>>,
}

/// Whether the mapping may take sync write-protection (vma_can_userfault:
/// anonymous, shmem, hugetlbfs): the kernel has the last word.
fn protectable(v: &Vma) -> bool {
    !v.file_backed()
        || v.path.starts_with("/memfd:")
        || v.path.starts_with("/dev/zero")
        || v.path.starts_with("/SYSV")
        || v.path.starts_with("/dev/shm/")
}

impl WpCopy {
    /// Makes the userfaultfd of one fully stopped process whose mappings
    /// are `vmas` (a first, short hold: see [`WpCopy::prearm`]). Ok(Err)
    /// says why the method cannot be used; Err is fatal (the target died).
    pub fn open(
        threads: &[&StoppedThread],
        vmas: &[Vma],
        caught: u64,
    ) -> Result<std::result::Result<WpCopy, Unsuitable>> {
        let t = match pick_thread(threads) {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        let (pid, tid) = (t.pid, t.tid);
        let Some(gadget) = find_gadget(pid, tid, vmas) else {
            return Ok(Err(
                "no `syscall` instruction found in its executable mappings".into(),
            ));
        };
        let mut lent = Lent::new(pid, tid, gadget)?;
        // Syscall stops must say so (PTRACE_O_TRACESYSGOOD), as in cow.rs.
        lent.trace_forks(0)?;
        let uffd = uffd_in(&mut lent, pid, 0);
        // Now, not at the pause: a lent thread's stack is written through
        // /proc/PID/mem, a remote fault that a protected page would fail
        // (handle_userfault: no FAULT_FLAG_ALLOW_RETRY).
        let handlers = match uffd {
            Ok(_) => sigstate::handlers(&mut lent, caught),
            Err(_) => Ok(BTreeMap::new()),
        };
        lent.give_back()?;
        let uffd = match uffd {
            Ok(u) => u,
            Err(e @ Error::Exited { .. }) => return Err(e),
            Err(e) => return Ok(Err(format!("{e} (userfaultfd(2) without UFFD_USER_MODE_ONLY wants CAP_SYS_PTRACE in the target or vm.unprivileged_userfaultfd=1)"))),
        };
        let features = sys::UFFD_FEATURE_EVENT_REMAP
            | sys::UFFD_FEATURE_EVENT_REMOVE
            | sys::UFFD_FEATURE_EVENT_UNMAP
            | sys::UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        if let Err(e) = sys::uffd_api(&uffd, features) {
            return Ok(Err(format!("userfaultfd write-protection: {e}")));
        }
        let mem_path = format!("/proc/{pid}/task/{tid}/mem");
        let mem = File::open(&mem_path).map_err(|e| crate::dump::vanished(pid, &mem_path, e))?;
        let probe = vmas
            .iter()
            .filter(|v| v.readable() && skip_reason(v).is_none())
            .map(|v| v.start)
            .find(|&at| matches!(mem.read_at(&mut [0u8; 1], at), Ok(1)));
        let pagemap_path = format!("/proc/{pid}/pagemap");
        let pagemap = File::open(&pagemap_path)
            .map_err(|e| crate::dump::vanished(pid, &pagemap_path, e))?
            .into();
        let reader = uffd
            .try_clone()
            .map(File::from)
            .map_err(|e| Error::io("duplicating the userfaultfd", e))?;
        let shared = Arc::new(Shared {
            pid,
            tid,
            uffd,
            reader,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let server_shared = Arc::clone(&shared);
        let server = std::thread::Builder::new()
            .name(format!("uffd-wp {pid}"))
            .spawn(move || serve(&server_shared))
            .map_err(|e| Error::io("spawning the write-fault thread", e))?;
        Ok(Ok(WpCopy {
            shared,
            server: Some(server),
            registered: Vec::new(),
            present: Ranges::default(),
            mem,
            pagemap,
            probe,
            report: WpReport::default(),
            handlers,
        }))
    }

    /// Stops serving faults, un-registers every range (which wakes any
    /// thread still waiting) and closes the uffd. Err(Torn) when the pause
    /// contents could not all be read.
    pub fn finish(mut self) -> Result<WpReport> {
        self.shutdown();
        let state = self.shared.lock();
        let mut report = std::mem::take(&mut self.report);
        report.faults = state.faults;
        report.copied_before_write = state.copied;
        report.events = state.events.clone();
        let pid = self.shared.pid;
        if let Some(why) = &state.torn {
            return Err(Error::Torn {
                pid,
                why: why.clone(),
            });
        }
        self.check_mm("during the copy")?;
        Ok(report)
    }

    /// Err(Torn) if the mm of the first hold is gone (exec, exit): a read
    /// of its /proc/PID/mem then returns 0 bytes (fs/proc/base.c, mem_rw:
    /// mmget_not_zero fails), where the mapping read at the first hold
    /// gave one.
    fn check_mm(&self, when: &str) -> Result<()> {
        let Some(probe) = self.probe else {
            return Ok(());
        };
        match self.mem.read_at(&mut [0u8; 1], probe) {
            Ok(0) => Err(Error::Torn {
                pid: self.shared.pid,
                why: format!("its address space went away {when} (exec or exit)"),
            }),
            _ => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        // In chunks, and while the fault thread still serves: each
        // UFFDIO_UNREGISTER holds the target's mmap lock for writing while
        // it walks the page tables to clear the protection
        // (userfaultfd_clear_vma), so that 4 GiB at once would stop its
        // page faults and mmap calls for ~100 ms. The chunk just
        // un-registered merges back with its un-registered neighbour.
        for &(start, len) in &self.registered {
            for (s, e) in chunks(start, start + len) {
                let _ = retry_eagain(|| sys::uffd_unregister(&self.shared.uffd, s, e - s));
            }
        }
        self.registered.clear();
        self.shared.stop.store(true, Ordering::Release);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

impl Drop for WpCopy {
    fn drop(&mut self) {
        self.shutdown();
    }
}
/// Calls `f` until it stops failing with EAGAIN, for at most EAGAIN_LIMIT.
fn retry_eagain(mut f: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    let deadline = Instant::now() + EAGAIN_LIMIT;
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(100));
            }
            other => return other,
        }
    }
}
/// How much one userfaultfd ioctl or page-table scan covers at most: each
/// holds the target's mmap lock, which its page faults in that mapping
/// and its mmap calls wait for.
const CHUNK: u64 = 64 << 20;

/// [start, end) cut at CHUNK boundaries.
fn chunks(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut at = start;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let next = ((at / CHUNK + 1) * CHUNK).min(end);
            let chunk = (at, next);
            at = next;
            chunk
        })
    })
}

/// A private anonymous mapping (heap, stacks, malloc's): registered in
/// missing mode as well, so that every page it gains is reported.
fn private_anonymous(v: &Vma) -> bool {
    !v.file_backed() && !v.shared()
}
