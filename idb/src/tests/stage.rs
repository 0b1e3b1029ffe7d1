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
