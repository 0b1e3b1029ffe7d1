//! The store: names, create/get/list/remove, records.

use crate::{validate_name, Error, Rules, Store};
use std::path::Path;

#[test]
fn names() {
    for ok in ["a", "A0", "my-env_1.2", &"x".repeat(64)] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "a/b",
        "..",
        ".",
        ".hidden",
        "-x",
        "a\0b",
        "é",
        &"x".repeat(65),
    ] {
        match validate_name(bad) {
            Err(Error::BadName(n)) => assert_eq!(n, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("home")).unwrap();
    assert!(store.list().unwrap().is_empty());
    let b = store.create("b").unwrap();
    store.create("a").unwrap();
    assert!(b.upper().is_dir() && b.work().is_dir());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir().join("env.json")).unwrap()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["name"], "b");
    assert_eq!(json["base"], "/");
    assert!(json["created"].as_u64().unwrap() > 0);
    assert!(matches!(store.create("b"), Err(Error::EnvExists(n)) if n == "b"));
    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(store.get("b").unwrap().meta(), b.meta());
    store.remove("b").unwrap();
    assert!(matches!(store.get("b"), Err(Error::NoSuchEnv(n)) if n == "b"));
    assert!(matches!(store.remove("zz"), Err(Error::NoSuchEnv(n)) if n == "zz"));
    assert!(matches!(store.create("../x"), Err(Error::BadName(n)) if n == "../x"));
    let leftovers: Vec<_> = std::fs::read_dir(store.home().join("envs"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp or trash directories left");
}

#[test]
fn corrupt_records_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let env = store.create("e").unwrap();
    std::fs::write(
        env.dir().join("env.json"),
        r#"{"version":9,"name":"e","created":1,"base":"/"}"#,
    )
    .unwrap();
    assert!(matches!(store.get("e"), Err(Error::Corrupt { .. })));
    std::fs::write(env.dir().join("env.json"), "{").unwrap();
    assert_eq!(store.get("e").unwrap_err().errno(), libc::EIO);
}

#[test]
fn rules_persist() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.rules().unwrap(), Rules::default());
    let mut r = store.rules().unwrap();
    r.add_exception(Path::new("/srv/shared"), None).unwrap();
    store.save_rules(&r).unwrap();
    assert_eq!(store.rules().unwrap(), r);
}

#[test]
fn remove_gets_through_read_only_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let env = store.create("e").unwrap();
    let ro = env.upper().join("usr");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("f"), b"x").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    store.remove("e").unwrap();
    assert!(store.list().unwrap().is_empty());
}
