//! The read-only host (issue #3): when and how the tracee runs in a mount
//! namespace of its own where every host mount is read-only, except the
//! environment's directory in the store and the public exceptions.
//!
//! An fd the tracee opens on a host file for reading is the host file
//! itself (reads are not redirected). Under the traps mode every fd-based
//! metadata call (fchmod, fchown, futimens, f*xattr) stops so that the
//! supervisor can send the change to a copy (fdops.rs). With the host
//! read-only the kernel refuses them with EROFS (mnt_want_write_file(),
//! fs/namespace.c), and so it does ioctl(FS_IOC_SETFLAGS) and any other
//! write through such an fd, while an fd on a private file (the store is
//! writable) just works. Paths are the same in both namespaces, so the
//! supervisor's rewrites need no change.
//!
//! Cases where the fast mode would be wrong keep the traps ([`plan`]
//! returns why): an environment sharing inodes with another (`env copy`,
//! idb::share: an fd on a shared file must not change both), an inherited
//! read-only fd on a host file (it was opened in the supervisor's
//! namespace, on a writable mount), and an exception that does not exist
//! or is reached through a symlink no other exception covers (it could not
//! be made writable as the traps mode has it).

use isotrace_idb::View;
use isotrace_tracer::{Call, ReadOnlyHost, TraceeView, Verdict};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo, as far as the plan needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct MountPoint {
    pub path: PathBuf,
    /// The per-mount `ro` option (field 6, proc(5)).
    pub read_only: bool,
}

