//! The write-fault thread of a copy-before-write snapshot (wp): it
//! reads the userfaultfd's messages (struct uffd_msg,
//! include/uapi/linux/userfaultfd.h), resolves faults on pages not mapped
//! yet with the zero page, lets writes through (before the pause, noting
//! the page for the pause to protect again) or saves each page's contents
//! before letting its first write through (after it), and notes the
//! target's mmap changes.

use crate::dump::ranges::Ranges;
use crate::precopy::sys;
use crate::PAGE_SIZE;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

pub(super) struct Shared {
    pub(super) pid: i32,
    pub(super) tid: i32,
    pub(super) uffd: OwnedFd,
    /// The same userfaultfd, to read its messages.
    pub(super) reader: File,
    pub(super) stop: AtomicBool,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    /// The pause has happened: pages are copied before writes.
    pub(super) sealed: bool,
    /// Before the pause: pages present (or swapped), as far as known: the
    /// first scan, and pages mapped since by a missing fault.
    pub(super) present: Ranges,
    /// Before the pause: pages let through (un-protected, or mapped by a
    /// missing fault) since the first protection: the pause protects them
    /// again.
    pub(super) touched: Ranges,
    /// Before the pause: ranges the target's mmap changes touched; the
    /// pause scans them again.
    pub(super) dirty: Ranges,
    /// Ranges registered in missing and write-protect mode whose every
    /// change since the first protection is known here (what the target
    /// unmapped or moved is taken out).
    pub(super) covered: Ranges,
    /// Faults read and not resolved yet (EAGAIN).
    pub(super) waiting: Vec<Wake>,
    /// Present at the pause, in protected mappings, not dumped yet.
    pub(super) pending: Ranges,
    /// Pause contents of pages copied before a write (or read during the
    /// pause), by address.
    pub(super) store: HashMap<u64, Box<[u8]>>,
    /// Ranges the target's mmap changes touched, in the order read.
    pub(super) log: Vec<(u64, u64)>,
    pub(super) torn: Option<String>,
    pub(super) faults: u64,
    pub(super) copied: u64,
    pub(super) events: Vec<String>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The write-fault thread: reads the uffd's messages, saves the pause
/// contents of each page written first, un-protects it (waking the
/// writer), and notes the target's mmap changes. Ends at `stop`.
pub(super) fn serve(shared: &Shared) {
    // A writer waits for this thread: under load (more runnable threads
    // than CPUs), a SCHED_OTHER wake-up can take milliseconds.
    if let Err(e) = sys::realtime_self() {
        tracing::debug!("write-fault thread stays SCHED_OTHER: {e}");
    }
    while !shared.stop.load(Ordering::Acquire) {
        let timeout = if shared.lock().waiting.is_empty() {
            20
        } else {
            1
        };
        let _ = sys::poll_in(&shared.uffd, timeout);
        let mut state = shared.lock();
        drain(shared, &mut state);
    }
}

/// Reads every message queued and resolves every fault it can. Under the
/// lock, so that the pause's seal never meets an un-protect decided
/// before it: once sealed, a page not dumped yet is copied first,
/// whenever its fault was read.
pub(super) fn drain(shared: &Shared, state: &mut State) {
    let mut msgs = [0u8; sys::UFFD_MSG_SIZE * 64];
    loop {
        let n = match (&shared.reader).read(&mut msgs) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                state.torn = Some(format!("reading the userfaultfd: {e}"));
                break;
            }
        };
        for msg in msgs[..n].chunks_exact(sys::UFFD_MSG_SIZE) {
            handle(state, msg);
        }
    }
    let mut waiting = std::mem::take(&mut state.waiting);
    waiting.retain(|&w| !resolve(shared, state, w));
    state.waiting = waiting;
}

/// A fault read and not resolved yet (the ioctl met EAGAIN).
#[derive(Clone, Copy)]
pub(super) enum Wake {
    /// A write to a write-protected page.
    Protected(u64),
    /// An access to a page not mapped (missing mode).
    Missing(u64),
}

