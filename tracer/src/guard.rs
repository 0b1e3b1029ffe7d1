//! The mechanism's self-protection, applied before the policy sees a call.
//!
//! These are not policy choices: they keep the supervisor's own invariants
//! (its process cannot be ptraced or written, its scratch region cannot be
//! unmapped or rewritten, no seccomp listener can outrank its filter).
//! Anything that would break them is refused whatever the policy says.

use crate::policy::Action;
use crate::scratch::{self, SCRATCH_END};
use isotrace_arch::Syscall;
use nix::errno::Errno;

/// SECCOMP_SET_MODE_FILTER and SECCOMP_FILTER_FLAG_NEW_LISTENER from
/// <linux/seccomp.h>. A filter returning SECCOMP_RET_USER_NOTIF takes
/// precedence over our RET_TRACE (seccomp(2), "Filter return values"), so a
/// tracee holding a listener could answer path syscalls itself.
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;
const MREMAP_FIXED: u64 = 2;

/// What the guard decides for one call: `None` lets the policy decide.
pub fn check(sc: &Syscall, args: &[u64; 6], supervisor: i32) -> Option<Action> {
    let deny = |e| Some(Action::Deny(e));
    let targets_us = |a: u64| a as i32 == supervisor;
    match sc.name {
        "ptrace" if targets_us(args[1]) => deny(Errno::EPERM),
        "process_vm_readv" | "process_vm_writev" | "pidfd_open" if targets_us(args[0]) => {
            deny(Errno::EPERM)
        }
        "seccomp"
            if args[0] == SECCOMP_SET_MODE_FILTER
                && args[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 =>
        {
            deny(Errno::EPERM)
        }
        "mmap" => check_mmap(args),
        "munmap" | "mprotect" | "pkey_mprotect" | "madvise" | "mseal" | "remap_file_pages"
        | "map_shadow_stack"
            if scratch::overlaps(args[0], args[1]) =>
        {
            deny(Errno::EPERM)
        }
        "mremap"
            if scratch::overlaps(args[0], args[1])
                || (args[3] & MREMAP_FIXED != 0 && scratch::overlaps(args[4], args[2])) =>
        {
            deny(Errno::EPERM)
        }
        "shmat" if args[1] != 0 && args[1] < SCRATCH_END => deny(Errno::EPERM),
        "shmdt" if scratch::overlaps(args[0], 1) => deny(Errno::EINVAL),
        _ => None,
    }
}

fn check_mmap(args: &[u64; 6]) -> Option<Action> {
    let (addr, len, flags) = (args[0], args[1], args[3]);
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) as u64 != 0;
    // Without MAP_FIXED, address 0 means "anywhere" and never lands below
    // mmap_min_addr's neighbourhood by the kernel's own choice.
    if (addr == 0 && !fixed) || !scratch::overlaps(addr, len) {
        return None;
    }
    if fixed {
        Some(Action::Deny(Errno::EPERM))
    } else {
        // A plain hint: drop it, as the kernel may ignore it anyway (mmap(2)).
        Some(Action::Rewrite {
            paths: Vec::new(),
            args: vec![(0, 0)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::SCRATCH_BASE;

    fn sc(name: &str) -> &'static Syscall {
        isotrace_arch::by_name(name).expect(name)
    }

    #[test]
    fn refuses_ptrace_of_supervisor_only() {
        assert_eq!(
            check(sc("ptrace"), &[16, 42, 0, 0, 0, 0], 42),
            Some(Action::Deny(Errno::EPERM))
        );
        assert_eq!(check(sc("ptrace"), &[16, 43, 0, 0, 0, 0], 42), None);
    }

    #[test]
    fn scratch_region_is_untouchable() {
        let a = [SCRATCH_BASE, 4096, 0, 0, 0, 0];
        assert!(check(sc("munmap"), &a, 1).is_some());
        assert!(check(sc("mprotect"), &[0, u64::MAX, 7, 0, 0, 0], 1).is_some());
        assert!(check(sc("munmap"), &[SCRATCH_END, 4096, 0, 0, 0, 0], 1).is_none());
        let fixed = libc::MAP_FIXED as u64;
        assert!(matches!(
            check(sc("mmap"), &[SCRATCH_BASE, 4096, 3, fixed, 0, 0], 1),
            Some(Action::Deny(_))
        ));
        assert!(matches!(
            check(sc("mmap"), &[SCRATCH_BASE, 4096, 3, 0x22, 0, 0], 1),
            Some(Action::Rewrite { .. })
        ));
        assert!(check(sc("mmap"), &[0, 4096, 3, 0x22, 0, 0], 1).is_none());
        assert!(check(sc("mmap"), &[0, 1 << 20, 3, 0x22 | fixed, 0, 0], 1).is_some());
    }

    #[test]
    fn refuses_seccomp_listener() {
        assert!(check(sc("seccomp"), &[1, 8, 0, 0, 0, 0], 1).is_some());
        assert!(check(sc("seccomp"), &[1, 0, 0, 0, 0, 0], 1).is_none());
    }
}
