//! Pre-copied pages on the receiver: appended to one file in the staging
//! directory (tmpfs), indexed by (pid, address); a page sent again in a
//! later round overwrites its earlier copy. When the frozen image arrives
//! as a delta, its `Reuse` frames are served from here.
//!
//! PrePages frames carry no tag; the store hashes their payloads in order
//! ([`PageStore::digest`]), and the source's tagged `PreEnd` frame must
//! name the same BLAKE3 before any page is reused (STREAM.md).

use super::{Error, Result};
use crate::image::digest::{Algo, Hasher};
use crate::PAGE_SIZE;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct PageStore {
    file: File,
    /// The file's absolute path, for `image::held`.
    path: PathBuf,
    /// Where pages are in the file, as runs: (pid, first address) to
    /// (end address, offset of the first page). A page keeps its place
    /// once stored (a page sent again overwrites it), and new pages are
    /// appended, so a run of pages sent together stays one entry: 1 GiB
    /// sent in round 0 is a handful of runs, not 262144 keys.
    index: BTreeMap<(i32, u64), (u64, u64)>,
    end: u64,
    /// Pages received, re-sent ones included.
    pub received: u64,
    /// BLAKE3 of the payloads stored, in order.
    hash: Hasher,
}

/// The header of a PrePages frame.
pub const HEADER: usize = 12;

/// A PrePages payload for `pages` (whole pages) of `pid` at `addr`.
pub fn payload(pid: i32, addr: u64, pages: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER + pages.len());
    p.extend_from_slice(&(pid as u32).to_le_bytes());
    p.extend_from_slice(&addr.to_le_bytes());
    p.extend_from_slice(pages);
    p
}

impl PageStore {
    pub fn new(dir: &Path) -> Result<PageStore> {
        let path = dir.join("precopy.pages");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        let path =
            std::fs::canonicalize(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(PageStore {
            file,
            path,
            index: BTreeMap::new(),
            end: 0,
            received: 0,
            hash: Hasher::new(Algo::Blake3),
        })
    }

    /// Stores the pages of one PrePages payload.
    pub fn put(&mut self, payload: &[u8]) -> Result<()> {
        let bad = |why: &str| Error::Protocol(format!("pre-copy frame: {why}"));
        if payload.len() < HEADER || !(payload.len() - HEADER).is_multiple_of(PAGE_SIZE as usize) {
            return Err(bad("not whole pages"));
        }
        let pid = u32::from_le_bytes(payload[..4].try_into().expect("4")) as i32;
        let addr = u64::from_le_bytes(payload[4..12].try_into().expect("8"));
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(bad("unaligned address"));
        }
        let pages = &payload[HEADER..];
        let Some(last) = addr.checked_add(pages.len() as u64) else {
            return Err(bad("address out of range"));
        };
        self.hash.update(payload);
        let mut at = addr;
        while at < last {
            let from = (at - addr) as usize;
            let (len, off) = match self.run_at(pid, at) {
                // Sent before: overwritten in place, up to the run's end.
                Some((end, off)) => (end.min(last) - at, off),
                // New: appended, up to the next stored run.
                None => {
                    let next = self
                        .index
                        .range((pid, at)..(pid, last))
                        .next()
                        .map_or(last, |(&(_, a), _)| a);
                    let off = self.append_run(pid, at, next);
                    (next - at, off)
                }
            };
            self.file
                .write_all_at(&pages[from..from + len as usize], off)
                .map_err(|e| Error::io("pre-copy store", e))?;
            at += len;
        }
        self.received += pages.len() as u64 / PAGE_SIZE;
        Ok(())
    }

    /// The run holding page `at` of `pid`: (its end address, the offset
    /// of page `at`).
    fn run_at(&self, pid: i32, at: u64) -> Option<(u64, u64)> {
        let (&(p, start), &(end, off)) = self.index.range(..=(pid, at)).next_back()?;
        (p == pid && at < end).then(|| (end, off + (at - start)))
    }

    /// Places the new pages [at, end) of `pid` at the end of the file,
    /// extending the run before them when it ends at `at` and at the end
    /// of the file; returns their offset.
    fn append_run(&mut self, pid: i32, at: u64, end: u64) -> u64 {
        let off = self.end;
        self.end += end - at;
        if let Some((&(p, start), run)) = self.index.range_mut(..(pid, at)).next_back() {
            if p == pid && run.0 == at && run.1 + (at - start) == off {
                run.0 = end;
                return off;
            }
        }
        self.index.insert((pid, at), (end, off));
        off
    }

