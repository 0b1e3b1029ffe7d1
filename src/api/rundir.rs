//! Where the control sockets live, and the lock that makes claiming a group
//! name atomic.
//!
//! `$XDG_RUNTIME_DIR/isotrace/` (XDG Base Directory: the user's runtime
//! directory, mode 0700, removed at logout); without it, `/run/user/UID/
//! isotrace/` when that exists (systemd-logind's), else `$TMPDIR/isotrace-UID/`.
//! Our directory is mode 0700 and must belong to us: in a shared /tmp
//! another user could have created it first.

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::geteuid;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// sun_path is 108 bytes with its terminating NUL (unix(7)).
const SUN_PATH_MAX: usize = 107;

/// The directory holding this user's group sockets (not created).
pub fn socket_dir() -> PathBuf {
    let uid = geteuid().as_raw();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        return PathBuf::from(x).join("isotrace");
    }
    let logind = PathBuf::from(format!("/run/user/{uid}"));
    if logind.is_dir() {
        return logind.join("isotrace");
    }
    std::env::temp_dir().join(format!("isotrace-{uid}"))
}

/// Why a group name cannot name a socket, if it cannot.
pub fn check_group_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/'"
    } else if name.contains("..") {
        "it contains '..'"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(format!("invalid group name {name:?}: {why}"))
}

/// `DIR/NAME.sock`, or why it cannot be used.
pub fn socket_path(dir: &Path, group: &str) -> Result<PathBuf, String> {
    check_group_name(group)?;
    let path = dir.join(format!("{group}.sock"));
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(format!(
            "socket path {} is longer than {SUN_PATH_MAX} bytes (unix(7)); use a shorter --group or XDG_RUNTIME_DIR",
            path.display()
        ));
    }
    Ok(path)
}

/// The group name of a socket file name (`NAME.sock`).
pub fn group_of(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".sock")
        .filter(|g| check_group_name(g).is_ok())
}

/// `path` with symlinks resolved, also before it exists (its parent
/// resolved): how an env's store (`ISOTRACE_HOME`) is compared between the
/// group that runs in it and `env rm`.
pub fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    match (path.parent().map(fs::canonicalize), path.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => path.to_path_buf(),
    }
}

/// Creates the socket directory if needed; refuses one that is not ours and
/// tightens its mode to 0700.
pub fn ensure(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory owned by uid {}",
                dir.display(),
                geteuid()
            ),
        ));
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Holds the directory's claim lock (flock(2) on `DIR/.lock`) while alive:
/// checking a name and binding it, or finding a socket stale and removing
/// it, happen under it so that two starters cannot both take one name.
pub struct DirLock(#[allow(dead_code)] Flock<File>);

pub fn lock(dir: &Path) -> io::Result<DirLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(DirLock)
        .map_err(|(_, e)| io::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for good in ["g", "app-123", "my.app", "sleep-4242"] {
            assert!(check_group_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "..", "a..b", ".hidden", "a\nb"] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(group_of("g.sock"), Some("g"));
        assert_eq!(group_of(".lock"), None);
        assert_eq!(group_of("x.txt"), None);
        let long = "x".repeat(200);
        assert!(socket_path(Path::new("/run"), &long).is_err());
    }
}
