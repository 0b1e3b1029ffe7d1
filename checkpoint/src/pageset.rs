//! A set of pages kept as disjoint ranges: what pre-copy knows the receiver
//! holds, and what the dump at the freeze leaves out.
//!
//! Pre-copy sends memory in runs and learns what was written since in runs
//! (PAGEMAP_SCAN), so a set of 1 GiB of clean pages is a handful of ranges,
//! where a set of page addresses was 262144 hashed entries built at every
//! round and looked up twice per page at the freeze (the dump, then the
//! delta send), inside the downtime.

use crate::PAGE_SIZE;
use std::collections::BTreeMap;

/// Pages as ranges: start address to end address (exclusive). Ranges never
/// overlap or touch: touching ones are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSet {
    ranges: BTreeMap<u64, u64>,
    pages: u64,
}

impl PageSet {
    pub fn new() -> PageSet {
        PageSet::default()
    }

    /// Number of pages in the set.
    pub fn len(&self) -> u64 {
        self.pages
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// Adds the `pages` pages from `addr` (page-aligned).
    pub fn insert(&mut self, addr: u64, pages: u64) {
        if pages == 0 {
            return;
        }
        let (mut start, mut end) = (addr, addr + pages * PAGE_SIZE);
        // A range that starts before and reaches `start` absorbs it.
        if let Some((&s, &e)) = self.ranges.range(..start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.remove_whole(s, e);
            }
        }
        // Ranges starting inside or right at the end are absorbed.
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            end = end.max(e);
            self.remove_whole(s, e);
        }
        self.ranges.insert(start, end);
        self.pages += (end - start) / PAGE_SIZE;
    }

    /// Removes the `pages` pages from `addr` (page-aligned); pages not in
    /// the set are ignored.
    pub fn remove(&mut self, addr: u64, pages: u64) {
        if pages == 0 {
            return;
        }
        let (start, end) = (addr, addr + pages * PAGE_SIZE);
        let mut hit: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = self.ranges.range(..start).next_back() {
            if e > start {
                hit.push((s, e));
            }
        }
        hit.extend(self.ranges.range(start..end).map(|(&s, &e)| (s, e)));
        for (s, e) in hit {
            self.remove_whole(s, e);
            if s < start {
                self.put(s, start);
            }
            if e > end {
                self.put(end, e);
            }
        }
    }

    /// Whether the page at `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &e)| addr < e)
    }

    /// Keeps only the pages inside one of `spans` (start, end).
    pub fn retain_within(&mut self, spans: &[(u64, u64)]) {
        let mut kept = PageSet::new();
        for &(s, e) in spans {
            for (a, b) in self.overlaps(s, e) {
                kept.insert(a, (b - a) / PAGE_SIZE);
            }
        }
        *self = kept;
    }

    /// The run of `pages` pages at `addr` cut where pages go from in the
    /// set to not: (address, pages, in the set), in address order.
    pub fn split(&self, addr: u64, pages: u64) -> Vec<(u64, u64, bool)> {
        let end = addr + pages * PAGE_SIZE;
        let mut out = Vec::new();
        let mut at = addr;
        for (s, e) in self.overlaps(addr, end) {
            if s > at {
                out.push((at, (s - at) / PAGE_SIZE, false));
            }
            out.push((s, (e - s) / PAGE_SIZE, true));
            at = e;
        }
        if at < end {
            out.push((at, (end - at) / PAGE_SIZE, false));
        }
        out
    }

    /// The ranges, as (start, end).
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    /// The parts of the set's ranges inside [start, end), clipped.
    fn overlaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if let Some((_, &e)) = self.ranges.range(..start).next_back() {
            if e > start {
                out.push((start, e.min(end)));
            }
        }
        out.extend(
            self.ranges
                .range(start..end)
                .map(|(&s, &e)| (s, e.min(end))),
        );
        out
    }

    fn remove_whole(&mut self, s: u64, e: u64) {
        self.ranges.remove(&s);
        self.pages -= (e - s) / PAGE_SIZE;
    }

    fn put(&mut self, s: u64, e: u64) {
        self.ranges.insert(s, e);
        self.pages += (e - s) / PAGE_SIZE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const P: u64 = PAGE_SIZE;

    /// The set against a set of page numbers, under a long pseudo-random
    /// sequence of inserts and removes over a small address space (so
    /// that ranges touch, overlap and split often).
    #[test]
    fn agrees_with_a_set_of_pages() {
        let mut set = PageSet::new();
        let mut model: BTreeSet<u64> = BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000 {
            let first = next() % 200;
            let n = next() % 12;
            if next() % 3 == 0 {
                set.remove(first * P, n);
                (first..first + n).for_each(|p| {
                    model.remove(&p);
                });
            } else {
                set.insert(first * P, n);
                model.extend(first..first + n);
            }
            assert_eq!(set.len(), model.len() as u64, "step {step}");
            if step % 97 == 0 {
                for p in 0..220 {
                    assert_eq!(set.contains(p * P), model.contains(&p), "page {p}");
                }
                let runs = set.split(10 * P, 150);
                let mut at = 10 * P;
                for &(a, n, held) in &runs {
                    assert_eq!(a, at, "runs are contiguous");
                    assert!(n > 0);
                    for p in a / P..a / P + n {
                        assert_eq!(model.contains(&p), held, "page {p}");
                    }
                    at = a + n * P;
                }
                assert_eq!(at, 160 * P);
                // Neighbouring runs differ, ranges never touch.
                assert!(runs.windows(2).all(|w| w[0].2 != w[1].2));
                let r: Vec<_> = set.ranges().collect();
                assert!(r.windows(2).all(|w| w[0].1 < w[1].0));
            }
        }
    }

    #[test]
    fn retain_within_clips() {
        let mut set = PageSet::new();
        set.insert(0, 10);
        set.insert(20 * P, 10);
        set.retain_within(&[(5 * P, 25 * P)]);
        assert_eq!(
            set.ranges().collect::<Vec<_>>(),
            [(5 * P, 10 * P), (20 * P, 25 * P)]
        );
        assert_eq!(set.len(), 10);
    }

    #[test]
    fn split_of_an_empty_set_is_one_run() {
        assert_eq!(PageSet::new().split(0x1000, 3), [(0x1000, 3, false)]);
    }
}
