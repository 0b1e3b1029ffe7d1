//! Issue #6: established TCP connections survive a migration and a
//! checkpoint/restore (TCP repair, checkpoint/src/dump/tcp.rs).
//!
//! The server is a python3 program under isotrace (or redis-server); the
//! client is NOT under isotrace: a python3 program that sends a numbered
//! request every 5 ms over ONE connection, checks every reply (the server
//! counts what it served, so a lost or repeated request shows as a wrong
//! count), never reconnects, and reports as JSON when told to stop. The
//! kernel is the oracle: an RST, a lost or duplicated byte, or a closed
//! connection is an error the client reports.

mod common;
mod migrate_support;

use common::{is_root, path_str, wait_until, PYTHON};
use migrate_support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Serves one client on HOST PORT: to "req N" it answers "rep N SERVED ok"
/// (SERVED counts requests; "BAD" if it is not N).
const SERVER: &str = r#"
import socket, sys
l = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(8)
c, _ = l.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
served, buf = 0, b""
while True:
    data = c.recv(65536)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        n = int(line.split()[1])
        served += 1
        c.sendall(f"rep {n} {served} {'ok' if n == served else 'BAD'}\n".encode())
"#;

/// CLIENT HOST PORT DIR MODE: requests until DIR/stop exists, then writes
/// DIR/report.json. MODE "echo" speaks to SERVER, "redis" sends INCR.
const CLIENT: &str = r#"
import socket, sys, time, json, os
host, port, d, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(60)
first = s.getsockname()
n, worst, errors, buf = 0, 0.0, [], b""
end = time.time() + 300
while time.time() < end and not os.path.exists(d + "/stop"):
    n += 1
    t = time.time()
    req, want = (f"req {n}\n", f"rep {n} {n} ok") if mode == "echo" else ("INCR isotrace:n\r\n", f":{n}")
    try:
        s.sendall(req.encode())
        sep = b"\n" if mode == "echo" else b"\r\n"
        while sep not in buf:
            got = s.recv(4096)
            if not got:
                raise OSError("the server closed the connection")
            buf += got
        line, buf = buf.split(sep, 1)
    except OSError as e:
        errors.append(f"request {n}: {e!r}")
        break
    if line.decode() != want:
        errors.append(f"request {n}: got {line!r}, want {want!r}")
        break
    worst = max(worst, time.time() - t)
    with open(d + "/progress.tmp", "w") as p:
        p.write(str(n))
    os.replace(d + "/progress.tmp", d + "/progress")
    time.sleep(0.005)
same = s.getsockname() == first
report = {"requests": n, "errors": errors, "worst_ms": worst * 1000, "same_socket": same}
with open(d + "/report.tmp", "w") as f:
    json.dump(report, f)
os.replace(d + "/report.tmp", d + "/report.json")
"#;

/// A client of ours and where it reports.
struct Client {
    child: Child,
    dir: PathBuf,
}

