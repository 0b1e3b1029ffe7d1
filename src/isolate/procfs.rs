//! The tracee's /proc, which need not be the supervisor's.
//!
//! A restored group runs in a pid namespace of its own (same pids as when
//! it was checkpointed) with a procfs of that namespace mounted over /proc
//! in its mount namespace. There, `/proc/7` names the tracee that getpid()
//! calls 7, while the supervisor's /proc knows it by its host pid. So:
//! - a /proc path that crosses no magic link is handed to the kernel as it
//!   is: the kernel resolves it in the tracee's own procfs ([`classify`]);
//! - a magic link (`/proc/PID/cwd`, `fd/N`, ...) is still followed by the
//!   supervisor, which reads it from its own /proc under the host pid
//!   ([`ProcView::host_pid`]).
//!
//! For a group in the supervisor's own pid namespace both views agree and
//! the translation is the identity.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Who walks a path the tracee gave.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcPath {
    /// Not (plainly) under /proc: the supervisor walks it in the merged view.
    Walk,
    /// Under /proc and crossing no magic link: the kernel resolves it as it
    /// is, in the tracee's own procfs.
    Kernel,
    /// Under /proc up to magic link `at` (`/proc/X[/task/T]/{cwd,fd/N,..}`),
    /// whose meaning the supervisor substitutes before walking `rest`.
    Magic { at: PathBuf, rest: PathBuf },
}

/// Who walks `path` (as the tracee gave it). A path with `..` is walked by
/// the supervisor, since `..` could climb out of a checked prefix (to the
/// supervisor's /proc/PID); so is one outside /proc. `/proc/self` and
/// `/proc/thread-self` themselves only name a pid directory (proc(5)), and
/// a final magic link that is not followed (lstat, readlink) is the link
/// itself: both are the kernel's.
pub fn classify(path: &[u8], follow: bool) -> ProcPath {
    if !(path == b"/proc" || path.starts_with(b"/proc/")) {
        return ProcPath::Walk;
    }
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.iter().any(|p| *p == b"..") {
        return ProcPath::Walk;
    }
    let mut at = PathBuf::from("/proc");
    for (i, part) in parts.iter().enumerate().skip(1) {
        at.push(OsStr::from_bytes(part));
        if i >= 2 && isotrace_idb::is_magic_link(&at) {
            let last = i + 1 == parts.len();
            if last && !follow {
                return ProcPath::Kernel;
            }
            let rest: PathBuf = parts[i + 1..]
                .iter()
                .map(|p| OsStr::from_bytes(p))
                .collect();
            return ProcPath::Magic { at, rest };
        }
    }
    ProcPath::Kernel
}

/// Whether a path names `/proc/self` or `/proc/thread-self` itself, whose
/// value (a pid, as the tracee's procfs counts) only the kernel knows.
pub fn is_own_pid_link(path: &[u8]) -> bool {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    trimmed == b"/proc/self" || trimmed == b"/proc/thread-self"
}

/// Which pid namespace the group's tracees are in, against the supervisor's.
#[derive(Default)]
pub struct ProcView {
    /// Learned from the first tracee asked about: a supervisor's tracees
    /// are all in one pid namespace (its group's; new pid namespaces are
    /// refused inside a group).
    foreign: Option<bool>,
}

impl ProcView {
    /// Whether `pid` (a host pid) lives in another pid namespace than the
    /// supervisor, so that its /proc numbers are not the supervisor's.
    pub fn foreign(&mut self, pid: i32) -> bool {
        *self.foreign.get_or_insert_with(|| {
            let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino()).ok();
            match (
                ino(&format!("/proc/{pid}/ns/pid")),
                ino("/proc/self/ns/pid"),
            ) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            }
        })
    }

    /// The host pid, as the supervisor's /proc knows it, of the process or
    /// thread that tracee `pid` (a host pid) names `named` in its own
    /// /proc: `self`, `thread-self`'s pid, or a number in its namespace.
    pub fn host_pid(&mut self, pid: i32, named: &str) -> Option<i32> {
        let n: i32 = named.parse().ok()?;
        if !self.foreign(pid) {
            return Some(n);
        }
        in_namespace_of(pid, n)
    }
}

/// The host pid of the task numbered `n` in the pid namespace of host pid
/// `member`: the task whose NSpid line (proc(5)) ends with `n` and whose
/// /proc/TID/ns/pid is the member's. Scans /proc, so it is kept for the
/// rare magic link named by an explicit pid.
fn in_namespace_of(member: i32, n: i32) -> Option<i32> {
    let ns = std::fs::metadata(format!("/proc/{member}/ns/pid"))
        .ok()?
        .ino();
    let last_nspid = |status: &str| -> Option<i32> {
        let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
        line.split_whitespace().last()?.parse().ok()
    };
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(host) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        for tid in tasks(host) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{host}/task/{tid}/status"))
            else {
                continue;
            };
            if last_nspid(&status) != Some(n) {
                continue;
            }
            let same_ns = std::fs::metadata(format!("/proc/{host}/task/{tid}/ns/pid"))
                .is_ok_and(|m| m.ino() == ns);
            if same_ns {
                return Some(tid);
            }
        }
    }
    None
}

/// The thread ids of host process `pid`.
fn tasks(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_proc_paths_are_the_kernels() {
        for p in [
            "/proc",
            "/proc/self",
            "/proc/self/status",
            "/proc/7/task/8/stat",
            "/proc/thread-self/comm",
            "/proc/self/fdinfo/3",
            "/proc/sys/kernel/pid_max",
        ] {
            assert_eq!(classify(p.as_bytes(), true), ProcPath::Kernel, "{p}");
        }
        // A final magic link not followed is the link itself.
        assert_eq!(classify(b"/proc/self/exe", false), ProcPath::Kernel);
    }

    #[test]
    fn magic_links_are_substituted_and_the_rest_walked() {
        let magic = |p: &str| classify(p.as_bytes(), true);
        let want = |at: &str, rest: &str| ProcPath::Magic {
            at: PathBuf::from(at),
            rest: PathBuf::from(rest),
        };
        assert_eq!(magic("/proc/self/cwd/x/y"), want("/proc/self/cwd", "x/y"));
        assert_eq!(magic("/proc/self/fd/3"), want("/proc/self/fd/3", ""));
        assert_eq!(magic("/proc/7/task/8/exe"), want("/proc/7/task/8/exe", ""));
        assert_eq!(
            classify(b"/proc/7/root/etc", false),
            want("/proc/7/root", "etc")
        );
        for p in [
            "/proc/self/../1/mem",
            "/procx/self",
            "/etc/passwd",
            "rel/proc",
        ] {
            assert_eq!(magic(p), ProcPath::Walk, "{p}");
        }
    }

    #[test]
    fn own_pid_links() {
        assert!(is_own_pid_link(b"/proc/self"));
        assert!(is_own_pid_link(b"/proc/thread-self/"));
        assert!(!is_own_pid_link(b"/proc/self/exe"));
    }

    #[test]
    fn own_namespace_is_the_identity() {
        let me = std::process::id() as i32;
        let mut v = ProcView::default();
        assert!(!v.foreign(me));
        assert_eq!(v.host_pid(me, "42"), Some(42));
        assert_eq!(v.host_pid(me, "self"), None);
    }
}