/// Resolves one fault; false to try again (EAGAIN: an mmap change is
/// being reported, ctx->mmap_changing).
fn resolve(shared: &Shared, state: &mut State, w: Wake) -> bool {
    match w {
        Wake::Protected(page) => {
            if state.sealed && state.pending.contains(page) && !state.store.contains_key(&page) {
                let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                match copy_page(shared, page, &mut buf) {
                    Ok(()) => {
                        state.store.insert(page, buf);
                        state.copied += 1;
                    }
                    Err(e) => state.torn = Some(format!("copying {page:#x} before a write: {e}")),
                }
            }
            // ENOENT and the like: the range was unmapped or un-registered
            // meanwhile, which woke the writer.
            !matches!(sys::uffd_unprotect(&shared.uffd, page, PAGE_SIZE), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        // A page that was not mapped (before the pause: noted as present
        // by handle; after it: zero at the pause, and never read).
        Wake::Missing(page) => match sys::uffd_zeropage(&shared.uffd, page, PAGE_SIZE) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // Mapped meanwhile (another thread's fault on it): the
            // zero-page ioctl that lost woke nobody.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = sys::uffd_wake(&shared.uffd, page, PAGE_SIZE);
                true
            }
            _ => true,
        },
    }
}

fn word(msg: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"))
}

/// One struct uffd_msg (include/uapi/linux/userfaultfd.h): the event
/// byte, then from offset 8 its arguments.
fn handle(state: &mut State, msg: &[u8]) {
    let (a, b, c) = (word(msg, 8), word(msg, 16), word(msg, 24));
    let (start, end, what) = match msg[0] {
        sys::UFFD_EVENT_PAGEFAULT => {
            let page = b & !(PAGE_SIZE - 1);
            if state.sealed {
                state.faults += 1;
            } else {
                // Let through now, protected again at the pause.
                state.touched.insert(page, page + PAGE_SIZE);
            }
            if a & sys::UFFD_PAGEFAULT_FLAG_WP != 0 {
                state.waiting.push(Wake::Protected(page));
            } else {
                if !state.sealed {
                    state.present.insert(page, page + PAGE_SIZE);
                }
                state.waiting.push(Wake::Missing(page));
            }
            return;
        }
        sys::UFFD_EVENT_REMOVE => (a, b, "madvise(MADV_DONTNEED/REMOVE)"),
        sys::UFFD_EVENT_UNMAP => (a, b, "munmap"),
        sys::UFFD_EVENT_REMAP => (a, a + c, "mremap"),
        other => (
            0,
            0,
            if other == sys::UFFD_EVENT_FORK {
                "fork"
            } else {
                "unknown event"
            },
        ),
    };
    if !state.sealed {
        // The pause scans these again; what was unmapped or moved (to
        // `b` for a remap) is registered anew there.
        state.dirty.insert(start, end);
        if msg[0] != sys::UFFD_EVENT_REMOVE {
            state.covered.remove(start, end);
        }
        if msg[0] == sys::UFFD_EVENT_REMAP {
            state.dirty.insert(b, b + c);
            state.covered.remove(b, b + c);
        }
        return;
    }
    state.events.push(format!("{what} {start:#x}-{end:#x}"));
    state.log.push((start, end));
    let lost = state
        .pending
        .within(start, end)
        .into_iter()
        .flat_map(|(s, e)| (s..e).step_by(PAGE_SIZE as usize))
        .any(|p| !state.store.contains_key(&p));
    if lost && state.torn.is_none() {
        state.torn = Some(format!(
            "the target's {what} of {start:#x}-{end:#x} reached pages not dumped yet"
        ));
    }
}

/// The page's contents now (its write is held back), by process_vm_readv,
/// or /proc/PID/mem.
fn copy_page(shared: &Shared, page: u64, buf: &mut [u8]) -> io::Result<()> {
    if let Ok(n) = isotrace_tracer::sys::vm_read(shared.tid, page, buf) {
        if n == buf.len() {
            return Ok(());
        }
    }
    let mem = File::open(format!("/proc/{}/task/{}/mem", shared.pid, shared.tid))?;
    mem.read_exact_at(buf, page)
}
