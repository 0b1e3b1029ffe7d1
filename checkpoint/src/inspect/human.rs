//! The readable summary `inspect` prints without `--json`.

use super::{nul_list, signal_names, View};
use crate::image::Image;
use crate::model::{FdEntry, FdKind, Process, SocketInfo, VmaMemory};
use std::fmt::Write;

fn kib(bytes: u64) -> String {
    match bytes {
        b if b >= 10 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

pub fn human(image: &Image, view: View) -> String {
    let mut out = String::new();
    if view == View::All {
        let m = &image.manifest;
        let _ = writeln!(
            out,
            "image {} ({:?}, format v{}, created {})\n  host: Linux {} {}, xcr0 {}; memory captured: {}",
            image.dir.display(),
            m.kind,
            m.version,
            m.created,
            m.host.kernel,
            m.host.arch,
            m.host.xcr0,
            m.memory_method
        );
        if let Ok(Some(r)) = crate::dump::snapshot::record(image) {
            snapshot_record(&mut out, &r);
        }
    }
    for p in &image.tree.processes {
        match view {
            View::All => summary(&mut out, p),
            View::Ps => {
                header(&mut out, p);
                threads(&mut out, p);
            }
            View::Fds => fds(&mut out, p, |_| true),
            View::Sockets => fds(&mut out, p, |f| matches!(f.kind, FdKind::Socket(_))),
            View::Mems => mems(&mut out, p),
        }
    }
    out
}

/// The lines of a snapshot's record (snapshot.json).
fn snapshot_record(out: &mut String, r: &crate::dump::snapshot::Record) {
    let ms = |us: u64| us as f64 / 1e3;
    let p = &r.phases_us;
    let _ = writeln!(
        out,
        "  paused {:.1} ms (seize {:.1}, registers {:.1}, write-protect {:.1}, fork {:.1}); one thread held {:.1} ms more to reap the copy",
        ms(r.pause_us),
        ms(p.freeze),
        ms(p.capture.saturating_sub(p.freeze)),
        ms(p.protect.saturating_sub(p.capture)),
        ms(p.fork.saturating_sub(p.protect.max(p.capture))),
        ms(r.reap_pause_us)
    );
    if r.prearm_pause_us > 0 {
        let _ = writeln!(
            out,
            "  before it, held {:.1} ms to make the userfaultfd; memory write-protected {:.1} ms after the first seize",
            ms(r.prearm_pause_us),
            ms(r.prearm_us)
        );
    }
    if let Some(why) = &r.uffd_abandoned {
        let _ = writeln!(
            out,
            "  copy-before-write abandoned, taken again by fork: {why}"
        );
    }
    for p in &r.processes {
        if let Some(why) = &p.why_stopped {
            let _ = writeln!(out, "  pid {} was dumped while stopped: {why}", p.pid);
        }
        if let Some(why) = &p.uffd_unavailable {
            let _ = writeln!(out, "  pid {}: no copy-before-write: {why}", p.pid);
        }
        if let Some(u) = &p.uffd {
            let _ = writeln!(
                out,
                "  pid {}: {} page(s) copied before a write ({} write fault(s)), {} MiB write-protected, {} KiB of {} unprotectable mapping(s) read during the pause, {} read-only mapping(s) read after it",
                p.pid,
                u.copied_before_write,
                u.faults,
                u.protected_bytes >> 20,
                u.read_in_pause_bytes >> 10,
                u.read_in_pause.len(),
                u.unprotected_read_only
            );
            let _ = writeln!(
                out,
                "    {} KiB written or gained between the write-protection and the pause (protected again in it), {} KiB mapped since copied in the pause",
                u.touched_before_pause_bytes >> 10,
                u.copied_in_pause_bytes >> 10
            );
            for e in &u.events {
                let _ = writeln!(out, "    during the copy: {e}");
            }
        }
    }
}

fn header(out: &mut String, p: &Process) {
    let _ = writeln!(
        out,
        "\nprocess {} ({}) ppid {} pgid {} sid {}",
        p.pid, p.comm, p.ppid, p.pgid, p.sid
    );
}

fn summary(out: &mut String, p: &Process) {
    header(out, p);
    let c = &p.creds;
    let _ = writeln!(out, "  exe:     {}", p.exe.as_deref().unwrap_or("?"));
    let _ = writeln!(out, "  cwd:     {}", p.cwd.as_deref().unwrap_or("?"));
    let _ = writeln!(out, "  cmdline: {}", nul_list(&p.cmdline).join(" "));
    let _ = writeln!(out, "  environ: {} variables", nul_list(&p.environ).len());
    let _ = writeln!(
        out,
        "  creds:   uid {:?} gid {:?} groups {:?} capeff {:#x} seccomp {}",
        c.uid, c.gid, c.groups, c.cap_eff, c.seccomp
    );
    let _ = writeln!(
        out,
        "  signals: caught {:?} ignored {:?} pending {:?}",
        signal_names(p.signals.caught),
        signal_names(p.signals.ignored),
        signal_names(p.signals.shared_pending)
    );
    threads(out, p);
    let mapped: u64 = p.vmas.iter().map(|v| v.len()).sum();
    let captured: u64 = p.vmas.iter().map(|v| v.captured_bytes()).sum();
    let _ = writeln!(
        out,
        "  memory: {} mappings, {} mapped, {} captured (inspect IMAGE mems)",
        p.vmas.len(),
        kib(mapped),
        kib(captured)
    );
    let _ = writeln!(out, "  fds: {} open (inspect IMAGE fds)", p.fds.len());
    for f in &p.fds {
        fd_line(out, f);
    }
}

fn threads(out: &mut String, p: &Process) {
    let _ = writeln!(out, "  threads: {}", p.threads.len());
    for t in &p.threads {
        let _ = writeln!(
            out,
            "    tid {:<8} {:<16} {} rip {:#018x} rsp {:#018x} blocked {:?} [{}] syscall {}",
            t.tid,
            t.comm,
            t.state,
            t.reg("rip"),
            t.reg("rsp"),
            signal_names(t.sig_blocked),
            t.stop,
            if t.syscall.is_empty() {
                "-"
            } else {
                &t.syscall
            }
        );
    }
}

fn fd_line(out: &mut String, f: &FdEntry) {
    let detail = match &f.kind {
        FdKind::Socket(Some(SocketInfo::Unix { kind, state, path })) => {
            format!(" unix {kind} {state} {path}")
        }
        FdKind::Socket(Some(SocketInfo::Inet {
            proto,
            local,
            remote,
            state,
        })) => {
            format!(" {proto} {local} -> {remote} {state}")
        }
        FdKind::File { .. } | FdKind::Dir => format!(" pos {} flags {:#o}", f.pos, f.flags),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "    {:>4} {:<10} {}{}",
        f.fd,
        f.kind.name(),
        f.target,
        detail
    );
}

fn fds(out: &mut String, p: &Process, keep: impl Fn(&FdEntry) -> bool) {
    header(out, p);
    for f in p.fds.iter().filter(|f| keep(f)) {
        fd_line(out, f);
    }
}

fn mems(out: &mut String, p: &Process) {
    header(out, p);
    for v in &p.vmas {
        let note = match &v.memory {
            VmaMemory::Dumped { .. } => format!("{} captured", kib(v.captured_bytes())),
            VmaMemory::Skipped { reason } => format!("not captured: {reason}"),
        };
        let _ = writeln!(
            out,
            "  {:012x}-{:012x} {} {:>9} {:<40} {}",
            v.start,
            v.end,
            v.perms,
            kib(v.len()),
            v.path,
            note
        );
    }
}
