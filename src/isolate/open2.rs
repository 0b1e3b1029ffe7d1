//! The open family re-issued as openat2(2) with RESOLVE_NO_SYMLINKS.
//!
//! The supervisor resolves every symlink of a path itself, so the real path
//! it hands the kernel has none. If one appears there between that check and
//! the kernel's walk (another thread renamed a private directory away and
//! put a symlink in its place), the kernel would follow it out of the view.
//! openat2 with RESOLVE_NO_SYMLINKS makes the walk fail with ELOOP instead.
//! Paths under /proc keep their magic links and are left as they are.

use isotrace_tracer::{Action, Call, SYSCALL_NR};

/// VALID_OPEN_FLAGS of include/linux/fcntl.h: openat2 refuses any other bit
/// (openat ignores them).
pub const VALID_OPEN_FLAGS: u64 = 0o3
    | 0o100
    | 0o200
    | 0o400
    | 0o1000
    | 0o2000
    | 0o4000
    | 0o10000
    | 0o20000
    | 0o40000
    | 0o100000
    | 0o200000
    | 0o400000
    | 0o1000000
    | 0o2000000
    | 0o4010000
    | 0o10000000
    | 0o20200000;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_WRONLY: u64 = 0o1;
const O_TMPFILE: u64 = 0o20200000;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const AT_FDCWD: u64 = -100i64 as u64;

/// For open/openat/creat with a rewritten path: the openat2 form. Gives the
/// paths back unchanged when the call is not of that family or the path is
/// one the kernel must walk with its magic links.
pub fn harden(call: &Call, paths: Vec<(usize, Vec<u8>)>) -> Result<Action, Vec<(usize, Vec<u8>)>> {
    let (path_idx, flags, mode) = match call.sc.name {
        "open" => (0, call.args[1], call.args[2]),
        "openat" => (1, call.args[2], call.args[3]),
        "creat" => (0, O_CREAT | O_WRONLY | O_TRUNC, call.args[1]),
        _ => return Err(paths),
    };
    let [(idx, real)] = paths.as_slice() else {
        return Err(paths);
    };
    if *idx != path_idx || !real.starts_with(b"/") || real.starts_with(b"/proc/") {
        return Err(paths);
    }
    let Some(openat2) = isotrace_arch::by_name("openat2") else {
        return Err(paths);
    };
    let flags = flags & VALID_OPEN_FLAGS;
    // openat2 refuses a mode without O_CREAT/O_TMPFILE, and bits beyond 07777.
    let mode = if flags & O_CREAT != 0 || flags & O_TMPFILE == O_TMPFILE {
        mode & 0o7777
    } else {
        0
    };
    let mut how = Vec::with_capacity(24);
    how.extend_from_slice(&flags.to_ne_bytes());
    how.extend_from_slice(&mode.to_ne_bytes());
    how.extend_from_slice(&RESOLVE_NO_SYMLINKS.to_ne_bytes());
    Ok(Action::Rewrite {
        paths: vec![(1, real.clone()), (2, how)],
        args: vec![(SYSCALL_NR, u64::from(openat2.nr)), (0, AT_FDCWD), (3, 24)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: [u64; 6]) -> Call {
        Call {
            tid: 1,
            pid: 1,
            sc: isotrace_arch::by_name(name).unwrap(),
            args,
            paths: Vec::new(),
        }
    }

    #[test]
    fn openat_becomes_openat2_without_symlinks() {
        let c = call("openat", [3, 0, O_CREAT | 1 | 0x8000_0000, 0o100644, 0, 0]);
        let Ok(Action::Rewrite { paths, args }) = harden(&c, vec![(1, b"/up/x".to_vec())]) else {
            panic!("not hardened");
        };
        assert_eq!(paths[0], (1, b"/up/x".to_vec()));
        let how = &paths[1].1;
        let word = |i: usize| u64::from_ne_bytes(how[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(word(0), O_CREAT | 1, "unknown flag bits are dropped");
        assert_eq!(word(1), 0o644, "file type bits are dropped from the mode");
        assert_eq!(word(2), RESOLVE_NO_SYMLINKS);
        assert!(args.contains(&(SYSCALL_NR, 437)));
        assert!(args.contains(&(0, AT_FDCWD)));
    }

    #[test]
    fn proc_paths_and_other_calls_are_left_alone() {
        let c = call("openat", [0, 0, 0, 0, 0, 0]);
        assert!(harden(&c, vec![(1, b"/proc/self/fd/0".to_vec())]).is_err());
        let c = call("stat", [0; 6]);
        assert!(harden(&c, vec![(0, b"/x".to_vec())]).is_err());
        let c = call("open", [0, 0, 0o644, 0, 0, 0]);
        let Ok(Action::Rewrite { paths, .. }) = harden(&c, vec![(0, b"/x".to_vec())]) else {
            panic!("not hardened");
        };
        assert_eq!(
            &paths[1].1[8..16],
            &0u64.to_ne_bytes(),
            "no mode without O_CREAT"
        );
    }
}
