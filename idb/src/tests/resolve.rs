//! Merged-view resolution over the fake filesystem.

use super::fake::{view, view_with, FakeFs, UPPER};
use crate::{resolve, Kind, Loc, ResolveError, Resolved, Rules};
use std::path::{Path, PathBuf};

fn res(fs: &FakeFs, path: &str) -> Result<Resolved, ResolveError> {
    resolve(&view(), fs, Path::new("/"), path.as_bytes(), true)
}

fn ok(fs: &FakeFs, path: &str) -> Resolved {
    res(fs, path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn up(p: &str) -> PathBuf {
    PathBuf::from(format!("{UPPER}{p}"))
}

fn host() -> FakeFs {
    let mut fs = FakeFs::new();
    fs.file("/etc/passwd")
        .file("/etc/hosts")
        .dir("/usr/lib")
        .file("/usr/lib/libc.so");
    fs.symlink("/lib", "usr/lib")
        .dir("/tmp")
        .other("/dev/null")
        .dir("/devices");
    fs.symlink("/proc/self", "4242").dir("/proc/4242/fd");
    fs.symlink("/proc/4242/root", "/")
        .symlink("/proc/4242/fd/3", "/etc/passwd");
    fs.symlink("/proc/mounts", "self/mounts");
    fs
}

#[test]
fn plain_host_path() {
    let r = ok(&host(), "/etc/passwd");
    assert_eq!(r.loc, Some(Loc::Host));
    assert_eq!(r.kind, Some(Kind::File));
    assert_eq!(r.public, Path::new("/etc/passwd"));
    assert_eq!(r.real, Path::new("/etc/passwd"));
}

#[test]
fn upper_shadows_host() {
    let mut fs = host();
    fs.up_file("/etc/passwd");
    let r = ok(&fs, "/etc/passwd");
    assert_eq!(r.loc, Some(Loc::Upper));
    assert_eq!(r.real, up("/etc/passwd"));
    // The directory is in upper and still merged with the host.
    let d = ok(&fs, "/etc");
    assert_eq!((d.loc, d.merged), (Some(Loc::Upper), true));
    assert_eq!(ok(&fs, "/etc/hosts").loc, Some(Loc::Host));
}

#[test]
fn whiteout_hides_host() {
    let mut fs = host();
    fs.up_file("/etc/.wh.passwd");
    let r = ok(&fs, "/etc/passwd");
    assert_eq!(r.loc, None);
    assert_eq!(r.real, up("/etc/passwd"));
    assert_eq!(
        res(&fs, "/etc/passwd/x"),
        Err(ResolveError::NotFound("/etc/passwd".into()))
    );
    assert_eq!(ok(&fs, "/etc/hosts").loc, Some(Loc::Host));
}

#[test]
fn opaque_dir_hides_host_entries_below_it() {
    let mut fs = host();
    fs.file("/opt/a").file("/opt/sub/c");
    fs.up_file("/opt/.wh..wh..opq")
        .up_file("/opt/b")
        .up_dir("/opt/sub");
    assert_eq!(ok(&fs, "/opt/a").loc, None);
    assert_eq!(ok(&fs, "/opt/b").loc, Some(Loc::Upper));
    let sub = ok(&fs, "/opt/sub");
    assert!(!sub.merged, "opacity is inherited by subdirectories");
    assert_eq!(ok(&fs, "/opt/sub/c").loc, None);
}

#[test]
fn dir_beside_its_own_whiteout_is_opaque() {
    let mut fs = host();
    fs.file("/opt/d/old");
    fs.up_file("/opt/.wh.d").up_dir("/opt/d");
    assert_eq!(ok(&fs, "/opt/d").loc, Some(Loc::Upper));
    assert_eq!(ok(&fs, "/opt/d/old").loc, None);
}

#[test]
fn upper_symlink_to_host_path() {
    let mut fs = host();
    fs.up_symlink("/home/u/link", "/etc/passwd");
    let r = ok(&fs, "/home/u/link");
    assert_eq!(
        (r.loc, r.public.as_path()),
        (Some(Loc::Host), Path::new("/etc/passwd"))
    );
    let l = resolve(&view(), &fs, Path::new("/"), b"/home/u/link", false).unwrap();
    assert_eq!((l.loc, l.kind), (Some(Loc::Upper), Some(Kind::Symlink)));
    assert_eq!(l.real, up("/home/u/link"));
}

#[test]
fn host_symlink_leads_into_upper() {
    let mut fs = host();
    fs.up_file("/usr/lib/libfoo.so");
    let r = ok(&fs, "/lib/libfoo.so");
    assert_eq!(r.loc, Some(Loc::Upper));
    assert_eq!(r.public, Path::new("/usr/lib/libfoo.so"));
    assert_eq!(r.real, up("/usr/lib/libfoo.so"));
    assert_eq!(ok(&fs, "/lib/libc.so").loc, Some(Loc::Host));
}

#[test]
fn absolute_symlink_targets_stay_in_the_view() {
    let mut fs = host();
    fs.up_symlink("/x", "/store/envs/e/upper/etc");
    fs.up_symlink("/y", "/etc");
    fs.up_symlink("/z", "/../../../store/envs");
    fs.symlink("/tmp/s", "../store");
    assert_eq!(
        res(&fs, "/x/passwd"),
        Err(ResolveError::Hidden("/store".into()))
    );
    assert_eq!(res(&fs, "/z"), Err(ResolveError::Hidden("/store".into())));
    assert_eq!(
        res(&fs, "/tmp/s/envs"),
        Err(ResolveError::Hidden("/store".into()))
    );
    let r = ok(&fs, "/y/passwd");
    assert_eq!(
        (r.public.as_path(), r.loc),
        (Path::new("/etc/passwd"), Some(Loc::Host))
    );
    assert_eq!(res(&fs, "/store").unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn dotdot_stops_at_root() {
    let fs = host();
    assert_eq!(
        ok(&fs, "/../../etc/../../etc/passwd").public,
        Path::new("/etc/passwd")
    );
    let r = resolve(
        &view(),
        &fs,
        Path::new("/usr"),
        b"../../../etc/./passwd",
        true,
    )
    .unwrap();
    assert_eq!(r.public, Path::new("/etc/passwd"));
    let root = ok(&fs, "/..");
    assert_eq!(
        (root.public.as_path(), root.real.as_path()),
        (Path::new("/"), Path::new(UPPER))
    );
    // `..` after a symlink is taken from its target (physical walk).
    assert_eq!(
        ok(&fs, "/lib/../lib/libc.so").public,
        Path::new("/usr/lib/libc.so")
    );
}

#[test]
fn symlink_loops_and_the_limit() {
    let mut fs = host();
    fs.symlink("/a", "/b").symlink("/b", "/a");
    assert_eq!(res(&fs, "/a"), Err(ResolveError::Loop("/a".into())));
    for i in 0..41 {
        fs.symlink(&format!("/l{i}"), &format!("/l{}", i + 1));
    }
    fs.file("/l41");
    // /l1 -> ... -> /l41 follows 40 links: fine. /l0 needs 41.
    assert_eq!(ok(&fs, "/l1").public, Path::new("/l41"));
    assert_eq!(res(&fs, "/l0").unwrap_err().errno(), libc::ELOOP);
}

#[test]
fn not_a_directory() {
    let fs = host();
    assert_eq!(
        res(&fs, "/etc/passwd/x"),
        Err(ResolveError::NotDir("/etc/passwd".into()))
    );
    assert_eq!(
        res(&fs, "/etc/passwd/"),
        Err(ResolveError::NotDir("/etc/passwd".into()))
    );
    assert_eq!(
        res(&fs, "/etc/passwd/.."),
        Err(ResolveError::NotDir("/etc/passwd".into()))
    );
    assert_eq!(
        res(&fs, "/nope/x"),
        Err(ResolveError::NotFound("/nope".into()))
    );
    let dir = ok(&fs, "/lib/");
    assert!(dir.must_be_dir);
    assert_eq!(dir.public, Path::new("/usr/lib"));
    // A trailing slash follows a final symlink even without follow_final.
    let r = resolve(&view(), &fs, Path::new("/"), b"/lib/", false).unwrap();
    assert_eq!(r.kind, Some(Kind::Dir));
    let missing = ok(&fs, "/etc/newdir/");
    assert!(missing.loc.is_none() && missing.must_be_dir);
}

#[test]
fn exceptions_stay_on_the_host() {
    let mut fs = host();
    fs.up_file("/dev/null")
        .up_file("/devices/x")
        .file("/devices/y");
    let r = ok(&fs, "/dev/null");
    assert_eq!((r.loc, r.kind), (Some(Loc::Exception), Some(Kind::Other)));
    assert_eq!(r.real, Path::new("/dev/null"));
    assert_eq!(ok(&fs, "/dev").loc, Some(Loc::Exception));
    let missing = ok(&fs, "/dev/shm-new");
    assert_eq!(
        (missing.loc, missing.real.as_path()),
        (None, Path::new("/dev/shm-new"))
    );
    // /devices is not below /dev.
    assert_eq!(ok(&fs, "/devices/x").loc, Some(Loc::Upper));
    assert_eq!(ok(&fs, "/devices/y").loc, Some(Loc::Host));
    let mut rules = Rules::empty();
    rules.add_exception(Path::new("/devices"), None).unwrap();
    let r = resolve(&view_with(rules), &fs, Path::new("/"), b"/devices/x", true).unwrap();
    assert_eq!(r.loc, None, "an exception never looks at upper");
}

#[test]
fn store_is_hidden() {
    let mut fs = host();
    fs.file("/store/envs/other/upper/secret");
    for p in [
        "/store",
        "/store/envs/other/upper/secret",
        "/store/../etc",
        "/store/new",
    ] {
        assert_eq!(res(&fs, p).unwrap_err().errno(), libc::ENOENT, "{p}");
    }
    let r = resolve(&view(), &fs, Path::new("/store/envs"), b"x", true);
    assert_eq!(r, Err(ResolveError::Hidden("/store".into())));
}

#[test]
fn store_bind_mounted_elsewhere_is_hidden() {
    let mut fs = host();
    fs.dir("/mnt/bind/envs");
    let ino = fs.ino("/store");
    fs.set_ino("/mnt/bind", ino);
    let mut v = view();
    v.hide_dir_id(1, ino);
    let r = resolve(&v, &fs, Path::new("/"), b"/mnt/bind/envs", true);
    assert_eq!(r, Err(ResolveError::Hidden("/mnt/bind".into())));
}

#[test]
fn relative_paths_start_at_base() {
    let mut fs = host();
    fs.up_file("/usr/lib/libfoo.so");
    let r = resolve(&view(), &fs, Path::new("/usr"), b"lib/libfoo.so", true).unwrap();
    assert_eq!(
        (r.loc, r.public.as_path()),
        (Some(Loc::Upper), Path::new("/usr/lib/libfoo.so"))
    );
    let dot = resolve(&view(), &fs, Path::new("/usr/lib"), b".", true).unwrap();
    assert_eq!(dot.public, Path::new("/usr/lib"));
    let abs = resolve(&view(), &fs, Path::new("/usr"), b"/etc/passwd", true).unwrap();
    assert_eq!(abs.public, Path::new("/etc/passwd"));
}

#[test]
fn bad_paths() {
    let fs = host();
    assert_eq!(res(&fs, ""), Err(ResolveError::NotFound(PathBuf::new())));
    let long = format!("/{}", "a/".repeat(2048));
    assert_eq!(res(&fs, &long), Err(ResolveError::NameTooLong));
    let comp = format!("/etc/{}", "x".repeat(256));
    assert_eq!(res(&fs, &comp), Err(ResolveError::NameTooLong));
    assert_eq!(ok(&fs, &format!("/etc/{}", "x".repeat(255))).loc, None);
}

#[test]
fn reserved_names() {
    let mut fs = host();
    fs.up_file("/etc/.wh.hosts");
    let e = res(&fs, "/etc/.wh.hosts").unwrap_err();
    assert_eq!(e, ResolveError::Reserved("/etc/.wh.hosts".into()));
    assert_eq!((e.errno(), e.create_errno()), (libc::ENOENT, libc::EPERM));
    assert_eq!(res(&fs, "/etc/.wh.x/y").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        res(&fs, "/etc/.wh..wh..opq").unwrap_err().create_errno(),
        libc::EPERM
    );
}

#[test]
fn missing_final_component() {
    let fs = host();
    let r = ok(&fs, "/etc/new.conf");
    assert_eq!((r.loc, r.kind), (None, None));
    assert_eq!(r.public, Path::new("/etc/new.conf"));
    assert_eq!(r.real, up("/etc/new.conf"));
    // A dangling symlink, followed, names where its target would be made.
    let mut fs = host();
    fs.symlink("/etc/dangling", "new.conf");
    assert_eq!(ok(&fs, "/etc/dangling").public, Path::new("/etc/new.conf"));
}

#[test]
fn proc_magic_links_are_left_to_the_caller() {
    let fs = host();
    let e = res(&fs, "/proc/self/fd/3").unwrap_err();
    let at = ResolveError::MagicLink {
        at: "/proc/self".into(),
        rest: "fd/3".into(),
    };
    assert_eq!(e, at);
    assert_eq!(e.errno(), libc::ELOOP);
    let e = res(&fs, "/proc/4242/root/etc/").unwrap_err();
    let want = ResolveError::MagicLink {
        at: "/proc/4242/root".into(),
        rest: "etc/.".into(),
    };
    assert_eq!(e, want);
    let e = res(&fs, "/proc/4242/fd/3").unwrap_err();
    assert!(matches!(e, ResolveError::MagicLink { rest, .. } if rest.as_os_str().is_empty()));
    // /proc/mounts -> self/mounts: /proc/self is the reader's pid.
    let e = res(&fs, "/proc/mounts").unwrap_err();
    assert!(matches!(e, ResolveError::MagicLink { at, .. } if at == Path::new("/proc/self")));
    // Not followed: the link itself, on the host.
    let r = resolve(&view(), &fs, Path::new("/"), b"/proc/4242/fd/3", false).unwrap();
    assert_eq!((r.loc, r.kind), (Some(Loc::Exception), Some(Kind::Symlink)));
}
