//! The scratch region: where rewritten syscall arguments live.
//!
//! A rewritten path must sit in memory that no other thread of the tracee
//! can change between the rewrite and the moment the kernel copies it in
//! (getname() at syscall start); otherwise a sibling thread could swap in a
//! path the policy never saw. The region is a private read-only anonymous
//! mapping at a fixed low address, created in each address space by an
//! injected mmap. The tracer writes it through /proc/PID/mem, which ignores
//! page protections (FOLL_FORCE). The seccomp filter traps every
//! mmap/munmap/mprotect/madvise/mremap/shmat whose address is below
//! [`SCRATCH_END`], so a tracee can neither unmap, remap, re-protect nor
//! discard it; the guard refuses those that touch the region.
//!
//! A slot belongs to one thread from the rewrite until that thread's next
//! ptrace stop: by then the kernel has copied the arguments of the syscall
//! that used it.
//!
//! Because the tracee cannot write the region, what the tracer last wrote
//! into a slot is still there at its next use: [`Pool`] remembers it, so a
//! call that needs the same bytes again (a loop stat-ing one file) costs no
//! write to /proc/PID/mem. The one way left to change the pages, a
//! process_madvise(2) that discards them (Linux 6.13 lets a process give
//! itself any advice), makes the supervisor forget what every pool holds
//! ([`Pool::forget_contents`]), at that call's entry and at its exit.

/// Start of the region. Above the usual mmap_min_addr (65536) and far below
/// where non-PIE executables load (0x400000).
pub const SCRATCH_BASE: u64 = 0x10000;
/// One slot holds two PATH_MAX paths (rename, link) or a path plus a struct.
pub const SLOT_SIZE: u64 = 2 * 4096;
pub const SLOTS: usize = 256;
pub const SCRATCH_LEN: u64 = SLOT_SIZE * SLOTS as u64;
pub const SCRATCH_END: u64 = SCRATCH_BASE + SCRATCH_LEN;

/// Whether `[addr, addr+len)` overlaps the region (len 0 counts as one byte).
pub fn overlaps(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len.max(1));
    addr < SCRATCH_END && end > SCRATCH_BASE
}

/// Slot bookkeeping for one address space.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    /// The mapping exists in this address space.
    pub mapped: bool,
    busy: [u64; SLOTS / 64],
    /// What the tracer last wrote into each slot, when known (indexed by
    /// slot; empty until the first write).
    held: Vec<Option<Box<[u8]>>>,
}

impl Pool {
    pub fn alloc(&mut self) -> Option<u16> {
        for (w, word) in self.busy.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = (!*word).trailing_zeros();
                *word |= 1 << bit;
                return Some((w * 64) as u16 + bit as u16);
            }
        }
        None
    }

    pub fn free(&mut self, slot: u16) {
        let (w, bit) = (slot as usize / 64, slot % 64);
        self.busy[w] &= !(1u64 << bit);
    }

    /// Address of a slot's first byte.
    pub fn addr(slot: u16) -> u64 {
        SCRATCH_BASE + u64::from(slot) * SLOT_SIZE
    }

    /// A copy for a forked child: same mapping, no slot in flight, and no
    /// claim about the contents (the child starts afresh).
    pub fn forked(&self) -> Pool {
        Pool {
            mapped: self.mapped,
            busy: Default::default(),
            held: Vec::new(),
        }
    }

    /// Whether `slot` is known to hold exactly `bytes` (from its start).
    pub fn holds(&self, slot: u16, bytes: &[u8]) -> bool {
        self.held
            .get(usize::from(slot))
            .and_then(Option::as_deref)
            .is_some_and(|h| h == bytes)
    }

    /// Records that `slot` now holds `bytes`, or, with `None`, that what it
    /// holds is unknown (a failed or partial write).
    pub fn set_held(&mut self, slot: u16, bytes: Option<&[u8]>) {
        let i = usize::from(slot);
        if self.held.len() <= i {
            if bytes.is_none() {
                return;
            }
            self.held.resize(SLOTS.max(i + 1), None);
        }
        match (&mut self.held[i], bytes) {
            // Same length (a loop over paths of one size): reuse the box.
            (Some(h), Some(b)) if h.len() == b.len() => h.copy_from_slice(b),
            (h, b) => *h = b.map(Box::from),
        }
    }

    /// Forget what every slot holds: the pages may have been discarded.
    pub fn forget_contents(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_unique_until_freed() {
        let mut p = Pool::default();
        let all: Vec<u16> = (0..SLOTS).map(|_| p.alloc().unwrap()).collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), SLOTS);
        assert_eq!(p.alloc(), None);
        p.free(77);
        assert_eq!(p.alloc(), Some(77));
    }

    #[test]
    fn contents_are_remembered_per_slot_and_not_inherited() {
        let mut p = Pool::default();
        assert!(!p.holds(0, b"/etc/passwd\0"));
        p.set_held(0, Some(b"/etc/passwd\0"));
        assert!(p.holds(0, b"/etc/passwd\0"));
        assert!(
            !p.holds(0, b"/etc/passwd"),
            "a prefix is not the same bytes"
        );
        assert!(!p.holds(1, b"/etc/passwd\0"));
        assert!(!p.forked().holds(0, b"/etc/passwd\0"));
        p.set_held(0, None);
        assert!(!p.holds(0, b"/etc/passwd\0"));
        p.set_held(3, Some(b"x\0"));
        p.forget_contents();
        assert!(!p.holds(3, b"x\0"));
    }

    #[test]
    fn overlap_edges() {
        assert!(overlaps(SCRATCH_BASE, 1));
        assert!(overlaps(0, u64::MAX));
        assert!(overlaps(SCRATCH_END - 1, 0));
        assert!(!overlaps(SCRATCH_END, 4096));
        assert!(!overlaps(0, SCRATCH_BASE));
        assert!(overlaps(0, SCRATCH_BASE + 1));
    }
}
