//! Rules validation and persistence, the public/real mapping and magic-link
//! recognition.

use super::fake::view;
use crate::{is_magic_link, Rules};
use std::path::{Path, PathBuf};

#[test]
fn exceptions_match_whole_components() {
    let r = Rules::default();
    for p in [
        "/proc",
        "/proc/1/status",
        "/sys/kernel",
        "/dev",
        "/dev/null",
    ] {
        assert!(r.is_exception(Path::new(p)), "{p}");
    }
    for p in ["/", "/devices", "/device", "/procfs", "/usr/dev"] {
        assert!(!r.is_exception(Path::new(p)), "{p}");
    }
}

#[test]
fn exceptions_are_validated_and_normalized() {
    let mut r = Rules::empty();
    r.add_exception(Path::new("/srv//shared/./"), Some("team data".into()))
        .unwrap();
    assert_eq!(r.exceptions[0].prefix, PathBuf::from("/srv/shared"));
    r.add_exception(Path::new("/srv/shared"), None).unwrap();
    assert_eq!(r.exceptions.len(), 1, "no duplicates");
    for bad in ["/", "relative", "/a/../b", ""] {
        let e = r.add_exception(Path::new(bad), None).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{bad}");
    }
    assert!(r.remove_exception(Path::new("/srv/shared/")));
    assert!(!r.remove_exception(Path::new("/srv/shared")));
}

#[test]
fn rules_round_trip_through_json() {
    let mut r = Rules::default();
    r.add_exception(Path::new("/data"), Some("shared".into()))
        .unwrap();
    let back = Rules::from_json(&r.to_json(), Path::new("rules.json")).unwrap();
    assert_eq!(back, r);
    let future = r#"{"version":2,"exceptions":[]}"#;
    assert!(Rules::from_json(future, Path::new("r")).is_err());
    let bad = r#"{"version":1,"exceptions":[{"prefix":"/"}]}"#;
    assert!(Rules::from_json(bad, Path::new("r")).is_err());
}

#[test]
fn real_paths() {
    let v = view();
    assert_eq!(
        v.real_of(Path::new("/etc/x")),
        Path::new("/store/envs/e/upper/etc/x")
    );
    assert_eq!(v.real_of(Path::new("/")), Path::new("/store/envs/e/upper"));
    assert_eq!(v.real_of(Path::new("/dev/x")), Path::new("/dev/x"));
    assert!(v.is_hidden(Path::new("/store")) && !v.is_hidden(Path::new("/stored")));
}

#[test]
fn magic_links() {
    let yes = [
        "/proc/self",
        "/proc/thread-self",
        "/proc/self/root",
        "/proc/self/cwd",
        "/proc/12/exe",
        "/proc/12/fd/3",
        "/proc/self/task/13/fd/0",
        "/proc/thread-self/cwd",
        "/proc/12/ns/net",
        "/proc/12/map_files/400000-401000",
    ];
    let no = [
        "/proc",
        "/proc/12",
        "/proc/12/fd",
        "/proc/12/fd/x",
        "/proc/mounts",
        "/proc/12/status",
        "/proc/sys/root",
        "/sys/self/root",
    ];
    for p in yes {
        assert!(is_magic_link(Path::new(p)), "{p}");
    }
    for p in no {
        assert!(!is_magic_link(Path::new(p)), "{p}");
    }
}
