//! Environments built out of sight: `Store::copy` and `Staged`.

use crate::{Error, Store};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn copy_keeps_modes_times_links_and_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("home")).unwrap();
    let a = store.create("a").unwrap();
    let up = a.upper();
    fs::create_dir_all(up.join("d/sub")).unwrap();
    fs::write(up.join("d/f"), b"data").unwrap();
    fs::set_permissions(up.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::write(up.join("d/.wh.gone"), b"").unwrap();
    fs::write(up.join("d/sub/.wh..wh..opq"), b"").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", up.join("d/ln")).unwrap();
    fs::set_permissions(up.join("d/sub"), fs::Permissions::from_mode(0o555)).unwrap();

    let b = store.copy("a", "b").unwrap();
    let (src, dst) = (a.upper(), b.upper());
    for rel in [
        "d",
        "d/f",
        "d/sub",
        "d/ln",
        "d/.wh.gone",
        "d/sub/.wh..wh..opq",
    ] {
        let (m1, m2) = (
            fs::symlink_metadata(src.join(rel)).unwrap(),
            fs::symlink_metadata(dst.join(rel)).unwrap(),
        );
        assert_eq!(m1.mode(), m2.mode(), "{rel}");
        assert_eq!(
            (m1.mtime(), m1.mtime_nsec()),
            (m2.mtime(), m2.mtime_nsec()),
            "{rel}"
        );
    }
    assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"data");
    assert_eq!(
        fs::read_link(dst.join("d/ln")).unwrap().to_str(),
        Some("/etc/hostname")
    );
    assert_eq!(store.get("b").unwrap().meta().name, "b");
    assert!(matches!(store.copy("a", "b"), Err(Error::EnvExists(n)) if n == "b"));
    assert!(matches!(store.copy("zz", "c"), Err(Error::NoSuchEnv(n)) if n == "zz"));
    store.remove("b").unwrap();
    store.remove("a").unwrap();
}

#[test]
fn an_unfinished_stage_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("home")).unwrap();
    let staged = store.stage("x").unwrap();
    fs::write(staged.upper().join("f"), b"half").unwrap();
    assert!(store.get("x").is_err() && store.list().unwrap().is_empty());
    drop(staged);
    let left: Vec<_> = fs::read_dir(store.home().join("envs")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let staged = store.stage("x").unwrap();
    store.create("x").unwrap();
    assert!(matches!(staged.commit(), Err(Error::EnvExists(_))));
    assert_eq!(fs::read_dir(store.home().join("envs")).unwrap().count(), 1);
}

/// Sets `path`'s mtime to an hour ago, as if its maker had died long ago.
fn age(path: &std::path::Path) {
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::open(path).unwrap().set_modified(past).unwrap();
}

#[test]
fn sweep_removes_only_abandoned_staging_and_trash_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("home")).unwrap();
    store.create("keep").unwrap();
    let envs = dir.path().join("home/envs").canonicalize().unwrap();
    // A live, old-looking build holds its lock.
    let live = store.stage("busy").unwrap();
    let live_dir = live.upper().parent().unwrap().to_path_buf();
    age(&live_dir);
    // What a builder and a remover killed with -9 leave: nobody's lock.
    for dead in [".new-1-0-0", ".rm-1-0-0"] {
        fs::create_dir_all(envs.join(dead).join("upper/x")).unwrap();
        age(&envs.join(dead));
    }
    // A fresh unlocked one may be a builder before its first flock.
    fs::create_dir(envs.join(".new-2-0-0")).unwrap();

    let mut removed = store.sweep();
    removed.sort();
    assert_eq!(removed, [envs.join(".new-1-0-0"), envs.join(".rm-1-0-0")]);
    assert!(envs.join(".new-2-0-0").is_dir());
    assert!(live_dir.is_dir());
    assert!(envs.join("keep").is_dir());
    live.commit().unwrap();
    assert_eq!(store.get("busy").unwrap().name(), "busy");
}
