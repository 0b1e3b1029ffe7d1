//! `isotrace receive`: one migration or clone stream, from the handshake to
//! the copy running (checkpoint/STREAM.md for the frames).
//!
//! Nothing of the image touches a disk: sections land in a tmpfs staging
//! directory (see `api::migrate::staging`) and are checked against the
//! manifest's SHA-256s as they are written (`stream::transfer`). The environment's layer is
//! unpacked into a staged environment that gets its name only when the
//! whole stream arrived. Any failure (a bad tag, a cut stream, a restore
//! that refuses) removes what was made and tells the source, which resumes.

use super::layer;
use super::start;
use isotrace::api::migrate::staging::Staging;
use isotrace_checkpoint::stream::handshake::{incompatibility, local_cpu_flags};
use isotrace_checkpoint::stream::pages::PageStore;
use isotrace_checkpoint::stream::{local_xcr0, transfer, Accept, EnvPlan, Hello, Kind, Session};
use isotrace_idb::Store;
use serde_json::json;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the source may go quiet (it dumps while we wait).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `receive --env NAME` / `migrate --to-env NAME`.
    pub env: Option<String>,
}

/// A copy that runs.
#[derive(Debug, serde::Serialize)]
pub struct Received {
    pub purpose: String,
    pub group: String,
    pub from: String,
    pub env: Option<String>,
    pub env_plan: String,
    pub pids: Vec<i32>,
    pub restore_ms: f64,
    pub notes: Vec<String>,
    /// How the pages held from pre-copy were filled (`eager`,
    /// `post-copy`), and what post-copy did.
    pub fill: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_copy: Option<isotrace_checkpoint::restore::lazy::Stats>,
    /// The layer comes in two parts (pre-copy, `Accept.layer_precopy`).
    #[serde(skip)]
    pub layer_precopy: bool,
}

/// This CPU as the compatibility check sees it. ISOTRACE_FAULT=
/// receiver-lacks-avx512 is a test hook (not a user feature): it hides the
/// AVX-512 state components (XCR0 bits 5-7) and flags, so the refusal of a
/// group from a CPU with more features can be tested on one machine.
fn local_cpu() -> (u64, Vec<String>) {
    let (mut xcr0, mut flags) = (local_xcr0(), local_cpu_flags());
    if std::env::var("ISOTRACE_FAULT").as_deref() == Ok("receiver-lacks-avx512") {
        xcr0 &= !0xe0;
        flags.retain(|f| !f.starts_with("avx512"));
    }
    (xcr0, flags)
}

fn store() -> Result<Store, String> {
    let home = crate::envs::home().map_err(|(_, why)| why)?;
    Store::open(&home).map_err(|e| e.to_string())
}

/// Where the group's environment comes from on this host.
fn plan_env(hello: &Hello, opts: &Options) -> Result<(EnvPlan, Option<String>), String> {
    let Some(offer) = &hello.env else {
        if let Some(name) = opts.env.as_ref().or(hello.dest_env.as_ref()) {
            return Err(format!(
                "group {} runs without isolation, so it cannot be put in environment {name}",
                hello.group
            ));
        }
        return Ok((EnvPlan::None, None));
    };
    let name = opts
        .env
        .clone()
        .or_else(|| hello.dest_env.clone())
        .unwrap_or_else(|| offer.name.clone());
    let store = store()?;
    let here = isotrace::api::rundir::canonical(store.home());
    if let Ok(env) = store.get(&name) {
        let upper = isotrace::api::rundir::canonical(&env.upper());
        let same = name == offer.name
            && upper == Path::new(&offer.upper)
            && here == Path::new(&offer.home);
        if same && hello.purpose == "clone" {
            return Err(format!(
                "a clone needs an environment of its own, and {name} is the group's own (choose another with --env or --to-env)"
            ));
        }
        if same {
            return Ok((EnvPlan::Shared, Some(name)));
        }
        return Err(format!(
            "environment {name} already exists here ({}); the group's layer would replace it (choose another with --env)",
            store.home().display()
        ));
    }
    Ok((EnvPlan::Stream, Some(name)))
}