    /// Hex BLAKE3 of every payload stored so far, in order.
    pub fn digest(&self) -> String {
        self.hash.clone().hex()
    }

    /// Where the `pages` held pages of `pid` from `addr` are in the store,
    /// as (offset, bytes): one range for pages that lie one after the
    /// other there (round 0 sends whole runs).
    pub fn extents(&self, pid: i32, addr: u64, pages: u64) -> Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Protocol(format!(
                "pid {pid}: unaligned reused address {addr:#x}"
            )));
        }
        let last = addr.saturating_add(pages.saturating_mul(PAGE_SIZE));
        let mut at = addr;
        while at < last {
            let (end, off) = self.run_at(pid, at).ok_or_else(|| {
                Error::Protocol(format!(
                    "pid {pid}: page {at:#x} reused but never pre-copied"
                ))
            })?;
            let len = end.min(last) - at;
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += len,
                _ => out.push((off, len)),
            }
            at += len;
        }
        Ok(out)
    }

    /// The store's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's file, for a restore to read the held pages from.
    pub fn file(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| Error::io("pre-copy store", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const P: u64 = PAGE_SIZE;

    /// Pages of two pids sent in overlapping runs over many rounds, as
    /// pre-copy does: the extents of any range read back the last bytes
    /// sent for each page, and pages never sent are refused.
    #[test]
    fn runs_hold_the_last_copy_of_every_page() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PageStore::new(tmp.path()).unwrap();
        let mut model: HashMap<(i32, u64), u8> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut sent = 0;
        for round in 0..300u64 {
            let pid = 1 + (next() % 2) as i32;
            let first = next() % 100;
            let n = 1 + next() % 16;
            let tag = (round % 250) as u8 + 1;
            let bytes: Vec<u8> = (0..n)
                .flat_map(|i| vec![tag.wrapping_add(i as u8); P as usize])
                .collect();
            store
                .put(&payload(pid, 0x10000 + first * P, &bytes))
                .unwrap();
            sent += n;
            for i in 0..n {
                model.insert((pid, 0x10000 + (first + i) * P), tag.wrapping_add(i as u8));
            }
        }
        assert_eq!(store.received, sent);
        let file = store.file().unwrap();
        for pid in [1, 2] {
            for first in 0..120u64 {
                let addr = 0x10000 + first * P;
                let all = (0..4).all(|i| model.contains_key(&(pid, addr + i * P)));
                let got = store.extents(pid, addr, 4);
                assert_eq!(got.is_ok(), all, "pid {pid} {addr:#x}");
                let Ok(extents) = got else { continue };
                let mut page = 0;
                for (off, len) in extents {
                    assert_eq!(off % P, 0);
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, off).unwrap();
                    for chunk in buf.chunks(P as usize) {
                        let want = model[&(pid, addr + page * P)];
                        assert!(chunk.iter().all(|&b| b == want), "pid {pid} page {page}");
                        page += 1;
                    }
                }
                assert_eq!(page, 4);
            }
        }
        assert!(store.extents(1, 0x10001, 1).is_err());
        assert!(store
            .put(&payload(1, !(P - 1), &[0; 2 * P as usize]))
            .is_err());
    }

    /// Round 0 sends a mapping in chunks, one after the other: one run.
    #[test]
    fn consecutive_chunks_are_one_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PageStore::new(tmp.path()).unwrap();
        for c in 0..8u64 {
            let bytes = vec![c as u8; 256 * P as usize];
            store
                .put(&payload(7, 0x4000_0000 + c * 256 * P, &bytes))
                .unwrap();
        }
        assert_eq!(store.index.len(), 1);
        assert_eq!(
            store.extents(7, 0x4000_0000, 2048).unwrap(),
            [(0, 2048 * P)]
        );
        // Sent again in a later round: overwritten in place.
        store
            .put(&payload(7, 0x4000_0000 + 5 * P, &[9; P as usize]))
            .unwrap();
        assert_eq!(store.index.len(), 1);
        assert_eq!(store.end, 2048 * P);
    }
}
