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

/// How a syscall number takes part, before its arguments are looked at:
/// Open (decided by its flags) or a fixed class. Built once from the
/// names above, so the hot path is one array index, not string compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Fixed(Gate),
    /// open/openat: the flags argument (its index) decides.
    OpenFlags(usize),
}

fn class_of(nr: u32) -> Class {
    static TABLE: std::sync::OnceLock<Vec<Class>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let max = isotrace_arch::native::TABLE
            .iter()
            .map(|s| s.nr)
            .max()
            .unwrap_or(0);
        let mut t = vec![Class::Fixed(Gate::Free); max as usize + 1];
        for sc in isotrace_arch::native::TABLE {
            let class = match sc.name {
                "open" => Class::OpenFlags(1),
                "openat" => Class::OpenFlags(2),
                n if EXCLUSIVE.contains(&n) => Class::Fixed(Gate::Exclusive),
                n if SHARED.contains(&n) => Class::Fixed(Gate::Shared),
                _ => Class::Fixed(Gate::Free),
            };
            t[sc.nr as usize] = class;
        }
        t
    });
    table
        .get(nr as usize)
        .copied()
        .unwrap_or(Class::Fixed(Gate::Free))
}

pub fn of(sc: &Syscall, args: &[u64; 6]) -> Gate {
    match class_of(sc.nr) {
        Class::Fixed(g) => g,
        Class::OpenFlags(i) if args[i] & WRITES != 0 => Gate::Shared,
        Class::OpenFlags(_) => Gate::Free,
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
