//! Files `env copy` shares by hard link (`share`), on real files.

use crate::share::{self, Key};
use crate::{Rules, Store};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;

fn ino(p: &std::path::Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn the_list_round_trips_and_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    assert!(share::load(dir.path()).unwrap().is_empty());
    fs::write(dir.path().join("f"), b"x").unwrap();
    let key = Key::of(&fs::metadata(dir.path().join("f")).unwrap());
    share::add(dir.path(), &HashSet::from([key])).unwrap();
    assert_eq!(share::load(dir.path()).unwrap(), HashSet::from([key]));
    fs::write(dir.path().join(share::SHARED), "isotrace-shared 1\n1 2\n").unwrap();
    let err = share::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn copy_links_then_a_change_breaks_only_its_own_side() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("home")).unwrap();
    let a = store.create("a").unwrap();
    fs::create_dir(a.upper().join("d")).unwrap();
    fs::write(a.upper().join("d/f"), b"data").unwrap();
    fs::write(a.upper().join("d/own1"), b"mine").unwrap();
    fs::hard_link(a.upper().join("d/own1"), a.upper().join("d/own2")).unwrap();
    fs::write(a.upper().join("d/.wh.gone"), b"").unwrap();
    let b = store.copy("a", "b").unwrap();
    let (fa, fb) = (a.upper().join("d/f"), b.upper().join("d/f"));
    // ext4 and tmpfs have no reflinks: the file is linked and listed in
    // both environments. A program's own links and whiteouts are copied.
    let linked = ino(&fa) == ino(&fb);
    if linked {
        let key = Key::of(&fs::metadata(&fa).unwrap());
        assert!(share::load(a.dir()).unwrap().contains(&key));
        assert!(share::load(b.dir()).unwrap().contains(&key));
    }
    assert_ne!(
        ino(&a.upper().join("d/own1")),
        ino(&b.upper().join("d/own1"))
    );
    assert_ne!(
        ino(&b.upper().join("d/own1")),
        ino(&b.upper().join("d/own2"))
    );
    assert_ne!(
        ino(&a.upper().join("d/.wh.gone")),
        ino(&b.upper().join("d/.wh.gone"))
    );

    let view = store.view(&b, Rules::default()).unwrap();
    assert_eq!(share::break_link(&view, &fb, false).unwrap(), linked);
    assert_ne!(ino(&fa), ino(&fb));
    fs::write(&fb, b"b's").unwrap();
    assert_eq!(fs::read(&fa).unwrap(), b"data");
    // A's side now has one link: written in place, no copy.
    let view_a = store.view(&a, Rules::default()).unwrap();
    assert!(!share::break_link(&view_a, &fa, false).unwrap());
    // But before link(2) (strict) a listed inode is made private first.
    let before = ino(&fa);
    assert_eq!(share::break_link(&view_a, &fa, true).unwrap(), linked);
    assert_eq!(ino(&fa) != before, linked);
    assert!(!share::break_link(&view_a, &fa, true).unwrap());
}
