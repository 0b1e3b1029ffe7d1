//! Issue #6: live migration and clone of a group running under isotrace.
//!
//! The main guest is `rst_counter` (one single-threaded process): it
//! writes "ok N" lines through one fd and checks its
//! heap, globals and a 4 MiB block on every line. It runs in env A; the
//! file lives in A's private layer. After a migration the copy writes on
//! in the destination environment's copy of that file, so the file there
//! must hold "ok 1" .. "ok N" with no gap, no repeat and no BAD line.
//!
//! Receivers are real `isotrace receive` processes on 127.0.0.1 with their
//! own ISOTRACE_HOME (the "other host"); the receiver that dies mid-stream
//! is this test speaking the real stream code and dropping the connection.

mod common;
mod migrate_support;

use common::{guest, path_str, wait_until};
use isotrace_checkpoint::stream::{Accept, EnvPlan, Kind, Session};
use migrate_support::*;
use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};

#[test]
fn migrate_to_env_carries_on_counting_in_the_new_env() {
    let mut w = World::new();
    let mut sup = w.start_counter("g1");
    let (code, out, err) = w.isotrace("home", &["migrate", "g1", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["mode"], "stop-and-copy");
    assert_eq!(v["env_plan"], "stream");
    assert_eq!(v["dest_env"], "B");
    assert!(v["downtime_ms"].as_f64().unwrap() > 0.0, "{out}");
    assert!(
        err.contains("downtime") && err.contains("mode stop-and-copy"),
        "{err}"
    );
    let pid = dest_pid(&v);
    w.pids.push(pid);
    assert_released(&mut sup);
    w.assert_counts_on("home", "B");
    let (_, ps, _) = w.isotrace("home", &["ps", "--json"], &[]);
    assert!(!ps.contains("\"g1\""), "group g1 still listed: {ps}");
    // The copy is a group of its own, under a supervisor, isolated in B
    // (on this host it takes the env's name: g1 was the source's).
    assert!(
        ps.contains("\"B\""),
        "the copy is not a supervised group: {ps}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "the copy runs without the seccomp filter:\n{status}"
    );
}

#[test]
fn migrate_to_a_receiver_on_loopback() {
    let mut w = World::new();
    let mut sup = w.start_counter("g2");
    let (mut rcv, port) = w.receiver(TOKEN, &[]);
    let to = format!("127.0.0.1:{port}");
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let (code, out, err) = w.isotrace("home", &["migrate", "g2", "--to", &to, "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["dest_env"], "A");
    w.pids.push(dest_pid(&v));
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 0);
    assert_released(&mut sup);
    w.assert_counts_on("home2", "A");
}

#[test]
fn a_wrong_token_is_rejected_and_the_group_runs_on() {
    let mut w = World::new();
    let sup = w.start_counter("g3");
    let (mut rcv, port) = w.receiver(TOKEN, &[]);
    let to = format!("127.0.0.1:{port}");
    let env = [("ISOTRACE_MIGRATE_TOKEN", "not-the-receivers-token-42")];
    let (code, _, err) = w.isotrace("home", &["migrate", "g3", "--to", &to], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rejected") && err.contains("token"), "{err}");
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 1);
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    assert!(
        !w.dir().join("home2/envs/A").exists(),
        "nothing may be created"
    );
    end(sup);
}

#[test]
fn a_receiver_lacking_a_cpu_feature_refuses_before_the_freeze() {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
    if !cpuinfo.contains(" avx512f") {
        eprintln!("skipped: this CPU has no AVX-512, so no receiver can lack it");
        return;
    }
    let mut w = World::new();
    let sup = w.start_counter("g4");
    let (mut rcv, port) = w.receiver(TOKEN, &[("ISOTRACE_FAULT", "receiver-lacks-avx512")]);
    let to = format!("127.0.0.1:{port}");
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let (code, _, err) = w.isotrace("home", &["migrate", "g4", "--to", &to], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("lacks") && err.contains("avx512f"), "{err}");
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 1);
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    end(sup);
}

/// A receiver that accepts, takes the first frames of the image and dies:
/// the real stream code on this side, the connection dropped mid-stream.
#[test]
fn a_receiver_dying_mid_stream_leaves_the_group_running() {
    let mut w = World::new();
    let sup = w.start_counter("g5");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap().to_string();
    let dying = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (mut s, hello) = Session::accept(conn, TOKEN.as_bytes()).unwrap();
        let accept = Accept {
            host: "dying".into(),
            xcr0: hello.xcr0,
            env_plan: EnvPlan::Stream,
            dest_env: Some("A".into()),
            layer_precopy: false,
        };
        s.tx.send_json(Kind::Accept, &accept).unwrap();
        let first = s.rx.recv().unwrap();
        assert_eq!(first.kind, Kind::Layer, "the layer comes first");
        // Dropping the session closes the socket: the receiver is gone.
    });
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let (code, _, err) = w.isotrace("home", &["migrate", "g5", "--to", &to], &env);
    dying.join().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("runs on where it was"), "{err}");
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    end(sup);
}

