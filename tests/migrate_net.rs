//! Issue #6 across two "hosts": network namespaces joined by a veth pair,
//! made by the test (root and ip(8) needed, else the tests say they are
//! skipped). The source's supervisor runs in namespace A, the receiver in
//! namespace B with its own ISOTRACE_HOME; then the link is cut mid-stream.

mod common;
mod migrate_support;

use common::wait_until;
use migrate_support::*;
use std::process::{Command, Stdio};

#[test]
fn migrate_between_two_network_namespaces() {
    let Some(hosts) = Hosts::new("m") else { return };
    let mut w = World::new();
    let mut sup = w.counter_in(&hosts.a, "gn");
    let (mut rcv, port) = w.receiver_in(&hosts.b, &hosts.ip_b);
    let to = format!("{}:{port}", hosts.ip_b);
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let (code, out, err) = w.isotrace("home", &["migrate", "gn", "--to", &to, "--json"], &env);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 0);
    assert_released(&mut sup);
    let there = w.env_file("home2", "A", &w.out());
    let before = counted(&w.env_file("home", "A", &w.out()));
    wait_until("the copy to count on in host B", WAIT, || {
        counted(&there) >= before + 5
    });
    assert!(assert_seamless(&there) >= before + 5);
}

/// The link is slowed (tbf, 8 Mbit/s) so that the stream takes seconds,
/// then set down once it is under way: the source notices (no RST comes
/// over a dead link; its write times out), resumes, and counts on.
#[test]
fn a_link_going_down_mid_stream_leaves_the_group_running() {
    let Some(hosts) = Hosts::new("d") else { return };
    let veth = hosts.veth_a.clone();
    let tbf = ["-n", &hosts.a, "qdisc", "add", "dev", &veth, "root", "tbf"];
    let rate = ["rate", "8mbit", "burst", "32kbit", "latency", "400ms"];
    let added = Command::new("tc").args(tbf).args(rate).status();
    if !added.is_ok_and(|s| s.success()) {
        eprintln!("skipped: tc cannot add a tbf qdisc here");
        return;
    }
    let mut w = World::new();
    let sup = w.counter_in(&hosts.a, "gd");
    let (_rcv, port) = w.receiver_in(&hosts.b, &hosts.ip_b);
    let to = format!("{}:{port}", hosts.ip_b);
    let mut migrate = w.command("home", &["migrate", "gd", "--to", &to]);
    migrate
        .env("ISOTRACE_MIGRATE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = migrate.spawn().unwrap();
    let start = hosts.sent_by_a();
    wait_until("the image to be under way", WAIT, || {
        hosts.sent_by_a() > start + (1 << 20)
    });
    hosts.ip(&["-n", &hosts.a, "link", "set", &veth, "down"]);
    let code = common::shell_status_within(&mut child, WAIT);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("runs on where it was"), "{err}");
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    end(sup);
}

/// A real `isotrace receive` SIGKILLed while the image streams over a slow
/// link: the source gets a reset, resumes, and counts on; the receiver's
/// host has no environment A (it was still staged, invisible).
#[test]
fn a_receiver_killed_mid_stream_leaves_the_group_running() {
    let Some(hosts) = Hosts::new("k") else { return };
    let veth = hosts.veth_a.clone();
    let tbf = ["-n", &hosts.a, "qdisc", "add", "dev", &veth, "root", "tbf"];
    let rate = ["rate", "8mbit", "burst", "32kbit", "latency", "400ms"];
    let added = Command::new("tc").args(tbf).args(rate).status();
    if !added.is_ok_and(|s| s.success()) {
        eprintln!("skipped: tc cannot add a tbf qdisc here");
        return;
    }
    let mut w = World::new();
    let sup = w.counter_in(&hosts.a, "gk");
    let (mut rcv, port) = w.receiver_in(&hosts.b, &hosts.ip_b);
    let to = format!("{}:{port}", hosts.ip_b);
    let mut migrate = w.command("home", &["migrate", "gk", "--to", &to]);
    migrate
        .env("ISOTRACE_MIGRATE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = migrate.spawn().unwrap();
    let start = hosts.sent_by_a();
    wait_until("the image to be under way", WAIT, || {
        hosts.sent_by_a() > start + (1 << 20)
    });
    rcv.kill().unwrap();
    rcv.wait().unwrap();
    let code = common::shell_status_within(&mut child, WAIT);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("runs on where it was"), "{err}");
    let a = w.env_file("home", "A", &w.out());
    let now = counted(&a);
    wait_until("the group to count on", WAIT, || counted(&a) >= now + 3);
    assert_seamless(&a);
    assert!(
        !w.dir().join("home2/envs/A").exists(),
        "a half-received env is visible"
    );
    end(sup);
}
