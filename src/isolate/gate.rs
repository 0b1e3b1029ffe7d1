//! Which trapped calls take part in the tracer's namespace gate
//! (`isotrace_tracer::gate`), and how: the calls that can put a symlink
//! where a directory was run alone (Exclusive); those that change or
//! create objects at a path the policy resolved, directly or through the
//! supervisor's copy-up, run together (Shared). Read-only calls are Free:
//! a raced lookup can only show them what the host shows anyway. Opens for
//! reading are Free; opens that may write or create are Shared, since the
//! supervisor may copy the file up or create its parents for them.

use isotrace_arch::Syscall;
use isotrace_tracer::gate::Gate;

const EXCLUSIVE: &[&str] = &[
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
];

const SHARED: &[&str] = &[
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "unlink",
    "unlinkat",
    "rmdir",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchown",
    "fchownat",
    "truncate",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "setxattrat",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "removexattrat",
    "bind",
    "creat",
    "openat2",
];

const WRITES: u64 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64;

pub fn of(sc: &Syscall, args: &[u64; 6]) -> Gate {
    let name = sc.name;
    if EXCLUSIVE.contains(&name) {
        return Gate::Exclusive;
    }
    let open_flags = match name {
        "open" => Some(args[1]),
        "openat" => Some(args[2]),
        _ => None,
    };
    match open_flags {
        Some(flags) if flags & WRITES != 0 => Gate::Shared,
        Some(_) => Gate::Free,
        None if SHARED.contains(&name) => Gate::Shared,
        None => Gate::Free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(name: &str, args: [u64; 6]) -> Gate {
        of(isotrace_arch::by_name(name).expect(name), &args)
    }

    #[test]
    fn classes() {
        assert_eq!(gate("renameat2", [0; 6]), Gate::Exclusive);
        assert_eq!(gate("symlink", [0; 6]), Gate::Exclusive);
        assert_eq!(gate("mkdirat", [0; 6]), Gate::Shared);
        assert_eq!(gate("newfstatat", [0; 6]), Gate::Free);
        assert_eq!(
            gate("openat", [0, 0, libc::O_RDONLY as u64, 0, 0, 0]),
            Gate::Free
        );
        let creat = (libc::O_WRONLY | libc::O_CREAT) as u64;
        assert_eq!(gate("openat", [0, 0, creat, 0, 0, 0]), Gate::Shared);
        assert_eq!(
            gate("open", [0, libc::O_RDWR as u64, 0, 0, 0, 0]),
            Gate::Shared
        );
    }

    #[test]
    fn every_name_is_a_syscall() {
        for n in EXCLUSIVE.iter().chain(SHARED) {
            assert!(isotrace_arch::by_name(n).is_some(), "{n}");
        }
    }
}
