//! What a path-taking syscall does to each of its paths, as far as the
//! copy-on-write layer is concerned. Pure: decided from the syscall and its
//! flag arguments only.

use isotrace_arch::Syscall;

/// The effect of a syscall on one path argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Only looks (stat, access, open for reading, readlink, exec, chdir).
    Read,
    /// Changes an existing object in place (open for writing, truncate,
    /// chmod, chown, utimes, xattrs): the object is copied up first.
    Modify,
    /// Creates the object if missing, else modifies or reads it (open with
    /// O_CREAT): `write` says whether the existing object is written.
    CreateOrOpen { write: bool },
    /// Creates a new name (mkdir, mknod, symlink's link path, link's new
    /// path, bind of a unix socket); fails with EEXIST if it exists.
    Create,
    /// Removes a name (unlink, rmdir).
    Remove { dir: bool },
    /// The source of a rename: it moves away and leaves a whiteout.
    RenameFrom,
    /// The target of a rename: created or replaced.
    RenameTo,
    /// The mount API, chroot, pivot_root, name_to_handle_at: refused under
    /// isolation, where they could see or change the real tree.
    Refuse,
}

/// How one path argument is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathUse {
    pub idx: usize,
    pub op: Op,
    /// Resolve a final symlink (stat) or act on the link itself (lstat).
    pub follow: bool,
    /// AT_EMPTY_PATH was given: an empty path names the dirfd itself.
    pub empty_ok: bool,
}

const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u64 = 0o2000;
const O_NOFOLLOW: u64 = 0o400000;
const O_TMPFILE: u64 = 0o20200000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_SYMLINK_FOLLOW: u64 = 0x400;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_REMOVEDIR: u64 = 0x200;

/// What an `open` with these flags does to its path.
pub fn open_op(flags: u64) -> (Op, bool) {
    let write = flags & O_ACCMODE != 0 || flags & (O_TRUNC | O_APPEND) != 0;
    let follow = flags & O_NOFOLLOW == 0;
    if flags & O_TMPFILE == O_TMPFILE {
        // An unnamed file in the directory: the directory gets written.
        return (Op::CreateOrOpen { write: true }, true);
    }
    let op = if flags & O_CREAT != 0 {
        Op::CreateOrOpen { write }
    } else if write {
        Op::Modify
    } else {
        Op::Read
    };
    (op, follow)
}