/// Handles one connection. Err: why no copy runs (the source was told).
pub fn serve_one(conn: TcpStream, token: &[u8], opts: &Options) -> Result<Received, String> {
    let from = conn.peer_addr().map_or("?".into(), |a| a.to_string());
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let (mut s, hello) =
        Session::accept(conn, token).map_err(|e| format!("stream from {from}: {e}"))?;
    let (xcr0, flags) = local_cpu();
    let planned = match incompatibility(&hello, xcr0, &flags) {
        Some(why) => Err(why),
        None => plan_env(&hello, opts),
    };
    let (plan, env) = match planned {
        Ok(p) => p,
        Err(why) => {
            s.fail(Kind::Refuse, &why);
            return Err(format!("refused group {} from {from}: {why}", hello.group));
        }
    };
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let accept = Accept {
        host,
        xcr0,
        env_plan: plan,
        dest_env: env.clone(),
        layer_precopy: hello.layer_precopy && plan == EnvPlan::Stream,
    };
    s.tx.send_json(Kind::Accept, &accept)
        .map_err(|e| format!("stream from {from}: {e}"))?;
    let received = Received {
        purpose: hello.purpose.clone(),
        group: hello.group.clone(),
        from: from.clone(),
        env,
        env_plan: serde_json::to_value(plan)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        pids: Vec::new(),
        restore_ms: 0.0,
        notes: Vec::new(),
        fill: String::new(),
        post_copy: None,
        layer_precopy: accept.layer_precopy,
    };
    match run(&mut s, received) {
        Ok(r) => Ok(r),
        Err(why) => {
            s.fail(Kind::Failed, &why);
            Err(format!("group {} from {from}: {why}", hello.group))
        }
    }
}

/// After Accept: layer, image, restore, Ready/Go/Running.
fn run(s: &mut Session, mut r: Received) -> Result<Received, String> {
    let net = |e: isotrace_checkpoint::stream::Error| e.to_string();
    let staging = Staging::new().map_err(|e| format!("staging the image: {e}"))?;
    let streamed = match (&r.env, r.env_plan.as_str()) {
        (Some(name), "stream") => Some(name.clone()),
        _ => None,
    };
    // With pre-copy the layer comes first, whole, while the source runs.
    let mut pre_layer = None;
    if let Some(name) = streamed.as_ref().filter(|_| r.layer_precopy) {
        {
            let staged = store()?.stage(name).map_err(|e| e.to_string())?;
            let written = layer::receive(&mut s.rx, &staged)?;
            let syncing = staged.make_durable(written);
            pre_layer = Some((staged, syncing));
        }
    }
    let held = pre_copied(s, &staging)?;
    let staged = match (streamed, pre_layer) {
        (Some(name), None) => {
            let staged = store()?.stage(&name).map_err(|e| e.to_string())?;
            let written = layer::receive(&mut s.rx, &staged)?;
            // Written back while the image arrives, not in the downtime.
            let syncing = staged.make_durable(written);
            Some((staged, vec![syncing]))
        }
        (Some(_), Some((staged, early))) => {
            let written = layer::receive_delta(&mut s.rx, &staged)?;
            let syncing = staged.make_durable(written);
            Some((staged, vec![early, syncing]))
        }
        _ => None,
    };
    let dir = staging.dir.join("image");
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Checked section by section as it arrives; the restore reads it again
    // from `dir` (its paths are made public and resolved in the destination
    // env there, from the image's supervisor.json).
    let image = transfer::recv_image(&mut s.rx, &dir, held.as_ref())
        .map_err(|e| format!("the received image: {e}"))?;
    s.rx.expect(Kind::Commit).map_err(net)?;
    let t = Instant::now();
    let mut placed = None;
    if let Some((staged, syncing)) = staged {
        let mut took = Duration::ZERO;
        for handle in syncing {
            let synced = handle
                .join()
                .map_err(|_| "making the environment durable panicked".to_string())?;
            took += synced.map_err(|e| format!("environment {}: {e}", staged.name()))?;
        }
        let env = staged.commit_durable().map_err(|e| e.to_string())?;
        placed = Some(env.name().to_string());
        r.notes.push(format!(
            "environment {} made durable in {:.1} ms, of which {:.1} ms in the downtime",
            env.name(),
            took.as_secs_f64() * 1000.0,
            t.elapsed().as_secs_f64() * 1000.0
        ));
    }
    drop(image);
    // The copy runs under a supervisor of its own, in its environment,
    // as the group it was (restore.rs --control); the staging area holds
    // the image and the control FIFOs until it runs.
    let env = placed.clone().or_else(|| r.env.clone());
    let copy = start::supervised(&dir, env.as_deref());
    let mut copy = copy.inspect_err(|_| forget_env(placed.as_deref()))?;
    r.restore_ms = t.elapsed().as_secs_f64() * 1000.0;
    r.pids = copy.pids.clone();
    go(s, &mut copy, &mut r).inspect_err(|_| forget_env(placed.as_deref()))?;
    if copy.post_copy {
        // The staging area holds the pre-copy store the pages come from:
        // it stays until every page is in.
        post_copied(s, &mut copy, &mut r)?;
    }
    drop(staging);
    Ok(r)
}

