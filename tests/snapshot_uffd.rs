//! The copy-before-write snapshot (#7, `--method uffd`): the target runs
//! while its memory is read, each page copied before its first write. The
//! guest (snap_gen.c) rewrites a region page after page with a generation
//! number, so a consistent image of it shows at most one place where the
//! generation drops, by one; reading the running process naively shows
//! many (checked here too, so the test is known to catch a torn dump).

mod common;
mod snapshot_support;

use common::{guest, wait_for_file, wait_for_pid, Status};
use isotrace_checkpoint::Image;
use snapshot_support::{
    hex_field, path, record, run_isotrace, snapshot_by, spawn_snapshot, tracer_of, Target, WAIT,
};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PAGE: usize = 4096;
/// 64 MiB: a few ms per pass of the writer, tens of ms to read.
const PAGES: u64 = 16384;

/// A scratch directory, or None (the test is skipped) without root:
/// userfaultfd for kernel-mode faults in the target wants CAP_SYS_PTRACE.
fn scratch() -> Option<TempDir> {
    if !common::is_root() {
        eprintln!("needs root (userfaultfd for kernel-mode faults in the target): skipped");
        return None;
    }
    Some(tempfile::tempdir().unwrap())
}

/// (address, pages) from DIR/region.
fn region(dir: &Path) -> (u64, u64) {
    let text = wait_for_file(&dir.join("region"), WAIT);
    let pages = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pages="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pages= in {text:?}"));
    (hex_field(&text, "addr"), pages)
}

/// A page's first word (0 for a page the image does not hold: it was
/// never touched).
fn first_word(page: &Option<Vec<u8>>) -> u64 {
    page.as_deref()
        .map_or(0, |p| u64::from_ne_bytes(p[..8].try_into().unwrap()))
}

/// The generation of each page (its first and last words, which differ
/// in a page caught half written).
fn generations(pages: &[Option<&[u8]>]) -> Vec<(u64, u64)> {
    pages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = p.unwrap_or_else(|| panic!("page {i} not captured"));
            let word = |at: usize| u64::from_ne_bytes(p[at..at + 8].try_into().unwrap());
            (word(0), word(PAGE - 8))
        })
        .collect()
}

/// Pages caught half written.
fn half_written(gens: &[(u64, u64)]) -> usize {
    gens.iter().filter(|(a, b)| a != b).count()
}

/// The words in the order the writer writes them (each page's first,
/// then its last): one moment of it has at most one place where the
/// generation changes, a drop by one (which may fall inside the page the
/// writer was at).
fn in_write_order(gens: &[(u64, u64)]) -> Vec<u64> {
    gens.iter().flat_map(|&(a, b)| [a, b]).collect()
}

/// Places where the generation changes going up the region; each must
/// be a drop by exactly one to count as the writer's position.
/// (index in write order, before, after) of each change.
fn boundaries(gens: &[(u64, u64)]) -> Vec<(usize, u64, u64)> {
    in_write_order(gens)
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] != w[1])
        .map(|(i, w)| (i + 1, w[0], w[1]))
        .collect()
}

fn assert_consistent(gens: &[(u64, u64)], what: &str) {
    assert!(half_written(gens) <= 1, "{what}: pages caught half written");
    let b = boundaries(gens);
    assert!(
        b.len() <= 1 && b.iter().all(|&(_, a, c)| a == c + 1),
        "{what}: {} boundaries, first ones {:?}",
        b.len(),
        &b[..b.len().min(8)]
    );
}

fn image_generations(img: &Path, pid: i32, (addr, pages): (u64, u64)) -> Vec<(u64, u64)> {
    let image = Image::open(img).unwrap();
    let read = image
        .read_memory(pid, addr, pages * PAGE as u64)
        .expect("read the region");
    let data: Vec<Option<&[u8]>> = read.iter().map(|(_, d)| d.as_deref()).collect();
    generations(&data)
}

/// The guest's own check, after DIR/exit: its region is intact.
fn finish(target: Target, dir: &Path) {
    std::fs::write(dir.join("exit"), "").unwrap();
    let (status, out) = target.finish();
    assert_eq!(status, Status::Exited(0), "the target's memory: {out}");
    assert!(out.contains("boundaries"), "{out}");
}

