//! Creating the tracee's userfaultfd: the uffd must belong to the tracee's
//! mm (userfaultfd(2) binds it to the calling process), so one stopped
//! thread is made to call userfaultfd(2), we take a copy of the new fd
//! with pidfd_getfd(2), and the thread closes its own (an fd a checkpoint
//! could not carry). Our copy keeps the context, and its mm, alive.
//!
//! The thread must be in an interrupt stop of its supervisor's freeze
//! barrier; it is lent and given back as `dump/lend.rs` says.

use super::sys;
use crate::dump::cow::find_gadget;
use crate::dump::lend::Lent;
use crate::error::{Error, Result};
use crate::model::Vma;
use std::os::fd::OwnedFd;

/// A userfaultfd of `pid`'s mm, made by its thread `tid` (in an interrupt
/// stop), as an fd of ours; the thread is left as it was found. For async
/// write-protection, which never delivers a fault, so the user-mode-only
/// flag costs nothing and lets an unprivileged process make it.
pub fn open_uffd(pid: i32, tid: i32, vmas: &[Vma]) -> Result<OwnedFd> {
    let gadget = find_gadget(pid, tid, vmas).ok_or_else(|| Error::Invalid {
        what: format!("pid {pid}: no syscall instruction to run userfaultfd(2) from"),
    })?;
    let mut lent = Lent::new(pid, tid, gadget)?;
    let taken = uffd_in(&mut lent, pid, sys::UFFD_USER_MODE_ONLY);
    let back = lent.give_back();
    let ours = taken?;
    back?;
    Ok(ours)
}

/// Makes the lent thread of `pid` call userfaultfd(2) with `flags` (plus
/// O_CLOEXEC and O_NONBLOCK), takes the fd with pidfd_getfd(2) and makes
/// the thread close its own: its fd table is left as it was.
pub(crate) fn uffd_in(lent: &mut Lent, pid: i32, flags: u64) -> Result<OwnedFd> {
    let made = take_uffd(pid, flags, &mut |nr, args| {
        lent.call(nr, [args[0], 0, 0, 0]).map(|r| r.0)
    })?;
    made.map_err(|e| Error::Invalid {
        what: format!("pid {pid}: userfaultfd(2) failed: {e}"),
    })
}

/// What runs one syscall (number, first argument) in a stopped task of
/// the target process and returns its raw result (-errno on failure): a
/// lent thread at a freeze, or a restore's vessel.
pub(crate) type Inject<'a> = dyn FnMut(i64, [u64; 1]) -> Result<i64> + 'a;

/// userfaultfd(2) with `flags` (plus O_CLOEXEC and O_NONBLOCK) run by
/// `call` in `pid`, our copy of the fd taken with pidfd_getfd(2), and the
/// target's own closed by `call` again: its fd table is left as it was.
/// The inner error is userfaultfd(2)'s own refusal (ENOSYS, EPERM...),
/// after which the target is unchanged.
pub(crate) fn take_uffd(
    pid: i32,
    flags: u64,
    call: &mut Inject,
) -> Result<std::result::Result<OwnedFd, std::io::Error>> {
    let flags = libc::O_CLOEXEC as u64 | libc::O_NONBLOCK as u64 | flags;
    let fd = call(libc::SYS_userfaultfd, [flags])?;
    if fd < 0 {
        return Ok(Err(std::io::Error::from_raw_os_error(-fd as i32)));
    }
    let ours = sys::pidfd_open(pid)
        .and_then(|p| sys::pidfd_getfd(&p, fd as i32))
        .map_err(|e| Error::io(format!("/proc/{pid}/fd/{fd}"), e));
    let closed = call(libc::SYS_close, [fd as u64])?;
    if closed < 0 {
        return Err(Error::Invalid {
            what: format!(
                "pid {pid}: closing its userfaultfd {fd}: {}",
                std::io::Error::from_raw_os_error(-closed as i32)
            ),
        });
    }
    ours.map(Ok)
}
