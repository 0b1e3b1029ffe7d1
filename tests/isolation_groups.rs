//! Several application groups sharing one environment, each under its own
//! supervisor: what one writes, the others see at once, even for a path
//! their supervisor already looked up (and cached) as missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn isotrace(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isotrace"));
    c.env("ISOTRACE_HOME", home).env("XDG_RUNTIME_DIR", home);
    c
}

#[test]
fn a_file_created_by_one_group_is_seen_by_another_running_group() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let flag = dir.path().join("host").join("flag");
    std::fs::create_dir_all(flag.parent().unwrap()).unwrap();
    let flag = flag.to_str().unwrap().to_string();
    // The watcher looks the path up (missing) over and over for up to 30 s.
    let script = format!(
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); \
         if [ -e {flag} ]; then cat {flag}; exit 0; fi; sleep 0.1; done; echo never-seen; exit 1"
    );
    let mut watcher = isotrace(&home)
        .args(["--env", "shared", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the watcher time to cache the path as missing.
    std::thread::sleep(Duration::from_millis(500));
    let st = isotrace(&home)
        .args([
            "--env",
            "shared",
            "--",
            "sh",
            "-c",
            &format!("echo from-writer > {flag}"),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "writer: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        if let Some(_status) = watcher.try_wait().unwrap() {
            break watcher.wait_with_output().unwrap();
        }
        assert!(Instant::now() < deadline, "watcher did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-writer\n");
    assert!(
        !std::path::Path::new(&flag).exists(),
        "the host must not see it"
    );
}

#[test]
fn a_host_file_deleted_by_one_group_disappears_for_another_running_group() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let victim = dir.path().join("host").join("victim");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, "host\n").unwrap();
    let victim = victim.to_str().unwrap().to_string();
    // The watcher's supervisor caches the host file as present.
    let script = format!(
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); \
         if [ ! -e {victim} ]; then echo gone; exit 0; fi; sleep 0.1; done; echo still-there; exit 1"
    );
    let mut watcher = isotrace(&home)
        .args(["--env", "shared", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let st = isotrace(&home)
        .args(["--env", "shared", "--", "rm", &victim])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "rm: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        if watcher.try_wait().unwrap().is_some() {
            break watcher.wait_with_output().unwrap();
        }
        assert!(Instant::now() < deadline, "watcher did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gone\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
}
