//! Calls on files of ours that std and nix do not offer: the timerfd
//! accounting query, open_by_handle_at(2), kcmp(2) and sync_file_range(2). Part of `sys`:
//! `unsafe` lives in `sys.rs` and its modules only.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// timerfd_gettime(2), for its side effect: the kernel brings a periodic
/// timer's expiration count up to date (fs/timerfd.c, hrtimer_forward_now).
pub fn timerfd_settle(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut cur = std::mem::MaybeUninit::<libc::itimerspec>::uninit();
    // SAFETY: timerfd_gettime writes one struct itimerspec into `cur`,
    // which lives until the call returns.
    let rc = unsafe { libc::timerfd_gettime(fd.as_raw_fd(), cur.as_mut_ptr()) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// open_by_handle_at(2) of `handle` (a whole struct file_handle: u32
/// handle_bytes, int handle_type, the bytes) on the filesystem `mount` is
/// on, as O_PATH. Needs CAP_DAC_READ_SEARCH.
pub fn open_by_handle(mount: BorrowedFd<'_>, handle: &[u8]) -> Result<OwnedFd, Errno> {
    // SAFETY: `handle` is a complete struct file_handle the kernel only
    // reads while the call runs; `mount` is an open fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            handle.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh fd the kernel just gave us, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// kcmp(2) KCMP_FILE: whether fd `a` of process `pa` and fd `b` of `pb`
/// are one open file (one offset, one set of flags).
pub fn same_open_file(pa: i32, a: i32, pb: i32, b: i32) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: integer-only syscall.
    let rc = unsafe { libc::syscall(libc::SYS_kcmp, pa, pb, KCMP_FILE, a, b) };
    rc == 0
}

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts writeback of the
/// dirty pages of [offset, offset + len) of `fd` and returns without
/// waiting for it (it may wait for room in the device's queue). A no-op
/// on filesystems without writeback (tmpfs).
pub fn start_writeback(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), Errno> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(Errno::EINVAL);
    };
    // SAFETY: sync_file_range only reads its integer arguments; `fd` is
    // an open fd for the length of the call.
    let rc =
        unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Whether the filesystem holding `fd` keeps file data in memory only
/// (tmpfs, ramfs): statfs(2) f_type. There a file's blocks are its page
/// cache pages, so reserving them ahead (fallocate) allocates the same
/// pages a write would, under the same inode lock: no saving.
pub fn memory_backed(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::statfs::{fstatfs, FsType, TMPFS_MAGIC};
    // ramfs's f_type (include/uapi/linux/magic.h), which nix and libc
    // do not name.
    let ramfs = FsType(0x8584_58f6);
    fstatfs(fd).is_ok_and(|s| [TMPFS_MAGIC, ramfs].contains(&s.filesystem_type()))
}

/// fallocate(2), mode 0, of [offset, offset + len): allocates the blocks
/// (as unwritten extents on ext4/XFS) and extends the file if needed.
/// ENOSPC: less room than `len`; ext4 keeps what it did allocate, and
/// the size that reached (ext4_alloc_file_blocks).
pub fn allocate(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), Errno> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(Errno::EINVAL);
    };
    nix::fcntl::fallocate(fd, nix::fcntl::FallocateFlags::empty(), offset, len)
}
