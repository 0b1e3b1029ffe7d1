//! Copy-before-write snapshots (#7) with userfaultfd write-protection in
//! sync mode (Documentation/admin-guide/mm/userfaultfd.rst, "Write
//! Protect Notifications"): during the pause, one target thread makes a
//! userfaultfd (precopy/inject.rs), every mapping whose contents can
//! change is registered and write-protected, and the pages present at
//! that moment are noted. The target then runs: its first write to a
//! protected page blocks in the kernel and arrives here as a message;
//! [`serve`] copies the page (its pause contents: the write has not
//! happened) into a side store and un-protects it with a wake. The dump
//! reads the running process (memory.rs, through [`Guard`]), prefers the
//! stored copies and un-protects each range once read, so the target
//! stops faulting there. Nothing is forked: the pause costs the
//! protection's page-table walk, not fork's copy of the page tables.
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
//!   which costs the pause the size of the mappings, not of the memory
//!   (a reserved 1 TiB heap). Instead a PAGEMAP_SCAN at the pause notes
//!   the pages present or swapped; the others were zero then (or the
//!   file's), and the dump reads only the noted ones.
//! - Sync write-protection can be registered on anonymous, shmem and
//!   hugetlbfs mappings only (fs/userfaultfd.c, vma_can_userfault; any
//!   mapping only with WP_ASYNC). A writable private file mapping (a
//!   library's .data, a MAP_PRIVATE file written copy-on-write) is read
//!   during the pause instead; read-only ones are read afterwards (they
//!   change only after an mprotect), and the record says how many.
//! - A mapping another userfaultfd already holds (a target using
//!   userfaultfd itself) refuses registration (EBUSY): read during the
//!   pause as well when writable.
//! - Non-cooperative events: the target's munmap, mremap and
//!   madvise(MADV_DONTNEED/REMOVE) of a protected range are reported
//!   (UFFD_FEATURE_EVENT_UNMAP/REMAP/REMOVE). An unmap is reported after
//!   the pages are gone (userfaultfd_unmap_complete runs after the
//!   unmap), a remove just before they go (the madvising thread zaps
//!   once the message is read), a remap after they moved: none leaves the
//!   pause contents of a range not yet read anywhere this can read them.
//!   Such an event over pages not yet dumped (nor copied) tears the
//!   snapshot: [`WpCopy::finish`] says so and `--method auto` takes the
//!   snapshot again by fork. While an event is being reported the kernel
//!   refuses UFFDIO_WRITEPROTECT with EAGAIN (ctx->mmap_changing), so a
//!   range is read, marked done, un-protected (retrying EAGAIN), and only
//!   then checked against the events read since its read began: an event
//!   that changed it before the read is one of those.
//! - fork(2) by the target: without UFFD_FEATURE_EVENT_FORK the child's
//!   mappings lose the registration (dup_userfaultfd) and the parent keeps
//!   its protection, so the target's pages stay guarded.
//! - exec(2) or exit: the old mm goes; reads through the /proc/PID/mem
//!   opened at the pause then return 0 bytes, which finish checks.
//! - If this process dies mid-snapshot, closing the uffd un-registers
//!   every range and wakes every waiting thread (userfaultfd_release).

