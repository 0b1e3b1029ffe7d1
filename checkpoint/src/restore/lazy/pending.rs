//! The pages of one address space that post-copy still has to fill: page
//! ranges of the process, each with where its bytes are (the receiver's
//! pre-copy store). Pure bookkeeping, unit-tested without a kernel: a
//! fault takes a few pages, the pusher the next chunk, an munmap or a
//! madvise(MADV_DONTNEED) drops a range, an mremap moves it, and a fork
//! copies the whole set for the child.

use crate::PAGE_SIZE;
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

/// `[start, end)` of the process, whose bytes are at `at` of `file`.
#[derive(Clone, Debug)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    pub file: Arc<File>,
    pub at: u64,
}

impl Piece {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The part of `self` within `[from, to)` (which must overlap it).
    fn within(&self, from: u64, to: u64) -> Piece {
        let start = self.start.max(from);
        Piece {
            start,
            end: self.end.min(to),
            file: Arc::clone(&self.file),
            at: self.at + (start - self.start),
        }
    }
}

/// Non-overlapping pieces, by start address.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    map: BTreeMap<u64, Piece>,
    bytes: u64,
}

impl Pending {
    /// Adds a piece (page-aligned, overlapping none already here).
    pub fn insert(&mut self, p: Piece) {
        debug_assert!(p.start.is_multiple_of(PAGE_SIZE) && p.end.is_multiple_of(PAGE_SIZE));
        if p.is_empty() {
            return;
        }
        self.bytes += p.len();
        self.map.insert(p.start, p);
    }

    pub fn pages(&self) -> u64 {
        self.bytes / PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.map
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, p)| addr < p.end)
    }

    /// Removes and returns the parts of the pieces within `[from, to)`,
    /// in address order; what lies outside stays.
    pub fn take(&mut self, from: u64, to: u64) -> Vec<Piece> {
        let first = self
            .map
            .range(..from)
            .next_back()
            .filter(|(_, p)| p.end > from)
            .map(|(&k, _)| k);
        let keys: Vec<u64> = first
            .into_iter()
            .chain(self.map.range(from..to).map(|(&k, _)| k))
            .collect();
        let mut out = Vec::new();
        for k in keys {
            let p = self.map.remove(&k).expect("key listed above");
            self.bytes -= p.len();
            if p.start < from {
                self.insert(p.within(p.start, from));
            }
            if p.end > to {
                self.insert(p.within(to, p.end));
            }
            out.push(p.within(from, to));
        }
        out
    }

    /// Takes at most `max` bytes from the start of the lowest piece.
    pub fn take_first(&mut self, max: u64) -> Option<Piece> {
        let (&start, first) = self.map.iter().next()?;
        let end = first.end.min(start + max);
        self.take(start, end).into_iter().next()
    }

    /// mremap(2) moved `[from, from+len)` to `to`: so do its pieces.
    pub fn moved(&mut self, from: u64, to: u64, len: u64) {
        for mut p in self.take(from, from + len) {
            p.start = p.start - from + to;
            p.end = p.end - from + to;
            self.take(p.start, p.end);
            self.insert(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;

    fn file() -> Arc<File> {
        Arc::new(File::open("/dev/null").expect("/dev/null"))
    }

    fn piece(f: &Arc<File>, start: u64, end: u64, at: u64) -> Piece {
        Piece {
            start,
            end,
            file: Arc::clone(f),
            at,
        }
    }

    fn spans(p: &Pending) -> Vec<(u64, u64, u64)> {
        p.map.values().map(|x| (x.start, x.end, x.at)).collect()
    }

    #[test]
    fn take_splits_at_both_ends() {
        let f = file();
        let mut p = Pending::default();
        p.insert(piece(&f, 10 * P, 20 * P, 0));
        p.insert(piece(&f, 30 * P, 40 * P, 100 * P));
        let got = p.take(15 * P, 35 * P);
        let got: Vec<_> = got.iter().map(|x| (x.start, x.end, x.at)).collect();
        assert_eq!(
            got,
            vec![(15 * P, 20 * P, 5 * P), (30 * P, 35 * P, 100 * P)]
        );
        assert_eq!(
            spans(&p),
            vec![(10 * P, 15 * P, 0), (35 * P, 40 * P, 105 * P)]
        );
        assert_eq!(p.pages(), 10);
        assert!(p.contains(14 * P) && !p.contains(15 * P) && p.contains(39 * P));
        assert!(p.take(20 * P, 30 * P).is_empty());
    }

    #[test]
    fn take_first_and_moved() {
        let f = file();
        let mut p = Pending::default();
        p.insert(piece(&f, 10 * P, 20 * P, 7 * P));
        p.insert(piece(&f, 20 * P, 22 * P, 50 * P));
        let first = p.take_first(3 * P).expect("a piece");
        assert_eq!(p.take_first(100 * P).map(|x| x.end), Some(20 * P));
        p.insert(piece(&f, 13 * P, 20 * P, 10 * P));
        p.take(20 * P, 22 * P);
        assert_eq!((first.start, first.end, first.at), (10 * P, 13 * P, 7 * P));
        p.moved(12 * P, 100 * P, 4 * P);
        assert_eq!(
            spans(&p),
            vec![(16 * P, 20 * P, 13 * P), (101 * P, 104 * P, 10 * P)]
        );
        assert_eq!(p.pages(), 7);
        let mut child = p.clone();
        child.take(0, 1000 * P);
        assert!(child.is_empty() && p.pages() == 7);
    }
}
