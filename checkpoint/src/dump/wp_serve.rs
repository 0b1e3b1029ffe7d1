//! The write-fault thread of a copy-before-write snapshot (wp.rs): it
//! reads the userfaultfd's messages (struct uffd_msg,
//! include/uapi/linux/userfaultfd.h), lets writes through (before the
//! pause) or saves each page's contents before letting its first write
//! through (after it), and notes the target's mmap changes.

use super::ranges::Ranges;
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
    pub(super) stop: AtomicBool,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    /// The pause has happened: pages are copied before writes.
    pub(super) sealed: bool,
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
    let Ok(dup) = shared.uffd.try_clone() else {
        shared.lock().torn = Some("cannot duplicate the userfaultfd".into());
        return;
    };
    let mut uffd = File::from(dup);
    let mut wake: Vec<u64> = Vec::new();
    let mut msgs = [0u8; sys::UFFD_MSG_SIZE * 64];
    while !shared.stop.load(Ordering::Acquire) {
        let timeout = if wake.is_empty() { 20 } else { 1 };
        let _ = sys::poll_in(&shared.uffd, timeout);
        {
            let mut state = shared.lock();
            loop {
                let n = match uffd.read(&mut msgs) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        state.torn = Some(format!("reading the userfaultfd: {e}"));
                        break;
                    }
                };
                for msg in msgs[..n].chunks_exact(sys::UFFD_MSG_SIZE) {
                    handle(&mut state, msg, &mut wake);
                }
            }
            // Under the lock, so that the pause's seal never meets an
            // un-protect decided before it: once sealed, a page not dumped
            // yet is copied first, whenever its fault was read.
            wake.retain(|&page| {
                if state.sealed && state.pending.contains(page) && !state.store.contains_key(&page)
                {
                    let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                    match copy_page(shared, page, &mut buf) {
                        Ok(()) => {
                            state.store.insert(page, buf);
                            state.copied += 1;
                        }
                        Err(e) => {
                            state.torn = Some(format!("copying {page:#x} before a write: {e}"))
                        }
                    }
                }
                match sys::uffd_unprotect(&shared.uffd, page, PAGE_SIZE) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    // ENOENT and the like: the range was unmapped or
                    // un-registered meanwhile, which woke the writer.
                    _ => false,
                }
            });
        }
    }
}

fn word(msg: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(msg[at..at + 8].try_into().expect("8 bytes"))
}

/// One struct uffd_msg (include/uapi/linux/userfaultfd.h): the event
/// byte, then from offset 8 its arguments.
fn handle(state: &mut State, msg: &[u8], wake: &mut Vec<u64>) {
    let (a, b, c) = (word(msg, 8), word(msg, 16), word(msg, 24));
    let (start, end, what) = match msg[0] {
        sys::UFFD_EVENT_PAGEFAULT => {
            if state.sealed {
                state.faults += 1;
            }
            if a & sys::UFFD_PAGEFAULT_FLAG_WP != 0 {
                wake.push(b & !(PAGE_SIZE - 1));
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
