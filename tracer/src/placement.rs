//! Where tracees run relative to the supervisor.
//!
//! Every trapped syscall is a round trip: the tracee stops, the supervisor
//! wakes, decides, and wakes the tracee. On this kind of VM a wake-up on
//! the other vCPU costs some 50 µs each way, against 10 µs for the whole
//! round trip when both run on one CPU (../shared/PERF-NOTES.md). Left to
//! chance, a syscall-heavy tracee pays the cross-CPU price on most stops.
//!
//! So the supervisor stays on one CPU, and a tracee that stops often (a
//! "hot" tracee) is pinned to that CPU while it stays hot. All trapped work
//! is serialised through the one supervisor thread anyway, so co-locating
//! the tracees that keep it busy costs no parallelism; tracees that mostly
//! compute are never pinned, or are released when they cool down, and keep
//! the other CPUs. New children and new programs (execve) start with the
//! group's original mask, and a pinned tracee asking for its affinity is
//! shown its original mask, so `nproc` and `make -j$(nproc)` see the
//! machine as it is. A tracee that sets its own affinity is left alone from
//! then on. What remains visible: a pinned thread's own
//! /proc/self/status `Cpus_allowed` while it is pinned.

use crate::sys::Tid;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Stops per second above which a tracee is pinned next to the supervisor.
/// At about 10 µs a stop, 5,000 stops/s is 5% of a CPU spent in stops.
const HOT_RATE: f64 = 5_000.0;
/// How many stops of one tracee between two rate checks.
const SAMPLE: u32 = 128;
/// How often pinned tracees are checked for cooling down.
pub const SWEEP: Duration = Duration::from_millis(50);

/// A CPU set as the kernel's affinity calls take it.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    pub fn of(tid: Tid) -> Option<CpuSet> {
        // SAFETY: an all-zero cpu_set_t is the empty set; the kernel fills
        // it for a live tid.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: size and pointer describe `set`.
        let rc = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
        (rc == 0).then_some(CpuSet(set))
    }

    pub fn single(cpu: usize) -> CpuSet {
        // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes one
        // bit inside it (it ignores CPUs beyond the set's size).
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            set
        };
        CpuSet(set)
    }

    pub fn count(&self) -> u32 {
        // SAFETY: CPU_COUNT only reads the set.
        unsafe { libc::CPU_COUNT(&self.0) as u32 }
    }

    /// Applies the set to `tid`; false if the kernel refused (the tracee is
    /// gone, or the set is outside its cpuset).
    pub fn apply(&self, tid: Tid) -> bool {
        // SAFETY: size and pointer describe a live cpu_set_t.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&self.0), &self.0) == 0 }
    }

    /// The bytes sched_getaffinity(2) would copy out for a buffer of `len`.
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        // SAFETY: cpu_set_t is plain bits; viewing it as bytes is sound.
        let all = unsafe {
            std::slice::from_raw_parts(
                (&self.0 as *const libc::cpu_set_t).cast::<u8>(),
                std::mem::size_of::<libc::cpu_set_t>(),
            )
        };
        all[..len.min(all.len())].to_vec()
    }
}

#[derive(Default)]
struct Heat {
    stops: u32,
    since: Option<Instant>,
    pinned: bool,
    /// The tracee chose its own affinity: never touch it again.
    own: bool,
}

pub struct Placement {
    /// The mask the group started with (the supervisor's own at start).
    original: CpuSet,
    /// What sched_getaffinity(2) returns here: the size of the kernel's
    /// cpumask in bytes (nr_cpu_ids rounded up to a long).
    mask_bytes: usize,
    /// The supervisor's CPU; `None` when there is only one CPU to use.
    home: Option<CpuSet>,
    heat: HashMap<Tid, Heat>,
    last_sweep: Instant,
}

