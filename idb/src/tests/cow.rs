//! Copy-up, create and whiteout on real files.

use super::sandbox::Sandbox;
use crate::fs::Kind;
use crate::{copy_up, finish_create, prepare_create, sys, whiteout, Loc};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn set_mtime(p: &Path, sec: i64) {
    sys::set_times_nofollow(p, (sec - 100, 7), (sec, 123_456_789)).unwrap();
}

#[test]
fn copy_up_keeps_content_mode_times_and_xattrs() {
    let sb = Sandbox::new();
    let p = sb.write("etc/app.conf", b"key=value\n", 0o4751);
    set_mtime(&p, 1_000_000_000);
    let has_xattr = sys::set_xattr(&p, b"user.isotrace", b"v1").is_ok();
    let r = sb.resolve(&p, true);
    assert_eq!(r.loc, Some(Loc::Host));
    let real = copy_up(&sb.view, &r).unwrap();
    assert_eq!(real, sb.upper(&p));
    let (a, b) = (fs::metadata(&p).unwrap(), fs::metadata(&real).unwrap());
    assert_eq!(fs::read(&real).unwrap(), b"key=value\n");
    assert_eq!(b.mode() & 0o7777, 0o4751);
    assert_eq!((b.mtime(), b.mtime_nsec()), (1_000_000_000, 123_456_789));
    // The atime before the copy read the file (relatime may bump the host's).
    assert_eq!((b.atime(), b.atime_nsec()), (999_999_900, 7));
    assert_eq!((b.uid(), b.gid()), (a.uid(), a.gid()));
    if has_xattr {
        assert_eq!(sys::get_xattr(&real, b"user.isotrace").unwrap(), b"v1");
    }
    assert_eq!(sb.resolve(&p, true).loc, Some(Loc::Upper));
    assert_eq!(fs::read(&p).unwrap(), b"key=value\n", "host untouched");
    assert!(sb.work_is_empty());
    // Already up: returned as is.
    assert_eq!(copy_up(&sb.view, &sb.resolve(&p, true)).unwrap(), real);
}

#[test]
fn copy_up_keeps_the_owner_when_root() {
    let sb = Sandbox::new();
    let p = sb.write("owned", b"x", 0o640);
    if std::os::unix::fs::lchown(&p, Some(1234), Some(5678)).is_err() {
        return; // not root: owner is best effort, nothing to check
    }
    let real = copy_up(&sb.view, &sb.resolve(&p, true)).unwrap();
    let m = fs::metadata(real).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o640));
}

#[test]
fn copy_up_creates_parents_like_the_host_ones() {
    let sb = Sandbox::new();
    let p = sb.write("a/b/c/file", b"deep", 0o600);
    let b = sb.host("a/b");
    fs::set_permissions(&b, fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&b, 900_000_000);
    copy_up(&sb.view, &sb.resolve(&p, true)).unwrap();
    let ub = fs::metadata(sb.upper(&b)).unwrap();
    assert!(ub.is_dir());
    assert_eq!(ub.mode() & 0o7777, 0o750);
    assert_eq!(
        ub.mtime(),
        900_000_000,
        "parent times survive the child's rename"
    );
    let c = sb.resolve(&sb.host("a/b/c"), true);
    assert_eq!((c.loc, c.merged), (Some(Loc::Upper), true));
    assert_eq!(fs::read(sb.upper(&p)).unwrap(), b"deep");
}

#[test]
fn copy_up_of_symlinks_and_directories() {
    let sb = Sandbox::new();
    sb.write("d/f", b"f", 0o644);
    let link = sb.host("d/link");
    std::os::unix::fs::symlink("f", &link).unwrap();
    let r = sb.resolve(&link, false);
    assert_eq!(r.kind, Some(Kind::Symlink));
    let real = copy_up(&sb.view, &r).unwrap();
    assert_eq!(fs::read_link(&real).unwrap(), Path::new("f"));
    let d = sb.host("d");
    let up = copy_up(&sb.view, &sb.resolve(&d, true)).unwrap();
    assert!(fs::metadata(&up).unwrap().is_dir());
    // The directory's host entries stay visible through the merged view.
    assert_eq!(sb.resolve(&sb.host("d/f"), true).loc, Some(Loc::Host));
}

#[test]
fn copy_up_refuses_what_is_not_there() {
    let sb = Sandbox::new();
    let r = sb.resolve(&sb.host("nope"), true);
    assert_eq!(copy_up(&sb.view, &r).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn create_over_a_whiteout_and_opaque_directories() {
    let sb = Sandbox::new();
    sb.write("dir/old", b"old", 0o644);
    let d = sb.host("dir");
    // rm dir/old; rmdir dir (through the merged view).
    crate::cow::unlink(&sb.view, &sb.resolve(&sb.host("dir/old"), true)).unwrap();
    crate::cow::rmdir(&sb.view, &sb.resolve(&d, true)).unwrap();
    assert_eq!(sb.resolve(&d, true).loc, None);
    assert!(d.join("old").exists(), "host untouched");
    // mkdir dir: created beside its whiteout, already opaque.
    let r = sb.resolve(&d, true);
    let real = prepare_create(&sb.view, &r).unwrap();
    fs::create_dir(&real).unwrap();
    assert_eq!(sb.resolve(&d.join("old"), true).loc, None);
    finish_create(&sb.view, &d).unwrap();
    let wh = sb.upper(&sb.host(".wh.dir"));
    assert!(!wh.exists(), "whiteout dropped");
    assert!(real.join(".wh..wh..opq").exists(), "marked opaque");
    assert_eq!(sb.resolve(&d.join("old"), true).loc, None);
    assert_eq!(sb.resolve(&d, true).loc, Some(Loc::Upper));
    assert!(sb.work_is_empty());
}

#[test]
fn create_checks() {
    let sb = Sandbox::new();
    let p = sb.write("x", b"x", 0o644);
    let e = prepare_create(&sb.view, &sb.resolve(&p, true)).unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    let mut r = sb.resolve(&sb.host("new"), true);
    assert_eq!(
        prepare_create(&sb.view, &r).unwrap(),
        sb.upper(&sb.host("new"))
    );
    r.public = sb.host(".wh.new");
    assert_eq!(
        prepare_create(&sb.view, &r).unwrap_err().errno(),
        libc::EPERM
    );
}

#[test]
fn whiteouts_are_empty_0600_files() {
    let sb = Sandbox::new();
    let p = sb.write("gone", b"x", 0o644);
    assert!(whiteout(&sb.view, &p).unwrap());
    let wh = sb.upper(&sb.host(".wh.gone"));
    let m = fs::metadata(&wh).unwrap();
    assert_eq!((m.len(), m.mode() & 0o7777, m.is_file()), (0, 0o600, true));
    assert_eq!(sb.resolve(&p, true).loc, None);
    // Nothing on the host: no whiteout needed.
    assert!(!whiteout(&sb.view, &sb.host("never")).unwrap());
}

/// Disk full during copy-up: ENOSPC, and nothing half-copied left. Needs a
/// small tmpfs, so it runs as root only (CI is root).
#[test]
fn copy_up_on_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    }
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _guard = Umount(&mnt);
    let sb = Sandbox::with_store(Some(&mnt.join("store")));
    let p = sb.write("big", &vec![7u8; 1 << 20], 0o644);
    let e = copy_up(&sb.view, &sb.resolve(&p, true)).unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
    assert!(!sb.upper(&p).exists());
    assert!(sb.work_is_empty(), "temp cleaned");
    assert_eq!(sb.resolve(&p, true).loc, Some(Loc::Host));
}
