//! Registers in `isotrace core`, checked by gdb against the values the
//! program itself set: snap_regs parks three threads in read(2) inside
//! named functions with known rbx, r12, ymm0 (and zmm0 where the CPU has
//! AVX-512F) and writes those values down. gdb must show every thread's
//! function and exactly those values, and the same stacks as gdb's own
//! `gcore` of the same process.

mod common;
mod snapshot_support;

use common::{guest, have_program, wait_for_file, wait_for_pid, wait_until, Status};
use snapshot_support::{gdb, path, per_thread, run_isotrace, snapshot, tracer_of, Target, WAIT};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One line of DIR/regs: what a parked thread loaded.
#[derive(Debug)]
struct Parked {
    function: String,
    rbx: u64,
    r12: u64,
    ymm0: Vec<u64>,
    /// None without AVX-512F.
    zmm0: Option<Vec<u64>>,
}

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn parse_regs(text: &str) -> BTreeMap<i32, Parked> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |key: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} in {line:?}"))
        };
        let list = |v: &str| v.split(',').map(hex).collect::<Vec<_>>();
        let zmm = field("zmm0=");
        out.insert(
            words[0].parse().unwrap(),
            Parked {
                function: words[1].to_owned(),
                rbx: hex(field("rbx=")),
                r12: hex(field("r12=")),
                ymm0: list(field("ymm0=")),
                zmm0: (zmm != "none").then(|| list(zmm)),
            },
        );
    }
    out
}

/// `rbx            0x5ca1...  6674...` → the hex value of register `name`.
fn info_register(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next() != Some(name) {
            return None;
        }
        w.next().map(hex)
    })
}

/// A thread blocked in a syscall that a first hold interrupted (the uffd
/// method holds the target twice) restarts it when released: the kernel
/// rewinds rip over the `syscall` instruction (0f 05) to issue it again.
/// The pause may catch it there, one instruction before the blocked state
/// gcore sees later: the same call, about to be issued again, not a wrong
/// register.
fn at_restarted_syscall(pid: i32, ours: Option<u64>, gcore: Option<u64>) -> bool {
    use std::os::unix::fs::FileExt;
    let (Some(ours), Some(gcore)) = (ours, gcore) else {
        return false;
    };
    let mut insn = [0u8; 2];
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"));
    ours + 2 == gcore
        && mem.is_ok_and(|m| m.read_exact_at(&mut insn, ours).is_ok())
        && insn == [0x0f, 0x05]
}

/// The `$N = {0x.., 0x..}` lines of one thread's output, in order; an
/// element gdb shows as `<unavailable>` is None.
fn printed_vectors(text: &str) -> Vec<Vec<Option<u64>>> {
    text.lines()
        .filter_map(|l| l.split_once(" = {"))
        .map(|(_, v)| {
            v.trim_end_matches('}')
                .split(", ")
                .map(|e| e.starts_with("0x").then(|| hex(e)))
                .collect()
        })
        .collect()
}

fn some(v: &[u64]) -> Vec<Option<u64>> {
    v.iter().copied().map(Some).collect()
}

/// Function names of a thread's backtrace, innermost first.
fn frames(bt: &str) -> Vec<String> {
    bt.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let after = l.split_once(" in ").map_or(l, |(_, r)| r);
            let name = after
                .split_whitespace()
                .nth(if l.contains(" in ") { 0 } else { 1 })?;
            Some(name.to_owned())
        })
        .collect()
}

fn cpu_has_avx512f() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "avx512f"))
}

/// gdb on `core`: per LWP, the backtrace's functions and the text of the
/// register commands.
fn gdb_threads(
    exe: &Path,
    core: &Path,
    avx512: bool,
) -> Option<BTreeMap<i32, (Vec<String>, String)>> {
    let mut cmds = vec![
        "thread apply all bt",
        "thread apply all info registers rbx r12 rip",
        "thread apply all p/x $ymm0.v4_int64",
    ];
    if avx512 {
        cmds.push("thread apply all p/x $zmm0.v8_int64");
    }
    let out = gdb(exe, core, &cmds)?;
    Some(
        per_thread(&out)
            .into_iter()
            .map(|(tid, text)| (tid, (frames(&text), text)))
            .collect(),
    )
}

