//! A redis-server under load from redis-benchmark, running natively, is
//! snapshotted: the image lists its threads and its listening and client
//! sockets, gdb finds redis's event loop in the core (Debian's binary is
//! stripped but exports its functions for its own crash reports), and
//! redis keeps serving: the benchmark completes, PING answers, and redis
//! has no tracer and no extra child afterwards.
//!
//! Needs redis-server and redis-tools (apt-get install redis-server
//! redis-tools); skipped with a message without them.

mod common;
mod snapshot_support;

use common::{have_program, wait_until, Status};
use isotrace_checkpoint::model::{FdKind, SocketInfo};
use isotrace_checkpoint::Image;
use snapshot_support::{children_of, gdb, path, per_thread, run_isotrace, snapshot, tracer_of};
use snapshot_support::{Target, WAIT};
use std::path::Path;
use std::process::Command;

const REDIS: &str = "/usr/bin/redis-server";

/// redis-cli's answer, bounded in time: a hung redis fails the test.
fn cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let (_, out, _) = common::execute(&mut cmd, None, WAIT, None);
    String::from_utf8_lossy(&out).trim().to_owned()
}

fn commands_processed(port: u16) -> u64 {
    cli(port, &["info", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn redis_under_load_keeps_serving() {
    if !["redis-server", "redis-cli", "redis-benchmark"]
        .iter()
        .all(|p| have_program(p))
    {
        eprintln!("redis is not installed: skipped (apt-get install redis-server redis-tools)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = common::free_tcp_port();
    let redis = Target::spawn(Command::new(REDIS).current_dir(dir).args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]));
    let pid = redis.pid();
    wait_until("redis to answer PING", WAIT, || {
        cli(port, &["ping"]) == "PONG"
    });
    let bench = Target::spawn(Command::new("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-c",
        "20",
        "-n",
        "300000",
        "-t",
        "set,get",
        "-q",
    ]));
    wait_until("the benchmark to load redis", WAIT, || {
        commands_processed(port) > 20_000
    });
    assert_eq!(tracer_of(pid), 0);

    let img = dir.join("img");
    let run = snapshot(pid, &img, dir);
    run.assert_exit(0);
    eprintln!("{}", run.stderr_str().trim());
    assert_eq!(cli(port, &["ping"]), "PONG", "redis answers right after");

    let image = Image::open(&img).unwrap();
    let proc = image.process(pid).unwrap();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert_eq!(proc.threads.len(), threads, "{:?}", proc.threads);
    assert!(threads >= 4, "redis has its bio threads: {threads}");
    let inet: Vec<(&str, &str)> = proc
        .fds
        .iter()
        .filter_map(|f| match &f.kind {
            FdKind::Socket(Some(SocketInfo::Inet { local, state, .. })) => {
                Some((local.as_str(), state.as_str()))
            }
            _ => None,
        })
        .collect();
    let listen = format!("127.0.0.1:{port}");
    assert!(inet.contains(&(listen.as_str(), "LISTEN")), "{inet:?}");
    assert!(
        inet.iter()
            .any(|(l, s)| *l == listen && *s == "ESTABLISHED"),
        "the benchmark's connections: {inet:?}"
    );
    let socks = run_isotrace(&["inspect", path(&img), "sockets"], dir);
    assert!(socks.assert_exit(0).stdout_str().contains(&listen));

    let core = dir.join("core");
    run_isotrace(&["core", path(&img), "-o", path(&core)], dir).assert_exit(0);
    if let Some(out) = gdb(Path::new(REDIS), &core, &["thread apply all bt"]) {
        let stacks = per_thread(&out);
        assert_eq!(stacks.len(), threads, "{out}");
        let main = &stacks[&pid];
        assert!(
            main.contains("aeMain") && main.contains("main"),
            "the main thread runs redis's event loop:\n{main}"
        );
        assert!(
            stacks
                .values()
                .filter(|s| s.contains("bioProcessBackgroundJobs"))
                .count()
                >= 3,
            "the bio threads:\n{out}"
        );
    }

    // Redis kept serving: the benchmark finishes cleanly, PING answers,
    // and redis has no tracer and no leftover child.
    let (status, out) = bench.finish();
    assert_eq!(status, Status::Exited(0), "{out}");
    assert!(out.contains("SET:") && out.contains("GET:"), "{out}");
    assert_eq!(cli(port, &["ping"]), "PONG");
    assert_eq!(tracer_of(pid), 0);
    assert!(children_of(pid).is_empty(), "{:?}", children_of(pid));
    drop(redis);
}