impl Client {
    /// Starts the client (in network namespace `ns`, if any) once the
    /// server listens, and waits for its first replies.
    fn start(dir: &Path, ns: Option<&str>, host: &str, port: u16, mode: &str) -> Client {
        let dir = dir.join(format!("client-{port}"));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("client.py");
        fs::write(&script, CLIENT).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, PYTHON]);
                c
            }
            None => Command::new(PYTHON),
        };
        cmd.arg(&script)
            .args([host, &port.to_string(), path_str(&dir), mode])
            .stdin(Stdio::null());
        let child = cmd.spawn().unwrap();
        let c = Client { child, dir };
        wait_until("the client's first replies", WAIT, || c.progress() >= 20);
        c
    }

    fn progress(&self) -> u64 {
        fs::read_to_string(self.dir.join("progress"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Lets it make `more` requests, then stops it and checks its report:
    /// no error, the same socket throughout. Returns the report.
    fn finish(mut self, more: u64) -> Value {
        let from = self.progress();
        let report = self.dir.join("report.json");
        wait_until("the client to go on after the move", WAIT, || {
            self.progress() >= from + more || report.exists()
        });
        fs::write(self.dir.join("stop"), "").unwrap();
        let status = common::shell_status_within(&mut self.child, WAIT);
        let v: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        eprintln!("client report: {v}");
        assert_eq!(status, 0, "the client failed: {v}");
        assert_eq!(v["errors"], Value::Array(vec![]), "{v}");
        assert_eq!(v["same_socket"], true, "{v}");
        assert!(v["requests"].as_u64().unwrap() >= from + more, "{v}");
        v
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something listens on TCP `port` in this network namespace
/// (/proc/net/tcp, state 0A), without connecting (the server accepts
/// only one client).
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        let text = fs::read_to_string(f).unwrap_or_default();
        text.lines()
            .any(|l| l.split_whitespace().nth(3) == Some("0A") && l.contains(&want))
    })
}

/// `isotrace run --env A --group GROUP -- python3 SERVER HOST PORT`.
fn start_server(w: &mut World, group: &str, host: &str, port: u16) -> Child {
    start_script(w, group, host, port, SERVER)
}

/// [`start_server`] with another server program.
fn start_script(w: &mut World, group: &str, host: &str, port: u16, code: &str) -> Child {
    let script = w.dir().join("server.py");
    fs::write(&script, code).unwrap();
    let args = ["run", "--env", "A", "--group", group, "--", PYTHON];
    let mut cmd = w.command("home", &args);
    cmd.args([path_str(&script), host, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    w.pids.push(child.id() as i32);
    wait_until("the server to listen", WAIT, || listening(port));
    child
}

/// Whether the TCP tests can run: root (TCP_REPAIR, nft) and nft(8).
fn can_run() -> bool {
    if !is_root() || !common::have_program("nft") {
        eprintln!("skipped: needs root and nft(8) (Debian package nftables)");
        return false;
    }
    true
}

/// Whether a network lock (an nftables rule of ours) holds a connection
/// to or from `port` (each test has its own port; other tests' locks may
/// come and go meanwhile).
fn locked(port: u16) -> bool {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (sport, dport) = (format!("tcp sport {port} "), format!("tcp dport {port} "));
    text.lines()
        .any(|l| l.ends_with(" drop") && (l.contains(&sport) || l.contains(&dport)))
}

#[test]
fn a_connection_survives_migrate_to_env() {
    survives_migrate_to_env("tcp1", "127.0.0.1");
}

#[test]
fn an_ipv6_connection_survives_migrate_to_env() {
    survives_migrate_to_env("tcp6", "::1");
}

fn survives_migrate_to_env(group: &str, host: &str) {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_server(&mut w, group, host, port);
    let client = Client::start(w.dir(), None, host, port, "echo");
    let args = ["migrate", group, "--to-env", "B", "--json"];
    let (code, out, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    w.pids.push(dest_pid(&v));
    assert_released(&mut sup);
    let report = client.finish(100);
    eprintln!(
        "migrate --to-env with a TCP connection to {host}: downtime {} ms, slowest request {:.1} ms",
        v["downtime_ms"], report["worst_ms"]
    );
    assert!(!locked(port), "the network lock was not lifted");
}

/// On one host a listening socket moves too: the source's listener is
/// shut down for the copy's, which accepts the first client afterwards.
#[test]
fn a_listening_server_moves_to_env_and_accepts_afterwards() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_server(&mut w, "tcpl", "127.0.0.1", port);
    let (code, out, err) = w.isotrace("home", &["migrate", "tcpl", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    assert_released(&mut sup);
    let client = Client::start(w.dir(), None, "127.0.0.1", port, "echo");
    client.finish(50);
}

/// A migration that fails once the copy is restored (the action script
/// refuses at pre-resume) leaves the source running with its connection:
/// on this host the source's socket was disconnected for the copy, so it
/// is re-made in place.
#[test]
fn a_failed_move_leaves_the_source_with_its_connection() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_server(&mut w, "tcpf", "127.0.0.1", port);
    let client = Client::start(w.dir(), None, "127.0.0.1", port, "echo");
    let action = w.dir().join("refuse.sh");
    fs::write(
        &action,
        "#!/bin/sh
[ \"$ISOTRACE_ACTION\" = pre-resume ] && exit 3
exit 0
",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&action, fs::Permissions::from_mode(0o755)).unwrap();
    let args = [
        "migrate",
        "tcpf",
        "--to-env",
        "B",
        "--action-script",
        path_str(&action),
    ];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("pre-resume") && err.contains("runs on"),
        "{err}"
    );
    assert!(!err.contains("not put back"), "{err}");
    assert!(!locked(port), "the network lock was not lifted");
    // The source answers on (the server ends with its client).
    assert!(sup.try_wait().unwrap().is_none(), "the source group ended");
    client.finish(100);
    end(sup);
}

/// The lock's table belongs to the supervisor (an owned nftables table):
/// a supervisor SIGKILLed while the network is locked leaves no rule that
/// would drop the port's SYNs (or a connection's segments) for ever.
#[test]
fn a_supervisor_killed_while_locked_leaves_no_lock() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_server(&mut w, "tcpk", "127.0.0.1", port);
    // An established connection: what makes a migration lock the network.
    let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_until("the server to accept", WAIT, || {
        fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains(&format!(":{port:04X} ")) && l.split_whitespace().nth(3) == Some("01")
            })
    });
    let action = w.dir().join("kill.sh");
    let during = w.dir().join("during.txt");
    fs::write(
        &action,
        format!(
            "#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             [ \"$ISOTRACE_ACTION\" = network-lock ] || exit 0\n\
             nft list ruleset > {}\nkill -9 {}\n",
            during.display(),
            sup.id()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&action, fs::Permissions::from_mode(0o755)).unwrap();
    let args = [
        "migrate",
        "tcpk",
        "--to-env",
        "B",
        "--action-script",
        path_str(&action),
    ];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(common::shell_status_within(&mut sup, WAIT), 137);
    let text = fs::read_to_string(&during).unwrap_or_default();
    assert!(
        text.contains(&format!("tcp dport {port} ")),
        "the port was not locked when the supervisor was killed:\n{text}"
    );
    wait_until("the lock to go with its supervisor", WAIT, || !locked(port));
}

#[test]
fn a_connection_survives_checkpoint_and_restore() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_server(&mut w, "tcp2", "127.0.0.1", port);
    let client = Client::start(w.dir(), None, "127.0.0.1", port, "echo");
    let img = w.dir().join("img");
    let (code, _, err) = w.isotrace("home", &["checkpoint", "tcp2", "-o", path_str(&img)], &[]);
    assert_eq!(code, 0, "{err}");
    assert_released(&mut sup);
    // Between the checkpoint and the restore nothing answers the client:
    // its requests wait (no RST), and the lock stays. (A second first, for
    // the client to handle a reply that came before the freeze.)
    std::thread::sleep(Duration::from_secs(1));
    let at = client.progress();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.progress(), at, "a request was answered meanwhile");
    assert!(locked(port), "no network lock after the checkpoint");
    restore_detached(&mut w, &img);
    let report = client.finish(100);
    eprintln!(
        "checkpoint + restore with a TCP connection: slowest request {:.1} ms",
        report["worst_ms"]
    );
    assert!(!locked(port), "restore did not lift the lock");
}

#[test]
fn redis_keeps_its_client_and_keys_across_migrate_to_env() {
    if !can_run() || !common::have_program("redis-server") {
        eprintln!("skipped: needs root, nft and redis-server");
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let p = port.to_string();
    let args = ["run", "--env", "A", "--group", "tcpr", "--", "redis-server"];
    let mut cmd = w.command("home", &args);
    cmd.args([
        "--port",
        &p,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    wait_until("redis to listen", WAIT, || listening(port));
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &p])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for i in 0..100 {
        assert_eq!(
            cli(&["SET", &format!("key:{i}"), &format!("value {i}")]),
            "OK"
        );
    }
    let client = Client::start(w.dir(), None, "127.0.0.1", port, "redis");
    // Four more connections under load (keys of their own: -r uses
    // key:__rand_int__, "key:000000012345", not ours).
    let bench_out = w.dir().join("bench.out");
    let mut bench = Command::new("redis-benchmark")
        .args([
            "-p", &p, "-c", "4", "-n", "100000", "-r", "100000", "-t", "set,get", "-q",
        ])
        .stdout(fs::File::create(&bench_out).unwrap())
        .stderr(Stdio::from(
            fs::File::create(w.dir().join("bench.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    w.pids.push(bench.id() as i32);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = w.isotrace("home", &["migrate", "tcpr", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    assert_released(&mut sup);
    client.finish(100);
    let status = common::shell_status_within(&mut bench, WAIT * 2);
    let text = fs::read_to_string(&bench_out).unwrap_or_default()
        + &fs::read_to_string(w.dir().join("bench.err")).unwrap_or_default();
    assert_eq!(status, 0, "redis-benchmark failed: {text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    for i in (0..100).step_by(7) {
        assert_eq!(cli(&["GET", &format!("key:{i}")]), format!("value {i}"));
    }
    let keys: u64 = cli(&["DBSIZE"]).parse().unwrap();
    assert!(keys > 101, "the benchmark's keys are missing: {keys}");
}

/// As nobody (no CAP_NET_ADMIN), a checkpoint of a group with a client
/// is refused, naming the pid, the fd and the connection; the group and
/// its connection run on. With --tcp-close it is checkpointed.
#[test]
fn without_cap_net_admin_the_checkpoint_is_refused_clearly() {
    if !is_root() || !common::have_program("setpriv") {
        eprintln!("skipped: needs root (to become nobody) and setpriv");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let dir = w.dir();
    for d in [dir, &dir.join("home"), &dir.join("run")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let script = dir.join("server.py");
    fs::write(&script, SERVER).unwrap();
    let port = common::free_tcp_port();
    let nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(common::setpriv_prefix().iter().skip(1))
            .arg(common::isotrace())
            .args(args)
            .current_dir(dir)
            .env("ISOTRACE_HOME", dir.join("home"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("HOME", dir)
            .stdin(Stdio::null());
        cmd
    };
    let p = port.to_string();
    let run = ["run", "--env", "A", "--group", "tcpu", "--", PYTHON];
    let mut sup = nobody(&run)
        .args([path_str(&script), "127.0.0.1", &p])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the server to listen", WAIT, || listening(port));
    let client = Client::start(dir, None, "127.0.0.1", port, "echo");
    let out = nobody(&["checkpoint", "tcpu"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "pid ",
        "fd ",
        &format!("127.0.0.1:{port} ->"),
        "CAP_NET_ADMIN",
        "--tcp-close",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    assert!(err.contains("the group runs on"), "{err}");
    // The connection was not disturbed.
    let at = client.progress();
    wait_until("the client to go on", WAIT, || client.progress() >= at + 50);
    let img = dir.join("img");
    let out = nobody(&["checkpoint", "tcpu", "--tcp-close", "-o", path_str(&img)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        img.join("tcp.bin").exists(),
        "the closed connection is not in the image"
    );
    assert_eq!(common::shell_status_within(&mut sup, WAIT), 137);
    drop(client);
}

/// Three "hosts" on one Ethernet segment: A (the source) and B (the
/// destination) each joined by a veth pair to a bridge in C (the
/// client's host). The service address SVC starts on A.
struct Segment {
    a: String,
    b: String,
    c: String,
    net: String,
}

impl Segment {
    fn new() -> Option<Segment> {
        if !is_root() || !common::have_program("ip") {
            eprintln!("skipped: needs root and ip(8) to make network namespaces");
            return None;
        }
        let id = std::process::id();
        let s = Segment {
            a: format!("isotcp-a-{id}"),
            b: format!("isotcp-b-{id}"),
            c: format!("isotcp-c-{id}"),
            net: format!("10.215.{}", id % 250),
        };
        let (a, b, c, n) = (&s.a, &s.b, &s.c, &s.net);
        let steps = [
            format!("netns add {a}"),
            format!("netns add {b}"),
            format!("netns add {c}"),
            format!("link add ta{id} netns {a} type veth peer name tca{id} netns {c}"),
            format!("link add tb{id} netns {b} type veth peer name tcb{id} netns {c}"),
            format!("-n {c} link add br0 type bridge"),
            format!("-n {c} link set tca{id} master br0"),
            format!("-n {c} link set tcb{id} master br0"),
            format!("-n {a} addr add {n}.1/24 dev ta{id}"),
            format!("-n {a} addr add {n}.100/24 dev ta{id}"),
            format!("-n {b} addr add {n}.2/24 dev tb{id}"),
            format!("-n {c} addr add {n}.3/24 dev br0"),
        ];
        let ups = [
            (a.as_str(), format!("ta{id}")),
            (b, format!("tb{id}")),
            (c, format!("tca{id}")),
            (c, format!("tcb{id}")),
            (c, "br0".to_string()),
            (a, "lo".into()),
            (b, "lo".into()),
            (c, "lo".into()),
        ];
        let ip = |args: &str| {
            let st = Command::new("ip").args(args.split(' ')).status().unwrap();
            assert!(st.success(), "ip {args}");
        };
        for step in &steps {
            ip(step);
        }
        for (ns, dev) in &ups {
            ip(&format!("-n {ns} link set {dev} up"));
        }
        Some(s)
    }

    /// Whether something listens on `port` in namespace `ns`.
    fn listening(&self, ns: &str, port: u16) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", "/proc/net/tcp"])
            .output()
            .unwrap();
        let want = format!(":{port:04X} ");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some("0A") && l.contains(&want))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The action script of the cross-host test: logs each phase and, at
/// pre-resume, moves the service address from A to B and makes the
/// client's host forget A's MAC address for it.
fn action_script(dir: &Path, s: &Segment) -> PathBuf {
    let id = std::process::id();
    let log = dir.join("actions.log");
    let text = format!(
        "#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         echo \"$ISOTRACE_ACTION ${{ISOTRACE_RESULT:-}} $ISOTRACE_CONNECTIONS\" >> {log}\n\
         if [ \"$ISOTRACE_ACTION\" = pre-resume ]; then\n\
         ip -n {a} addr del {n}.100/24 dev ta{id} && ip -n {b} addr add {n}.100/24 dev tb{id} \
         && ip -n {c} neigh flush dev br0\nfi\n",
        log = log.display(),
        a = s.a,
        b = s.b,
        c = s.c,
        n = s.net,
    );
    let path = dir.join("action.sh");
    fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Across hosts the service address moves with the group: the action
/// script moves it at `pre-resume`, and the client in a third namespace
/// keeps its connection, now to host B.
#[test]
fn a_connection_follows_the_group_to_another_host() {
    if !can_run() {
        return;
    }
    let Some(seg) = Segment::new() else { return };
    let mut w = World::new();
    let svc = format!("{}.100", seg.net);
    let port = 7700;
    let script = w.dir().join("server.py");
    fs::write(&script, SERVER).unwrap();
    let args = ["run", "--env", "A", "--group", "tcpx", "--", PYTHON];
    let mut cmd = w.in_netns(&seg.a, "home", &args);
    cmd.args([path_str(&script), &svc, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    wait_until("the server to listen on host A", WAIT, || {
        seg.listening(&seg.a, port)
    });
    let (mut rcv, rport) = w.receiver_in(&seg.b, &format!("{}.2", seg.net));
    let client = Client::start(w.dir(), Some(&seg.c), &svc, port, "echo");
    let action = action_script(w.dir(), &seg);
    let to = format!("{}.2:{rport}", seg.net);
    let env = [("ISOTRACE_MIGRATE_TOKEN", TOKEN)];
    let args = [
        "migrate",
        "tcpx",
        "--to",
        &to,
        "--action-script",
        path_str(&action),
        "--json",
    ];
    let (code, out, err) = w.isotrace("home", &args, &env);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    w.pids.push(dest_pid(&v));
    assert_eq!(common::shell_status_within(&mut rcv, WAIT), 0);
    assert_released(&mut sup);
    // The server now listens on host B, and no more on A (it ends with its
    // client).
    assert!(seg.listening(&seg.b, port));
    assert!(!seg.listening(&seg.a, port));
    let report = client.finish(100);
    eprintln!(
        "migrate --to HOST:PORT with a TCP connection: downtime {} ms, slowest request {:.1} ms",
        v["downtime_ms"], report["worst_ms"]
    );
    let log = fs::read_to_string(w.dir().join("actions.log")).unwrap();
    let phases: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        phases,
        ["network-lock", "pre-resume", "network-unlock"],
        "{log}"
    );
    assert!(log.contains("network-unlock migrated"), "{log}");
    assert!(
        log.contains(&format!("{svc}:{port}>{}.3:", seg.net)),
        "{log}"
    );
}

/// Accepts one connection every 100 ms (each served by a thread: "N\n"
/// is answered "ok N\n"), so that connections always wait in its accept
/// queue while clients keep connecting.
const SLOW_ACCEPTER: &str = r#"
import socket, sys, threading, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(64)
def serve(c):
    with c:
        data = b""
        while not data.endswith(b"\n"):
            got = c.recv(100)
            if not got:
                return
            data += got
        c.sendall(b"ok " + data)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
    time.sleep(0.1)
"#;

/// HOST PORT DIR: six threads, each connecting anew for every request
/// until DIR/stop exists; DIR/progress counts the answers, and
/// DIR/report.json lists every error (a refused or reset connection, a
/// wrong answer, a timeout).
const CONNECTING_CLIENTS: &str = r#"
import json, os, socket, sys, threading, time
host, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock, done, errors = threading.Lock(), [0], []
def client(k):
    n = 0
    while not os.path.exists(d + "/stop") and not errors:
        n += 1
        want = f"{k}.{n}\n".encode()
        try:
            with socket.create_connection((host, port), timeout=30) as s:
                s.sendall(want)
                got = b""
                while not got.endswith(b"\n"):
                    part = s.recv(100)
                    if not part:
                        raise OSError("closed before the answer")
                    got += part
                # The server closes first, so its end never sits in
                # CLOSE_WAIT (which a checkpoint refuses: only established
                # connections are carried) because this client left first.
                while s.recv(100):
                    pass
            if got != b"ok " + want:
                raise OSError(f"answer {got!r} to {want!r}")
        except OSError as e:
            with lock:
                errors.append(f"client {k} request {n}: {e!r}")
            return
        with lock:
            done[0] += 1
            with open(d + "/progress.tmp", "w") as p:
                p.write(str(done[0]))
            os.replace(d + "/progress.tmp", d + "/progress")
ts = [threading.Thread(target=client, args=(k,)) for k in range(6)]
[t.start() for t in ts]
[t.join() for t in ts]
with open(d + "/report.tmp", "w") as f:
    json.dump({"answers": done[0], "errors": errors}, f)
os.replace(d + "/report.tmp", d + "/report.json")
"#;

/// CONNECTING_CLIENTS at work on 127.0.0.1:PORT.
struct Crowd {
    child: Child,
    dir: PathBuf,
}

impl Crowd {
    fn start(w: &World, port: u16) -> Crowd {
        let dir = w.dir().join("clients");
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("clients.py");
        fs::write(&script, CONNECTING_CLIENTS).unwrap();
        let child = Command::new(PYTHON)
            .arg(&script)
            .args(["127.0.0.1", &port.to_string(), path_str(&dir)])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut c = Crowd { child, dir };
        let deadline = std::time::Instant::now() + WAIT;
        while c.answers() < 10 {
            // The clients stop at their first error and write it down.
            let ended = c.child.try_wait().ok().flatten();
            if ended.is_some() || std::time::Instant::now() >= deadline {
                panic!(
                    "no first answers from 127.0.0.1:{port} (clients: {ended:?}, {} answers, listening: {}): {}",
                    c.answers(),
                    listening(port),
                    fs::read_to_string(c.dir.join("report.json")).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        c
    }

    fn answers(&self) -> u64 {
        fs::read_to_string(self.dir.join("progress"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Lets them get 20 more answers, stops them: none saw an error.
    fn finish(mut self) {
        let (after, report) = (self.answers(), self.dir.join("report.json"));
        wait_until("more answers", WAIT, || {
            self.answers() >= after + 20 || report.exists()
        });
        fs::write(self.dir.join("stop"), "").unwrap();
        let status = common::shell_status_within(&mut self.child, WAIT);
        let report: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(status, 0, "{report}");
        assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A migration that finds connections waiting in the accept queue (no fd
/// holds them, so no image can): new connections are held back by the
/// network lock, the group runs until it accepted them, and is frozen
/// again. The clients, reconnecting for every request, see no error: a
/// held-back SYN is sent again and reaches the copy.
#[test]
fn connections_waiting_to_be_accepted_are_drained_before_the_move() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let mut sup = start_script(&mut w, "tcpq", "127.0.0.1", port, SLOW_ACCEPTER);
    let crowd = Crowd::start(&w, port);
    let (code, out, err) = w.isotrace("home", &["migrate", "tcpq", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    w.pids.push(dest_pid(&v));
    assert_released(&mut sup);
    assert!(
        v["notes"].to_string().contains("waited in accept queues"),
        "no queue was drained: {v}"
    );
    crowd.finish();
    assert!(!locked(port), "a network lock was not lifted");
}

/// The same for `checkpoint --leave-running`: the queue is drained, the
/// image written, and the server serves on; no client sees an error.
#[test]
fn a_checkpoint_drains_the_accept_queue_first() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let port = common::free_tcp_port();
    let sup = start_script(&mut w, "tcpk", "127.0.0.1", port, SLOW_ACCEPTER);
    let crowd = Crowd::start(&w, port);
    let img = w.dir().join("img");
    let args = [
        "checkpoint",
        "tcpk",
        "--leave-running",
        "-o",
        path_str(&img),
    ];
    let (code, out, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("waited in accept queues"),
        "no queue was drained: {out}"
    );
    assert!(
        img.join("manifest.json").exists(),
        "no image at {}",
        img.display()
    );
    crowd.finish();
    assert!(!locked(port), "a network lock was not lifted");
    end(sup);
}

/// `isotrace restore IMG --detach`, which must succeed; the restored
/// pid is killed when the test ends.
fn restore_detached(w: &mut World, img: &Path) {
    let args = ["restore", path_str(img), "--detach"];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let pid: Option<i32> = err
        .split(" as pid ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next()?.parse().ok());
    w.pids.extend(pid);
}

/// The ways [`move_group`] is tried, with the address of each.
const MOVES: [(&str, &str); 3] = [
    ("migrate", "127.0.0.1"),
    ("restore", "127.0.0.1"),
    ("migrate", "::1"),
];

/// Moves group `group` (its supervisor `sup`) the way `how` says:
/// "migrate" (`migrate --to-env B`) or "restore" (checkpoint, then
/// `restore --detach`), and waits for the source to be released.
fn move_group(w: &mut World, sup: &mut Child, group: &str, how: &str) {
    if how == "migrate" {
        let args = ["migrate", group, "--to-env", "B", "--json"];
        let (code, out, err) = w.isotrace("home", &args, &[]);
        assert_eq!(code, 0, "{err}");
        w.pids.push(dest_pid(&json(&out)));
        assert_released(sup);
        return;
    }
    let img = w.dir().join("img");
    let args = ["checkpoint", group, "-o", path_str(&img)];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    assert_released(sup);
    restore_detached(w, &img);
}

/// Reads one client's request to its end (the client shuts down its
/// side: the server's end is in CLOSE_WAIT), then waits for a second
/// connection before it answers: a read must still see the end of the
/// stream ("answer to REQUEST"; "still open" if it does not), then it
/// closes.
const HALF_CLOSED_SERVER: &str = r#"
import socket, sys
l = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(8)
c, _ = l.accept()
data = b""
while True:
    got = c.recv(100)
    if not got:
        break
    data += got
go, _ = l.accept()
go.close()
c.settimeout(5)
try:
    more = c.recv(100)
except socket.timeout:
    more = b"(no end of stream)"
c.sendall(b"answer to " + data if more == b"" else b"still open: " + more)
c.close()
"#;

/// The state column of /proc/net/tcp[6] for the connection on local
/// `port` to `peer`'s port, if there is one.
fn tcp_state(port: u16, peer: u16) -> Option<String> {
    let (l, r) = (format!(":{port:04X} "), format!(":{peer:04X} "));
    let text = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|f| fs::read_to_string(f).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.len() > 3 && format!("{} ", f[1]).ends_with(&l) && format!("{} ", f[2]).ends_with(&r)
        })
        .map(|f| f[3].to_owned())
}

/// A connection whose client closed its side (the server's end in
/// CLOSE_WAIT, with the request read) is carried by `migrate --to-env`
/// (IPv4 and IPv6) and by checkpoint + restore: the copy's read still
/// sees the end of the stream, and its answer reaches the client, which
/// then sees the server's close. Before, such a checkpoint was refused.
#[test]
fn a_half_closed_connection_survives_migrate_and_restore() {
    if !can_run() {
        return;
    }
    for (how, host) in MOVES {
        let mut w = World::new();
        let port = common::free_tcp_port();
        let group = format!("half{how}{}", host.len());
        let mut sup = start_script(&mut w, &group, host, port, HALF_CLOSED_SERVER);
        let mut client = std::net::TcpStream::connect((host, port)).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mine = client.local_addr().unwrap().port();
        std::io::Write::write_all(&mut client, b"what time is it").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        wait_until("the server's end in CLOSE_WAIT", WAIT, || {
            tcp_state(port, mine).as_deref() == Some("08")
        });
        move_group(&mut w, &mut sup, &group, how);
        assert_eq!(
            tcp_state(port, mine).as_deref(),
            Some("08"),
            "{how}: the copy's end is not in CLOSE_WAIT"
        );
        drop(std::net::TcpStream::connect((host, port)).unwrap());
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut client, &mut answer).unwrap();
        assert_eq!(answer, "answer to what time is it", "{how}");
        assert!(!locked(port), "{how}: the network lock was not lifted");
    }
}

/// HOST PORT: sends a request and shuts down its side (its end in
/// FIN_WAIT2 once the server acknowledged), reads the answer to the end,
/// then reports it on a second connection: "got: ANSWER".
const HALF_CLOSING_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
c = socket.socket(family)
c.connect((host, port))
c.sendall(b"what time is it")
c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    got = c.recv(100)
    if not got:
        break
    answer += got
c.close()
r = socket.socket(family)
r.connect((host, port))
r.sendall(b"got: " + answer)
r.close()
"#;

/// `l.accept()`, failing the test after [`WAIT`] instead of hanging.
fn accept_within(l: &std::net::TcpListener) -> std::net::TcpStream {
    l.set_nonblocking(true).unwrap();
    let mut got = None;
    wait_until("a connection", WAIT, || {
        got = l.accept().ok();
        got.is_some()
    });
    let (s, _) = got.unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The other direction: a client that shut down its side (its end in
/// FIN_WAIT2, the server's answer still to come) is carried by
/// `migrate --to-env` and by checkpoint + restore, its socket shut down
/// again in repair mode; the answer sent afterwards reaches the copy,
/// which reads it to the server's close.
#[test]
fn a_client_that_closed_its_side_survives_migrate_and_restore() {
    if !can_run() {
        return;
    }
    for (how, host) in MOVES {
        let mut w = World::new();
        let port = common::free_tcp_port();
        let listener = std::net::TcpListener::bind((host, port)).unwrap();
        let group = format!("halfc{how}{}", host.len());
        let script = w.dir().join("client.py");
        fs::write(&script, HALF_CLOSING_CLIENT).unwrap();
        let args = ["run", "--env", "A", "--group", group.as_str(), "--", PYTHON];
        let mut cmd = w.command("home", &args);
        cmd.args([path_str(&script), host, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut sup = cmd.spawn().unwrap();
        w.pids.push(sup.id() as i32);
        let mut conn = accept_within(&listener);
        let theirs = conn.peer_addr().unwrap().port();
        let mut request = String::new();
        std::io::Read::read_to_string(&mut conn, &mut request).unwrap();
        assert_eq!(request, "what time is it");
        wait_until("the client's end in FIN_WAIT2", WAIT, || {
            tcp_state(theirs, port).as_deref() == Some("05")
        });
        move_group(&mut w, &mut sup, &group, how);
        let state = tcp_state(theirs, port);
        assert!(
            matches!(state.as_deref(), Some("04" | "05")),
            "{how} {host}: the copy's end is in state {state:?}, not FIN_WAIT1/2"
        );
        std::io::Write::write_all(&mut conn, b"half past four").unwrap();
        drop(conn);
        let mut report = accept_within(&listener);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut report, &mut got).unwrap();
        assert_eq!(got, "got: half past four", "{how} {host}");
        assert!(!locked(port), "{how}: the network lock was not lifted");
    }
}
