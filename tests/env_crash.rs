//! Issue #4, faults: kill -9 of `env copy`, of `env import`, and of a
//! group's supervisor in the middle of a large copy-up, each at several
//! points of the work. Afterwards no half-made env is listed or shown as
//! valid, the source is intact, and running the operation again succeeds.
//!
//! The kill points are conditions on the work's own progress (entries in
//! the staging directory, bytes in the copy-up temp file), polled, never a
//! fixed sleep; an operation that finishes before its point is reached is
//! checked as a finished one.

mod common;

use common::{
    hash_file, host_snapshot, path_str, shell_status_within, unique_token, wait_until, Iso, Status,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

const DEADLINE: Duration = Duration::from_secs(120);
const SMALL_FILES: usize = 1200;
const BIG: usize = 48 << 20;

/// A big file of `len` bytes that no two offsets of compress alike.
fn write_big(path: &Path, len: usize) {
    let mut f = fs::File::create(path).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in 0..len / block.len() {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        block[0] = chunk as u8;
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

/// Env A's private layer, filled directly in the store's own format: many
/// small files in nested dirs, a whiteout, a symlink and one big file.
fn make_source(iso: &Iso) -> PathBuf {
    iso.isotrace(["env", "create", "A"]).assert_exit(0);
    let up = iso.upper("A");
    for i in 0..SMALL_FILES {
        let d = up.join(format!("srv/data/d{:02}", i % 40));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}")), format!("file {i}\n").repeat(40)).unwrap();
    }
    fs::write(up.join("srv/.wh.gone"), b"").unwrap();
    std::os::unix::fs::symlink("data/d00/f0", up.join("srv/link")).unwrap();
    write_big(&up.join("srv/big"), BIG);
    up
}

/// Entries under the private layer of the env being staged, if any.
fn staged_entries(home: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        let Ok(rd) = fs::read_dir(dir) else { return 0 };
        rd.flatten()
            .map(|e| {
                let sub = e.file_type().is_ok_and(|t| t.is_dir());
                1 + if sub { count(&e.path()) } else { 0 }
            })
            .sum()
    }
    staging_dirs(home)
        .iter()
        .map(|d| count(&d.join("upper")))
        .max()
        .unwrap_or(0)
}

/// The dot-named staging directories in the store.
fn staging_dirs(home: &Path) -> Vec<PathBuf> {
    fs::read_dir(home.join("envs"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".new-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `progress()` reaches `point` or the child exits, then kills
/// it with SIGKILL. Returns whether it was killed mid-way.
fn kill_at(child: &mut Child, point: usize, mut progress: impl FnMut() -> usize) -> bool {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if progress() >= point {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "point {point} never reached");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

fn spawn(iso: &Iso, args: &[&str]) -> Child {
    iso.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn env_names(iso: &Iso) -> Vec<String> {
    let run = iso.isotrace(["env", "list"]);
    run.assert_exit(0);
    run.stdout_str().lines().map(str::to_owned).collect()
}

/// `name` is either absent from list and show, or present, showing, and
/// holding exactly the source's tree.
fn assert_absent_or_whole(iso: &Iso, name: &str, source: &common::HostSnapshot) -> bool {
    let listed = env_names(iso).iter().any(|n| n == name);
    let show = iso.isotrace(["env", "show", name]);
    if !listed {
        assert_eq!(show.status, Status::Exited(125), "{}", show.describe());
        assert!(show.stderr_str().contains(name), "{}", show.describe());
        return false;
    }
    show.assert_exit(0);
    let copy = host_snapshot(&iso.upper(name));
    let strip = |s: &common::HostSnapshot| -> Vec<(PathBuf, char, u32, String)> {
        s.entries
            .iter()
            .map(|(p, e)| (p.clone(), e.kind, e.mode, e.content.clone()))
            .collect()
    };
    assert_eq!(
        strip(&copy),
        strip(source),
        "env {name} is listed but incomplete"
    );
    true
}

/// After the kills: leftovers are invisible, and once they are old enough
/// the next staging in the store sweeps them away.
fn assert_leftovers_swept(iso: &Iso) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for d in staging_dirs(&iso.home()) {
        fs::File::open(&d).unwrap().set_modified(past).unwrap();
    }
    iso.isotrace(["env", "create", "sweeper"]).assert_exit(0);
    assert_eq!(staging_dirs(&iso.home()), Vec::<PathBuf>::new());
}

/// The source of `env copy` is intact: the same entries with the same
/// content, mode, owner and mtime. Link count and ctime are left out: the
/// copy hard-links the source's files (idb/src/share.rs), which link(2)
/// changes by definition.
fn assert_source_intact(source: &common::HostSnapshot) {
    let strip = |s: &common::HostSnapshot| {
        let mut s = s.clone();
        for e in s.entries.values_mut() {
            e.nlink = 0;
            e.ctime = (0, 0);
        }
        s
    };
    let (was, now) = (strip(source), strip(&host_snapshot(&source.root)));
    let diffs: Vec<String> = was
        .entries
        .iter()
        .filter(|(p, e)| now.entries.get(*p) != Some(*e))
        .map(|(p, e)| format!("{}: {e:?} -> {:?}", p.display(), now.entries.get(p)))
        .chain(
            now.entries
                .keys()
                .filter(|p| !was.entries.contains_key(*p))
                .map(|p| format!("appeared: {}", p.display())),
        )
        .collect();
    assert!(
        diffs.is_empty(),
        "the source changed:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn kill_9_of_env_copy_leaves_no_half_made_env() {
    let iso = Iso::new();
    let up = make_source(&iso);
    let source = host_snapshot(&up);
    let total = SMALL_FILES + 45;
    let mut mid = 0;
    for (i, point) in [1, total / 4, total / 2, total - 2].into_iter().enumerate() {
        let dst = format!("B{i}");
        let mut child = spawn(&iso, &["env", "copy", "A", &dst]);
        let home = iso.home();
        mid += kill_at(&mut child, point, || staged_entries(&home)) as usize;
        assert_source_intact(&source);
        assert!(env_names(&iso).contains(&"A".to_owned()));
        if !assert_absent_or_whole(&iso, &dst, &source) {
            iso.isotrace(["env", "copy", "A", &dst]).assert_exit(0);
            assert!(assert_absent_or_whole(&iso, &dst, &source));
        }
    }
    eprintln!("env copy killed mid-way in {mid} of 4 iterations");
    assert!(
        mid > 0,
        "no kill landed mid-copy: the copy is too fast to test"
    );
    assert_leftovers_swept(&iso);
    assert_source_intact(&source);
}

#[test]
fn kill_9_of_env_import_leaves_no_half_made_env() {
    let iso = Iso::new();
    let up = make_source(&iso);
    iso.isotrace(["config", "set", "fonts.policy", "global", "--env", "A"])
        .assert_exit(0);
    let tar = iso.root().join("a.tar");
    iso.isotrace(["env", "export", "A", "-o", path_str(&tar)])
        .assert_exit(0);
    let tar_hash = hash_file(&tar);
    let source = host_snapshot(&up);
    let other = Iso::new();
    let total = SMALL_FILES + 45;
    let mut mid = 0;
    for (i, point) in [1, total / 4, total / 2, total - 2].into_iter().enumerate() {
        let dst = format!("I{i}");
        let mut child = spawn(&other, &["env", "import", path_str(&tar), "--name", &dst]);
        let home = other.home();
        mid += kill_at(&mut child, point, || staged_entries(&home)) as usize;
        assert_eq!(hash_file(&tar), tar_hash, "the archive changed");
        if !assert_absent_or_whole(&other, &dst, &source) {
            other
                .isotrace(["env", "import", path_str(&tar), "--name", &dst])
                .assert_exit(0);
            assert!(assert_absent_or_whole(&other, &dst, &source));
        }
        let shown = other.isotrace(["config", "show", "--env", &dst]);
        assert!(shown.stdout_str().contains("fonts.policy = \"global\""));
    }
    eprintln!("env import killed mid-way in {mid} of 4 iterations");
    assert!(
        mid > 0,
        "no kill landed mid-import: the import is too fast to test"
    );
    assert_leftovers_swept(&other);
}

/// The size of the biggest copy-up temp file in env `env`'s work dir.
fn copy_up_bytes(iso: &Iso, env: &str) -> usize {
    let work = iso.home().join("envs").join(env).join("work");
    fs::read_dir(work)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len() as usize)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_of_a_group_mid_copy_up_keeps_the_env_valid() {
    let iso = Iso::new();
    let big = iso.host().join("big");
    write_big(&big, 2 * BIG);
    let host_hash = hash_file(&big);
    let original = fs::read(&big).unwrap();
    let mark = unique_token("line");
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do echo {mark}$i >> {}; i=$((i+1)); done",
        path_str(&big)
    );
    let (mut mid, mut temps) = (0, 0);
    for (i, point) in [1, BIG / 2, BIG, 2 * BIG - 4096].into_iter().enumerate() {
        let env = format!("G{i}");
        let mut child = spawn(&iso, &["--env", &env, "--", "/bin/sh", "-c", &script]);
        let killed = kill_at(&mut child, point, || copy_up_bytes(&iso, &env));
        mid += killed as usize;
        // EXITKILL: the guest died with its supervisor.
        wait_until("the guest to die", DEADLINE, || {
            common::pids_with_cmdline(&mark).is_empty()
        });
        // The killed copy-up's temp is left in work/; once idle, the next
        // supervisor in the env sweeps it (its maker is gone).
        let work = iso.home().join("envs").join(&env).join("work");
        let left: Vec<PathBuf> = fs::read_dir(&work)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        // (A kill that lands just after the copy-up's rename leaves none.)
        temps += !left.is_empty() as usize;
        let past = SystemTime::now() - Duration::from_secs(3600);
        for p in &left {
            fs::File::open(p).unwrap().set_modified(past).unwrap();
        }
        assert_eq!(hash_file(&big), host_hash, "the host file changed");
        let show = iso.isotrace(["env", "show", &env]);
        show.assert_exit(0);
        assert!(
            show.stdout_str().contains("groups: none running"),
            "{}",
            show.describe()
        );
        // The env sees the original, plus whole appended lines in order.
        let seen = iso.isotrace(["--env", &env, "--", "cat", path_str(&big)]);
        seen.assert_exit(0);
        let still: Vec<&PathBuf> = left.iter().filter(|p| p.exists()).collect();
        assert!(still.is_empty(), "not swept from work/: {still:?}");
        assert!(seen.stdout.len() >= original.len());
        assert!(
            seen.stdout[..original.len()] == original[..],
            "prefix differs"
        );
        let tail = String::from_utf8_lossy(&seen.stdout[original.len()..]).into_owned();
        let want: String = (0..tail.lines().count())
            .map(|n| format!("{mark}{n}\n"))
            .collect();
        assert_eq!(tail, want, "env {env}: appended lines");
        // The group runs again in the same env, to completion.
        let mut again = spawn(&iso, &["--env", &env, "--", "/bin/sh", "-c", &script]);
        assert_eq!(shell_status_within(&mut again, DEADLINE), 0);
        let after = iso.isotrace(["--env", &env, "--", "cat", path_str(&big)]);
        after.assert_exit(0);
        let more: String = (0..200).map(|n| format!("{mark}{n}\n")).collect();
        assert!(
            after.stdout[..original.len()] == original[..],
            "prefix differs"
        );
        assert_eq!(
            String::from_utf8_lossy(&after.stdout[original.len()..]),
            format!("{tail}{more}"),
            "env {env}: the re-run's lines"
        );
        iso.isotrace(["env", "rm", &env]).assert_exit(0);
    }
    eprintln!("copy-up killed mid-way in {mid} of 4 iterations, {temps} left a temp");
    assert!(mid > 0, "no kill landed mid-copy-up");
    assert!(temps > 0, "no killed copy-up left a temp to sweep");
    assert_eq!(hash_file(&big), host_hash);
}

/// How many bytes `pid` has written to the unnamed (O_TMPFILE) file it
/// holds in `dir`: its /proc fd link reads "DIR/#INODE (deleted)".
fn unnamed_bytes(pid: u32, dir: &Path) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let prefix = format!("{}/#", dir.display());
    fds.flatten()
        .filter(|fd| {
            fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with(&prefix))
        })
        .filter_map(|fd| fs::metadata(fd.path()).ok())
        .map(|m| m.len() as usize)
        .max()
        .unwrap_or(0)
}

/// kill -9 of `env export` while it writes leaves nothing in the output
/// directory: no partial archive, no temp file (the archive has no name
/// until it is whole); an earlier archive at the target stays as it was.
#[test]
fn kill_9_of_env_export_leaves_no_file() {
    let iso = Iso::new();
    make_source(&iso);
    let out = iso.root().join("out");
    fs::create_dir(&out).unwrap();
    let tar = out.join("a.tar");
    let mut mid = 0;
    for point in [1 << 20, BIG / 2, BIG] {
        let mut child = spawn(&iso, &["env", "export", "A", "-o", path_str(&tar)]);
        let pid = child.id();
        let killed = kill_at(&mut child, point, || unnamed_bytes(pid, &out));
        mid += killed as usize;
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(names.is_empty() || !killed, "left behind: {names:?}");
        if !killed {
            fs::remove_file(&tar).unwrap();
        }
    }
    eprintln!("env export killed mid-way in {mid} of 3 iterations");
    assert!(mid > 0, "no kill landed mid-export");
    // A whole export over an existing archive replaces it; a killed one
    // leaves the old one.
    iso.isotrace(["env", "export", "A", "-o", path_str(&tar)])
        .assert_exit(0);
    let whole = hash_file(&tar);
    let mut child = spawn(&iso, &["env", "export", "A", "-o", path_str(&tar)]);
    let pid = child.id();
    if kill_at(&mut child, 1 << 20, || unnamed_bytes(pid, &out)) {
        assert_eq!(hash_file(&tar), whole);
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    }
}
