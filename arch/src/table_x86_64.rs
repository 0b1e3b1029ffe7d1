//! The x86_64 syscall table: every number of the 64-bit ABI up to Linux 6.18.
//!
//! Numbers and names follow arch/x86/entry/syscalls/syscall_64.tbl: 0..=336
//! and 424..=469. The x32-only numbers (512..=547, and anything with
//! `X32_SYSCALL_BIT` set) are absent on purpose: the filter refuses the x32
//! ABI as a whole. Slots the kernel keeps without an entry point (removed or
//! never wired up for the 64-bit ABI) are listed too, as `Deny(ENOSYS)`, so
//! that every number has exactly one row and nothing is allowed by omission.
//!
//! Trap policy, which the seccomp filter is derived from (isolation fails
//! closed, so when in doubt a call is trapped):
//! - every call with a `Path` argument is traced, and so is every call whose
//!   result names a path (getcwd, readlink*, getdents*: exit stop when
//!   isolated) or that can reach into another process or the supervisor
//!   (ptrace, process_vm_*, pidfd_open, pidfd_getfd, seccomp);
//! - memory calls that could unmap, remap, re-protect or discard the
//!   supervisor's scratch region trap only when their address is below its
//!   end (`TraceIfAddrBelowScratch`);
//! - fd-based metadata calls (fchmod, fchown, fsetxattr, fremovexattr,
//!   futimens) trap under isolation only while the host is writable for the
//!   tracee (`TraceWhenHostWritable`): in a read-only-host mount namespace
//!   the kernel refuses them on host files by itself; setns traps under
//!   isolation so that no tracee leaves that namespace;
//! - io_uring and open_by_handle_at are refused by the filter itself: they
//!   reach files without a syscall the supervisor could see or rewrite.

use crate::Arg::*;
use crate::ExitStop::*;
use crate::Support::*;
use crate::Syscall;
use crate::Trap::*;

/// One table row. Short forms: `[args]` alone is an untrapped native call;
/// `trap, support[, note]` keeps `ExitStop::Never`; the long form spells out
/// everything.
macro_rules! sc {
    ($nr:literal, $name:ident, [$($a:ident),*], $trap:expr, $exit:ident, $sup:ident, $note:expr) => {
        Syscall {
            nr: $nr,
            name: stringify!($name),
            args: &[$($a),*],
            trap: $trap,
            exit: $exit,
            support: $sup,
            note: $note,
        }
    };
    ($nr:literal, $name:ident, [$($a:ident),*], $trap:expr, $sup:ident, $note:expr) => {
        sc!($nr, $name, [$($a),*], $trap, Never, $sup, $note)
    };
    ($nr:literal, $name:ident, [$($a:ident),*], $trap:expr, $sup:ident) => {
        sc!($nr, $name, [$($a),*], $trap, Never, $sup, "")
    };
    ($nr:literal, $name:ident, [$($a:ident),*]) => {
        sc!($nr, $name, [$($a),*], Allow, Never, Native, "")
    };
}

/// A number the 64-bit ABI reserves but the kernel answers with ENOSYS
/// (sys_ni_syscall or no entry point at all). Denying it in the filter gives
/// the guest exactly what the kernel would.
macro_rules! gone {
    ($nr:literal, $name:ident, [$($a:ident),*]) => {
        sc!($nr, $name, [$($a),*], Deny(libc::ENOSYS), Never, Refused, GONE)
    };
}

const GONE: &str = "not implemented for the x86_64 64-bit ABI (removed or never wired up): ENOSYS";
const MOUNT: &str = "refused under isolation";
const URING: &str = "io_uring bypasses syscall interception";
const UNIX_DEST: &str = "an AF_UNIX destination path inside the call is not rewritten";
const MOUNT_INFO: &str = "mount points are reported untranslated";
const UPROBE: &str = "only valid from the kernel's uprobe trampoline; seccomp lets it pass";

