//! The dump's view of a copy-before-write snapshot (wp): which pages to
//! read (those present at the pause), and each range settled once read
//! (stored copies preferred, the range un-protected, the target's mmap
//! changes since its read began checked).

use super::{retry_eagain, WpCopy};
use crate::dump::memory::Guard;
use crate::precopy::sys;
use crate::PAGE_SIZE;
use std::io;

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
            // A range whose every page came from the store (copied in the
            // pause, or before a write) does not depend on what was read.
            if let Some(&(s, e)) = state.log[mark..]
                .iter()
                .find(|&&(s, e)| !whole && s < end && addr < e)
            {
                state.torn = Some(format!(
                    "{s:#x}-{e:#x} was unmapped, moved or dropped by the target while {addr:#x}-{end:#x} was being read"
                ));
            }
        }
        read || whole
    }
}
