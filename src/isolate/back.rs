//! Translating results back: what the kernel reports in real paths
//! (getcwd, readlink of /proc magic links) is shown to the tracee in
//! public paths, so a program never sees its environment's private
//! directory.

use isotrace_idb::{public_of, View};
use isotrace_tracer::{Action, Call, ExitAction, MemWrite, TraceeView, Verdict};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back {
    /// getcwd(buf, size): a NUL-terminated path, returns its length + 1.
    Getcwd,
    /// getsockname/getpeername(fd, addr, &addrlen): a unix socket's path.
    SockName,
}

pub fn translate(
    view: &View,
    b: Back,
    call: &Call,
    ret: i64,
    tv: &mut dyn TraceeView,
) -> ExitAction {
    if b == Back::SockName {
        return sockname(view, call, ret, tv);
    }
    if ret <= 0 {
        return ExitAction::NONE;
    }
    let (buf, size) = (call.args[0], call.args[1] as usize);
    let len = ret as usize - 1;
    let Some(real) = tv.read_bytes(buf, len) else {
        return ExitAction::NONE;
    };
    let real = Path::new(std::ffi::OsStr::from_bytes(&real));
    if !real.is_absolute() {
        // "pipe:[12]", "socket:[34]": not a path.
        return ExitAction::NONE;
    }
    let Some(public) = public_of(view, real) else {
        // Inside the store but not this environment's layer: never shown.
        return ExitAction {
            ret: Some(-(libc::ENOENT as i64)),
            writes: Vec::new(),
        };
    };
    if public.as_path() == real {
        return ExitAction::NONE;
    }
    let mut bytes = public.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    if bytes.len() > size {
        return ExitAction {
            ret: Some(-(libc::ERANGE as i64)),
            writes: Vec::new(),
        };
    }
    ExitAction {
        ret: Some(bytes.len() as i64),
        writes: vec![MemWrite { addr: buf, bytes }],
    }
}

/// Whether a readlink argument names a /proc link whose value is a real
/// path of the tracee (exe, cwd, root, fd/N, map_files/...).
pub fn names_magic_link(raw: &[u8]) -> bool {
    raw.starts_with(b"/proc/")
        && isotrace_idb::is_magic_link(Path::new(std::ffi::OsStr::from_bytes(raw)))
}

/// `/proc/PID/mem` (or self, thread-self, task/TID): a file whose writes
/// ignore page protections.
pub fn is_proc_mem(public: &Path) -> bool {
    public.starts_with("/proc") && public.file_name().is_some_and(|n| n == "mem")
}

/// The value of a /proc magic link as the tracee would read it, translated
/// to a public path and truncated to `size` like readlink(2) does. Read by
/// the supervisor from the tracee's own /proc entry (`self` replaced by its
/// pid), so a private path never reaches the tracee's buffer, not even cut.
pub fn magic_readlink(
    view: &View,
    raw: &[u8],
    (pid, tid): (i32, i32),
    mut host: impl FnMut(&str) -> Option<i32>,
    size: usize,
) -> Result<Vec<u8>, i32> {
    let text = String::from_utf8_lossy(raw);
    let own = if let Some(rest) = text.strip_prefix("/proc/thread-self") {
        format!("/proc/{pid}/task/{tid}{rest}")
    } else if let Some(rest) = text.strip_prefix("/proc/self") {
        format!("/proc/{pid}{rest}")
    } else {
        // /proc/N[/task/T]/...: N and T as the tracee's procfs counts them.
        let mut parts: Vec<String> = text.split('/').map(str::to_string).collect();
        let numbered = |p: &String| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        for i in [2, 4] {
            let is_pid = i == 2 || parts.get(3).is_some_and(|t| t == "task");
            if is_pid && parts.get(i).is_some_and(numbered) {
                parts[i] = host(&parts[i]).ok_or(libc::ENOENT)?.to_string();
            }
        }
        parts.join("/")
    };
    let real = std::fs::read_link(&own).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))?;
    let shown = if real.is_absolute() {
        public_of(view, &real).ok_or(libc::ENOENT)?
    } else {
        real
    };
    let mut bytes = shown.as_os_str().as_bytes().to_vec();
    bytes.truncate(size);
    Ok(bytes)
}