/// The treatment of every path argument of a trapped call; `None` for a
/// call isolation does not know how to handle (refused by the caller).
pub fn classify(sc: &Syscall, args: &[u64; 6]) -> Option<Vec<PathUse>> {
    let one = |idx, op, follow| {
        Some(vec![PathUse {
            idx,
            op,
            follow,
            empty_ok: false,
        }])
    };
    let at = |idx: usize, op, flag_idx: usize| {
        let flags = args[flag_idx];
        Some(vec![PathUse {
            idx,
            op,
            follow: flags & AT_SYMLINK_NOFOLLOW == 0,
            empty_ok: flags & AT_EMPTY_PATH != 0,
        }])
    };
    match sc.name {
        "open" | "creat" => {
            let flags = if sc.name == "creat" {
                O_CREAT | O_TRUNC | 1
            } else {
                args[1]
            };
            let (op, follow) = open_op(flags);
            one(0, op, follow)
        }
        "openat" => {
            let (op, follow) = open_op(args[2]);
            one(1, op, follow)
        }
        // openat2's flags live in struct open_how; the caller reads them.
        "openat2" => None,
        "stat" | "access" | "chdir" | "execve" | "statfs" | "getxattr" | "listxattr" | "uselib"
        | "utime" | "utimes" | "truncate" | "chmod" | "chown" | "setxattr" | "removexattr"
        | "acct" | "swapon" | "swapoff" | "inotify_add_watch" => {
            let idx = if sc.name == "inotify_add_watch" { 1 } else { 0 };
            let op = match sc.name {
                "utime" | "utimes" | "truncate" | "chmod" | "chown" | "setxattr"
                | "removexattr" => Op::Modify,
                "acct" | "swapon" | "swapoff" => Op::Refuse,
                _ => Op::Read,
            };
            one(idx, op, true)
        }
        "lstat" | "readlink" | "lgetxattr" | "llistxattr" => one(0, Op::Read, false),
        "lchown" | "lsetxattr" | "lremovexattr" => one(0, Op::Modify, false),
        "newfstatat" | "statx" | "faccessat2" | "execveat" | "fchownat" | "fchmodat2" => {
            let (op, flag_idx) = match sc.name {
                "newfstatat" | "statx" => (Op::Read, if sc.name == "statx" { 2 } else { 3 }),
                "faccessat2" => (Op::Read, 3),
                "execveat" => (Op::Read, 4),
                "fchownat" => (Op::Modify, 4),
                _ => (Op::Modify, 3),
            };
            at(1, op, flag_idx)
        }
        "faccessat" | "readlinkat" | "futimesat" => {
            let op = if sc.name == "futimesat" {
                Op::Modify
            } else {
                Op::Read
            };
            one(1, op, sc.name == "faccessat")
        }
        "fchmodat" => one(1, Op::Modify, true),
        "file_getattr" => at(1, Op::Read, 4),
        "file_setattr" => at(1, Op::Modify, 4),
        // utimensat(dirfd, NULL, ...) acts on the dirfd itself.
        "utimensat" => at(1, Op::Modify, 3),
        "mkdir" | "mknod" => one(0, Op::Create, false),
        "mkdirat" | "mknodat" => one(1, Op::Create, false),
        "unlink" => one(0, Op::Remove { dir: false }, false),
        "rmdir" => one(0, Op::Remove { dir: true }, false),
        "unlinkat" => one(
            1,
            Op::Remove {
                dir: args[2] & AT_REMOVEDIR != 0,
            },
            false,
        ),
        "symlink" => one(1, Op::Create, false),
        "symlinkat" => one(2, Op::Create, false),
        // The link must share the environment's copy of the source, never
        // the host's inode: the source is copied up first.
        "link" => Some(vec![use_(0, Op::Modify, false), use_(1, Op::Create, false)]),
        "linkat" => Some(vec![
            PathUse {
                idx: 1,
                op: Op::Modify,
                follow: args[4] & AT_SYMLINK_FOLLOW != 0,
                empty_ok: args[4] & AT_EMPTY_PATH != 0,
            },
            use_(3, Op::Create, false),
        ]),
        "rename" => Some(vec![
            use_(0, Op::RenameFrom, false),
            use_(1, Op::RenameTo, false),
        ]),
        "renameat" | "renameat2" => Some(vec![
            use_(1, Op::RenameFrom, false),
            use_(3, Op::RenameTo, false),
        ]),
        "getxattrat" | "listxattrat" | "setxattrat" | "removexattrat" => {
            let op = if sc.name.starts_with("getx") || sc.name.starts_with("listx") {
                Op::Read
            } else {
                Op::Modify
            };
            at(1, op, 2)
        }
        "mount" | "umount2" | "pivot_root" | "chroot" | "name_to_handle_at" | "open_tree"
        | "move_mount" | "fspick" | "mount_setattr" | "open_tree_attr" | "fanotify_mark"
        | "quotactl" => Some(sc.path_args().map(|i| use_(i, Op::Refuse, false)).collect()),
        _ => None,
    }
}

fn use_(idx: usize, op: Op, follow: bool) -> PathUse {
    PathUse {
        idx,
        op,
        follow,
        empty_ok: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(n: &str) -> &'static Syscall {
        isotrace_arch::by_name(n).unwrap()
    }

    #[test]
    fn open_flags() {
        assert_eq!(open_op(0), (Op::Read, true));
        assert_eq!(open_op(1), (Op::Modify, true));
        assert_eq!(
            open_op(O_CREAT | 1),
            (Op::CreateOrOpen { write: true }, true)
        );
        assert_eq!(open_op(O_NOFOLLOW), (Op::Read, false));
        assert_eq!(open_op(O_TRUNC), (Op::Modify, true));
    }

    #[test]
    fn every_trapped_path_call_is_classified_or_knowingly_left_out() {
        let args = [0u64; 6];
        for s in isotrace_arch::native::TABLE
            .iter()
            .filter(|s| s.takes_path())
        {
            let known = classify(s, &args);
            if s.name == "openat2" {
                assert!(known.is_none());
                continue;
            }
            let uses = known.unwrap_or_else(|| panic!("{} is not classified", s.name));
            let mut idx: Vec<usize> = uses.iter().map(|u| u.idx).collect();
            idx.sort();
            let want: Vec<usize> = s.path_args().collect();
            assert_eq!(
                idx, want,
                "{}: classified args differ from the table",
                s.name
            );
        }
    }

    #[test]
    fn at_flags() {
        let u = classify(
            sc("newfstatat"),
            &[0, 0, 0, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, 0, 0],
        )
        .unwrap();
        assert!(!u[0].follow && u[0].empty_ok);
        let u = classify(sc("unlinkat"), &[0, 0, AT_REMOVEDIR, 0, 0, 0]).unwrap();
        assert_eq!(u[0].op, Op::Remove { dir: true });
    }
}
