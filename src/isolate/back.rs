//! Translating results back: what the kernel reports in real paths
//! (getcwd, readlink of /proc magic links) is shown to the tracee in
//! public paths, so a program never sees its environment's private
//! directory.

use isotrace_idb::{public_of, View};
use isotrace_tracer::{Call, ExitAction, MemWrite, TraceeView};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back {
    /// getcwd(buf, size): a NUL-terminated path, returns its length + 1.
    Getcwd,
    /// readlink(path, buf, size) / readlinkat(dirfd, path, buf, size): no
    /// NUL, returns the length, silently truncated to size.
    Readlink,
}

pub fn translate(
    view: &View,
    b: Back,
    call: &Call,
    ret: i64,
    tv: &mut dyn TraceeView,
) -> ExitAction {
    if ret <= 0 {
        return ExitAction::NONE;
    }
    let (buf, size) = match (b, call.sc.name) {
        (Back::Getcwd, _) => (call.args[0], call.args[1] as usize),
        (Back::Readlink, "readlink") => (call.args[1], call.args[2] as usize),
        (Back::Readlink, _) => (call.args[2], call.args[3] as usize),
    };
    let len = match b {
        Back::Getcwd => ret as usize - 1,
        Back::Readlink => ret as usize,
    };
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
    match b {
        Back::Getcwd => {
            bytes.push(0);
            if bytes.len() > size {
                return ExitAction {
                    ret: Some(-(libc::ERANGE as i64)),
                    writes: Vec::new(),
                };
            }
        }
        Back::Readlink => bytes.truncate(size),
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
