//! Several application groups sharing one environment, each under its own
//! supervisor: what one writes, the others see at once, even for a path
//! their supervisor already looked up (and cached) as missing.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A background group, killed if the test ends before it does (SIGKILL of
/// the supervisor kills its tracees too), so a failure never leaves a
/// process holding the test's pipes.
struct Bg(Option<Child>);

impl Bg {
    fn spawn(cmd: &mut Command) -> Bg {
        Bg(Some(cmd.stdout(Stdio::piped()).spawn().unwrap()))
    }

    fn finish(mut self, secs: u64) -> Output {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let child = self.0.as_mut().unwrap();
            if child.try_wait().unwrap().is_some() {
                return self.0.take().unwrap().wait_with_output().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "a background group did not finish"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

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
    let watcher = Bg::spawn(isotrace(&home).args(["--env", "shared", "--", "sh", "-c", &script]));
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
    let out = watcher.finish(60);
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
    let watcher = Bg::spawn(isotrace(&home).args(["--env", "shared", "--", "sh", "-c", &script]));
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
    let out = watcher.finish(60);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gone\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
}

#[test]
fn eight_envs_running_the_same_program_keep_their_own_data() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let shared = dir.path().join("host").join("data.txt");
    std::fs::create_dir_all(shared.parent().unwrap()).unwrap();
    let p = shared.to_str().unwrap().to_string();
    let script = |n: usize| {
        format!("for i in 1 2 3 4 5; do echo env{n}-$i >> {p}; sleep 0.05; done; cat {p}")
    };
    let children: Vec<_> = (0..8)
        .map(|n| {
            Bg::spawn(isotrace(&home).args([
                "--env",
                &format!("e{n}"),
                "--",
                "sh",
                "-c",
                &script(n),
            ]))
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.finish(120);
        assert!(out.status.success());
        let want: String = (1..=5).map(|i| format!("env{n}-{i}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "env e{n} saw another env's data"
        );
    }
    assert!(!shared.exists(), "the host must not see any of it");
}

#[test]
fn a_writer_and_a_reader_group_share_one_env_for_a_thousand_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let data = dir.path().join("host");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("shared.db");
    let done = data.join("done");
    let (db_s, done_s) = (db.to_str().unwrap(), done.to_str().unwrap());
    // The writer inserts 1,000 rows, one transaction each, then marks done.
    let writer = format!(
        "import sqlite3\n\
         c = sqlite3.connect({db_s:?}, timeout=30)\n\
         c.execute('create table if not exists t(i integer)')\n\
         c.commit()\n\
         for i in range(1000):\n    c.execute('insert into t values (?)', (i,)); c.commit()\n\
         open({done_s:?}, 'w').write('1')\n"
    );
    // The reader, another group, polls until the writer is done, then
    // counts: every row must be there.
    let reader = format!(
        "while [ ! -e {done_s} ]; do sleep 0.05; done; sqlite3 {db_s} 'select count(*), sum(i) from t'"
    );
    let reader = Bg::spawn(isotrace(&home).args(["--env", "shared", "--", "sh", "-c", &reader]));
    let w = isotrace(&home)
        .args(["--env", "shared", "--", "python3", "-c", &writer])
        .output()
        .unwrap();
    assert!(
        w.status.success(),
        "writer: {}",
        String::from_utf8_lossy(&w.stderr)
    );
    let out = reader.finish(120);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000|499500\n");
    assert!(
        !db.exists() && !done.exists(),
        "the host must not see the env's data"
    );
}
