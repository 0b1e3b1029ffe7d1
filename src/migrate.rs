//! `isotrace migrate`, `clone` and `receive` (#6): the CLI over the group's
//! `migrate`/`clone` API ops (src/api/migrate.rs, the source's side) and
//! the receiver ([`receiver`]).
//!
//! `--to-env NAME` is a migration to this host: the command runs a
//! receiver of its own on 127.0.0.1 with a fresh random token, so the same
//! stream, checks and two-phase confirmation serve both cases.

mod layer;
pub mod on_signal;
pub mod receiver;
mod start;
mod token;

use crate::cli::{CloneArgs, MigrateArgs, ReceiveArgs};
use isotrace::api::client::Client;
use isotrace::api::protocol::MigrateResult;
use receiver::{Options, Received};
use serde_json::{Map, Value};
use std::net::TcpListener;
use std::path::Path;

/// The exit status of a migration that did not happen.
const EXIT_FAILED: i32 = 1;

/// Where to, as the two verbs say it.
struct Target<'a> {
    purpose: &'static str,
    group: &'a str,
    to_env: Option<&'a str>,
    to: Option<&'a str>,
    env: Option<&'a str>,
    token_file: Option<&'a Path>,
    pre_copy: bool,
    json: bool,
    /// `tcp_close`, `action_script` and `ports` for the op (docs/API.md).
    extra: Map<String, Value>,
}

pub fn migrate(a: MigrateArgs) -> i32 {
    let mut extra = Map::new();
    if a.tcp_close {
        extra.insert("tcp_close".into(), Value::Bool(true));
    }
    if let Some(p) = &a.action_script {
        match std::path::absolute(p) {
            Ok(p) => extra.insert("action_script".into(), Value::from(p.display().to_string())),
            Err(e) => return fail(&format!("--action-script {}: {e}", p.display())),
        };
    }
    send(&Target {
        purpose: "migrate",
        group: &a.group,
        to_env: a.to_env.as_deref(),
        to: a.to.as_deref(),
        env: a.env.as_deref(),
        token_file: a.token_file.as_deref(),
        pre_copy: a.pre_copy,
        json: a.json,
        extra,
    })
}

pub fn clone(a: CloneArgs) -> i32 {
    let ports = match a.ports {
        crate::cli::ClonePorts::Share => "share",
        crate::cli::ClonePorts::Refuse => "refuse",
    };
    let mut extra = Map::new();
    extra.insert("ports".into(), Value::from(ports));
    send(&Target {
        purpose: "clone",
        group: &a.group,
        to_env: a.to_env.as_deref(),
        to: a.to.as_deref(),
        env: a.env.as_deref(),
        token_file: a.token_file.as_deref(),
        pre_copy: false,
        json: a.json,
        extra,
    })
}

fn send(t: &Target) -> i32 {
    match (t.to_env, t.to) {
        (Some(env), _) => local(t, env),
        (None, Some(_)) => remote(t),
        (None, None) => {
            eprintln!(
                "isotrace: {} {}: say where to: --to-env NAME (this host) or --to HOST:PORT (an `isotrace receive`)",
                t.purpose, t.group
            );
            crate::EXIT_USAGE
        }
    }
}

/// Connects to the group: no such group is a usage error (125, as for
/// `checkpoint`), anything after that a failed migration (1).
fn client(t: &Target) -> Result<Client, i32> {
    Client::connect_group(t.group).map_err(|e| {
        eprintln!("isotrace: {} {}: {e}", t.purpose, t.group);
        crate::EXIT_USAGE
    })
}

fn call(
    c: &mut Client,
    t: &Target,
    to: &str,
    token: &[u8],
    env: Option<&str>,
) -> Result<MigrateResult, String> {
    c.migrate_with(t.purpose, to, token, env, t.pre_copy, t.extra.clone())
        .map_err(|e| format!("{} {}: {e}", t.purpose, t.group))
}

