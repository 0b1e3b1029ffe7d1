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
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct PageStore {
    file: File,
    /// The file's absolute path, for `image::held`.
    path: PathBuf,
    index: HashMap<(i32, u64), u64>,
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
            index: HashMap::new(),
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
        self.hash.update(payload);
        for (i, page) in payload[HEADER..]
            .chunks_exact(PAGE_SIZE as usize)
            .enumerate()
        {
            let at = addr + i as u64 * PAGE_SIZE;
            let off = *self.index.entry((pid, at)).or_insert_with(|| {
                let o = self.end;
                self.end += PAGE_SIZE;
                o
            });
            self.file
                .write_all_at(page, off)
                .map_err(|e| Error::io("pre-copy store", e))?;
            self.received += 1;
        }
        Ok(())
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
        for i in 0..pages {
            let off = self.offset(pid, addr + i * PAGE_SIZE)?;
            match out.last_mut() {
                Some((o, len)) if *o + *len == off => *len += PAGE_SIZE,
                _ => out.push((off, PAGE_SIZE)),
            }
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

    fn offset(&self, pid: i32, at: u64) -> Result<u64> {
        self.index.get(&(pid, at)).copied().ok_or_else(|| {
            Error::Protocol(format!(
                "pid {pid}: page {at:#x} reused but never pre-copied"
            ))
        })
    }
}
