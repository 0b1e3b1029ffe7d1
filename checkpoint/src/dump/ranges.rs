//! A set of page-aligned address ranges, kept merged: what a
//! copy-before-write snapshot (dump/wp/) had present at its pause, and what
//! of it is still to be dumped.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Adds [start, end), merging with its neighbours.
    pub fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        let touching: Vec<(u64, u64)> = self
            .0
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    /// Takes [start, end) out, splitting ranges it cuts.
    pub fn remove(&mut self, start: u64, end: u64) {
        for (s, e) in self.overlapping(start, end) {
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, start);
            }
            if e > end {
                self.0.insert(end, e);
            }
        }
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.0
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &e)| addr < e)
    }

    /// The ranges that overlap [start, end), whole.
    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let first = self
            .0
            .range(..=start)
            .next_back()
            .filter(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e));
        first
            .into_iter()
            .chain(
                self.0
                    .range(start..end)
                    .map(|(&s, &e)| (s, e))
                    .filter(|&(s, _)| s > start || first.is_none()),
            )
            .collect()
    }

    /// The parts of the set inside [start, end).
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.overlapping(start, end)
            .into_iter()
            .map(|(s, e)| (s.max(start), e.min(end)))
            .collect()
    }

    /// Whether [start, end) is wholly in one range of the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        start >= end
            || self
                .0
                .range(..=start)
                .next_back()
                .is_some_and(|(_, &e)| end <= e)
    }

    /// The parts of [start, end) outside the set.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        for (s, e) in self.within(start, end) {
            if s > at {
                out.push((at, s));
            }
            at = e;
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        !self.overlapping(start, end).is_empty()
    }

    /// Bytes in the set.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&s, &e)| (s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_splits_and_clips() {
        let mut r = Ranges::default();
        r.insert(0x1000, 0x3000);
        r.insert(0x5000, 0x6000);
        r.insert(0x3000, 0x4000);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [(0x1000, 0x4000), (0x5000, 0x6000)]
        );
        r.insert(0x3800, 0x5800);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(0x1000, 0x6000)]);
        r.remove(0x2000, 0x3000);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [(0x1000, 0x2000), (0x3000, 0x6000)]
        );
        assert!(r.contains(0x1fff) && !r.contains(0x2000) && r.contains(0x3000));
        assert!(!r.contains(0x6000) && !r.contains(0xfff));
        assert_eq!(
            r.within(0x1800, 0x4000),
            [(0x1800, 0x2000), (0x3000, 0x4000)]
        );
        assert!(r.overlaps(0x1fff, 0x2000) && !r.overlaps(0x2000, 0x3000));
        assert!(r.covers(0x3000, 0x6000) && r.covers(0x1000, 0x1800));
        assert!(!r.covers(0x1000, 0x3000) && !r.covers(0x5000, 0x7000));
        assert_eq!(
            r.gaps(0x800, 0x7000),
            [(0x800, 0x1000), (0x2000, 0x3000), (0x6000, 0x7000)]
        );
        assert_eq!(r.gaps(0x3000, 0x6000), []);
        assert_eq!(r.bytes(), 0x1000 + 0x3000);
        r.remove(0, 0x10000);
        assert_eq!(r, Ranges::default());
    }
}
