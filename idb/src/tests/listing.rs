//! Merged listings: over the fake filesystem and on real files.

use super::fake::{view, FakeFs};
use super::sandbox::Sandbox;
use crate::{copy_up, cow, finish_create};
use crate::{merged_listing, prepare_create, resolve, RealFs, Store};
use std::ffi::OsString;
use std::fs;
use std::path::Path;

fn names(v: &crate::View, fs: &dyn crate::Fs, p: &str) -> Vec<String> {
    let r = resolve(v, fs, Path::new("/"), p.as_bytes(), true).unwrap();
    let list = merged_listing(v, fs, &r).unwrap();
    list.into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn union_minus_whiteouts_upper_wins() {
    let mut fs = FakeFs::new();
    fs.file("/etc/a")
        .file("/etc/b")
        .file("/etc/c")
        .file("/etc/.wh.host-reserved");
    fs.up_file("/etc/b")
        .up_file("/etc/.wh.c")
        .up_file("/etc/new");
    assert_eq!(names(&view(), &fs, "/etc"), [".", "..", "a", "b", "new"]);
    let r = resolve(&view(), &fs, Path::new("/"), b"/etc", true).unwrap();
    let b = merged_listing(&view(), &fs, &r)
        .unwrap()
        .into_iter()
        .find(|e| e.name == "b");
    assert_eq!(b.unwrap().ino, fs.ino("/store/envs/e/upper/etc/b"));
}

#[test]
fn opaque_and_root_listings() {
    let mut fs = FakeFs::new();
    fs.file("/opt/a")
        .up_file("/opt/.wh..wh..opq")
        .up_file("/opt/b");
    fs.dir("/dev").file("/dev/null").up_dir("/dev");
    assert_eq!(names(&view(), &fs, "/opt"), [".", "..", "b"]);
    // The store never shows; /dev (an exception) once.
    assert_eq!(names(&view(), &fs, "/"), [".", "..", "dev", "opt"]);
    assert_eq!(names(&view(), &fs, "/dev"), [".", "..", "null"]);
}

#[test]
fn real_listing_after_changes() {
    let sb = Sandbox::new();
    for n in ["a", "b", "c"] {
        sb.write(&format!("d/{n}"), n.as_bytes(), 0o644);
    }
    let d = sb.host("d");
    let list = |sb: &Sandbox| {
        let r = sb.resolve(&d, true);
        let l = merged_listing(&sb.view, &RealFs, &r).unwrap();
        l.into_iter().map(|e| e.name).collect::<Vec<OsString>>()
    };
    cow::unlink(&sb.view, &sb.resolve(&d.join("b"), true)).unwrap();
    copy_up(&sb.view, &sb.resolve(&d.join("a"), true)).unwrap();
    let real = prepare_create(&sb.view, &sb.resolve(&d.join("n"), true)).unwrap();
    fs::write(&real, b"n").unwrap();
    finish_create(&sb.view, &d.join("n")).unwrap();
    assert_eq!(list(&sb), [".", "..", "a", "c", "n"]);
    assert_eq!(list(&sb), list(&sb), "stable");
    assert!(
        d.join("b").exists() && !d.join("n").exists(),
        "host untouched"
    );
    // rmdir refuses a directory that is not empty in the merged view.
    let e = cow::rmdir(&sb.view, &sb.resolve(&d, true)).unwrap_err();
    assert_eq!(e.errno(), libc::ENOTEMPTY);
    for n in ["a", "c", "n"] {
        cow::unlink(&sb.view, &sb.resolve(&d.join(n), true)).unwrap();
    }
    assert_eq!(list(&sb), [".", ".."]);
    cow::rmdir(&sb.view, &sb.resolve(&d, true)).unwrap();
    assert_eq!(sb.resolve(&d, true).loc, None);
    // The store, which lives beside the host tree, is not listed.
    let root = sb.resolve(&sb.root, true);
    let top = merged_listing(&sb.view, &RealFs, &root).unwrap();
    assert!(top.iter().all(|e| e.name != "store"));
    let _: &Store = &sb.store;
}