// One row per line reads as a table; rustfmt would split the long ones.
#[rustfmt::skip]
pub static TABLE: &[Syscall] = &[
    sc!(0, read, [Fd, Ptr, UInt]),
    sc!(1, write, [Fd, Ptr, UInt]),
    sc!(2, open, [Path, OpenFlags, Mode], Trace, Full),
    sc!(3, close, [Fd]),
    sc!(4, stat, [Path, Ptr], Trace, Full),
    sc!(5, fstat, [Fd, Ptr]),
    sc!(6, lstat, [Path, Ptr], Trace, Full),
    sc!(7, poll, [Ptr, UInt, Int]),
    sc!(8, lseek, [Fd, Int, Int]),
    sc!(9, mmap, [Ptr, UInt, Prot, MapFlags, Fd, Hex], TraceIfAddrBelowScratch(0), Full),
    sc!(10, mprotect, [Ptr, UInt, Prot], TraceIfAddrBelowScratch(0), Full),
    sc!(11, munmap, [Ptr, UInt], TraceIfAddrBelowScratch(0), Full),
    sc!(12, brk, [Ptr]),
    sc!(13, rt_sigaction, [Signal, Ptr, Ptr, UInt]),
    sc!(14, rt_sigprocmask, [Int, Ptr, Ptr, UInt]),
    sc!(15, rt_sigreturn, []),
    sc!(16, ioctl, [Fd, Hex, Hex]),
    sc!(17, pread64, [Fd, Ptr, UInt, Int]),
    sc!(18, pwrite64, [Fd, Ptr, UInt, Int]),
    sc!(19, readv, [Fd, Ptr, UInt]),
    sc!(20, writev, [Fd, Ptr, UInt]),
    sc!(21, access, [Path, Int], Trace, Full),
    sc!(22, pipe, [Ptr]),
    sc!(23, select, [Int, Ptr, Ptr, Ptr, Ptr]),
    sc!(24, sched_yield, []),
    // Both the old range (arg 0) and MREMAP_FIXED's new_address (arg 4)
    // matter and a Trap names one argument, so mremap is always traced.
    sc!(25, mremap, [Ptr, UInt, UInt, Hex, Ptr], Trace, Full),
    sc!(26, msync, [Ptr, UInt, Hex]),
    sc!(27, mincore, [Ptr, UInt, Ptr]),
    sc!(28, madvise, [Ptr, UInt, Int], TraceIfAddrBelowScratch(0), Full),
    sc!(29, shmget, [Int, UInt, Hex]),
    sc!(30, shmat, [Int, Ptr, Hex], TraceIfAddrBelowScratch(1), Full),
    sc!(31, shmctl, [Int, Int, Ptr]),
    sc!(32, dup, [Fd]),
    sc!(33, dup2, [Fd, Fd]),
    sc!(34, pause, []),
    sc!(35, nanosleep, [Ptr, Ptr]),
    sc!(36, getitimer, [Int, Ptr]),
    sc!(37, alarm, [UInt]),
    sc!(38, setitimer, [Int, Ptr, Ptr]),
    sc!(39, getpid, []),
    sc!(40, sendfile, [Fd, Fd, Ptr, UInt]),
    sc!(41, socket, [Int, Int, Int]),
    sc!(42, connect, [Fd, SockAddr, UInt], Trace, Full),
    sc!(43, accept, [Fd, Ptr, Ptr]),
    // glibc's send() is sendto(fd, buf, len, flags, NULL, 0): only a call
    // with a destination is trapped, and only under isolation.
    sc!(44, sendto, [Fd, Ptr, UInt, Hex, SockAddr, UInt], TraceIfNonNullWhenIsolated(4), Full),
    sc!(45, recvfrom, [Fd, Ptr, UInt, Hex, Ptr, Ptr]),
    sc!(46, sendmsg, [Fd, Ptr, Hex], Allow, Partial, UNIX_DEST),
    sc!(47, recvmsg, [Fd, Ptr, Hex]),
    sc!(48, shutdown, [Fd, Int]),
    sc!(49, bind, [Fd, SockAddr, UInt], Trace, Full),
    sc!(50, listen, [Fd, Int]),
    sc!(51, getsockname, [Fd, Ptr, Ptr], Trace, WhenIsolated, Full, ""),
    sc!(52, getpeername, [Fd, Ptr, Ptr], Trace, WhenIsolated, Full, ""),
    sc!(53, socketpair, [Int, Int, Int, Ptr]),
    sc!(54, setsockopt, [Fd, Int, Int, Ptr, UInt]),
    sc!(55, getsockopt, [Fd, Int, Int, Ptr, Ptr]),
    // x86_64 order: flags, newsp, parent_tid, child_tid, tls.
    sc!(56, clone, [CloneFlags, Ptr, Ptr, Ptr, Hex]),
    sc!(57, fork, []),
    sc!(58, vfork, []),
    sc!(59, execve, [Path, StrArray, StrArray], Trace, Full),
    sc!(60, exit, [Int]),
    sc!(61, wait4, [Pid, Ptr, Hex, Ptr]),
    sc!(62, kill, [Pid, Signal]),
    sc!(63, uname, [Ptr]),
    sc!(64, semget, [Int, Int, Hex]),
    sc!(65, semop, [Int, Ptr, UInt]),
    sc!(66, semctl, [Int, Int, Int, Hex]),
    sc!(67, shmdt, [Ptr], TraceIfAddrBelowScratch(0), Full),
    sc!(68, msgget, [Int, Hex]),
    sc!(69, msgsnd, [Int, Ptr, UInt, Hex]),
    sc!(70, msgrcv, [Int, Ptr, UInt, Int, Hex]),
    sc!(71, msgctl, [Int, Int, Ptr]),
    sc!(72, fcntl, [Fd, Int, Hex]),
    sc!(73, flock, [Fd, Int]),
    sc!(74, fsync, [Fd]),
    sc!(75, fdatasync, [Fd]),
    sc!(76, truncate, [Path, Int], Trace, Full),
    sc!(77, ftruncate, [Fd, Int]),
    sc!(78, getdents, [Fd, Ptr, UInt], Trace, WhenIsolated, Full, ""),
    sc!(79, getcwd, [Ptr, UInt], Trace, WhenIsolated, Full, ""),
    sc!(80, chdir, [Path], Trace, Full),
    sc!(81, fchdir, [Fd], Trace, Full),
    sc!(82, rename, [Path, Path], Trace, Full),
    sc!(83, mkdir, [Path, Mode], Trace, Full),
    sc!(84, rmdir, [Path], Trace, Full),
    sc!(85, creat, [Path, Mode], Trace, Full),
    sc!(86, link, [Path, Path], Trace, Full),
    sc!(87, unlink, [Path], Trace, Full),
    // The target is stored as the link's content, not resolved.
    sc!(88, symlink, [Str, Path], Trace, Full),
    sc!(89, readlink, [Path, Ptr, UInt], Trace, WhenIsolated, Full, ""),
    sc!(90, chmod, [Path, Mode], Trace, Full),
    sc!(91, fchmod, [Fd, Mode], TraceWhenHostWritable, Full),
    sc!(92, chown, [Path, Int, Int], Trace, Full),
    sc!(93, fchown, [Fd, Int, Int], TraceWhenHostWritable, Full),
    sc!(94, lchown, [Path, Int, Int], Trace, Full),
    sc!(95, umask, [Mode]),
    sc!(96, gettimeofday, [Ptr, Ptr]),
    sc!(97, getrlimit, [Int, Ptr]),
    sc!(98, getrusage, [Int, Ptr]),
    sc!(99, sysinfo, [Ptr]),
    sc!(100, times, [Ptr]),
    sc!(101, ptrace, [Int, Pid, Ptr, Ptr], Trace, Partial,
        "guest debuggers cannot attach to tracees: isotrace already traces them"),
    sc!(102, getuid, []),
    sc!(103, syslog, [Int, Ptr, Int]),
    sc!(104, getgid, []),
    sc!(105, setuid, [Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(106, setgid, [Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(107, geteuid, []),
    sc!(108, getegid, []),
    sc!(109, setpgid, [Pid, Pid]),
    sc!(110, getppid, []),
    sc!(111, getpgrp, []),
    sc!(112, setsid, []),
    sc!(113, setreuid, [Int, Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(114, setregid, [Int, Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(115, getgroups, [Int, Ptr]),
    sc!(116, setgroups, [UInt, Ptr], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(117, setresuid, [Int, Int, Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(118, getresuid, [Ptr, Ptr, Ptr]),
    sc!(119, setresgid, [Int, Int, Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(120, getresgid, [Ptr, Ptr, Ptr]),
    sc!(121, getpgid, [Pid]),
    sc!(122, setfsuid, [Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(123, setfsgid, [Int], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(124, getsid, [Pid]),
    sc!(125, capget, [Ptr, Ptr]),
    sc!(126, capset, [Ptr, Ptr], TraceWhenIsolated, Full, "isolation re-reads the credentials it acts with"),
    sc!(127, rt_sigpending, [Ptr, UInt]),
    sc!(128, rt_sigtimedwait, [Ptr, Ptr, Ptr, UInt]),
    sc!(129, rt_sigqueueinfo, [Pid, Signal, Ptr]),
    sc!(130, rt_sigsuspend, [Ptr, UInt]),
    sc!(131, sigaltstack, [Ptr, Ptr]),
    sc!(132, utime, [Path, Ptr], Trace, Full),
    sc!(133, mknod, [Path, Mode, Hex], Trace, Full),
    gone!(134, uselib, [Path]),
    sc!(135, personality, [Hex]),
    sc!(136, ustat, [Hex, Ptr]),
    sc!(137, statfs, [Path, Ptr], Trace, Full),
    sc!(138, fstatfs, [Fd, Ptr]),
    sc!(139, sysfs, [Int, Hex, Hex]),
    sc!(140, getpriority, [Int, Int]),
    sc!(141, setpriority, [Int, Int, Int]),
    sc!(142, sched_setparam, [Pid, Ptr]),
    sc!(143, sched_getparam, [Pid, Ptr]),
    sc!(144, sched_setscheduler, [Pid, Int, Ptr]),
    sc!(145, sched_getscheduler, [Pid]),
    sc!(146, sched_get_priority_max, [Int]),
    sc!(147, sched_get_priority_min, [Int]),
    sc!(148, sched_rr_get_interval, [Pid, Ptr]),
    sc!(149, mlock, [Ptr, UInt]),
    sc!(150, munlock, [Ptr, UInt]),
    sc!(151, mlockall, [Hex]),
    sc!(152, munlockall, []),
    sc!(153, vhangup, []),
    sc!(154, modify_ldt, [Int, Ptr, UInt]),
    sc!(155, pivot_root, [Path, Path], Trace, Refused, MOUNT),
    gone!(156, _sysctl, [Ptr]),
    sc!(157, prctl, [Int, Hex, Hex, Hex, Hex]),
    sc!(158, arch_prctl, [Int, Hex]),
    sc!(159, adjtimex, [Ptr]),
    sc!(160, setrlimit, [Int, Ptr]),
    sc!(161, chroot, [Path], Trace, Refused, MOUNT),
    sc!(162, sync, []),
    sc!(163, acct, [Path], Trace, Full),
    sc!(164, settimeofday, [Ptr, Ptr]),
    sc!(165, mount, [Path, Path, Str, Hex, Ptr], Trace, Refused, MOUNT),
    sc!(166, umount2, [Path, Hex], Trace, Refused, MOUNT),
    sc!(167, swapon, [Path, Hex], Trace, Full),
    sc!(168, swapoff, [Path], Trace, Full),
    sc!(169, reboot, [Hex, Hex, Hex, Ptr]),
    sc!(170, sethostname, [Str, UInt]),
    sc!(171, setdomainname, [Str, UInt]),
    sc!(172, iopl, [UInt]),
    sc!(173, ioperm, [Hex, UInt, Int]),
    gone!(174, create_module, [Str, UInt]),
    sc!(175, init_module, [Ptr, UInt, Str]),
    sc!(176, delete_module, [Str, Hex]),
    gone!(177, get_kernel_syms, [Ptr]),
    gone!(178, query_module, [Str, Int, Ptr, UInt, Ptr]),
    // The block device is looked up as a path (lookup_bdev); Q_QUOTAON's
    // quota file in arg 3 is one too, but only for that command.
    sc!(179, quotactl, [Int, Path, Int, Ptr], Trace, Partial,
        "Q_QUOTAON's quota file path (arg 3) is not rewritten"),
    gone!(180, nfsservctl, [Int, Ptr, Ptr]),
    gone!(181, getpmsg, []),
    gone!(182, putpmsg, []),
    gone!(183, afs_syscall, []),
    gone!(184, tuxcall, []),
    gone!(185, security, []),
    sc!(186, gettid, []),
    sc!(187, readahead, [Fd, Int, UInt]),
    sc!(188, setxattr, [Path, Str, Ptr, UInt, Hex], Trace, Full),
    sc!(189, lsetxattr, [Path, Str, Ptr, UInt, Hex], Trace, Full),
    sc!(190, fsetxattr, [Fd, Str, Ptr, UInt, Hex], TraceWhenHostWritable, Full),
    sc!(191, getxattr, [Path, Str, Ptr, UInt], Trace, Full),
    sc!(192, lgetxattr, [Path, Str, Ptr, UInt], Trace, Full),
    sc!(193, fgetxattr, [Fd, Str, Ptr, UInt]),
    sc!(194, listxattr, [Path, Ptr, UInt], Trace, Full),
    sc!(195, llistxattr, [Path, Ptr, UInt], Trace, Full),
    sc!(196, flistxattr, [Fd, Ptr, UInt]),
    sc!(197, removexattr, [Path, Str], Trace, Full),
    sc!(198, lremovexattr, [Path, Str], Trace, Full),
    sc!(199, fremovexattr, [Fd, Str], TraceWhenHostWritable, Full),
    sc!(200, tkill, [Pid, Signal]),
    sc!(201, time, [Ptr]),
    sc!(202, futex, [Ptr, Int, Hex, Ptr, Ptr, Hex]),
    sc!(203, sched_setaffinity, [Pid, UInt, Ptr], Trace, Full),
    sc!(204, sched_getaffinity, [Pid, UInt, Ptr], Trace, Full),
    // 64-bit code uses arch_prctl(ARCH_SET_FS); only the i386 ABI has these.
    gone!(205, set_thread_area, [Ptr]),
    sc!(206, io_setup, [UInt, Ptr]),
    sc!(207, io_destroy, [Hex]),
    sc!(208, io_getevents, [Hex, Int, Int, Ptr, Ptr]),
    sc!(209, io_submit, [Hex, Int, Ptr]),
    sc!(210, io_cancel, [Hex, Ptr, Ptr]),
    gone!(211, get_thread_area, [Ptr]),
    gone!(212, lookup_dcookie, [Hex, Ptr, UInt]),
    sc!(213, epoll_create, [Int]),
    gone!(214, epoll_ctl_old, []),
    gone!(215, epoll_wait_old, []),
    sc!(216, remap_file_pages, [Ptr, UInt, Prot, UInt, Hex], TraceIfAddrBelowScratch(0), Full),
    sc!(217, getdents64, [Fd, Ptr, UInt], Trace, WhenIsolated, Full, ""),
    sc!(218, set_tid_address, [Ptr]),
    sc!(219, restart_syscall, []),
    sc!(220, semtimedop, [Int, Ptr, UInt, Ptr]),
    sc!(221, fadvise64, [Fd, Int, UInt, Int]),
    sc!(222, timer_create, [Int, Ptr, Ptr]),
    sc!(223, timer_settime, [Int, Hex, Ptr, Ptr]),
    sc!(224, timer_gettime, [Int, Ptr]),
    sc!(225, timer_getoverrun, [Int]),
    sc!(226, timer_delete, [Int]),
    sc!(227, clock_settime, [Int, Ptr]),
    sc!(228, clock_gettime, [Int, Ptr]),
    sc!(229, clock_getres, [Int, Ptr]),
    sc!(230, clock_nanosleep, [Int, Hex, Ptr, Ptr]),
    sc!(231, exit_group, [Int]),
    sc!(232, epoll_wait, [Fd, Ptr, Int, Int]),
    sc!(233, epoll_ctl, [Fd, Int, Fd, Ptr]),
    sc!(234, tgkill, [Pid, Pid, Signal]),
    sc!(235, utimes, [Path, Ptr], Trace, Full),
    gone!(236, vserver, []),
    sc!(237, mbind, [Ptr, UInt, Int, Ptr, UInt, Hex]),
    sc!(238, set_mempolicy, [Int, Ptr, UInt]),
    sc!(239, get_mempolicy, [Ptr, Ptr, UInt, Ptr, Hex]),
    // Message queue names live in the mqueue filesystem of the IPC
    // namespace; they are not resolved against the guest's root or cwd.
    sc!(240, mq_open, [Str, OpenFlags, Mode, Ptr]),
    sc!(241, mq_unlink, [Str]),
    sc!(242, mq_timedsend, [Fd, Ptr, UInt, UInt, Ptr]),
    sc!(243, mq_timedreceive, [Fd, Ptr, UInt, Ptr, Ptr]),
    sc!(244, mq_notify, [Fd, Ptr]),
    sc!(245, mq_getsetattr, [Fd, Ptr, Ptr]),
    sc!(246, kexec_load, [Hex, UInt, Ptr, Hex]),
    sc!(247, waitid, [Int, Pid, Ptr, Hex, Ptr]),
    sc!(248, add_key, [Str, Str, Ptr, UInt, Int]),
    sc!(249, request_key, [Str, Str, Str, Int]),
    sc!(250, keyctl, [Int, Hex, Hex, Hex, Hex]),
    sc!(251, ioprio_set, [Int, Int, Int]),
    sc!(252, ioprio_get, [Int, Int]),
    sc!(253, inotify_init, []),
    // Arg 0 is the inotify instance, not a directory: the path is relative
    // to the cwd.
    sc!(254, inotify_add_watch, [Fd, Path, Hex], Trace, Full),
    sc!(255, inotify_rm_watch, [Fd, Int]),
    sc!(256, migrate_pages, [Pid, UInt, Ptr, Ptr]),
    sc!(257, openat, [DirFd, Path, OpenFlags, Mode], Trace, Full),
    sc!(258, mkdirat, [DirFd, Path, Mode], Trace, Full),
    sc!(259, mknodat, [DirFd, Path, Mode, Hex], Trace, Full),
    sc!(260, fchownat, [DirFd, Path, Int, Int, AtFlags], Trace, Full),
    sc!(261, futimesat, [DirFd, Path, Ptr], Trace, Full),
    sc!(262, newfstatat, [DirFd, Path, Ptr, AtFlags], Trace, Full),
    sc!(263, unlinkat, [DirFd, Path, AtFlags], Trace, Full),
    sc!(264, renameat, [DirFd, Path, DirFd, Path], Trace, Full),
    sc!(265, linkat, [DirFd, Path, DirFd, Path, AtFlags], Trace, Full),
    sc!(266, symlinkat, [Str, DirFd, Path], Trace, Full),
    sc!(267, readlinkat, [DirFd, Path, Ptr, UInt], Trace, WhenIsolated, Full, ""),
    sc!(268, fchmodat, [DirFd, Path, Mode], Trace, Full),
    sc!(269, faccessat, [DirFd, Path, Int], Trace, Full),
    sc!(270, pselect6, [Int, Ptr, Ptr, Ptr, Ptr, Ptr]),
    sc!(271, ppoll, [Ptr, UInt, Ptr, Ptr, UInt]),
    sc!(272, unshare, [CloneFlags]),
    sc!(273, set_robust_list, [Ptr, UInt]),
    sc!(274, get_robust_list, [Pid, Ptr, Ptr]),
    sc!(275, splice, [Fd, Ptr, Fd, Ptr, UInt, Hex]),
    sc!(276, tee, [Fd, Fd, UInt, Hex]),
    sc!(277, sync_file_range, [Fd, Int, Int, Hex]),
    sc!(278, vmsplice, [Fd, Ptr, UInt, Hex]),
    sc!(279, move_pages, [Pid, UInt, Ptr, Ptr, Ptr, Hex]),
    sc!(280, utimensat, [DirFd, Path, Ptr, AtFlags], TraceIfNonNullOrHostWritable(1), Full),
    sc!(281, epoll_pwait, [Fd, Ptr, Int, Int, Ptr, UInt]),
    sc!(282, signalfd, [Fd, Ptr, UInt]),
    sc!(283, timerfd_create, [Int, Hex]),
    sc!(284, eventfd, [UInt]),
    sc!(285, fallocate, [Fd, Int, Int, Int]),
    sc!(286, timerfd_settime, [Fd, Hex, Ptr, Ptr]),
    sc!(287, timerfd_gettime, [Fd, Ptr]),
    sc!(288, accept4, [Fd, Ptr, Ptr, Hex]),
    sc!(289, signalfd4, [Fd, Ptr, UInt, Hex]),
    sc!(290, eventfd2, [UInt, Hex]),
    sc!(291, epoll_create1, [Hex]),
    sc!(292, dup3, [Fd, Fd, Hex]),
    sc!(293, pipe2, [Ptr, Hex]),
    sc!(294, inotify_init1, [Hex]),
    sc!(295, preadv, [Fd, Ptr, UInt, Int, Int]),
    sc!(296, pwritev, [Fd, Ptr, UInt, Int, Int]),
    sc!(297, rt_tgsigqueueinfo, [Pid, Pid, Signal, Ptr]),
    sc!(298, perf_event_open, [Ptr, Pid, Int, Fd, Hex]),
    sc!(299, recvmmsg, [Fd, Ptr, UInt, Hex, Ptr]),
    sc!(300, fanotify_init, [Hex, Hex]),
    sc!(301, fanotify_mark, [Fd, Hex, Hex, DirFd, Path], Trace, Full),
    sc!(302, prlimit64, [Pid, Int, Ptr, Ptr]),
    sc!(303, name_to_handle_at, [DirFd, Path, Ptr, Ptr, AtFlags], Trace, Refused,
        "file handles bypass path rewriting; refused under isolation"),
    sc!(304, open_by_handle_at, [Fd, Ptr, OpenFlags], Deny(libc::EPERM), Refused,
        "opens a file by handle, bypassing path rewriting"),
    sc!(305, clock_adjtime, [Int, Ptr]),
    sc!(306, syncfs, [Fd]),
    sc!(307, sendmmsg, [Fd, Ptr, UInt, Hex], Allow, Partial, UNIX_DEST),
    sc!(308, setns, [Fd, CloneFlags], TraceWhenIsolated, Partial,
        "joining another mount namespace is refused under isolation (EPERM)"),
    sc!(309, getcpu, [Ptr, Ptr, Ptr]),
    sc!(310, process_vm_readv, [Pid, Ptr, UInt, Ptr, UInt, Hex], Trace, Full),
    sc!(311, process_vm_writev, [Pid, Ptr, UInt, Ptr, UInt, Hex], Trace, Full),
    sc!(312, kcmp, [Pid, Pid, Int, Hex, Hex]),
    sc!(313, finit_module, [Fd, Str, Hex]),
    sc!(314, sched_setattr, [Pid, Ptr, Hex]),
    sc!(315, sched_getattr, [Pid, Ptr, UInt, Hex]),
    sc!(316, renameat2, [DirFd, Path, DirFd, Path, Hex], Trace, Full),
    sc!(317, seccomp, [UInt, Hex, Ptr], Trace, Partial,
        "guest filters stack on isotrace's; user-notification listeners are refused"),
    sc!(318, getrandom, [Ptr, UInt, Hex]),
    sc!(319, memfd_create, [Str, Hex]),
    sc!(320, kexec_file_load, [Fd, Fd, UInt, Str, Hex]),
    sc!(321, bpf, [Int, Ptr, UInt], Allow, Partial,
        "bpffs paths inside bpf_attr (BPF_OBJ_PIN, BPF_OBJ_GET) are not rewritten"),
    sc!(322, execveat, [DirFd, Path, StrArray, StrArray, AtFlags], Trace, Full),
    sc!(323, userfaultfd, [Hex]),
    sc!(324, membarrier, [Int, Hex, Int]),
    sc!(325, mlock2, [Ptr, UInt, Hex]),
    sc!(326, copy_file_range, [Fd, Ptr, Fd, Ptr, UInt, Hex]),
    sc!(327, preadv2, [Fd, Ptr, UInt, Int, Int, Hex]),
    sc!(328, pwritev2, [Fd, Ptr, UInt, Int, Int, Hex]),
    sc!(329, pkey_mprotect, [Ptr, UInt, Prot, Int], TraceIfAddrBelowScratch(0), Full),
    sc!(330, pkey_alloc, [Hex, Hex]),
    sc!(331, pkey_free, [Int]),
    sc!(332, statx, [DirFd, Path, AtFlags, Hex, Ptr], Trace, Full),
    sc!(333, io_pgetevents, [Hex, Int, Int, Ptr, Ptr, Ptr]),
    sc!(334, rseq, [Ptr, UInt, Hex, Hex]),
    // Linux 6.11 and 6.18. Called only from trampolines the kernel maps
    // (SIGILL from anywhere else), and seccomp skips them.
    sc!(335, uretprobe, [], Allow, Native, UPROBE),
    sc!(336, uprobe, [], Allow, Native, UPROBE),
    // 337..=423 are unused (kept free to align with other architectures).
    sc!(424, pidfd_send_signal, [Fd, Signal, Ptr, Hex]),
    sc!(425, io_uring_setup, [UInt, Ptr], Deny(libc::ENOSYS), Refused, URING),
    sc!(426, io_uring_enter, [Fd, UInt, UInt, Hex, Ptr, UInt], Deny(libc::ENOSYS), Refused, URING),
    sc!(427, io_uring_register, [Fd, UInt, Ptr, UInt], Deny(libc::ENOSYS), Refused, URING),
    sc!(428, open_tree, [DirFd, Path, Hex], Trace, Refused, MOUNT),
    sc!(429, move_mount, [DirFd, Path, DirFd, Path, Hex], Trace, Refused, MOUNT),
    sc!(430, fsopen, [Str, Hex], Trace, Refused, MOUNT),
    // FSCONFIG_SET_PATH passes a path in arg 3.
    sc!(431, fsconfig, [Fd, UInt, Str, Ptr, Int], Trace, Refused, MOUNT),
    sc!(432, fsmount, [Fd, Hex, Hex], Trace, Refused, MOUNT),
    sc!(433, fspick, [DirFd, Path, Hex], Trace, Refused, MOUNT),
    sc!(434, pidfd_open, [Pid, Hex], Trace, Full),
    sc!(435, clone3, [Ptr, UInt]),
    sc!(436, close_range, [Fd, Fd, Hex]),
    sc!(437, openat2, [DirFd, Path, OpenHow, UInt], Trace, Full),
    sc!(438, pidfd_getfd, [Fd, Fd, Hex], Trace, Full),
    sc!(439, faccessat2, [DirFd, Path, Int, AtFlags], Trace, Full),
    sc!(440, process_madvise, [Fd, Ptr, UInt, Int, Hex], Trace, Full),
    sc!(441, epoll_pwait2, [Fd, Ptr, Int, Ptr, Ptr, UInt]),
    sc!(442, mount_setattr, [DirFd, Path, AtFlags, Ptr, UInt], Trace, Refused, MOUNT),
    sc!(443, quotactl_fd, [Fd, UInt, Int, Ptr]),
    sc!(444, landlock_create_ruleset, [Ptr, UInt, Hex]),
    sc!(445, landlock_add_rule, [Fd, Int, Ptr, Hex]),
    sc!(446, landlock_restrict_self, [Fd, Hex]),
    sc!(447, memfd_secret, [Hex]),
    sc!(448, process_mrelease, [Fd, Hex]),
    sc!(449, futex_waitv, [Ptr, UInt, Hex, Ptr, Int]),
    sc!(450, set_mempolicy_home_node, [Ptr, UInt, UInt, Hex]),
    sc!(451, cachestat, [Fd, Ptr, Ptr, Hex]),
    sc!(452, fchmodat2, [DirFd, Path, Mode, AtFlags], Trace, Full),
    sc!(453, map_shadow_stack, [Ptr, UInt, Hex], TraceIfAddrBelowScratch(0), Full),
    sc!(454, futex_wake, [Ptr, Hex, Int, Hex]),
    sc!(455, futex_wait, [Ptr, Hex, Hex, Hex, Ptr, Int]),
    sc!(456, futex_requeue, [Ptr, Hex, Int, Int]),
    sc!(457, statmount, [Ptr, Ptr, UInt, Hex], Allow, Partial, MOUNT_INFO),
    sc!(458, listmount, [Ptr, Ptr, UInt, Hex]),
    sc!(459, lsm_get_self_attr, [UInt, Ptr, Ptr, Hex]),
    sc!(460, lsm_set_self_attr, [UInt, Ptr, UInt, Hex]),
    sc!(461, lsm_list_modules, [Ptr, Ptr, Hex]),
    sc!(462, mseal, [Ptr, UInt, Hex], TraceIfAddrBelowScratch(0), Full),
    sc!(463, setxattrat, [DirFd, Path, AtFlags, Str, Ptr, UInt], Trace, Full),
    sc!(464, getxattrat, [DirFd, Path, AtFlags, Str, Ptr, UInt], Trace, Full),
    sc!(465, listxattrat, [DirFd, Path, AtFlags, Ptr, UInt], Trace, Full),
    sc!(466, removexattrat, [DirFd, Path, AtFlags, Str], Trace, Full),
    sc!(467, open_tree_attr, [DirFd, Path, Hex, Ptr, UInt], Trace, Refused, MOUNT),
    sc!(468, file_getattr, [DirFd, Path, Ptr, UInt, AtFlags], Trace, Full),
    sc!(469, file_setattr, [DirFd, Path, Ptr, UInt, AtFlags], Trace, Full),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arg, ExitStop, Support, Trap};
    use std::collections::HashSet;

    /// The last number Linux 6.18 assigns on x86_64.
    const LAST: u32 = 469;

    fn get(name: &str) -> &'static Syscall {
        TABLE.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn sorted_strictly_by_number() {
        for w in TABLE.windows(2) {
            assert!(w[0].nr < w[1].nr, "{} then {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn by_nr_finds_every_entry_and_nothing_else() {
        for s in TABLE {
            assert_eq!(crate::by_nr(u64::from(s.nr)).map(|f| f.name), Some(s.name));
        }
        for nr in [337, 423, u64::from(LAST) + 1, 1 << 30, u64::MAX] {
            assert!(crate::by_nr(nr).is_none(), "{nr}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut seen = HashSet::new();
        for s in TABLE {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
        }
    }

    #[test]
    fn covers_every_number_of_the_64_bit_abi() {
        let nrs: HashSet<u32> = TABLE.iter().map(|s| s.nr).collect();
        for nr in (0..=336).chain(424..=LAST) {
            assert!(nrs.contains(&nr), "missing {nr}");
        }
        for nr in &nrs {
            assert!(*nr <= 336 || (424..=LAST).contains(nr), "stray {nr}");
        }
    }

    #[test]
    fn numbers_agree_with_libc() {
        let known = [
            ("read", libc::SYS_read),
            ("open", libc::SYS_open),
            ("mmap", libc::SYS_mmap),
            ("mremap", libc::SYS_mremap),
            ("shmat", libc::SYS_shmat),
            ("connect", libc::SYS_connect),
            ("execve", libc::SYS_execve),
            ("getcwd", libc::SYS_getcwd),
            ("readlink", libc::SYS_readlink),
            ("ptrace", libc::SYS_ptrace),
            ("uselib", libc::SYS_uselib),
            ("pivot_root", libc::SYS_pivot_root),
            ("quotactl", libc::SYS_quotactl),
            ("security", libc::SYS_security),
            ("getdents64", libc::SYS_getdents64),
            ("vserver", libc::SYS_vserver),
            ("inotify_add_watch", libc::SYS_inotify_add_watch),
            ("openat", libc::SYS_openat),
            ("fanotify_mark", libc::SYS_fanotify_mark),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("process_vm_writev", libc::SYS_process_vm_writev),
            ("execveat", libc::SYS_execveat),
            ("statx", libc::SYS_statx),
            ("rseq", libc::SYS_rseq),
            ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
            ("io_uring_register", libc::SYS_io_uring_register),
            ("openat2", libc::SYS_openat2),
            ("faccessat2", libc::SYS_faccessat2),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("futex_waitv", libc::SYS_futex_waitv),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
        ];
        for (name, nr) in known {
            assert_eq!(i64::from(get(name).nr), nr, "{name}");
        }
    }

    #[test]
    fn every_path_call_is_trapped() {
        for s in TABLE.iter().filter(|s| s.takes_path()) {
            assert_ne!(s.trap, Trap::Allow, "{} takes a path", s.name);
        }
    }

    #[test]
    fn rows_are_consistent() {
        for s in TABLE {
            assert!(s.args.len() <= 6, "{}", s.name);
            if let Trap::TraceIfAddrBelowScratch(i) = s.trap {
                assert_eq!(s.args.get(usize::from(i)), Some(&Arg::Ptr), "{}", s.name);
            }
            if s.exit == ExitStop::WhenIsolated {
                assert_eq!(s.trap, Trap::Trace, "{}", s.name);
            }
            match s.support {
                Support::Native => assert_eq!(s.trap, Trap::Allow, "{}", s.name),
                Support::Partial | Support::Refused => assert!(!s.note.is_empty(), "{}", s.name),
                Support::Full => {}
            }
            if let Trap::Deny(e) = s.trap {
                assert_eq!(s.support, Support::Refused, "{}", s.name);
                // RET_ERRNO with 0 would make the call "succeed" unexecuted.
                assert!((1..4096).contains(&e), "{}", s.name);
            }
        }
    }

    #[test]
    fn io_uring_and_handles_are_refused_by_the_filter() {
        for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
            assert_eq!(get(name).trap, Trap::Deny(libc::ENOSYS));
        }
        assert_eq!(get("open_by_handle_at").trap, Trap::Deny(libc::EPERM));
        assert_eq!(get("name_to_handle_at").trap, Trap::Trace);
    }

    #[test]
    fn fd_metadata_calls_trap_only_while_the_host_is_writable() {
        use crate::Mode;
        for name in ["fchmod", "fchown", "fsetxattr", "fremovexattr"] {
            let s = get(name);
            assert_eq!(s.effective_trap(Mode::Isolated), Trap::Trace, "{name}");
            assert_eq!(s.effective_trap(Mode::ReadOnlyHost), Trap::Allow, "{name}");
            assert_eq!(s.effective_trap(Mode::Native), Trap::Allow, "{name}");
        }
        let utimensat = get("utimensat");
        assert_eq!(utimensat.effective_trap(Mode::Isolated), Trap::Trace);
        for mode in [Mode::ReadOnlyHost, Mode::Native] {
            assert_eq!(
                utimensat.effective_trap(mode),
                Trap::TraceIfNonNullOrHostWritable(1)
            );
        }
        // The way out of the read-only namespace stays trapped.
        assert_eq!(get("setns").effective_trap(Mode::ReadOnlyHost), Trap::Trace);
        assert_eq!(
            get("setuid").effective_trap(Mode::ReadOnlyHost),
            Trap::Trace
        );
    }

    #[test]
    fn results_naming_paths_stop_at_exit() {
        let want = [
            "getcwd",
            "readlink",
            "readlinkat",
            "getdents",
            "getdents64",
            "getsockname",
            "getpeername",
        ];
        for s in TABLE {
            let stops = s.exit == ExitStop::WhenIsolated;
            assert_eq!(stops, want.contains(&s.name), "{}", s.name);
        }
    }

    #[test]
    fn dirfd_pairs_with_its_path() {
        let openat = get("openat");
        assert_eq!(openat.path_args().collect::<Vec<_>>(), [1]);
        assert_eq!(openat.dirfd_for(1), Some(0));
        let renameat = get("renameat2");
        assert_eq!(renameat.path_args().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(renameat.dirfd_for(1), Some(0));
        assert_eq!(renameat.dirfd_for(3), Some(2));
        assert_eq!(get("symlinkat").dirfd_for(2), Some(1));
        assert_eq!(get("fanotify_mark").dirfd_for(4), Some(3));
        assert_eq!(get("inotify_add_watch").dirfd_for(1), None);
        assert_eq!(get("open").dirfd_for(0), None);
    }
}