impl Placement {
    /// Takes the supervisor's current mask as the group's, and settles the
    /// supervisor on the CPU it is running on. Call after the first tracee
    /// was spawned, so that it inherits the full mask.
    pub fn settle() -> Placement {
        let me = 0;
        let original = CpuSet::of(me).unwrap_or(CpuSet::single(0));
        // SAFETY: sched_getcpu takes no arguments.
        let cpu = unsafe { libc::sched_getcpu() };
        let home = (original.count() > 1 && cpu >= 0).then(|| CpuSet::single(cpu as usize));
        if let Some(h) = &home {
            h.apply(me);
        }
        let mut probe = original;
        // SAFETY: the raw syscall writes at most the given size into `probe`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                std::mem::size_of::<libc::cpu_set_t>(),
                &mut probe.0 as *mut libc::cpu_set_t,
            )
        };
        Placement {
            original,
            mask_bytes: if n > 0 { n as usize } else { 8 },
            home,
            heat: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Called at every stop of `tid`.
    pub fn on_stop(&mut self, tid: Tid) {
        let Some(home) = self.home else { return };
        let h = self.heat.entry(tid).or_default();
        h.stops += 1;
        if h.stops < SAMPLE || h.own {
            return;
        }
        let now = Instant::now();
        let since = *h.since.get_or_insert(now);
        let rate = f64::from(h.stops) / now.duration_since(since).as_secs_f64().max(1e-6);
        h.stops = 0;
        h.since = Some(now);
        if rate > HOT_RATE && !h.pinned {
            h.pinned = home.apply(tid);
        }
    }

    /// Releases pinned tracees that cooled down. Cheap when nothing is due.
    pub fn sweep(&mut self) {
        if self.home.is_none() || self.last_sweep.elapsed() < SWEEP {
            return;
        }
        let now = Instant::now();
        let window = now.duration_since(self.last_sweep).as_secs_f64();
        self.last_sweep = now;
        for (tid, h) in self.heat.iter_mut().filter(|(_, h)| h.pinned) {
            let since = h.since.unwrap_or(now);
            let secs = now.duration_since(since).as_secs_f64().max(window);
            if f64::from(h.stops) / secs < HOT_RATE / 4.0 {
                self.original.apply(*tid);
                h.pinned = false;
                h.stops = 0;
                h.since = Some(now);
            }
        }
    }

    /// A new task inherits its creator's mask: give it the group's.
    pub fn on_new(&mut self, parent: Tid, child: Tid) {
        if self.heat.get(&parent).is_some_and(|h| h.pinned) {
            self.original.apply(child);
        }
    }

    /// A new program starts with the mask its process had before it was
    /// pinned, and must earn pinning afresh.
    pub fn on_exec(&mut self, tid: Tid, former: Tid) {
        let was = self.heat.remove(&former).or_else(|| self.heat.remove(&tid));
        if was.is_some_and(|h| h.pinned) {
            self.original.apply(tid);
        }
    }

    pub fn on_gone(&mut self, tid: Tid) {
        self.heat.remove(&tid);
    }

    /// sched_getaffinity(tid, len) of a pinned tracee, emulated: the bytes
    /// of the mask it would have had and the return value; `None` when the
    /// tracee is not pinned and the kernel answers itself.
    pub fn shown_mask(&self, tid: Tid, len: usize) -> Option<Result<Vec<u8>, i32>> {
        if !self.heat.get(&tid).is_some_and(|h| h.pinned) {
            return None;
        }
        if len < self.mask_bytes || !len.is_multiple_of(std::mem::size_of::<libc::c_ulong>()) {
            return Some(Err(libc::EINVAL));
        }
        Some(Ok(self.original.bytes(self.mask_bytes)))
    }

    /// Whether some tracee is pinned (the sweep timer must run).
    pub fn any_pinned(&self) -> bool {
        self.heat.values().any(|h| h.pinned)
    }

    /// The tracee sets its own affinity: release it for good.
    pub fn on_set_affinity(&mut self, tid: Tid) {
        let h = self.heat.entry(tid).or_default();
        h.own = true;
        h.pinned = false;
    }
}