use super::attach::StoppedThread;
use super::cow::{find_gadget, pick_thread, Unsuitable};
use super::lend::Lent;
use super::memory::{skip_reason, Guard};
use super::procfs::{hex_field, parse_maps, parse_status};
use super::ranges::Ranges;
use super::sigstate::{self, Handler};
use super::snapshot::Method;
use super::wp_serve::{drain, serve, Shared, State};
use super::{Frozen, Options, ProcDir};
use crate::error::{Error, Result};
use crate::model::Vma;
use crate::precopy::{inject::uffd_in, sys};
use crate::sys::uffd;
use crate::PAGE_SIZE;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        let mem = File::open(&mem_path).map_err(|e| super::vanished(pid, &mem_path, e))?;
        let probe = vmas
            .iter()
            .filter(|v| v.readable() && skip_reason(v).is_none())
            .map(|v| v.start)
            .find(|&at| matches!(mem.read_at(&mut [0u8; 1], at), Ok(1)));
        let pagemap_path = format!("/proc/{pid}/pagemap");
        let pagemap = File::open(&pagemap_path)
            .map_err(|e| super::vanished(pid, &pagemap_path, e))?
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

    /// While the target runs, before the snapshot's pause: registers and
    /// write-protects every mapping that takes it, private anonymous ones
    /// in missing mode too, and notes their pages present. Until the pause
    /// the fault thread only lets accesses through (un-protects a written
    /// page, maps the zero page for a missing one) and notes each page
    /// ([`State::touched`]; the snapshot's moment has not come), and the
    /// target's mmap changes: at the pause only those pages are protected
    /// again ([`WpCopy::seal`]), which costs what the target did since,
    /// not its size.
    pub fn prearm(&mut self, vmas: &[Vma]) {
        let pid = self.shared.pid;
        let uffd = &self.shared.uffd;
        for v in vmas
            .iter()
            .filter(|v| skip_reason(v).is_none() && protectable(v))
        {
            let missing = private_anonymous(v);
            // Noted before registering: an unmap reported from then on
            // takes it out again (wp_serve.rs, handle).
            if missing {
                self.shared.lock().covered.insert(v.start, v.end);
            }
            let armed = uffd::register(uffd, v.start, v.len(), missing)
                .inspect(|()| self.registered.push((v.start, v.len())))
                .and_then(|()| {
                    chunks(v.start, v.end).try_for_each(|(s, e)| {
                        retry_eagain(|| sys::uffd_writeprotect(uffd, s, e - s))
                    })
                })
                .and_then(|()| {
                    if missing {
                        self.note_present(v)
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = armed {
                tracing::debug!("pid {pid}: {:#x}-{:#x}: {e}", v.start, v.end);
                self.shared.lock().covered.remove(v.start, v.end);
            }
        }
    }

    /// Notes the pages of `v` present or swapped now (after its
    /// protection: a page mapped or written since was reported).
    fn note_present(&self, v: &Vma) -> io::Result<()> {
        for (s, e) in chunks(v.start, v.end) {
            let runs = present_runs(&self.pagemap, s, e)?;
            let mut state = self.shared.lock();
            for (s, e, _) in runs {
                state.present.insert(s, e);
            }
        }
        Ok(())
    }

    /// At the pause (the process fully stopped, `vmas` its mappings now):
    /// reads the faults and mmap changes queued, protects again the pages
    /// let through since [`WpCopy::prearm`], registers, scans and protects
    /// what the prearm does not cover (mappings made, moved or grown
    /// since, ranges the target unmapped or madvised, shmem), notes the
    /// present pages, reads the writable mappings that cannot be
    /// protected, and from then on copies pages before writes.
    pub fn seal(&mut self, vmas: &[Vma]) -> Result<()> {
        let pid = self.shared.pid;
        // The process held now may run another program than at the
        // first hold, whose mm this uffd belongs to.
        self.check_mm("between the first hold and the pause")?;
        // Every thread is stopped: the target's faults and changes are
        // all queued by now (a thread waiting in a fault was interrupted
        // and faults again once released).
        let (covered, dirty) = {
            let mut state = self.shared.lock();
            drain(&self.shared, &mut state);
            (state.covered.clone(), std::mem::take(&mut state.dirty))
        };
        let mut plan = Seal::default();
        for v in vmas.iter().filter(|v| skip_reason(v).is_none()) {
            if !private_anonymous(v) || !self.register(v, !covered.covers(v.start, v.end)) {
                self.seal_whole(v, &mut plan)?;
                continue;
            }
            // What the prearm did not protect and note (mapped, moved or
            // grown since), and what the target's mmap changes touched.
            let mut rescan = Ranges::default();
            for (s, e) in covered.gaps(v.start, v.end) {
                rescan.insert(s, e);
            }
            for (s, e) in dirty.within(v.start, v.end) {
                rescan.insert(s, e);
            }
            plan.protected.insert(v.start, v.end);
            for (s, e) in rescan.iter() {
                plan.scan(&self.pagemap, s, e, true)
                    .map_err(|e| super::vanished(pid, "pagemap", e))?;
            }
        }
        // Sealed before the protection below, and without holding the
        // state while protecting: an EAGAIN (an mmap change of a CLONE_VM
        // sibling being reported) needs the fault thread to read it.
        let touched = {
            let mut state = self.shared.lock();
            for &(s, e) in &plan.rescanned {
                state.present.remove(s, e);
            }
            for (s, e) in plan.present.iter() {
                state.present.insert(s, e);
            }
            self.present = std::mem::take(&mut state.present);
            let mut pending = Ranges::default();
            for (s, e) in plan.protected.iter() {
                for (s, e) in self.present.within(s, e) {
                    pending.insert(s, e);
                }
            }
            state.pending = pending;
            state.sealed = true;
            std::mem::take(&mut state.touched)
        };
        self.report.present_bytes = self.present.bytes();
        self.report.protected_bytes = plan.protected.bytes();
        let touched: Vec<_> = plan
            .protected
            .iter()
            .flat_map(|(s, e)| touched.within(s, e))
            .collect();
        self.report.touched_before_pause_bytes = touched.iter().map(|(s, e)| e - s).sum();
        let again = touched.into_iter().chain(plan.written.iter().copied());
        for (s, e) in again {
            retry_eagain(|| sys::uffd_writeprotect(&self.shared.uffd, s, e - s)).map_err(
                |err| Error::Torn {
                    pid,
                    why: format!("write-protecting {s:#x}-{e:#x} at the pause: {err}"),
                },
            )?;
        }
        let mut store = HashMap::new();
        for (s, e) in std::mem::take(&mut plan.unprotected) {
            self.report.read_in_pause_bytes += e - s;
            read_into(&self.mem, s, e, &mut store).map_err(|e| super::vanished(pid, "mem", e))?;
        }
        self.shared.lock().store.extend(store);
        Ok(())
    }

    /// Registers `v` when `needed` (in missing mode too when private
    /// anonymous; again is a no-op where it is): whether it is.
    fn register(&mut self, v: &Vma, needed: bool) -> bool {
        if !needed {
            return true;
        }
        let missing = private_anonymous(v);
        match uffd::register(&self.shared.uffd, v.start, v.len(), missing) {
            Ok(()) => {
                self.registered.push((v.start, v.len()));
                true
            }
            Err(e) => {
                let pid = self.shared.pid;
                tracing::debug!("pid {pid}: {:#x}-{:#x}: {e}", v.start, v.end);
                false
            }
        }
    }

    /// At the pause, a shmem mapping, or one that cannot be registered:
    /// registered (again: a no-op where it is) and scanned whole, or read
    /// during the pause when it cannot be protected and can be written.
    fn seal_whole(&mut self, v: &Vma, plan: &mut Seal) -> Result<()> {
        let pid = self.shared.pid;
        let registered = protectable(v) && !private_anonymous(v) && self.register(v, true);
        if registered {
            plan.protected.insert(v.start, v.end);
            plan.scan(&self.pagemap, v.start, v.end, true)
                .map_err(|e| super::vanished(pid, "pagemap", e))?;
            return Ok(());
        }
        let runs = plan
            .scan(&self.pagemap, v.start, v.end, false)
            .map_err(|e| super::vanished(pid, "pagemap", e))?;
        if v.writable() || v.shared() {
            let why = if protectable(v) {
                "registration refused (another userfaultfd?)"
            } else {
                "private file mapping (sync write-protection is for anonymous and shmem mappings)"
            };
            self.report
                .read_in_pause
                .push(format!("{:#x}-{:#x} {}: {why}", v.start, v.end, v.path));
            plan.unprotected.extend(runs);
        } else {
            self.report.unprotected_read_only += 1;
        }
        Ok(())
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

/// Copy-before-write prepared while the targets run (wp.rs): one short
/// hold makes each process's userfaultfd, then its memory is
/// write-protected while it runs, so that the pause only seals it.
#[derive(Default)]
pub(super) struct Prearmed {
    /// None for the fork method.
    pub(super) method: Option<Method>,
    pub(super) copies: HashMap<i32, WpCopy>,
    pub(super) unavailable: HashMap<i32, String>,
    /// The first hold, from its first seize to its last detach.
    pub(super) pause_us: u64,
}

pub(super) fn prearm(
    pid: i32,
    opts: &Options,
    method: Method,
    t_start: Instant,
) -> Result<Prearmed> {
    let frozen = Frozen::freeze(pid, opts.tree)?;
    let mut out = Prearmed {
        method: Some(method),
        ..Prearmed::default()
    };
    let mut layouts = Vec::new();
    for &p in frozen.pids() {
        let threads: Vec<_> = frozen.threads_of(p).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            continue;
        }
        let proc = ProcDir::of(&frozen, p)?;
        let vmas = parse_maps(&proc.text("maps")?);
        let status = parse_status(&proc.text("status")?);
        if let Some(why) = refused(&status) {
            out.unavailable.insert(p, why);
            continue;
        }
        let caught = hex_field(&status, "SigCgt");
        match WpCopy::open(&threads, &vmas, caught)? {
            Ok(copy) => {
                out.copies.insert(p, copy);
                layouts.push((p, vmas));
            }
            Err(why) => {
                out.unavailable.insert(p, why);
            }
        }
    }
    frozen.release();
    out.pause_us = t_start.elapsed().as_micros() as u64;
    for (p, vmas) in layouts {
        if let Some(copy) = out.copies.get_mut(&p) {
            copy.prearm(&vmas);
        }
    }
    Ok(out)
}

impl Drop for WpCopy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Guard for WpCopy {
    fn runs(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.present
            .within(start, end)
            .into_iter()
            .map(|(s, e)| (s, (e - s) / PAGE_SIZE))
            .collect()
    }

    fn mark(&self) -> usize {
        self.shared.lock().log.len()
    }

    fn settle(&self, mark: usize, addr: u64, buf: &mut [u8], read: bool) -> bool {
        let end = addr + buf.len() as u64;
        let mut whole = true;
        let was_pending = {
            let mut state = self.shared.lock();
            let was_pending = state.pending.overlaps(addr, end);
            for (i, page) in (addr..end).step_by(PAGE_SIZE as usize).enumerate() {
                let at = i * PAGE_SIZE as usize;
                match state.store.remove(&page) {
                    Some(saved) => buf[at..at + PAGE_SIZE as usize].copy_from_slice(&saved),
                    None => whole = false,
                }
            }
            state.pending.remove(addr, end);
            was_pending
        };
        if was_pending {
            let unprotected =
                retry_eagain(|| sys::uffd_unprotect(&self.shared.uffd, addr, end - addr));
            let mut state = self.shared.lock();
            if let Err(e) = unprotected {
                if e.kind() == io::ErrorKind::WouldBlock {
                    state.torn = Some(format!("{addr:#x}: un-protecting kept failing: {e}"));
                }
            }
            if let Some(&(s, e)) = state.log[mark..]
                .iter()
                .find(|&&(s, e)| s < end && addr < e)
            {
                state.torn = Some(format!(
                    "{s:#x}-{e:#x} was unmapped, moved or dropped by the target while {addr:#x}-{end:#x} was being read"
                ));
            }
        }
        read || whole
    }
}

/// CAP_SYS_PTRACE's bit in /proc's CapEff (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u64 = 1 << 19;

/// Why userfaultfd(2) without UFFD_USER_MODE_ONLY would be refused in the
/// process whose /proc status is `status`, known without asking it: the
/// kernel wants vm.unprivileged_userfaultfd=1 or CAP_SYS_PTRACE
/// (fs/userfaultfd.c, userfaultfd_syscall_allowed). A capability held only
/// in a user namespace passes this test and is refused by the call.
fn refused(status: &HashMap<String, String>) -> Option<String> {
    let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    let caps = hex_field(status, "CapEff");
    (!sysctl && caps & CAP_SYS_PTRACE == 0).then(|| {
        "userfaultfd(2) for kernel-mode faults needs CAP_SYS_PTRACE in the process or vm.unprivileged_userfaultfd=1 (with UFFD_USER_MODE_ONLY its syscalls would fail with EFAULT on protected pages)".into()
    })
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

/// [start, end) ranges of pages present or swapped, by PAGEMAP_SCAN, each
/// with whether it lacks the uffd-wp bit (PAGE_IS_WRITTEN: not protected).
fn present_runs(pagemap: &OwnedFd, start: u64, end: u64) -> io::Result<Vec<(u64, u64, bool)>> {
    let mut out = Vec::new();
    let mut regions = vec![sys::PageRegion::default(); 512];
    let any = sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED;
    let mut at = start;
    while at < end {
        let (n, walk_end) = sys::pagemap_scan_masks(
            pagemap,
            (at, end),
            0,
            (0, any),
            sys::PAGE_IS_WRITTEN,
            &mut regions,
        )?;
        out.extend(
            regions[..n]
                .iter()
                .map(|r| (r.start, r.end, r.categories & sys::PAGE_IS_WRITTEN != 0)),
        );
        if n < regions.len() || walk_end <= at {
            break;
        }
        at = walk_end;
    }
    Ok(out)
}

/// Reads [start, end) page by page into `store` (pages the kernel will
/// not read are left out, as memory.rs leaves them out).
fn read_into(
    mem: &File,
    start: u64,
    end: u64,
    store: &mut HashMap<u64, Box<[u8]>>,
) -> io::Result<()> {
    for page in (start..end).step_by(PAGE_SIZE as usize) {
        let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
        match mem.read_at(&mut buf, page) {
            Ok(n) if n == buf.len() => {
                store.insert(page, buf);
            }
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EFAULT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// What the pause scanned and must protect or read.
#[derive(Default)]
struct Seal {
    /// Mappings registered and write-protected at the pause.
    protected: Ranges,
    /// Ranges scanned again, and the pages present in them.
    rescanned: Vec<(u64, u64)>,
    present: Ranges,
    /// Pages present without protection, to protect.
    written: Vec<(u64, u64)>,
    /// Pages of writable mappings that cannot be protected, read now.
    unprotected: Vec<(u64, u64)>,
}

impl Seal {
    /// Scans [start, end) (of a mapping registered when `protect`),
    /// noting what is present and what needs protecting; returns the
    /// present runs.
    fn scan(
        &mut self,
        pagemap: &OwnedFd,
        start: u64,
        end: u64,
        protect: bool,
    ) -> io::Result<Vec<(u64, u64)>> {
        let runs = present_runs(pagemap, start, end)?;
        self.rescanned.push((start, end));
        for &(s, e, written) in &runs {
            self.present.insert(s, e);
            if protect && written {
                self.written.push((s, e));
            }
        }
        Ok(runs.into_iter().map(|(s, e, _)| (s, e)).collect())
    }
}