fn spawn(dir: &Path, pages: u64, mode: &str) -> (Target, i32, (u64, u64)) {
    let mut cmd = Command::new(guest("snap_gen"));
    cmd.arg(dir).arg(pages.to_string());
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    let target = Target::spawn(&mut cmd);
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    (target, pid, region(dir))
}

/// The test's premise: the region read while the writer runs (as a dump
/// without protection would) is torn, many times over.
#[test]
fn a_naive_read_of_the_running_guest_is_torn() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, (addr, pages)) = spawn(dir, PAGES, "");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut bufs = vec![vec![0u8; PAGE]; pages as usize];
    for (i, b) in bufs.iter_mut().enumerate() {
        mem.read_exact_at(b, addr + (i * PAGE) as u64).unwrap();
    }
    let data: Vec<Option<&[u8]>> = bufs.iter().map(|b| Some(b.as_slice())).collect();
    let gens = generations(&data);
    let (b, half) = (boundaries(&gens), half_written(&gens));
    assert!(
        b.len() > 1,
        "a page-by-page read of the running writer saw one moment: {b:?} ({half} half written)"
    );
    finish(target, dir);
}

#[test]
fn the_image_is_one_moment_while_the_target_writes() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, region) = spawn(dir, PAGES, "");
    for method in ["uffd", "fork", "auto"] {
        let img = dir.join(format!("img-{method}"));
        let run = snapshot_by(pid, &img, dir, method);
        run.assert_exit(0);
        let gens = image_generations(&img, pid, region);
        assert_consistent(&gens, method);
        let r = record(&img, dir);
        let p = &r["processes"][0];
        let expect = if method == "fork" {
            "cow-fork"
        } else {
            "uffd-wp"
        };
        assert_eq!(p["memory_method"], expect, "{r}");
        let image = Image::open(&img).unwrap();
        assert_eq!(image.manifest.memory_method, expect);
        if method == "uffd" {
            let u = &p["uffd"];
            assert!(u["copied_before_write"].as_u64().unwrap() > 0, "{u}");
            assert!(
                u["protected_bytes"].as_u64().unwrap() >= PAGES * PAGE as u64,
                "{u}"
            );
            assert!(
                run.stderr_str().contains("copied before a write"),
                "{}",
                run.describe()
            );
            let human = run_isotrace(&["inspect", path(&img)], dir);
            assert!(
                human
                    .assert_exit(0)
                    .stdout_str()
                    .contains("copied before a write"),
                "{}",
                human.describe()
            );
        }
        assert_eq!(tracer_of(pid), 0);
    }
    finish(target, dir);
}

/// The target's fork(2) during the copy: the child's mappings lose the
/// registration, the target's stay protected.
#[test]
fn the_target_forks_during_the_copy() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, region) = spawn(dir, PAGES, "fork");
    let img = dir.join("img");
    snapshot_by(pid, &img, dir, "uffd").assert_exit(0);
    assert_consistent(&image_generations(&img, pid, region), "uffd with forks");
    finish(target, dir);
}

/// Transparent huge pages: protected and scanned by PMD, split where a
/// single page is copied or un-protected.
#[test]
fn a_target_on_huge_pages() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, region) = spawn(dir, PAGES, "thp");
    // Twice: the first leaves huge pages split where it un-protected.
    for _ in 0..2 {
        let img = dir.join("img");
        snapshot_by(pid, &img, dir, "uffd").assert_exit(0);
        assert_consistent(&image_generations(&img, pid, region), "huge pages");
        std::fs::remove_dir_all(&img).unwrap();
    }
    finish(target, dir);
}

/// A target using userfaultfd itself: its registered mapping refuses ours
/// (EBUSY), so it is read during the pause, and the record says so.
#[test]
fn a_target_with_its_own_userfaultfd() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, region) = spawn(dir, PAGES, "uffd");
    let img = dir.join("img");
    snapshot_by(pid, &img, dir, "uffd").assert_exit(0);
    assert_consistent(&image_generations(&img, pid, region), "own uffd");
    let r = record(&img, dir);
    let u = &r["processes"][0]["uffd"];
    let refused = u["read_in_pause"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_str().unwrap().contains("registration refused"))
        .count();
    assert_eq!(refused, 1, "{u}");
    assert!(u["read_in_pause_bytes"].as_u64().unwrap() >= 1 << 20, "{u}");
    finish(target, dir);
}

