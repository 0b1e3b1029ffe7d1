//! Pre-copied pages on the receiver: appended to one file in the staging
//! directory (tmpfs), indexed by (pid, address); a page sent again in a
//! later round overwrites its earlier copy. When the frozen image arrives
//! as a delta, its `Reuse` frames are served from here.

use super::{Error, Result};
use crate::PAGE_SIZE;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct PageStore {
    file: File,
    index: HashMap<(i32, u64), u64>,
    end: u64,
    /// Pages received, re-sent ones included.
    pub received: u64,
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
        Ok(PageStore {
            file,
            index: HashMap::new(),
            end: 0,
            received: 0,
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

    /// Appends `pages` held pages of `pid` from `addr` to `out`.
    pub fn copy_to(&self, pid: i32, addr: u64, pages: u64, out: &mut impl Write) -> Result<()> {
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        for i in 0..pages {
            let at = addr + i * PAGE_SIZE;
            let off = self.index.get(&(pid, at)).ok_or_else(|| {
                Error::Protocol(format!(
                    "pid {pid}: page {at:#x} reused but never pre-copied"
                ))
            })?;
            self.file
                .read_exact_at(&mut buf, *off)
                .map_err(|e| Error::io("pre-copy store", e))?;
            out.write_all(&buf)
                .map_err(|e| Error::io("writing a pages section", e))?;
        }
        Ok(())
    }
}
