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

/// The life of a directory made by mkdir in upper: complete once found, so
/// a missing name in it costs one lookup (the host's), and every name that
/// is invalidated there is looked up on disk again.
#[test]
fn a_fresh_directory_is_complete_until_a_name_in_it_changes() {
    let mut fs = tree();
    fs.dir("/srv");
    let v = view();
    let mut c = Cache::new();
    let get = |fs: &FakeFs, c: &mut Cache, p: &str| {
        resolve_cached(&v, fs, c, Path::new("/"), p.as_bytes(), true)
            .unwrap()
            .loc
    };
    let missing = resolve_cached(&v, &fs, &mut c, Path::new("/"), b"/srv/new/x", true);
    assert!(missing.is_err(), "its parent is missing");
    // mkdir /srv/new: planned (its parent copied up, the name invalidated,
    // then noted fresh), then made by the kernel.
    fs.up_dir("/srv");
    c.invalidate(Path::new("/srv/new"));
    c.note_fresh_dir(Path::new("/srv/new"));
    fs.up_dir("/srv/new");
    assert_eq!(get(&fs, &mut c, "/srv/new"), Some(Loc::Upper));
    let before = fs.calls.get();
    assert_eq!(get(&fs, &mut c, "/srv/new/a"), None);
    assert_eq!(fs.calls.get() - before, 1, "only the host is asked");
    // create /srv/new/a: planned (invalidated), then made by the kernel.
    c.invalidate(Path::new("/srv/new/a"));
    fs.up_file("/srv/new/a");
    assert_eq!(get(&fs, &mut c, "/srv/new/a"), Some(Loc::Upper));
    // delete it again: the uncertain name is looked up on disk.
    c.invalidate(Path::new("/srv/new/a"));
    fs.remove("/store/envs/e/upper/srv/new/a");
    assert_eq!(get(&fs, &mut c, "/srv/new/a"), None);
    // The host still shows through, live.
    fs.file("/srv/new/b");
    assert_eq!(get(&fs, &mut c, "/srv/new/b"), Some(Loc::Host));
}

/// Exactness where a name appears in a fresh directory other than through
/// a lookup of the directory first: a copy-up's parents made behind the
/// walk, a rename onto it, and the whiteout a removal leaves.
#[test]
fn completeness_never_hides_what_upper_holds() {
    let mut fs = tree();
    fs.dir("/srv");
    let v = view();
    let get = |fs: &FakeFs, c: &mut Cache, p: &str| {
        resolve_cached(&v, fs, c, Path::new("/"), p.as_bytes(), true)
            .unwrap()
            .loc
    };
    // A planned mkdir failed; the host made the directory and a file, and
    // the env copied the file up (parents first) before any lookup of it.
    let mut c = Cache::new();
    c.note_fresh_dir(Path::new("/srv/d"));
    fs.dir("/srv/d").file("/srv/d/f");
    fs.up_dir("/srv/d").up_file("/srv/d/f");
    c.invalidate(Path::new("/srv/d/f"));
    assert_eq!(get(&fs, &mut c, "/srv/d/f"), Some(Loc::Upper));

    // A rename puts a full directory where a mkdir was planned.
    let mut c = Cache::new();
    c.note_fresh_dir(Path::new("/srv/e"));
    c.invalidate(Path::new("/srv/full"));
    c.invalidate(Path::new("/srv/e"));
    c.forget_fresh();
    fs.up_dir("/srv/e").up_file("/srv/e/inside");
    assert_eq!(get(&fs, &mut c, "/srv/e"), Some(Loc::Upper));
    assert_eq!(get(&fs, &mut c, "/srv/e/inside"), Some(Loc::Upper));

    // A removal in a complete directory whites out a host name.
    let mut c = Cache::new();
    c.note_fresh_dir(Path::new("/srv/g"));
    fs.up_dir("/srv/g");
    assert_eq!(get(&fs, &mut c, "/srv/g"), Some(Loc::Upper));
    fs.file("/srv/g/h");
    assert_eq!(get(&fs, &mut c, "/srv/g/h"), Some(Loc::Host));
    c.invalidate(Path::new("/srv/g/h"));
    fs.up_file("/srv/g/.wh.h");
    assert_eq!(get(&fs, &mut c, "/srv/g/h"), None, "the whiteout is seen");

    // Whatever was fresh is forgotten with the rest.
    let mut c = Cache::new();
    c.note_fresh_dir(Path::new("/srv/k"));
    c.clear();
    fs.up_dir("/srv/k").up_file("/srv/k/l");
    assert_eq!(get(&fs, &mut c, "/srv/k/l"), Some(Loc::Upper));
}
