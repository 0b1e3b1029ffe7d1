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

#[test]
fn a_host_directory_renamed_in_the_env_is_named_where_it_went() {
    let v = view();
    let public = |p: &str| crate::public_of(&v, Path::new(p));
    assert_eq!(public("/srv/d/sub"), Some(PathBuf::from("/srv/d/sub")));
    v.record_move(Path::new("/srv/d"), Path::new("/srv/r"), true);
    assert_eq!(public("/srv/d"), Some(PathBuf::from("/srv/r")));
    assert_eq!(public("/srv/d/sub/f"), Some(PathBuf::from("/srv/r/sub/f")));
    assert_eq!(
        public("/srv/dd"),
        Some(PathBuf::from("/srv/dd")),
        "whole components"
    );
    // The env's copy moves on: what the host directory's holders see follows.
    v.record_move(Path::new("/srv/r"), Path::new("/opt/again"), false);
    assert_eq!(public("/srv/d/sub"), Some(PathBuf::from("/opt/again/sub")));
    assert_eq!(
        public("/srv/r"),
        Some(PathBuf::from("/srv/r")),
        "no host content moved"
    );
    // A clone (another user of the same view) sees the same moves.
    let clone = v.clone();
    assert_eq!(
        crate::public_of(&clone, Path::new("/srv/d")),
        Some(PathBuf::from("/opt/again"))
    );
    // The longest recorded move wins; a move to / keeps one slash.
    v.record_move(Path::new("/srv/d/sub"), Path::new("/"), true);
    assert_eq!(public("/srv/d/sub/x"), Some(PathBuf::from("/x")));
    assert_eq!(
        public("/srv/d/other"),
        Some(PathBuf::from("/opt/again/other"))
    );
    // Upper paths are unaffected.
    assert_eq!(
        public(&format!("{}/srv/d", v.upper().display())),
        Some(PathBuf::from("/srv/d"))
    );
}
