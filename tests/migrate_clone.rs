//! Issue #6: `clone` of a listening server on this host (the listening-port
//! policy, `isotrace clone --ports`), and a sqlite3 writer migrated between
//! two environments of this host. Real programs (python3), and the kernel
//! is the oracle: which copy accepted a connection is what it answers,
//! and what each wrote is what lands in its environment's private layer.
//!
//! A copy on this host is restored with its pids in a pid namespace of its
//! own, so the two copies of a server have the same getpid(); they are
//! told apart by their environments' views of one file instead.

mod common;
mod migrate_support;

use common::{path_str, wait_until};
use migrate_support::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

/// A one-thread HTTP/1.0 server on 127.0.0.1, port chosen by the kernel
/// and written (atomically) to READY. Each request reads TAG (the env's
/// view of it), appends a line to HITS, then answers "PID TAG".
const SERVER: &str = r#"
import http.server, os, sys
tag, hits, ready = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(tag) as f:
            t = f.read().strip()
        with open(hits, "a") as f:
            f.write("hit\n")
        body = ("%d %s\n" % (os.getpid(), t)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
with open(tag, "w") as f:
    f.write("A\n")
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(ready + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(ready + ".tmp", ready)
s.serve_forever()
"#;

/// The server's files, by their public paths.
struct Site {
    tag: PathBuf,
    hits: PathBuf,
    ready: PathBuf,
}

impl Site {
    fn new(w: &World) -> Site {
        Site {
            tag: w.dir().join("tag"),
            hits: w.dir().join("hits"),
            ready: w.dir().join("ready"),
        }
    }
}

/// Until the group answers on its API socket (`clone` talks to it).
fn wait_group(w: &World, group: &str) {
    let sock = w.dir().join("run/isotrace").join(format!("{group}.sock"));
    wait_until(&format!("group {group}'s API socket"), WAIT, || {
        UnixStream::connect(&sock).is_ok()
    });
}

/// `isotrace run --env A --group G -- python3 -c SCRIPT ARGS...`.
fn start_python(w: &mut World, group: &str, script: &str, args: &[&str]) -> Child {
    let mut cmd = w.command(
        "home",
        &["run", "--env", "A", "--group", group, "--", "python3", "-c"],
    );
    cmd.arg(script)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn isotrace run");
    w.pids.push(child.id() as i32);
    child
}

/// Starts the server in env A; returns its supervisor and port.
fn start_server(w: &mut World, group: &str, site: &Site) -> (Child, u16) {
    start_script(w, group, site, SERVER)
}

/// Starts `script` (TAG HITS READY) in env A; returns its supervisor and
/// the port it wrote to READY.
fn start_script(w: &mut World, group: &str, site: &Site, script: &str) -> (Child, u16) {
    let args = [
        path_str(&site.tag),
        path_str(&site.hits),
        path_str(&site.ready),
    ];
    let sup = start_python(w, group, script, &args);
    let ready = w.env_file("home", "A", &site.ready);
    let mut port = 0;
    wait_until("the server to listen", WAIT, || {
        port = fs::read_to_string(&ready)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        port != 0
    });
    wait_group(w, group);
    (sup, port)
}

/// One request on a new connection: the answer's body ("PID TAG").
fn get(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.0 200"),
        "not an answer: {answer:?}"
    );
    body.trim().to_string()
}

/// A UDP server on 127.0.0.1, port chosen by the kernel and written to
/// READY: each datagram is answered with itself, a space and TAG (the
/// env's view of it), and a line appended to HITS.
const UDP_SERVER: &str = r#"
import os, socket, sys
tag, hits, ready = sys.argv[1], sys.argv[2], sys.argv[3]
with open(tag, "w") as f:
    f.write("A\n")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(ready + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(ready + ".tmp", ready)
while True:
    d, a = s.recvfrom(2048)
    with open(tag) as f:
        t = f.read().strip()
    with open(hits, "a") as f:
        f.write("hit\n")
    s.sendto(d + b" " + t.encode(), a)
"#;

/// One datagram from a new socket (a new source port): the tag answered.
fn ask(port: u16, n: u32) -> String {
    let c = UdpSocket::bind(("127.0.0.1", 0)).expect("bind a client socket");
    c.connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let q = format!("q{n}");
    c.send(q.as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let len = c.recv(&mut buf).expect("an answer from the UDP server");
    let answer = String::from_utf8_lossy(&buf[..len]).to_string();
    let (echo, tag) = answer.split_once(' ').unwrap_or_default();
    assert_eq!(echo, q, "not the answer to {q}: {answer:?}");
    tag.to_string()
}

/// The tag of an answer "PID TAG".
fn tag_of(body: &str) -> &str {
    body.split(' ').nth(1).unwrap_or_default()
}

fn lines(path: &Path) -> usize {
    fs::read_to_string(path).unwrap_or_default().lines().count()
}

/// `clone --to-env C` of a listening server: with the default policy
/// (`--ports share`) both copies listen on the one port and the kernel
/// spreads new connections over them. The copy in C sees C's tag file,
/// the original A's, and each one's hits land in its own env's layer only.
#[test]
fn a_cloned_http_server_answers_beside_its_original_each_in_its_env() {
    let mut w = World::new();
    let site = Site::new(&w);
    let (mut sup, port) = start_server(&mut w, "web", &site);
    assert_eq!(tag_of(&get(port)), "A");
    let a_hits = w.env_file("home", "A", &site.hits);
    assert_eq!(lines(&a_hits), 1);
    let (code, out, err) = w.isotrace("home", &["clone", "web", "--to-env", "C", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    w.pids.push(dest_pid(&v));
    assert_eq!(v["source_released"], false);
    // The copy's env started as A's layer: the tag, and the one hit.
    let c_tag = w.env_file("home", "C", &site.tag);
    let c_hits = w.env_file("home", "C", &site.hits);
    assert_eq!(fs::read_to_string(&c_tag).unwrap(), "A\n");
    assert_eq!(lines(&c_hits), 1);
    fs::write(&c_tag, "C\n").unwrap();
    // reuseport_select_sock() hashes each connection's 4-tuple: with a new
    // source port each time, both listeners are hit long before the end.
    let (mut on_a, mut on_c) = (0, 0);
    let deadline = Instant::now() + WAIT;
    while on_a < 3 || on_c < 3 {
        assert!(
            Instant::now() < deadline && on_a + on_c < 2000,
            "only one copy answers: {on_a} from A, {on_c} from C"
        );
        match tag_of(&get(port)) {
            "A" => on_a += 1,
            "C" => on_c += 1,
            other => panic!("an answer from neither env: {other:?}"),
        }
    }
    // Every hit is in the layer of the env that answered it, and only
    // there: the copy changed nothing in A, the original nothing in C.
    assert_eq!(lines(&a_hits), 1 + on_a);
    assert_eq!(lines(&c_hits), 1 + on_c);
    assert_eq!(
        fs::read_to_string(w.env_file("home", "A", &site.tag)).unwrap(),
        "A\n"
    );
    assert!(sup.try_wait().unwrap().is_none(), "the original ended");
    let shared = format!("listening port 127.0.0.1:{port} shared with the copy");
    assert!(err.contains(&shared), "{err}");
    end(sup);
}

/// `clone --to-env C` of a UDP server: the copy's socket joins the
/// original's port (SO_REUSEPORT on both), the kernel picks one by each
/// datagram's source address, and each copy answers with its own env's
/// view of TAG. With `--ports refuse` the same clone is refused, naming
/// the UDP port.
#[test]
fn a_cloned_udp_server_shares_its_port_with_the_original() {
    let mut w = World::new();
    let site = Site::new(&w);
    let (mut sup, port) = start_script(&mut w, "dns", &site, UDP_SERVER);
    assert_eq!(ask(port, 0), "A");
    let args = ["clone", "dns", "--to-env", "C", "--ports", "refuse"];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("UDP port {port} ")), "{err}");
    assert_eq!(ask(port, 1), "A");
    let (code, out, err) = w.isotrace("home", &["clone", "dns", "--to-env", "C", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    let shared = format!("UDP port 127.0.0.1:{port} shared with the copy");
    assert!(err.contains(&shared), "{err}");
    fs::write(w.env_file("home", "C", &site.tag), "C\n").unwrap();
    let (mut on_a, mut on_c, mut n) = (0, 0, 2);
    let deadline = Instant::now() + WAIT;
    while on_a < 3 || on_c < 3 {
        assert!(
            Instant::now() < deadline && n < 2000,
            "only one copy answers: {on_a} from A, {on_c} from C"
        );
        match ask(port, n).as_str() {
            "A" => on_a += 1,
            "C" => on_c += 1,
            other => panic!("an answer from neither env: {other:?}"),
        }
        n += 1;
    }
    let a_hits = w.env_file("home", "A", &site.hits);
    let c_hits = w.env_file("home", "C", &site.hits);
    assert_eq!(lines(&a_hits), 2 + on_a);
    assert_eq!(lines(&c_hits), 2 + on_c);
    assert!(sup.try_wait().unwrap().is_none(), "the original ended");
    end(sup);
}

/// `clone --ports refuse` of a group that listens: refused before anything
/// is sent, the message names the port, and the server answers on.
#[test]
fn a_clone_that_may_not_share_a_port_is_refused_naming_it() {
    let mut w = World::new();
    let site = Site::new(&w);
    let (mut sup, port) = start_server(&mut w, "web2", &site);
    let args = ["clone", "web2", "--to-env", "C", "--ports", "refuse"];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("TCP port {port} ")), "{err}");
    assert!(err.contains("--ports share"), "{err}");
    assert!(err.contains("the group runs on"), "{err}");
    assert_eq!(tag_of(&get(port)), "A");
    assert!(sup.try_wait().unwrap().is_none(), "the original ended");
    let (_, ps, _) = w.isotrace("home", &["ps", "--json"], &[]);
    assert!(!ps.contains("\"C\""), "a copy runs after all: {ps}");
    let (code, _, err) = w.isotrace(
        "home",
        &["clone", "web2", "--to-env", "C", "--ports", "all"],
        &[],
    );
    assert_eq!(code, 125, "{err}");
    end(sup);
}

/// A listener of another uid (`nobody`) than the supervisor's (root):
/// SO_REUSEPORT cannot join the copy's socket (root's, as the restorer
/// makes it) to it, so `--ports share` refuses the clone, naming the port
/// and the uids, and the server answers on.
#[test]
fn a_listener_of_another_uid_cannot_share_and_the_clone_is_refused() {
    if !common::is_root() || !common::have_program("setpriv") {
        eprintln!("skipped: needs root and setpriv(1)");
        return;
    }
    const SERVER_NOBODY: &str = r#"
import os, socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"%d\n" % os.getuid())
    c.close()
"#;
    let mut w = World::new();
    let mut cmd = w.command("home", &["run", "--env", "A", "--group", "webu", "--"]);
    cmd.args(common::setpriv_prefix())
        .args([common::PYTHON, "-c", SERVER_NOBODY])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    w.pids.push(sup.id() as i32);
    let mut line = String::new();
    let mut out = std::io::BufReader::new(sup.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    wait_group(&w, "webu");
    let answer = |port: u16| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    let uid = answer(port);
    let (code, _, err) = w.isotrace("home", &["clone", "webu", "--to-env", "C"], &[]);
    assert_eq!(code, 1, "{err}");
    for want in [
        format!("cannot share port {port} with a copy on this host"),
        format!("belongs to uid {}", uid.trim()),
        "the group runs on".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in {err}");
    }
    assert_eq!(answer(port), uid);
    assert!(sup.try_wait().unwrap().is_none(), "the original ended");
    end(sup);
}

/// A plain restore next to its still-running original, whose listener
/// does not share its port: the restore fails, naming the port, instead
/// of a copy running without its listener.
#[test]
fn a_restore_whose_port_is_held_says_which_port() {
    let mut w = World::new();
    let site = Site::new(&w);
    let (sup, port) = start_server(&mut w, "web3", &site);
    let img = w.dir().join("img");
    let args = [
        "checkpoint",
        "web3",
        "--leave-running",
        "-o",
        path_str(&img),
    ];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "restore",
        path_str(&img),
        "--env",
        "D",
        "--group",
        "web3b",
        "--detach",
    ];
    let (code, _, err) = w.isotrace("home", &args, &[]);
    assert_ne!(
        code, 0,
        "restored beside a listener that does not share: {err}"
    );
    let want = format!("port {port} is held on this host by a listener that does not share it");
    assert!(err.contains(&want), "{err}");
    assert_eq!(tag_of(&get(port)), "A");
    end(sup);
}

/// What a copy of a WAL database (db and -wal) says, opened on the host:
/// "integrity count distinct max all-updated".
const SQLITE_CHECK: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
ok = c.execute("PRAGMA integrity_check").fetchone()[0]
rows = c.execute("SELECT count(*), count(DISTINCT i), max(i), min(v) FROM t").fetchone()
print(ok, rows[0], rows[1], rows[2], rows[3] == "y" * 200)
"#;

/// The bytes of the db and its -wal in `dir`'s layer.
fn db_files(db: &Path) -> Vec<Vec<u8>> {
    ["", "-wal"]
        .iter()
        .map(|s| fs::read(format!("{}{s}", db.display())).unwrap_or_default())
        .collect()
}

/// Opens a copy of the database whose files are `files`, on the host.
fn check_copy(w: &World, files: &[Vec<u8>]) -> String {
    let dir = w.dir().join("check");
    fs::create_dir_all(&dir).unwrap();
    let db = dir.join("copy.db");
    fs::write(&db, &files[0]).unwrap();
    fs::write(dir.join("copy.db-wal"), &files[1]).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", SQLITE_CHECK, path_str(&db)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `migrate --to-env B` of a sqlite3 writer in mid-loop: the copy ends
/// the loop in B with an intact database holding every row once; the db
/// in A's layer stays as it was at the freeze: intact, rows 1..k with no
/// gap, k at least what the writer had reported, and untouched after.
#[test]
fn a_sqlite_writer_migrated_between_envs_loses_and_doubles_no_row() {
    if !common::have_program("python3") {
        eprintln!("skipped: no python3");
        return;
    }
    let mut w = World::new();
    let (db, progress) = (w.dir().join("loop.db"), w.dir().join("progress"));
    let n = 1500;
    let args = [path_str(&db), "1500", path_str(&progress)];
    let mut sup = start_python(&mut w, "sq", common::SQLITE_LOOP, &args);
    let reported = |w: &World, env: &str| {
        fs::read_to_string(w.env_file("home", env, &progress))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until("100 transactions in env A", WAIT, || {
        reported(&w, "A") >= 100
    });
    wait_group(&w, "sq");
    let (code, out, err) = w.isotrace("home", &["migrate", "sq", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    assert_released(&mut sup);
    let at_freeze = reported(&w, "A");
    assert!(at_freeze < n, "the loop ended before the migration");
    let a_db = w.env_file("home", "A", &db);
    let frozen = db_files(&a_db);
    let result = w.env_file("home", "B", &progress.with_extension("result"));
    wait_until("the copy to end the loop in env B", WAIT * 3, || {
        fs::read_to_string(&result).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        fs::read_to_string(&result).unwrap(),
        format!("ok {n} {n} {n} True\n"),
        "the database in B"
    );
    // A's layer: as the freeze left it, and nobody wrote to it since.
    assert!(db_files(&a_db) == frozen, "env A's database changed");
    let a = check_copy(&w, &frozen);
    let f: Vec<&str> = a.split(' ').collect();
    assert_eq!((f[0], f[4]), ("ok", "True"), "env A's database: {a}");
    let k: u64 = f[1].parse().unwrap();
    assert_eq!((f[2], f[3]), (f[1], f[1]), "env A's rows: {a}");
    assert!(
        (at_freeze..=at_freeze + 10).contains(&k),
        "env A holds {k} rows, the writer had reported {at_freeze}"
    );
    // The copy counted on from k: B's progress went past it.
    let b = reported(&w, "B");
    assert!(b >= k, "B reported {b}, A held {k} rows");
}

/// `migrate --to-env B` of a UDP server on this host: the copy binds the
/// port beside the frozen source (SO_REUSEADDR on both) and takes it over,
/// answering with B's view of TAG. A first move that fails once the copy
/// is restored (the action script refuses at pre-resume) leaves the
/// source answering on its port.
#[test]
fn a_udp_server_moves_to_another_env_of_this_host() {
    let mut w = World::new();
    let site = Site::new(&w);
    let (mut sup, port) = start_script(&mut w, "dns2", &site, UDP_SERVER);
    assert_eq!(ask(port, 0), "A");
    let action = w.dir().join("refuse.sh");
    fs::write(
        &action,
        "#!/bin/sh\n[ \"$ISOTRACE_ACTION\" = pre-resume ] && exit 3\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&action, fs::Permissions::from_mode(0o755)).unwrap();
    let args = ["migrate", "dns2", "--to-env", "B", "--action-script"];
    let (code, _, err) = w.isotrace("home", &[&args[..], &[path_str(&action)]].concat(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("pre-resume") && err.contains("runs on"),
        "{err}"
    );
    assert!(!err.contains("not put back"), "{err}");
    assert!(sup.try_wait().unwrap().is_none(), "the source group ended");
    assert_eq!(ask(port, 100), "A");
    let (code, out, err) = w.isotrace("home", &["migrate", "dns2", "--to-env", "B", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    w.pids.push(dest_pid(&json(&out)));
    assert_released(&mut sup);
    fs::write(w.env_file("home", "B", &site.tag), "B\n").unwrap();
    for n in 1..20 {
        assert_eq!(ask(port, n), "B");
    }
}