/// `--to-env NAME`: a receiver of our own on 127.0.0.1. It runs on the main
/// thread and the API call on another: the restore's tracer is the thread
/// that restores, and its tracees (PTRACE_O_EXITKILL) must not die with a
/// thread that ends before the process does.
fn local(t: &Target, env: &str) -> i32 {
    let mut c = match client(t) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let prepared = token::random().and_then(|token| {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("127.0.0.1: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok((token, l, addr))
    });
    let (token, listener, addr) = match prepared {
        Ok(p) => p,
        Err(why) => return fail(&why),
    };
    let (purpose, group, to, key, dest) = (
        t.purpose,
        t.group.to_string(),
        addr.to_string(),
        token.clone(),
        env.to_string(),
    );
    let (pre_copy, extra) = (t.pre_copy, t.extra.clone());
    let caller = std::thread::spawn(move || {
        c.migrate_with(purpose, &to, &key, Some(&dest), pre_copy, extra)
            .map_err(|e| format!("{purpose} {group}: {e}"))
    });
    let opts = Options {
        env: Some(env.to_string()),
    };
    if let Some(conn) = accept_while(&listener, &caller) {
        if let Err(why) = receiver::serve_one(conn, &token, &opts) {
            tracing::debug!("receiver: {why}");
        }
    }
    match caller.join() {
        Ok(Ok(result)) => report(t, &result),
        Ok(Err(why)) => fail(&why),
        Err(_) => fail("the API call panicked"),
    }
}

/// The source's connection, or None once the API call ended without
/// making one (the group refused before connecting).
fn accept_while<T>(
    listener: &TcpListener,
    caller: &std::thread::JoinHandle<T>,
) -> Option<std::net::TcpStream> {
    loop {
        match listener.accept() {
            Ok((conn, _)) => return conn.set_nonblocking(false).ok().map(|()| conn),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if caller.is_finished() {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

fn remote(t: &Target) -> i32 {
    let to = t.to.unwrap_or_default();
    let token = match token::load(t.token_file) {
        Ok(tk) => tk,
        Err(why) => {
            eprintln!("isotrace: {} {}: {why}", t.purpose, t.group);
            return crate::EXIT_USAGE;
        }
    };
    let mut c = match client(t) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match call(&mut c, t, to, &token, t.env) {
        Ok(result) => report(t, &result),
        Err(why) => fail(&why),
    }
}

fn fail(why: &str) -> i32 {
    eprintln!("isotrace: {why}");
    EXIT_FAILED
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn report(t: &Target, r: &MigrateResult) -> i32 {
    if t.json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
    let verb = if r.purpose == "clone" {
        "cloned"
    } else {
        "migrated"
    };
    let env = r
        .dest_env
        .as_deref()
        .map(|e| format!("env {e} at "))
        .unwrap_or_default();
    let pids: Vec<String> = r.dest_pids.iter().map(|p| p.to_string()).collect();
    eprintln!(
        "isotrace: {verb} group {} to {env}{} ({}), pid {}: downtime {:.1} ms, mode {}",
        t.group,
        r.to,
        r.dest_host,
        pids.join(","),
        r.downtime_ms,
        r.mode
    );
    eprintln!(
        "isotrace: freeze {:.1} ms, dump {:.1} ms, layer {:.1} ms, send {:.1} ms, restore {:.1} ms; sent {} (image {}, layer {}); total {:.1} ms; staged in {}",
        r.freeze_ms, r.dump_ms, r.layer_ms, r.send_ms, r.restore_ms,
        mib(r.bytes_sent), mib(r.image_bytes), mib(r.layer_bytes), r.total_ms, r.staging
    );
    if let Some(line) = fill_line(&r.fill, r.post_copy.as_ref()) {
        eprintln!("isotrace: {line}");
    }
    for note in &r.notes {
        eprintln!("isotrace: note: {note}");
    }
    0
}

/// How the destination filled the pages it held from pre-copy, in words.
fn fill_line(fill: &str, pc: Option<&isotrace_checkpoint::restore::lazy::Stats>) -> Option<String> {
    match (fill, pc) {
        ("post-copy", Some(pc)) => Some(format!(
            "post-copy: every held page in {:.1} ms after the group ran: {} pushed, {} on {} faults, {} zero-filled{}",
            pc.ms,
            pc.pushed_pages,
            pc.fault_pages,
            pc.faults,
            pc.zero_pages,
            match (pc.forks, pc.events) {
                (0, 0) => String::new(),
                (f, e) => format!("; {f} forks and {e} mremap/munmap/madvise followed"),
            }
        )),
        ("eager", pc) => Some(format!(
            "held pages filled before the group ran (eager){}",
            pc.and_then(|p| p.eager_why.first())
                .map(|w| format!(": post-copy unavailable: {w}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

pub fn receive(a: ReceiveArgs) -> i32 {
    let token = match token::load(a.token_file.as_deref()) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("isotrace: receive: {why}");
            return crate::EXIT_USAGE;
        }
    };
    let listener = match TcpListener::bind(&a.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("isotrace: receive: listening on {}: {e}", a.listen);
            return crate::EXIT_USAGE;
        }
    };
    let addr = listener
        .local_addr()
        .map_or(a.listen.clone(), |x| x.to_string());
    eprintln!("isotrace: receiving on {addr}");
    let opts = Options { env: a.env.clone() };
    for conn in listener.incoming() {
        let outcome = conn
            .map_err(|e| format!("accept: {e}"))
            .and_then(|c| receiver::serve_one(c, &token, &opts));
        match &outcome {
            Ok(r) => announce(r, a.json),
            Err(why) => eprintln!("isotrace: receive: {why}"),
        }
        if a.once {
            return if outcome.is_ok() { 0 } else { EXIT_FAILED };
        }
    }
    0
}

fn announce(r: &Received, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
    let env = r
        .env
        .as_deref()
        .map(|e| format!(" in env {e}"))
        .unwrap_or_default();
    let pids: Vec<String> = r.pids.iter().map(|p| p.to_string()).collect();
    eprintln!(
        "isotrace: received group {} ({}) from {}: pid {} runs{env} (restore {:.1} ms)",
        r.group,
        r.purpose,
        r.from,
        pids.join(","),
        r.restore_ms
    );
    if let Some(line) = fill_line(&r.fill, r.post_copy.as_ref()) {
        eprintln!("isotrace: {line}");
    }
}
