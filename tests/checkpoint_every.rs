//! `run --checkpoint-every DURATION`: periodic leave-running checkpoints of
//! the group into its checkpoint directory, while the program carries on.

use std::process::Command;

fn isotrace(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isotrace"));
    c.env("ISOTRACE_HOME", home).env("XDG_RUNTIME_DIR", home);
    c
}

#[test]
fn periodic_checkpoints_land_while_the_program_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let out = isotrace(home)
        .args([
            "--no-isolation",
            "--group",
            "pc",
            "--checkpoint-every",
            "1s",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "i=0; while [ $i -lt 35 ]; do i=$((i+1)); sleep 0.1; done; echo done",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "done\n",
        "the program ran on to its end"
    );
    let images: Vec<_> = std::fs::read_dir(home.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pc-"))
        .collect();
    assert!(
        images.len() >= 2,
        "expected periodic images, got {images:?}"
    );
    for img in &images {
        let st = isotrace(home)
            .arg("inspect")
            .arg(img)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}: {}",
            img.display(),
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn a_bad_period_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = isotrace(tmp.path())
        .args(["--no-isolation", "--checkpoint-every", "soon", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--checkpoint-every soon"));
}