/// Parses /proc/PID/mountinfo text: mount point (field 5, with the
/// kernel's octal escapes of space, tab, newline and backslash undone) and
/// the per-mount read-only flag.
pub fn parse_mountinfo(text: &str) -> Vec<MountPoint> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let path = f.nth(4)?;
            let opts = f.next()?;
            Some(MountPoint {
                path: PathBuf::from(OsString::from_vec(unescape(path))),
                read_only: opts.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

fn cstring(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{} has a NUL byte", p.display()))
}

/// The namespace for a run in `view`, or why the run keeps the traps.
/// `mounts` is the supervisor's mount table ([`parse_mountinfo`]).
pub fn plan(view: &View, mounts: &[MountPoint]) -> Result<ReadOnlyHost, String> {
    if isotrace_idb::share::shares_any(view).map_err(|e| e.to_string())? {
        return Err("the env shares files with another env (env copy)".into());
    }
    if let Some((fd, path)) = inherited_read_only_host_fd(view) {
        return Err(format!(
            "inherited fd {fd} is {} opened read-only on the host",
            path.display()
        ));
    }
    let env_dir = view
        .upper()
        .parent()
        .ok_or("the env has no directory")?
        .to_path_buf();
    let mut roots: Vec<PathBuf> = Vec::new();
    let exceptions = &view.rules().exceptions;
    for e in exceptions {
        let real = std::fs::canonicalize(&e.prefix)
            .map_err(|err| format!("exception {}: {err}", e.prefix.display()))?;
        if real == e.prefix {
            roots.push(real);
        } else if !exceptions.iter().any(|o| real.starts_with(&o.prefix)) {
            return Err(format!(
                "exception {} is a symlink to {}, which no exception covers",
                e.prefix.display(),
                real.display()
            ));
        }
    }
    roots.push(env_dir);
    let is_mount = |p: &Path| mounts.iter().any(|m| m.path == p);
    let mut plan = ReadOnlyHost::default();
    for r in &roots {
        plan.writable.push((cstring(r)?, !is_mount(r)));
    }
    for m in mounts.iter().filter(|m| m.read_only) {
        if roots.iter().any(|r| m.path.starts_with(r)) {
            plan.keep_read_only.push(cstring(&m.path)?);
        }
    }
    plan.cwd = std::env::current_dir().ok().and_then(|d| cstring(&d).ok());
    Ok(plan)
}

/// The fds the program will inherit (no FD_CLOEXEC) on named objects:
/// (fd, link target, the open file's status flags).
fn inherited_fds() -> Vec<(i32, PathBuf, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.is_absolute() {
            continue;
        }
        // /proc/self/fdinfo/N's `flags:` (octal) are the open file's
        // status flags with O_CLOEXEC for the fd's close-on-exec bit
        // (proc(5)).
        let Some(fl_flags) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .ok()
            .and_then(|t| {
                let v = t.lines().find_map(|l| l.strip_prefix("flags:"))?;
                i32::from_str_radix(v.trim(), 8).ok()
            })
        else {
            continue;
        };
        if fl_flags & libc::O_CLOEXEC == 0 {
            out.push((fd, target, fl_flags));
        }
    }
    out
}

/// An fd the program will inherit (no FD_CLOEXEC) that is open read-only
/// on a host object outside the exceptions, if any: the read-only
/// namespace does not reach it.
fn inherited_read_only_host_fd(view: &View) -> Option<(i32, PathBuf)> {
    inherited_fds()
        .into_iter()
        .find_map(|(fd, target, fl_flags)| {
            let read_only =
                fl_flags & libc::O_ACCMODE == libc::O_RDONLY || fl_flags & libc::O_PATH != 0;
            let name = target.to_string_lossy();
            let public = Path::new(name.strip_suffix(" (deleted)").unwrap_or(&name));
            (read_only && !view.is_exception(public) && !view.is_hidden(public))
                .then_some((fd, target))
        })
}

/// An fd the program will inherit that is open on a directory, if any:
/// listing it is not trapped with lazy listings (tracer listings.rs),
/// and it may be one of the environment's.
pub fn inherited_directory_fd() -> Option<(i32, PathBuf)> {
    inherited_fds()
        .into_iter()
        .find_map(|(fd, target, fl_flags)| {
            let dir = fl_flags & libc::O_PATH == 0
                && std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok_and(|m| m.is_dir());
            dir.then_some((fd, target))
        })
}

/// setns(2) under isolation: joining another mount namespace is refused
/// (EPERM). There the rewritten paths would name other objects, and with a
/// read-only host it would be the way back to writable host mounts (for
/// root, /proc/1/ns/mnt). Other namespaces may be joined.
pub fn setns(call: &Call, tv: &mut dyn TraceeView) -> Verdict {
    let nstype = call.args[1];
    let is_mnt_ns = tv
        .fd_path(call.args[0] as i32)
        .is_some_and(|p| p.as_os_str().as_bytes().starts_with(b"mnt:"));
    if nstype & libc::CLONE_NEWNS as u64 != 0 || is_mnt_ns {
        return Verdict::deny(nix::errno::Errno::EPERM);
    }
    Verdict::CONTINUE
}

/// The mode of an access(2), faccessat(2) or faccessat2(2) call that asks
/// for write permission (W_OK), if it is one.
pub fn write_access_mode(call: &Call) -> Option<nix::unistd::AccessFlags> {
    let idx = match call.sc.name {
        "access" => 1,
        "faccessat" | "faccessat2" => 2,
        _ => return None,
    };
    let mode = nix::unistd::AccessFlags::from_bits_truncate(call.args[idx] as i32);
    mode.contains(nix::unistd::AccessFlags::W_OK)
        .then_some(mode)
}

/// access(W_OK) of a host object with a read-only host: in the tracee's
/// namespace the kernel would answer EROFS, where the traps mode answers
/// what the host's permissions say (a write goes to a copy, so dpkg's and
/// pip's "may I write here" checks pass). The supervisor asks its own
/// kernel, in the host namespace, with the thread's file-system
/// credentials (access(2) uses the real ids; a set-user-ID program's
/// answer may differ). Returns the call's result.
pub fn host_write_access(
    creds: &mut super::creds::Creds,
    tid: i32,
    real: &Path,
    mode: nix::unistd::AccessFlags,
) -> i64 {
    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, AT_FDCWD};
    let check = |p: &Path| nix::unistd::faccessat(AT_FDCWD, p, mode, AtFlags::AT_EACCESS);
    let res = match creds.of(tid).cloned() {
        Some(t) if creds.differ(&t) => match super::creds::via_fd(real) {
            Ok((_fd, link)) => isotrace_tracer::sys::with_fs_creds(&t.fs, || check(&link))
                .unwrap_or(Err(Errno::EPERM)),
            Err(e) => Err(Errno::from_raw(e)),
        },
        _ => check(real),
    };
    match res {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid shared:2 - sysfs sysfs rw
25 24 0:23 / /sys/fs/pstore ro,nosuid shared:3 - pstore pstore rw
26 22 0:24 / /mnt/my\\040disk ro,relatime - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].path, Path::new("/"));
        assert!(!m[0].read_only);
        assert_eq!(m[3].path, Path::new("/sys/fs/pstore"));
        assert!(m[3].read_only);
        assert_eq!(m[4].path, Path::new("/mnt/my disk"));
        assert!(m[4].read_only);
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape("a\\134b"), b"a\\b");
        assert_eq!(unescape("a\\x"), b"a\\x");
        assert_eq!(unescape("tail\\04"), b"tail\\04");
    }
}