/// madvise(MADV_DONTNEED) and munmap of pages not read yet cannot be made
/// consistent: `--method uffd` fails saying so (or wins the race), and
/// `auto` takes the snapshot again by fork and records why. Never a torn
/// image.
#[test]
fn the_target_drops_or_unmaps_memory_during_the_copy() {
    for mode in ["dontneed", "munmap"] {
        let Some(tmp) = scratch() else {
            return;
        };
        let dir = tmp.path();
        let (target, pid, region) = spawn(dir, PAGES, mode);
        let img = dir.join("img-uffd");
        let run = snapshot_by(pid, &img, dir, "uffd");
        if run.status == Status::Exited(0) {
            assert_consistent(&image_generations(&img, pid, region), mode);
        } else {
            assert!(
                run.stderr_str().contains("cannot be consistent") && !img.exists(),
                "{}",
                run.describe()
            );
        }
        let img = dir.join("img-auto");
        snapshot_by(pid, &img, dir, "auto").assert_exit(0);
        assert_consistent(&image_generations(&img, pid, region), mode);
        let r = record(&img, dir);
        let p = &r["processes"][0];
        if p["memory_method"] == "cow-fork" {
            assert!(r["uffd_abandoned"].as_str().is_some(), "{r}");
            let human = run_isotrace(&["inspect", path(&img)], dir);
            assert!(
                human.assert_exit(0).stdout_str().contains("abandoned"),
                "{}",
                human.describe()
            );
        } else {
            assert_eq!(p["memory_method"], "uffd-wp", "{r}");
        }
        finish(target, dir);
    }
}

/// exec(2) during the copy replaces the mm whose pages were protected:
/// the copy is torn (never an image mixing two programs).
#[test]
fn the_target_execs_during_the_copy() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (_target, pid, region) = spawn(dir, PAGES * 4, "exec");
    let img = dir.join("img");
    let iso = spawn_snapshot(pid, &img, "uffd", Stdio::piped());
    wait_for_fault_thread(iso.id());
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(dir.join("exec"), "").unwrap();
    let out = iso.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // The dump won the race: the image is the guest's, whole.
        assert_consistent(&image_generations(&img, pid, region), "exec");
    } else {
        assert!(err.contains("cannot be consistent"), "{err}");
        assert!(!img.exists());
    }
}

