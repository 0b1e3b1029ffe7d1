//! Errors of dumping, writing and reading images. Each names the pid, the
//! path or the section it is about, so the binary can print one clear line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no process {pid}")]
    NoProcess { pid: i32 },
    /// ptrace(2) EPERM: another user's process, a setuid/undumpable one, or
    /// Yama's ptrace_scope forbids it.
    #[error("not allowed to trace pid {pid} ({op}: permission denied; is it another user's process, or does /proc/sys/kernel/yama/ptrace_scope forbid it?)")]
    PermissionDenied { pid: i32, op: &'static str },
    #[error("pid {pid} is already traced by pid {tracer}")]
    AlreadyTraced { pid: i32, tracer: i32 },
    #[error("pid {pid} exited during the snapshot; no image was written")]
    Exited { pid: i32 },
    #[error(transparent)]
    Trace(#[from] isotrace_tracer::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    /// (The path is left out of the message: callers name the image.)
    #[error("not an isotrace image (no manifest.json)")]
    NotAnImage { path: PathBuf },
    /// A section's size or digest differs from the manifest, or it does not
    /// decode: the image was damaged after it was written.
    #[error("image section {name} is corrupt: {why}")]
    CorruptSection { name: String, why: String },
    #[error(
        "image format version {found} is not supported (this isotrace reads versions {oldest} to {newest})"
    )]
    UnsupportedVersion {
        found: u32,
        oldest: u32,
        newest: u32,
    },
    #[error("image has no process {pid}")]
    NoSuchPid { pid: i32 },
    #[error("{what}")]
    Invalid { what: String },
    /// A copy-before-write snapshot (dump/wp/) could not keep the pause
    /// contents of every page: no image is written from it.
    #[error("pid {pid}: the copy-before-write snapshot cannot be consistent: {why}")]
    Torn { pid: i32, why: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(name: &str, why: impl Into<String>) -> Self {
        Error::CorruptSection {
            name: name.to_owned(),
            why: why.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The mapping of a tracer error for tracee `pid`: ESRCH and friends
/// (the task was SIGKILLed or exited between stops, ptrace(2)) become
/// [`Error::Exited`], which callers report as the process ending.
pub(crate) fn died(pid: i32) -> impl Fn(isotrace_tracer::Error) -> Error {
    move |e| {
        if e.is_died() {
            Error::Exited { pid }
        } else {
            e.into()
        }
    }
}
