//! Issue #6: `--pre-copy` of a group of several processes.
//!
//! The guest is python3 forking a child: each process fills its own
//! MIB MiB of private memory with known patterns, rewrites PAGES pages
//! every step (steps do not sleep, so writes go on through every round
//! and up to the freeze), checks 256 of its pages against
//! what it wrote on every step (the whole of it every 32 steps for
//! 32 MiB), keeps a running
//! SHA-256 over its count in its heap, and writes "ok N HASH" lines to a
//! file of its own. Both also write a slot of a MAP_SHARED anonymous
//! mapping made before the fork (Python's mmap(-1, ...)), read their own
//! back the next step and check that the other's never goes back: a
//! write through the other process's mapping leaves no trace in this
//! one's page table, so shared memory must come whole from the freeze. A stale page (one pre-copy sent and the tracking
//! missed a write to) writes a BAD line and stops the count, and the
//! kernel, through python3's own reads, is the oracle.

mod common;
mod migrate_support;

use common::{path_str, wait_until};
use migrate_support::*;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const PY_PAIR: &str = r#"
import hashlib, mmap, os, sys, time
MIB, PAGES, CHECK = int(sys.argv[3]), int(sys.argv[4]), 256
CHURN = len(sys.argv) > 5
PG = 4096
npages = MIB * 256
pats = [hashlib.sha256(b"%d" % k).digest() * (PG // 32) for k in range(251)]
shared = mmap.mmap(-1, 2 * PG)
# One 8-byte load or store per access: struct.pack_into zeroes its bytes
# before writing the value (CPython's s_pack_internal), so the other
# process could read 0 mid-write, natively too.
slots = memoryview(shared).cast("Q")
child = os.fork() == 0
slot, other = (PG, 0) if child else (0, PG)
out = open(sys.argv[2] if child else sys.argv[1], "w", buffering=1)
tag = 7 if child else 3
mem = bytearray(npages * PG)
want = [(p * tag) % 251 for p in range(npages)]
for p in range(npages):
    mem[p * PG:(p + 1) * PG] = pats[want[p]]
def bad(what):
    out.write("BAD %s\n" % what)
    out.flush()
    os._exit(1)
n, h, last, seen = 0, hashlib.sha256(), 0, 0
while True:
    n += 1
    for i in range(PAGES):
        p = ((n * PAGES + i) * 7919) % npages
        want[p] = (n + i) % 251
        mem[p * PG:(p + 1) * PG] = pats[want[p]]
    for i in range(CHECK):
        p = (n * CHECK + i) % npages
        if mem[p * PG:(p + 1) * PG] != pats[want[p]]:
            bad("page %d at step %d" % (p, n))
    if slots[slot // 8] != last:
        bad("own shared slot at step %d" % n)
    now = slots[other // 8]
    if now < seen:
        bad("the other's shared slot went back from %d to %d" % (seen, now))
    seen = now
    if CHURN and not child:
        # A short-lived child every 50 steps (every other one runs
        # execve): processes start, exit and exec while pre-copy runs.
        if n % 50 == 0 and os.fork() == 0:
            x = bytearray(1 << 20)
            for k in range(256):
                x[k * PG] = 1
            if n % 100 == 0:
                os.execv("/bin/true", ["true"])
            os._exit(0)
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
    last = n
    slots[slot // 8] = n
    h.update(str(n).encode())
    out.write("ok %d %s\n" % (n, h.hexdigest()[:16]))
"#;

/// python3 re-derives the running hash from the file (as tests/migrate.rs).
const PY_VERIFY: &str = r#"
import hashlib, sys
h = hashlib.sha256()
lines = open(sys.argv[1]).read().split("\n")[:-1]
for i, line in enumerate(lines, 1):
    h.update(str(i).encode())
    assert line == "ok %d %s" % (i, h.hexdigest()[:16]), (i, line)
print(len(lines))
"#;

/// MiB per process, pages rewritten per step (steps do not sleep: the
/// writes go on through every round and up to the freeze).
const MIB: &str = "32";
const PAGES: &str = "4";
/// Steps after the move: every page of both processes checked twice.
const STEPS: u64 = 64;

struct Pair {
    w: World,
    sup: Child,
    outs: [PathBuf; 2],
}

fn start_pair(group: &str, churn: bool) -> Pair {
    let mut w = World::new();
    let script = w.dir().join("pair.py");
    fs::write(&script, PY_PAIR).unwrap();
    let outs = [w.dir().join("parent"), w.dir().join("child")];
    let args = ["run", "--env", "A", "--group", group, "--", common::PYTHON];
    let mut cmd = w.command("home", &args);
    cmd.args([path_str(&script), path_str(&outs[0]), path_str(&outs[1])])
        .args([MIB, PAGES])
        .args(churn.then_some("churn"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    for o in &outs {
        let a = w.env_file("home", "A", o);
        wait_until("both processes to count", WAIT, || counted(&a) >= 5);
    }
    Pair { w, sup, outs }
}

/// Migrates the pair to env B (`extra` flags), checks that both carry on
/// with every check passing, and returns the result.
fn migrate_pair(group: &str, extra: &[&str], churn: bool) -> Value {
    let mut p = start_pair(group, churn);
    let mut args = vec!["migrate", group, "--to-env", "B", "--json"];
    args.extend(extra);
    let (code, out, err) = p.w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let pids: Vec<i32> = v["dest_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    p.w.pids.extend(&pids);
    // The copy's pid-namespace init (the restore supervisor) too: killing
    // it ends every process restored in the namespace, including a child
    // the pair had not yet reaped, which the pids above may not name.
    for &pid in &pids {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"));
        if let Some(ppid) = ppid.and_then(|v| v.trim().parse::<i32>().ok()) {
            p.w.pids.push(ppid);
        }
    }
    // The pair, and with churn short-lived children (one or more: a child
    // that has exited but is not reaped yet counts too) frozen with it.
    // (A stop-and-copy run once had a third destination pid without churn,
    // under load, not seen again in 18 runs: the pair is what is checked.)
    let last = |o: &PathBuf| {
        let t = fs::read_to_string(p.w.env_file("home", "A", o)).unwrap_or_default();
        t.lines().last().unwrap_or("").to_string()
    };
    let lasts: Vec<String> = p.outs.iter().map(last).collect();
    assert!(pids.len() >= 2, "{out}\nlast lines in env A: {lasts:?}");
    assert_released(&mut p.sup);
    assert!(err.contains("downtime"), "the downtime is printed: {err}");
    for o in &p.outs {
        let before = counted(&p.w.env_file("home", "A", o));
        let b = p.w.env_file("home", "B", o);
        let text = || fs::read_to_string(&b).unwrap_or_default();
        wait_until("both copies to count on in env B", WAIT, || {
            counted(&b) >= before + STEPS || text().contains("BAD")
        });
        let bad = text()
            .lines()
            .find(|l| l.starts_with("BAD"))
            .map(String::from);
        assert_eq!(bad, None, "a check failed in {}", b.display());
        assert!(assert_seamless(&b) >= before + STEPS);
        let verify = Command::new(common::PYTHON)
            .args(["-c", PY_VERIFY, path_str(&b)])
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    eprintln!(
        "two python3 processes of {MIB} MiB each, {PAGES} pages per step each (no sleep), {}: downtime {:.1} ms (freeze {:.1}, dump {:.1}, send {:.1}, restore {:.1}), rounds {}",
        v["mode"].as_str().unwrap_or(""),
        v["downtime_ms"].as_f64().unwrap_or(0.0),
        v["freeze_ms"].as_f64().unwrap_or(0.0),
        v["dump_ms"].as_f64().unwrap_or(0.0),
        v["send_ms"].as_f64().unwrap_or(0.0),
        v["restore_ms"].as_f64().unwrap_or(0.0),
        v["rounds"]
    );
    v
}

fn notes(v: &Value) -> Vec<String> {
    v["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Both processes are pre-copied, each with its own tracker: the notes
/// name each pid as pre-copied, none as dumped whole, and the round 0
/// sent at least the memory both filled.
#[test]
fn pre_copy_moves_a_parent_and_its_child() {
    let v = migrate_pair("pp", &["--pre-copy"], false);
    let mode = v["mode"].as_str().unwrap();
    assert!(mode.contains("userfaultfd write-protect async"), "{v}");
    assert!(!mode.contains(" of the group"), "every process: {v}");
    let notes = notes(&v);
    let pre: Vec<&String> = notes
        .iter()
        .filter(|n| n.contains(": pre-copied"))
        .collect();
    assert_eq!(pre.len(), 2, "one pre-copy per process: {notes:?}");
    assert!(
        !notes.iter().any(|n| n.contains("dumped whole")),
        "{notes:?}"
    );
    let rounds = v["rounds"].as_array().unwrap();
    let mib: u64 = MIB.parse().unwrap();
    assert!(
        rounds[0]["pages"].as_u64().unwrap() >= 2 * mib * 256,
        "round 0 sends both processes' memory: {v}"
    );
    assert!(v["downtime_ms"].as_f64().unwrap() > 0.0, "{v}");
}

/// The same group without pre-copy, for the downtime to compare with
/// (printed with --nocapture).
#[test]
fn stop_and_copy_moves_the_same_pair() {
    let v = migrate_pair("ps", &[], false);
    assert_eq!(v["mode"], "stop-and-copy");
    assert!(v["downtime_ms"].as_f64().unwrap() > 0.0, "{v}");
}

/// The parent forks a short-lived child every 50 steps and reaps it:
/// processes start and exit while pre-copy runs. The pair is pre-copied;
/// a child that exited is dropped; one started meanwhile, or one that
/// could not be tracked, is dumped whole; the notes say which, and every
/// check of the pair still passes.
#[test]
fn pre_copy_survives_children_starting_and_exiting() {
    let v = migrate_pair("pc", &["--pre-copy"], true);
    let notes = notes(&v);
    eprintln!("notes: {notes:?}");
    let pre = notes.iter().filter(|n| n.contains(": pre-copied")).count();
    assert!(pre >= 2, "the pair is pre-copied: {notes:?}");
    for n in notes.iter().filter(|n| n.starts_with("pid ")) {
        let known = [
            "pre-copied",
            "exited during pre-copy",
            "ran execve(2) during pre-copy",
            "started during pre-copy",
            // Caught at the setup in its fork's new-child stop.
            "dumped whole at the freeze (no thread in an interrupt stop",
        ];
        assert!(known.iter().any(|k| n.contains(k)), "{n}");
    }
}