/// The pages pre-copy sends while the source still runs, if it does.
fn pre_copied(s: &mut Session, staging: &Staging) -> Result<Option<PageStore>, String> {
    let mut store: Option<PageStore> = None;
    loop {
        let frame = s.rx.recv().map_err(|e| e.to_string())?;
        if frame.kind != Kind::PrePages {
            s.rx.unread(frame);
            return Ok(store);
        }
        let st = match &mut store {
            Some(st) => st,
            None => store.insert(PageStore::new(&staging.dir).map_err(|e| e.to_string())?),
        };
        st.put(&frame.payload).map_err(|e| e.to_string())?;
    }
}

/// Ready, wait for Go, let the copy run, Running.
fn go(s: &mut Session, copy: &mut start::Supervised, r: &mut Received) -> Result<(), String> {
    let ready = json!({ "pids": r.pids, "restore_ms": r.restore_ms });
    let sent = s.tx.send_json(Kind::Ready, &ready);
    if let Err(e) = sent.and_then(|()| s.rx.expect(Kind::Go).map(drop)) {
        copy.kill();
        return Err(format!(
            "the source did not confirm ({e}); the copy was removed"
        ));
    }
    if let Err(why) = copy.go() {
        copy.kill();
        return Err(why);
    }
    r.fill = copy.fill.clone();
    let running = json!({
        "pids": r.pids,
        "restore_ms": r.restore_ms,
        "notes": r.notes,
        "post_copy": copy.post_copy,
        "fill": r.fill,
    });
    // The copy runs now: if this last word is lost, the source cannot tell
    // and resumes too (it says so).
    let _ = s.tx.send_json(Kind::Running, &running);
    Ok(())
}

/// Waits until the copy's post-copy filled every page, and tells the
/// source what it did (`PostCopied`). A failure killed the copy already.
fn post_copied(
    s: &mut Session,
    copy: &mut start::Supervised,
    r: &mut Received,
) -> Result<(), String> {
    match copy.post_copied() {
        Ok(stats) => {
            let stats: isotrace_checkpoint::restore::lazy::Stats =
                serde_json::from_str(&stats).map_err(|e| format!("post-copy statistics: {e}"))?;
            let _ = s.tx.send_json(Kind::PostCopied, &json!({ "stats": stats }));
            r.post_copy = Some(stats);
            Ok(())
        }
        Err(why) => {
            copy.kill();
            let _ = s.tx.send_json(Kind::PostCopied, &json!({ "error": why }));
            Err(format!("the copy failed in post-copy: {why}"))
        }
    }
}

/// Removes an environment this stream created, when its copy never ran.
fn forget_env(name: Option<&str>) {
    if let (Some(name), Ok(store)) = (name, store()) {
        let _ = store.remove(name);
    }
}
