//! The lookup cache: same answers as uncached resolution, no filesystem
//! calls on a hit, and correct after invalidation.

use super::fake::{view, FakeFs};
use crate::{resolve, resolve_cached, Cache, Loc};
use std::path::Path;

fn tree() -> FakeFs {
    let mut fs = FakeFs::new();
    fs.file("/etc/passwd")
        .dir("/usr/lib")
        .file("/usr/lib/libc.so");
    fs.symlink("/lib", "usr/lib").up_file("/usr/lib/libfoo.so");
    fs.up_file("/etc/.wh.shadow").file("/etc/shadow");
    fs
}

const PATHS: [&str; 9] = [
    "/etc/passwd",
    "/etc/shadow",
    "/lib/libfoo.so",
    "/lib/libc.so",
    "/lib/",
    "/usr/lib/nope",
    "/etc/passwd/x",
    "/",
    "/dev/null",
];

#[test]
fn cached_answers_match_uncached() {
    let fs = tree();
    let v = view();
    let mut c = Cache::new();
    for round in 0..2 {
        for p in PATHS {
            let a = resolve(&v, &fs, Path::new("/"), p.as_bytes(), true);
            let b = resolve_cached(&v, &fs, &mut c, Path::new("/"), p.as_bytes(), true);
            assert_eq!(a, b, "{p} round {round}");
        }
    }
}

#[test]
fn a_hit_touches_no_filesystem() {
    let fs = tree();
    let v = view();
    let mut c = Cache::new();
    let p = b"/lib/libfoo.so";
    resolve_cached(&v, &fs, &mut c, Path::new("/"), p, true).unwrap();
    let before = fs.calls.get();
    let r = resolve_cached(&v, &fs, &mut c, Path::new("/"), p, true).unwrap();
    assert_eq!(r.loc, Some(Loc::Upper));
    assert_eq!(
        fs.calls.get(),
        before,
        "symlink target and lookups all cached"
    );
}

#[test]
fn lookup_cost_does_not_grow_with_the_upper_layer() {
    let mut small = tree();
    let mut big = tree();
    for i in 0..10 {
        small.up_file(&format!("/usr/lib/f{i}"));
    }
    for i in 0..20_000 {
        big.up_file(&format!("/usr/lib/f{i}"));
    }
    let v = view();
    let calls = |fs: &FakeFs| {
        let before = fs.calls.get();
        resolve(&v, fs, Path::new("/"), b"/lib/libc.so", true).unwrap();
        fs.calls.get() - before
    };
    assert_eq!(calls(&small), calls(&big));
}

#[test]
fn invalidate_after_copy_up_of_ancestors() {
    let mut fs = tree();
    fs.file("/opt/app/conf");
    let v = view();
    let mut c = Cache::new();
    let get = |fs: &FakeFs, c: &mut Cache| {
        resolve_cached(&v, fs, c, Path::new("/"), b"/opt/app/conf", true)
            .unwrap()
            .loc
    };
    assert_eq!(get(&fs, &mut c), Some(Loc::Host));
    // copy-up: /opt and /opt/app move to upper, then the file.
    fs.up_dir("/opt/app").up_file("/opt/app/conf");
    assert_eq!(get(&fs, &mut c), Some(Loc::Host), "stale until invalidated");
    c.invalidate(Path::new("/opt/app/conf"));
    assert_eq!(get(&fs, &mut c), Some(Loc::Upper));
    // delete it: whiteout beside the (removed) upper copy.
    fs.remove("/store/envs/e/upper/opt/app/conf");
    fs.up_file("/opt/app/.wh.conf");
    c.invalidate(Path::new("/opt/app/conf"));
    assert_eq!(get(&fs, &mut c), None);
}

#[test]
fn invalidating_a_directory_drops_its_subtree() {
    let mut fs = tree();
    fs.up_file("/srv/a/b/file");
    let v = view();
    let mut c = Cache::new();
    let get = |fs: &FakeFs, c: &mut Cache| {
        resolve_cached(&v, fs, c, Path::new("/"), b"/srv/a/b/file", true)
            .unwrap()
            .loc
    };
    assert_eq!(get(&fs, &mut c), Some(Loc::Upper));
    fs.remove("/store/envs/e/upper/srv/a/b/file");
    c.invalidate(Path::new("/srv/a"));
    assert_eq!(get(&fs, &mut c), None);
    c.invalidate(Path::new("/"));
    assert!(c.is_empty());
}

#[test]
fn capacity_bounds_the_cache() {
    let fs = tree();
    let v = view();
    let mut c = Cache::with_capacity(3);
    for p in PATHS {
        let a = resolve(&v, &fs, Path::new("/"), p.as_bytes(), true);
        let b = resolve_cached(&v, &fs, &mut c, Path::new("/"), p.as_bytes(), true);
        assert_eq!(a, b, "{p}");
        assert!(c.len() <= 3);
    }
}