/// Waits until isotrace `pid` has its write-fault thread (from the first
/// hold on).
fn wait_for_fault_thread(pid: u32) {
    let deadline = Instant::now() + WAIT;
    let has_it = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("uffd-wp"))
                })
            })
            .unwrap_or(false)
    };
    while !has_it() {
        assert!(Instant::now() < deadline, "no uffd-wp thread appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A supervisor SIGKILLed while the target runs write-protected: closing
/// its userfaultfd un-registers everything and wakes the waiting writers
/// (userfaultfd_release), so the target runs on unharmed.
#[test]
fn a_killed_supervisor_leaves_the_target_running() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let (target, pid, _) = spawn(dir, PAGES * 4, "");
    let img = dir.join("img");
    let mut iso = spawn_snapshot(pid, &img, "uffd", Stdio::null());
    // Its fault thread exists from the first hold on; the dump of 256 MiB
    // takes well over 50 ms after it.
    wait_for_fault_thread(iso.id());
    std::thread::sleep(Duration::from_millis(50));
    iso.kill().unwrap();
    iso.wait().unwrap();
    // Running: not traced, and the writer still moves.
    assert_eq!(tracer_of(pid), 0);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let (addr, _) = region(dir);
    let gen = || {
        let mut w = [0u8; 8];
        mem.read_exact_at(&mut w, addr).unwrap();
        u64::from_ne_bytes(w)
    };
    let before = gen();
    let deadline = Instant::now() + WAIT;
    while gen() == before {
        assert!(Instant::now() < deadline, "the writer is stuck at {before}");
        std::thread::sleep(Duration::from_millis(5));
    }
    finish(target, dir);
}

/// Pages the target gains and writes between the first protection and the
/// pause (snap_fresh.c: each step touches a new page, writes the one
/// before it again, then a counter): the pause knows them present and
/// protects them again, so the image is one step of the writer's, never
/// a later write seen through a page the pause left writable.
#[test]
fn pages_touched_just_before_the_pause_are_of_the_pause() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let pages = 65536u64;
    let target = Target::spawn(
        Command::new(guest("snap_fresh"))
            .arg(dir)
            .arg(pages.to_string()),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let text = wait_for_file(&dir.join("region"), WAIT);
    let (a, b) = (hex_field(&text, "a"), hex_field(&text, "b"));
    // The window between the write-protection and the pause is a few ms:
    // under load the writer may not run in it, so the rounds go on (a
    // few more) until one shows pages touched there.
    let mut touched = 0;
    for round in 0..12 {
        if round >= 3 && touched > 0 {
            break;
        }
        let img = dir.join(format!("img-{round}"));
        snapshot_by(pid, &img, dir, "uffd").assert_exit(0);
        let image = Image::open(&img).unwrap();
        let h = first_word(&image.read_memory(pid, b, PAGE as u64).unwrap()[0].1);
        assert!(h >= 10 && h < pages, "counter {h}");
        let read = image.read_memory(pid, a, pages * PAGE as u64).unwrap();
        let at = |i: u64| first_word(&read[i as usize].1);
        for i in 0..h {
            assert_eq!(
                at(i),
                i + 1,
                "round {round}: page {i} with the counter at {h}"
            );
        }
        assert!(
            [h, h + 1].contains(&at(h)),
            "round {round}: page {h}: {}",
            at(h)
        );
        // Step h+1 touches page h+1 before it writes page h again.
        let next = h + 1;
        if next < pages {
            assert!(
                [0, next].contains(&at(next)),
                "round {round}: page {next}: {}",
                at(next)
            );
            assert!(
                at(next) == next || at(h) == h,
                "round {round}: page {h} written again before page {next} was touched"
            );
        }
        for i in next + 1..pages {
            assert_eq!(at(i), 0, "round {round}: page {i} beyond the counter {h}");
        }
        let r = record(&img, dir);
        let t = r["processes"][0]["uffd"]["touched_before_pause_bytes"]
            .as_u64()
            .unwrap();
        if t > 0 && touched == 0 {
            let human = run_isotrace(&["inspect", path(&img)], dir);
            let want = format!(
                "{} KiB written or gained between the write-protection and the pause",
                t >> 10
            );
            assert!(
                human.assert_exit(0).stdout_str().contains(&want),
                "{}",
                human.describe()
            );
        }
        touched += t;
        std::fs::remove_dir_all(&img).unwrap();
    }
    // The writer takes a step every 100 us: its pages between the
    // protection and the pause are what this test is about.
    assert!(touched > 0, "no page was touched before any of 12 pauses");
    std::fs::write(dir.join("exit"), "").unwrap();
    let (status, out) = target.finish();
    assert_eq!(status, Status::Exited(0), "{out}");
}

/// A target that maps, touches and unmaps a short-lived buffer all the
/// time (as a large malloc and free do), and gains pages: a buffer mapped
/// since the write-protection is copied in the pause, so its unmap just
/// after the pause does not tear the copy, and `--method uffd` succeeds.
/// An unmap that still reaches pages not yet dumped (a buffer mapped in
/// the window between arming and the pause, which load widens: README,
/// Limitations) must refuse the snapshot with its clear message and leave
/// no image, never write a torn one; at least one round succeeds.
#[test]
fn short_lived_buffers_do_not_tear_the_copy() {
    let Some(tmp) = scratch() else {
        return;
    };
    let dir = tmp.path();
    let target = Target::spawn(
        Command::new(guest("snap_rss"))
            .arg(dir)
            .arg("16")
            .arg("fault"),
    );
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let mut ok = 0;
    for round in 0..5 {
        let img = dir.join(format!("img-{round}"));
        let run = snapshot_by(pid, &img, dir, "uffd");
        if run.status != Status::Exited(0) {
            let err = run.stderr_str();
            assert!(
                err.contains("cannot be consistent") && err.contains("munmap"),
                "round {round}: {err}"
            );
            assert!(
                !img.join("manifest.json").exists(),
                "a refused snapshot left an image"
            );
            continue;
        }
        let r = record(&img, dir);
        assert_eq!(r["processes"][0]["memory_method"], "uffd-wp", "{r}");
        std::fs::remove_dir_all(&img).unwrap();
        ok += 1;
    }
    assert!(ok >= 1, "none of 5 uffd snapshots succeeded");
    std::fs::write(dir.join("exit"), "").unwrap();
    let (status, out) = target.finish();
    assert_eq!(status, Status::Exited(0), "the target's memory: {out}");
}