#[test]
fn clone_to_env_leaves_two_counters() {
    let mut w = World::new();
    let sup = w.start_counter("g6");
    let (code, out, err) = w.isotrace("home", &["clone", "g6", "--to-env", "C", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["source_released"], false);
    w.pids.push(dest_pid(&v));
    let a = w.env_file("home", "A", &w.out());
    let c = w.env_file("home", "C", &w.out());
    let (na, nc) = (counted(&a), counted(&c));
    wait_until("both copies to count on", WAIT, || {
        counted(&a) >= na + 3 && counted(&c) >= nc + 3
    });
    assert_seamless(&a);
    assert_seamless(&c);
    end(sup);
}

/// mig_dirty: 64 MiB, 2,000 pages rewritten per second, every page checked
/// against its expected generation. Pre-copy must run with uffd-wp, send
/// rounds, and the copy must carry on without a stale page.
#[test]
fn pre_copy_with_uffd_wp_moves_a_writer_intact() {
    pre_copy_moves("g7", &["64", "2000"]);
}

/// The same, with a mapping unmapped and mapped again in place every
/// 200 ms: the tracking notices it is no longer registered and sends it
/// whole (a page it missed would fail the image's checksum instead).
#[test]
fn pre_copy_sends_a_mapping_replaced_in_place_whole() {
    pre_copy_moves("g8", &["16", "1000", "remap"]);
}

fn pre_copy_moves(group: &str, guest_args: &[&str]) {
    let mut w = World::new();
    let mut sup = w.start_guest(group, "mig_dirty", guest_args);
    let args = ["migrate", group, "--to-env", "B", "--pre-copy", "--json"];
    let (code, out, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let mode = v["mode"].as_str().unwrap();
    assert!(mode.contains("userfaultfd write-protect async"), "{mode}");
    assert!(err.contains(mode), "the mode is printed: {err}");
    let rounds = v["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty(), "{out}");
    // Round 0 sends at least the memory the guest touched.
    let mib: u64 = guest_args[0].parse().unwrap();
    assert!(rounds[0]["pages"].as_u64().unwrap() >= mib * 256, "{out}");
    w.pids.push(dest_pid(&v));
    assert_released(&mut sup);
    let before = counted(&w.env_file("home", "A", &w.out()));
    let b = w.env_file("home", "B", &w.out());
    wait_until("the copy to check its memory on", WAIT, || {
        counted(&b) >= before + 10
    });
    assert!(assert_seamless(&b) >= before + 10);
}

/// python3 keeps a running SHA-256 over its count in its heap and prints
/// both; after the move, python3 itself re-derives the chain from the file.
const PY_COUNTER: &str = r#"
import hashlib, sys, time
out = open(sys.argv[1], "w", buffering=1)
n, h = 0, hashlib.sha256()
while True:
    n += 1
    h.update(str(n).encode())
    out.write("ok %d %s\n" % (n, h.hexdigest()[:16]))
    time.sleep(0.05)
"#;

const PY_VERIFY: &str = r#"
import hashlib, sys
h = hashlib.sha256()
lines = open(sys.argv[1]).read().split("\n")[:-1]
for i, line in enumerate(lines, 1):
    h.update(str(i).encode())
    assert line == "ok %d %s" % (i, h.hexdigest()[:16]), (i, line)
print(len(lines))
"#;

#[test]
fn python3_migrates_to_a_new_env_and_its_hash_chain_holds() {
    let mut w = World::new();
    let script = w.dir().join("count.py");
    fs::write(&script, PY_COUNTER).unwrap();
    let out = w.out();
    let args = ["run", "--env", "A", "--group", "py", "--", common::PYTHON];
    let mut cmd = w.command("home", &args);
    cmd.args([path_str(&script), path_str(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    let a = w.env_file("home", "A", &out);
    wait_until("python3 to count", WAIT, || counted(&a) >= 5);
    let (code, json_out, err) =
        w.isotrace("home", &["migrate", "py", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&json_out)));
    assert_released(&mut sup);
    let b = w.env_file("home", "B", &out);
    let before = counted(&a);
    wait_until("python3 to count on in env B", WAIT, || {
        counted(&b) >= before + 10
    });
    assert!(assert_seamless(&b) >= before + 10);
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

/// A receiver that sees the same store (shared storage): nothing of the
/// environment is sent, and the copy writes on in the same env A.
#[test]
fn a_receiver_on_the_same_store_uses_the_env_in_place() {
    let mut w = World::new();
    let mut sup = w.start_counter("gs");
    let (mut rcv, port) = w.receiver_of("home", TOKEN, &[]);
    let to = format!("127.0.0.1:{port}");
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let (code, out, err) = w.isotrace("home", &["migrate", "gs", "--to", &to, "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["env_plan"], "shared");
    assert_eq!(v["layer_bytes"], 0);
    w.pids.push(dest_pid(&v));
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 0);
    assert_released(&mut sup);
    let a = w.env_file("home", "A", &w.out());
    let before = counted(&a);
    wait_until("the copy to count on in env A", WAIT, || {
        counted(&a) >= before + 5
    });
    assert!(assert_seamless(&a) >= before + 5);
}

/// With --pre-copy the env's private layer goes whole while the group
/// runs, and at the freeze only what changed since: here the action
/// script, which runs at the freeze (network-lock), changes the source's
/// layer as the group could have meanwhile: a tree removed, a file
/// replaced by a directory, a file rewritten at the same size with its
/// mtime set back (only its ctime tells), a new file. The destination's
/// layer must match the source's exactly.
#[test]
fn pre_copy_sends_the_layer_early_and_its_changes_at_the_freeze() {
    let mut w = World::new();
    let make = "mkdir -p /opt/lay/gone /opt/lay/kind && \
        for i in $(seq 1 40); do head -c 50000 /dev/urandom > /opt/lay/f$i; done && \
        echo x > /opt/lay/gone/a && echo y > /opt/lay/kind/k && printf same > /opt/lay/touched";
    let (code, _, err) = w.isotrace("home", &["run", "--env", "A", "--", "sh", "-c", make], &[]);
    assert_eq!(code, 0, "{err}");
    // Older than the pre-copy's margin (layer.rs, MARGIN): not sent twice.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let upper_a = w.dir().join("home/envs/A/upper");
    let script = w.dir().join("at-freeze.sh");
    let body = format!(
        "#!/bin/sh\n[ \"$ISOTRACE_ACTION\" = network-lock ] || exit 0\nU={}/opt/lay\n\
         rm -rf $U/gone && rm $U/kind/k && mkdir $U/kind/k && echo in > $U/kind/k/in && \
         printf diff > $U/touched && touch -d 2001-01-01 $U/touched && echo new > $U/new\n",
        upper_a.display()
    );
    fs::write(&script, body).unwrap();
    let mut perm = fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).unwrap();
    let mut sup = w.start_counter("gl");
    let args = [
        "migrate",
        "gl",
        "--to-env",
        "B",
        "--pre-copy",
        "--json",
        "--action-script",
        path_str(&script),
    ];
    let (code, out, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    w.pids.push(dest_pid(&v));
    assert_released(&mut sup);
    let notes = v["notes"].to_string();
    // gone/, gone/a, and kind/k (a file then, a directory now).
    assert!(
        notes.contains("pre-copied while the group ran") && notes.contains("3 entries removed"),
        "{notes}"
    );
    // Not the 40 files that did not change: the directories touched, the
    // new and changed entries, the counter's output.
    let again: usize = notes
        .split("entries removed, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect(&notes);
    assert!(again < 20, "{notes}");
    let upper_b = w.dir().join("home/envs/B/upper");
    let diff = Command::new("diff")
        .arg("-r")
        .arg(upper_a.join("opt/lay"))
        .arg(upper_b.join("opt/lay"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "the layers differ:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    assert_eq!(
        fs::read_to_string(upper_b.join("opt/lay/touched")).unwrap(),
        "diff"
    );
    w.assert_counts_on("home", "B");
}

/// The signal trigger: `run --migrate-to-env B` makes SIGPWR to the
/// supervisor migrate the group, as `isotrace migrate G --to-env B` would.
#[test]
fn sigpwr_to_the_supervisor_migrates_the_group_where_run_said() {
    let mut w = World::new();
    let flags = ["--migrate-to-env", "B", "--migrate-pre-copy"];
    let mut sup = w.start_guest_with("gp", &flags, "rst_counter", &[]);
    let (_, ps, _) = w.isotrace("home", &["ps", "--json"], &[]);
    let groups: Vec<Value> = serde_json::from_str(&ps).unwrap();
    let source = groups.iter().find(|g| g["group"] == "gp").expect(&ps);
    let ignored = sig_ignored(source["root_pid"].as_i64().unwrap());
    // SAFETY: plain kill(2) with integer arguments.
    unsafe { libc::kill(sup.id() as i32, libc::SIGPWR) };
    assert_released(&mut sup);
    w.assert_counts_on("home", "B");
    let (_, ps, _) = w.isotrace("home", &["ps", "--json"], &[]);
    let groups: Vec<Value> = serde_json::from_str(&ps).unwrap();
    let copy = groups.iter().find(|g| g["env"] == "B").expect(&ps);
    // The copy's supervisor (the `migrate` the signal started) outlived
    // the source's; ending it ends the copy.
    w.pids.push(copy["supervisor_pid"].as_i64().unwrap() as i32);
    assert!(!groups.iter().any(|g| g["group"] == "gp"), "{ps}");
    // The copy ignores what the program ignored, not what the supervisor
    // that started the migration ignores (SIGINT, SIGTSTP...).
    assert_eq!(sig_ignored(copy["root_pid"].as_i64().unwrap()), ignored);
}

/// SigIgn of /proc/PID/status.
fn sig_ignored(pid: i64) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Arguments, environment, and what the one-line error must name.
type Usage<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_usage_exits_125_naming_what_is_wrong() {
    let w = World::new();
    let cases: [Usage; 7] = [
        (
            &["run", "--migrate-to", "127.0.0.1:9", "--", "true"],
            &[],
            "--migrate-to 127.0.0.1:9: no token",
        ),
        (
            &["run", "--migrate-pre-copy", "--", "true"],
            &[],
            "--migrate-pre-copy needs --migrate-to-env",
        ),
        (
            &["migrate", "nosuch", "--to-env", "B"],
            &[],
            "no running group named nosuch",
        ),
        (&["migrate", "nosuch"], &[], "--to-env NAME"),
        (
            &["clone", "nosuch", "--to", "127.0.0.1:9"],
            &[],
            "ISOTRACE_MIGRATE_TOKEN",
        ),
        (
            &["receive", "--listen", "127.0.0.1:0"],
            &[("ISOTRACE_MIGRATE_TOKEN", "short")],
            "at least 16",
        ),
        (
            &["receive", "--listen", "no-such-address"],
            &[("ISOTRACE_MIGRATE_TOKEN", TOKEN)],
            "no-such-address",
        ),
    ];
    for (args, env, why) in cases {
        let (code, _, err) = w.isotrace("home", args, env);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// A clone into the group's own environment would have two copies writing
/// the same files: refused before the freeze, the group counts on.
#[test]
fn a_clone_into_the_groups_own_env_is_refused() {
    let mut w = World::new();
    let sup = w.start_counter("g9");
    let (code, _, err) = w.isotrace("home", &["clone", "g9", "--to-env", "A"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("environment of its own"), "{err}");
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    end(sup);
}

/// A group of two processes (a shell waiting for the counter it started)
/// moves whole, as restore rebuilds it: both run on, with the pids they
/// had, in a pid namespace of their own (NSpid's last field).
#[test]
fn a_two_process_group_moves_with_its_pids() {
    let mut w = World::new();
    let (exe, out, pidf) = (guest("rst_counter"), w.out(), w.dir().join("pid"));
    let script = format!(
        "{} {} {} & wait",
        path_str(&exe),
        path_str(&out),
        path_str(&pidf)
    );
    let args = [
        "run", "--env", "A", "--group", "g2p", "--", "/bin/sh", "-c", &script,
    ];
    let mut cmd = w.command("home", &args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    let a = w.env_file("home", "A", &out);
    wait_until("the counter to count", WAIT, || counted(&a) >= 3);
    let old_pid: i32 = fs::read_to_string(w.env_file("home", "A", &pidf))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (code, json_out, err) =
        w.isotrace("home", &["migrate", "g2p", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&json_out);
    let pids: Vec<i32> = v["dest_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    w.pids.extend(&pids);
    assert_eq!(pids.len(), 2, "{json_out}");
    assert_released(&mut sup);
    let inner = |pid: i32| -> Option<i32> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
        line.split_whitespace().last()?.parse().ok()
    };
    assert!(
        pids.iter().any(|&p| inner(p) == Some(old_pid)),
        "the counter (pid {old_pid} before) is not among {pids:?} with its old pid"
    );
    let b = w.env_file("home", "B", &out);
    let before = counted(&a);
    wait_until("the copy to count on in env B", WAIT, || {
        counted(&b) >= before + 5
    });
    assert!(assert_seamless(&b) >= before + 5);
}