#[test]
fn gdb_sees_each_threads_function_and_registers_like_gcore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = guest("snap_regs");
    let target = Target::spawn(Command::new(&exe).arg(dir));
    let pid = wait_for_pid(&dir.join("pid"), WAIT);
    let parked = parse_regs(&wait_for_file(&dir.join("regs"), WAIT));
    assert_eq!(parked.len(), 3, "{parked:?}");
    let avx512 = cpu_has_avx512f();
    assert!(parked.values().all(|p| p.zmm0.is_some() == avx512));
    // Blocked in read(2) (syscall 0) for real, not about to be.
    wait_until("the threads to block in read", WAIT, || {
        parked.keys().all(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .is_ok_and(|s| s.starts_with("0 "))
        })
    });

    let img = dir.join("img");
    snapshot(pid, &img, dir).assert_exit(0);
    let core = dir.join("core");
    run_isotrace(&["core", path(&img), "-o", path(&core)], dir).assert_exit(0);
    let Some(ours) = gdb_threads(&exe, &core, avx512) else {
        return;
    };
    assert_eq!(ours.len(), 4, "{ours:?}");
    for (tid, p) in &parked {
        let (frames, text) = &ours[tid];
        assert!(frames.contains(&p.function), "{tid}: {frames:?}\n{text}");
        assert_eq!(info_register(text, "rbx"), Some(p.rbx), "{tid} rbx\n{text}");
        assert_eq!(info_register(text, "r12"), Some(p.r12), "{tid} r12\n{text}");
        let vectors = printed_vectors(text);
        assert_eq!(vectors[0], some(&p.ymm0), "{tid} ymm0\n{text}");
        if let Some(zmm) = &p.zmm0 {
            assert_eq!(vectors[1], some(zmm), "{tid} zmm0\n{text}");
        }
    }
    assert!(
        ours[&pid].0.contains(&"main".to_owned()),
        "{:?}",
        ours[&pid]
    );

    // gdb's own gcore of the same process: the same threads, and each
    // parked thread the same stack at the same rip, rbx and r12.
    if have_program("gcore") {
        let prefix = dir.join("gcore");
        let mut cmd = Command::new("gcore");
        cmd.arg("-o").arg(&prefix).arg(pid.to_string());
        let (status, _, err) = common::execute(&mut cmd, None, WAIT, None);
        assert_eq!(
            status,
            Status::Exited(0),
            "{}",
            String::from_utf8_lossy(&err)
        );
        let theirs =
            gdb_threads(&exe, Path::new(&format!("{}.{pid}", path(&prefix))), avx512).unwrap();
        assert_eq!(
            theirs.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>()
        );
        for tid in parked.keys() {
            let ((f1, t1), (f2, t2)) = (&ours[tid], &theirs[tid]);
            assert_eq!(f1, f2, "{tid}: isotrace core vs gcore\n{t1}\n{t2}");
            for reg in ["rbx", "r12"] {
                assert_eq!(
                    info_register(t1, reg),
                    info_register(t2, reg),
                    "{tid} {reg}"
                );
            }
            let (ip1, ip2) = (info_register(t1, "rip"), info_register(t2, "rip"));
            assert!(
                ip1 == ip2 || at_restarted_syscall(pid, ip1, ip2),
                "{tid} rip: ours {ip1:x?}, gcore's {ip2:x?}"
            );
        }
    } else {
        eprintln!("gcore is not installed: skipping the comparison (apt-get install gdb)");
    }

    // The target was left as it was: its reads are restarted and return
    // the byte, with rbx and r12 intact.
    assert_eq!(tracer_of(pid), 0);
    std::fs::write(dir.join("go"), "").unwrap();
    let (status, out) = target.finish();
    assert_eq!(status, Status::Exited(0));
    assert_eq!(
        out,
        "parked_in_red ok\nparked_in_green ok\nparked_in_blue ok\ndone\n"
    );
}
