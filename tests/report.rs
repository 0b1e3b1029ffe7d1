//! `isotrace run --rm --report FILE -- CMD`, the CI wrapper: the status
//! passes through, the host is untouched, and the report lists what the
//! program read, wrote, created, deleted and executed, by pid.

use std::path::Path;
use std::process::Command;

fn run(dir: &Path, mode: &[&str], script: &str) -> (i32, serde_json::Value) {
    let report = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_isotrace"))
        .arg("run")
        .args(mode)
        .arg("--report")
        .arg(&report)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .env("ISOTRACE_HOME", dir.join("home"))
        .env("XDG_RUNTIME_DIR", dir)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&text).unwrap(),
    )
}

fn accesses(report: &serde_json::Value, path: &Path) -> Vec<String> {
    let path = path.to_str().unwrap();
    report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == path)
        .map(|p| {
            let mut keys: Vec<String> = p
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "path")
                .cloned()
                .collect();
            keys.sort();
            keys
        })
        .unwrap_or_default()
}

#[test]
fn throwaway_run_reports_and_leaves_the_host_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    std::fs::write(dir.join("gone.txt"), "host\n").unwrap();
    let script = "echo hi > new.txt; cat /etc/hostname > /dev/null; rm gone.txt; \
                  rm -f never-existed; mkdir sub; mv new.txt sub/moved.txt; exit 7";
    let (status, report) = run(&dir, &["--rm"], script);
    assert_eq!(status, 7);
    assert_eq!(report["exit_status"], 7);
    assert_eq!(
        accesses(&report, &dir.join("new.txt")),
        ["created", "deleted"]
    );
    // rm stats the file before unlinking it: read, then deleted.
    assert!(accesses(&report, &dir.join("gone.txt")).contains(&"deleted".to_string()));
    assert_eq!(accesses(&report, &dir.join("sub/moved.txt")), ["created"]);
    assert_eq!(accesses(&report, Path::new("/etc/hostname")), ["read"]);
    assert!(accesses(&report, Path::new("/usr/bin/mv")).contains(&"executed".to_string()));
    // A call that failed (rm -f of a missing file) is not an access.
    assert!(accesses(&report, &dir.join("never-existed")).is_empty());
    // The host saw none of it, and the throwaway env is gone.
    assert_eq!(
        std::fs::read_to_string(dir.join("gone.txt")).unwrap(),
        "host\n"
    );
    assert!(!dir.join("new.txt").exists() && !dir.join("sub").exists());
    let envs = std::fs::read_dir(dir.join("home/envs")).unwrap().count();
    assert_eq!(envs, 0, "--rm left an environment behind");
}

#[test]
fn report_without_isolation_names_real_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let (status, report) = run(
        &dir,
        &["--no-isolation"],
        "echo x > made.txt; cat made.txt > /dev/null",
    );
    assert_eq!(status, 0);
    assert_eq!(
        accesses(&report, &dir.join("made.txt")),
        ["created", "read"]
    );
    assert!(dir.join("made.txt").exists());
}

#[test]
fn rm_with_diff_prints_the_changes_before_deleting_the_env() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    std::fs::write(dir.join("old.txt"), "host\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_isotrace"))
        .args([
            "run",
            "--rm",
            "--diff",
            "--",
            "sh",
            "-c",
            "echo x > new.txt; rm old.txt",
        ])
        .current_dir(&dir)
        .env("ISOTRACE_HOME", dir.join("home"))
        .env("XDG_RUNTIME_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.display();
    assert!(err.contains(&format!("A {d}/new.txt\n")), "{err}");
    assert!(err.contains(&format!("D {d}/old.txt\n")), "{err}");
    assert!(dir.join("old.txt").exists() && !dir.join("new.txt").exists());
}
