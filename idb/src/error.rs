//! Errors of the IDB. Each one that can abort a guest's syscall converts to
//! the errno the guest should see with `errno()`.

use std::io;
use std::path::PathBuf;

/// Failure of a store, rule or private-layer operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment name outside `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    #[error(
        "bad environment name {0:?}: use 1-64 of [A-Za-z0-9._-], starting with a letter or digit"
    )]
    BadName(String),
    /// An application name that cannot name an override record.
    #[error("bad application name {0:?}: use a program's file name (no /, not starting with .)")]
    BadAppName(String),
    #[error("no such environment: {0}")]
    NoSuchEnv(String),
    #[error("environment {0} already exists")]
    EnvExists(String),
    #[error("bad exception {rule:?}: {why}")]
    BadRule { rule: String, why: &'static str },
    /// A record on disk that does not parse, or has an unknown version.
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// A system call on a real path failed; `path` is the real one (for logs,
    /// never shown to the guest).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A guest tried to create a name reserved for whiteouts (`.wh.*`).
    #[error("{0}: names starting with .wh. are reserved")]
    Reserved(PathBuf),
    #[error("{0}: does not exist in the merged view")]
    NotFound(PathBuf),
    #[error("{0}: already exists in the merged view")]
    Exists(PathBuf),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno the guest sees when this error aborts its syscall. An I/O
    /// error keeps the kernel's errno (ENOSPC during copy-up stays ENOSPC).
    pub fn errno(&self) -> i32 {
        match self {
            Error::BadName(_) | Error::BadAppName(_) | Error::BadRule { .. } => libc::EINVAL,
            Error::NoSuchEnv(_) | Error::NotFound(_) => libc::ENOENT,
            Error::EnvExists(_) | Error::Exists(_) => libc::EEXIST,
            Error::Corrupt { .. } => libc::EIO,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Reserved(_) => libc::EPERM,
            Error::Resolve(e) => e.errno(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why a path could not be resolved in the merged view. Paths named here are
/// public ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A missing component with components after it, an empty path, or an
    /// empty symlink target (path_resolution(7)).
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// A non-directory with components after it, or a trailing slash on a
    /// non-directory.
    #[error("{0}: not a directory")]
    NotDir(PathBuf),
    /// More than 40 symlinks followed (the kernel's MAXSYMLINKS).
    #[error("{0}: too many levels of symbolic links")]
    Loop(PathBuf),
    /// The path is PATH_MAX bytes or longer, or a component exceeds NAME_MAX.
    #[error("file name too long")]
    NameTooLong,
    /// The path resolves into the environment store: guests must never see
    /// it, so this is ENOENT to them.
    #[error("{0}: inside the environment store")]
    Hidden(PathBuf),
    /// The final component is a name reserved for whiteouts (`.wh.*`). It
    /// does not exist for lookups (ENOENT); a create must fail with EPERM
    /// (`create_errno`).
    #[error("{0}: reserved name")]
    Reserved(PathBuf),
    /// A /proc magic link (or the reader-dependent /proc/self) had to be
    /// followed. Its value depends on the tracee, so the supervisor must not
    /// read its own: substitute the tracee's meaning for `at` and resolve
    /// `rest` from there (see [`crate::view::is_magic_link`]).
    #[error("magic link {at} to follow, then {rest}")]
    MagicLink { at: PathBuf, rest: PathBuf },
    /// lstat/readlink of a layer failed with this errno (EACCES, EIO...).
    #[error("{path}: errno {errno}")]
    Io { path: PathBuf, errno: i32 },
}

impl ResolveError {
    /// The errno for a lookup. An unsubstituted magic link fails closed with
    /// ELOOP, as openat2(2) RESOLVE_NO_MAGICLINKS does.
    pub fn errno(&self) -> i32 {
        match self {
            ResolveError::NotFound(_) | ResolveError::Hidden(_) | ResolveError::Reserved(_) => {
                libc::ENOENT
            }
            ResolveError::NotDir(_) => libc::ENOTDIR,
            ResolveError::Loop(_) | ResolveError::MagicLink { .. } => libc::ELOOP,
            ResolveError::NameTooLong => libc::ENAMETOOLONG,
            ResolveError::Io { errno, .. } => *errno,
        }
    }

    /// The errno for a call that would create the final component (mkdir,
    /// open with O_CREAT, symlink, mknod, link or rename target): EPERM for a
    /// reserved name, otherwise the same as [`ResolveError::errno`].
    pub fn create_errno(&self) -> i32 {
        match self {
            ResolveError::Reserved(_) => libc::EPERM,
            e => e.errno(),
        }
    }
}
