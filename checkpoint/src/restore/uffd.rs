//! Filling private anonymous memory through a userfaultfd of the vessel.
//!
//! A page written by process_vm_writev(2) into a fresh mapping is first
//! faulted in, which allocates it and zeroes it (clear_page), and only then
//! copied into: every byte is written twice. UFFDIO_COPY allocates the
//! page and copies into it without zeroing, many pages per ioctl
//! (mm/userfaultfd.c, mfill_atomic_pte_copy). It needs a userfaultfd of
//! the vessel's mm and the range registered on it in missing mode: the
//! vessel makes the uffd by an injected userfaultfd(2) (precopy/inject.rs,
//! the same one pre-copy's write-protection uses), we take our copy with
//! pidfd_getfd(2), and the vessel closes its own at once, so its fd table
//! never shows it. Once the process's memory is in, every range is
//! unregistered and our fd dropped: the address space is then as a fault
//! or a write would have left it, and nothing of the uffd stays.
//!
//! User-mode-only (UFFD_USER_MODE_ONLY), so an unprivileged restorer may
//! make one with vm.unprivileged_userfaultfd at 0; the vessel runs no
//! user code while a range is registered, so no fault ever waits on us.
//! Where the kernel refuses (no CONFIG_USERFAULTFD, a seccomp filter), the
//! restore writes with process_vm_writev as before.

use super::inject::Vessel;
use crate::error::{Error, Result};
use crate::precopy::inject::take_uffd;
use crate::precopy::sys;
use crate::PAGE_SIZE;
use std::os::fd::OwnedFd;

/// A userfaultfd of one vessel's mm, and the ranges registered on it.
pub struct Filler {
    pid: i32,
    uffd: OwnedFd,
    registered: Vec<(u64, u64)>,
}

impl Filler {
    /// The vessel's userfaultfd, or None where the kernel will not make
    /// one (the fill then writes with process_vm_writev).
    pub fn open(v: &Vessel) -> Result<Option<Filler>> {
        let made = take_uffd(v.pid, sys::UFFD_USER_MODE_ONLY, &mut |nr, args| {
            v.raw(nr, [args[0], 0, 0, 0, 0, 0])
        });
        // userfaultfd(2) itself refused (ENOSYS, EPERM): the vessel is
        // as it was.
        let Ok(uffd) = made? else {
            return Ok(None);
        };
        sys::uffd_api(&uffd, 0).map_err(|e| uffd_error(v.pid, "UFFDIO_API", e))?;
        Ok(Some(Filler {
            pid: v.pid,
            uffd,
            registered: Vec::new(),
        }))
    }

    /// A userfaultfd for post-copy (restore/lazy): without
    /// UFFD_USER_MODE_ONLY, so that the kernel's own accesses to a page not
    /// filled yet wait for the server too, and with the fork, mremap,
    /// munmap and madvise events. Err(why) where the kernel refuses either
    /// (no CAP_SYS_PTRACE and vm.unprivileged_userfaultfd=0: EPERM): the
    /// caller fills eagerly.
    pub fn open_lazy(v: &Vessel) -> Result<std::result::Result<Filler, String>> {
        let made = take_uffd(v.pid, 0, &mut |nr, args| {
            v.raw(nr, [args[0], 0, 0, 0, 0, 0])
        })?;
        let uffd = match made {
            Ok(u) => u,
            Err(e) => return Ok(Err(format!("userfaultfd(2) for kernel-mode faults: {e}"))),
        };
        let events = sys::UFFD_FEATURE_EVENT_FORK
            | sys::UFFD_FEATURE_EVENT_REMAP
            | sys::UFFD_FEATURE_EVENT_REMOVE
            | sys::UFFD_FEATURE_EVENT_UNMAP;
        if let Err(e) = sys::uffd_api(&uffd, events) {
            return Ok(Err(format!("userfaultfd events: {e}")));
        }
        Ok(Ok(Filler {
            pid: v.pid,
            uffd,
            registered: Vec::new(),
        }))
    }

    /// Our copy of the userfaultfd, for the post-copy server.
    pub fn share(&self) -> Result<OwnedFd> {
        self.uffd
            .try_clone()
            .map_err(|e| uffd_error(self.pid, "dup", e))
    }

    /// Registers a freshly mapped private anonymous range in missing mode.
    pub fn register(&mut self, start: u64, len: u64) -> Result<()> {
        sys::uffd_register(&self.uffd, start, len, true, false).map_err(|e| {
            uffd_error(
                self.pid,
                &format!("registering {start:#x}-{:#x}", start + len),
                e,
            )
        })?;
        self.registered.push((start, len));
        Ok(())
    }

    /// Installs `bytes` (whole pages) at `addr` (page-aligned) of a
    /// registered range.
    pub fn copy(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        if !addr.is_multiple_of(PAGE_SIZE) || !(bytes.len() as u64).is_multiple_of(PAGE_SIZE) {
            return Err(Error::Invalid {
                what: format!(
                    "cannot restore pid {}: a piece of {} bytes of pages at {addr:#x} is not whole pages",
                    self.pid,
                    bytes.len()
                ),
            });
        }
        sys::uffd_copy(&self.uffd, addr, bytes).map_err(|e| {
            uffd_error(
                self.pid,
                &format!("copying {} bytes of pages to {addr:#x}", bytes.len()),
                e,
            )
        })
    }

    /// Unregisters every range and closes the uffd: the memory stays as
    /// filled, and a page never copied faults in as zeroes like any other.
    pub fn finish(self) -> Result<()> {
        for &(start, len) in &self.registered {
            sys::uffd_unregister(&self.uffd, start, len).map_err(|e| {
                uffd_error(
                    self.pid,
                    &format!("unregistering {start:#x}-{:#x}", start + len),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

fn uffd_error(pid: i32, what: &str, e: std::io::Error) -> Error {
    Error::Invalid {
        what: format!("cannot restore pid {pid}: userfaultfd {what}: {e}"),
    }
}