/// getsockname/getpeername of a unix socket bound in the environment: the
/// kernel reports the private path; show the public one.
fn sockname(view: &View, call: &Call, ret: i64, tv: &mut dyn TraceeView) -> ExitAction {
    if ret != 0 || call.args[1] == 0 || call.args[2] == 0 {
        return ExitAction::NONE;
    }
    let Some(lenb) = tv.read_bytes(call.args[2], 4) else {
        return ExitAction::NONE;
    };
    let reported = u32::from_ne_bytes([lenb[0], lenb[1], lenb[2], lenb[3]]) as usize;
    let Some(addr) = tv.read_bytes(call.args[1], reported.clamp(2, 110)) else {
        return ExitAction::NONE;
    };
    if u16::from_ne_bytes([addr[0], addr[1]]) != libc::AF_UNIX as u16
        || addr.len() <= 2
        || addr[2] == 0
    {
        return ExitAction::NONE;
    }
    let path: Vec<u8> = addr[2..].iter().copied().take_while(|&b| b != 0).collect();
    let real = Path::new(std::ffi::OsStr::from_bytes(&path));
    let Some(public) = public_of(view, real) else {
        return ExitAction::NONE;
    };
    if public.as_path() == real {
        return ExitAction::NONE;
    }
    // The caller's buffer size was in *addrlen before the call; the kernel
    // replaced it with the full length. Write what fits of the public name.
    let mut out = addr[..2].to_vec();
    out.extend_from_slice(public.as_os_str().as_bytes());
    out.push(0);
    let full = out.len() as u32;
    out.truncate(reported.min(110));
    ExitAction {
        ret: None,
        writes: vec![
            MemWrite {
                addr: call.args[1],
                bytes: out,
            },
            MemWrite {
                addr: call.args[2],
                bytes: full.to_ne_bytes().to_vec(),
            },
        ],
    }
}

/// Whether a public path is inside /proc/PID of the supervisor itself (any
/// of its threads, which /proc also answers for by tid).
pub fn is_supervisor_proc(public: &Path) -> bool {
    let mut parts = public.components().skip(1);
    let (Some(proc_), Some(who)) = (parts.next(), parts.next()) else {
        return false;
    };
    if proc_.as_os_str() != "proc" {
        return false;
    }
    let Some(n) = who.as_os_str().to_str().and_then(|s| s.parse::<u32>().ok()) else {
        return false;
    };
    let me = std::process::id();
    n == me
        || std::fs::read_to_string(format!("/proc/{n}/status")).is_ok_and(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .is_some_and(|t| t.trim().parse() == Ok(me))
        })
}

impl super::Isolation {
    /// readlink of a /proc magic link (exe, cwd, fd/N...) names a real
    /// path: emulated, so the tracee only ever sees the public one.
    pub(super) fn magic_readlink(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
    ) -> Option<Result<Verdict, i32>> {
        let (pidx, buf, size) = if call.sc.name == "readlink" {
            (0, call.args[1], call.args[2])
        } else {
            (1, call.args[2], call.args[3])
        };
        let raw = call.path(pidx)?;
        if !names_magic_link(raw) || super::procfs::is_own_pid_link(raw) {
            // /proc/self's value is a pid as the tracee's procfs counts.
            return None;
        }
        let _ = tv;
        let procs = &mut self.procs;
        let host = |named: &str| procs.host_pid(call.pid, named);
        Some(
            magic_readlink(&self.view, raw, (call.pid, call.tid), host, size as usize).map(
                |bytes| Verdict {
                    action: Action::EmulateWrite {
                        ret: bytes.len() as i64,
                        writes: vec![isotrace_tracer::MemWrite { addr: buf, bytes }],
                    },
                    exit_stop: false,
                },
            ),
        )
    }
}
