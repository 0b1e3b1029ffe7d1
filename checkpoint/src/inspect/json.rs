//! The `--json` document. Addresses, registers and other 64-bit values are
//! hex strings ("0x7ffd..."), because JSON readers commonly lose precision
//! above 2^53; sizes and ids are numbers.

use super::{nul_list, siginfo_head, signal_names, View};
use crate::image::Image;
use crate::model::{FdEntry, FdKind, Process, SocketInfo, Thread, Vma, VmaMemory, REG_NAMES};
use serde_json::{json, Map, Value};

pub const SCHEMA_NAME: &str = "isotrace-inspect";
/// Bump when a field changes meaning or disappears (adding is compatible).
pub const SCHEMA_VERSION: u32 = 1;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

pub fn json(image: &Image, view: View) -> Value {
    let m = &image.manifest;
    let processes: Vec<Value> = image
        .tree
        .processes
        .iter()
        .map(|p| process(p, view))
        .collect();
    json!({
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "image": {
            "path": image.dir.display().to_string(),
            "format_version": m.version,
            "kind": m.kind,
            "created": m.created,
            "kernel": m.host.kernel,
            "arch": m.host.arch,
            "xcr0": m.host.xcr0,
            "memory_method": m.memory_method,
            "limitations": m.limitations,
            "root_pid": m.root_pid,
            "snapshot": snapshot_record(image),
        },
        "processes": processes,
    })
}

/// How a snapshot went (dump/snapshot.rs, `snapshot.json`): the pause
/// and its phases in µs, and each process's memory method; null for
/// checkpoints. The section was checksummed when the image was opened.
fn snapshot_record(image: &Image) -> Value {
    match crate::dump::snapshot::record(image) {
        Ok(Some(r)) => json!(r),
        Ok(None) => Value::Null,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// [`json`], pretty-printed.
pub fn json_text(image: &Image, view: View) -> String {
    serde_json::to_string_pretty(&json(image, view)).expect("a Value always serializes")
}

fn process(p: &Process, view: View) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    put("pid", p.pid.into());
    put("ppid", p.ppid.into());
    put("pgid", p.pgid.into());
    put("sid", p.sid.into());
    put("comm", p.comm.clone().into());
    put("exe", json!(p.exe));
    put("cwd", json!(p.cwd));
    put("cmdline", json!(nul_list(&p.cmdline)));
    put("threads_count", p.threads.len().into());
    if matches!(view, View::All) {
        put("root", json!(p.root));
        put("environ", json!(nul_list(&p.environ)));
        put("creds", json!(p.creds));
        put("umask", json!(p.umask.map(|u| format!("{u:04o}"))));
        put("limits", json!(p.limits));
        put(
            "signals",
            json!({
                "ignored": signal_names(p.signals.ignored),
                "caught": signal_names(p.signals.caught),
                "pending": signal_names(p.signals.shared_pending),
                "siginfo": p.signals.shared_siginfo.iter().map(|s| siginfo(s)).collect::<Vec<_>>(),
            }),
        );
        put("auxv", auxv(&p.auxv));
    }
    if matches!(view, View::All | View::Ps) {
        put(
            "threads",
            p.threads.iter().map(|t| thread(t, view)).collect(),
        );
    }
    if matches!(view, View::All | View::Mems) {
        put("mems", p.vmas.iter().map(vma).collect());
    }
    if matches!(view, View::All | View::Fds) {
        put("fds", p.fds.iter().map(fd).collect());
    }
    if matches!(view, View::Sockets) {
        let socks = p.fds.iter().filter(|f| matches!(f.kind, FdKind::Socket(_)));
        put("sockets", socks.map(fd).collect());
    }
    Value::Object(o)
}

fn siginfo(raw: &[u8]) -> Value {
    let (signo, code) = siginfo_head(raw);
    json!({ "signo": signo, "code": code })
}

fn auxv(raw: &[u8]) -> Value {
    let words: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect();
    words
        .chunks_exact(2)
        .take_while(|kv| kv[0] != 0)
        .map(|kv| json!({ "type": kv[0], "value": hex(kv[1]) }))
        .collect()
}

fn thread(t: &Thread, view: View) -> Value {
    let mut o = json!({
        "tid": t.tid,
        "comm": t.comm,
        "state": t.state,
        "stop": t.stop,
        "syscall": t.syscall,
        "rip": hex(t.reg("rip")),
        "rsp": hex(t.reg("rsp")),
    });
    if view == View::All {
        let regs: Map<String, Value> = REG_NAMES
            .iter()
            .zip(t.regs)
            .map(|(n, v)| ((*n).to_owned(), hex(v).into()))
            .collect();
        o["regs"] = Value::Object(regs);
        o["xstate_size"] = t.xstate.len().into();
        o["xcr0"] = hex(t.xcr0).into();
        o["signals"] = json!({
            "blocked": signal_names(t.sig_blocked),
            "pending": signal_names(t.sig_pending),
            "siginfo": t.siginfo.iter().map(|s| siginfo(s)).collect::<Vec<_>>(),
        });
    }
    o
}

fn vma(v: &Vma) -> Value {
    let skipped = match &v.memory {
        VmaMemory::Skipped { reason } => Some(reason.clone()),
        VmaMemory::Dumped { .. } => None,
    };
    json!({
        "start": hex(v.start),
        "end": hex(v.end),
        "size": v.len(),
        "perms": v.perms,
        "offset": hex(v.offset),
        "dev": v.dev,
        "inode": v.inode,
        "path": v.path,
        "captured": v.captured_bytes(),
        "skipped": skipped,
    })
}

fn fd(f: &FdEntry) -> Value {
    let mut o = json!({
        "fd": f.fd,
        "kind": f.kind.name(),
        "target": f.target,
        "pos": f.pos,
        "flags": format!("{:#o}", f.flags),
        "ino": f.ino,
    });
    match &f.kind {
        FdKind::File { deleted } => o["deleted"] = (*deleted).into(),
        FdKind::AnonInode(name) | FdKind::Memfd(name) => o["name"] = name.clone().into(),
        FdKind::Device { major, minor } => o["device"] = format!("{major}:{minor}").into(),
        FdKind::Socket(info) => o["socket"] = socket(info.as_ref()),
        _ => {}
    }
    if !f.fdinfo_extra.is_empty() {
        o["fdinfo"] = f.fdinfo_extra.clone().into();
    }
    o
}

fn socket(info: Option<&SocketInfo>) -> Value {
    match info {
        Some(SocketInfo::Unix { kind, state, path }) => json!({
            "family": "unix", "type": kind, "state": state, "path": path,
        }),
        Some(SocketInfo::Inet {
            proto,
            local,
            remote,
            state,
        }) => json!({
            "family": if proto.ends_with('6') { "inet6" } else { "inet" },
            "proto": proto, "local": local, "remote": remote, "state": state,
        }),
        None => Value::Null,
    }
}
