//! Errors of the mechanism. Each carries the thread and the operation.

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tracee no longer exists or left ptrace-stop: ESRCH from a ptrace
    /// request means it was SIGKILLed (or its thread group exec'd or exited)
    /// between two stops; ptrace(2), "Death under ptrace". A normal event.
    #[error("tid {tid}: tracee vanished during {op}")]
    Died { tid: i32, op: &'static str },
    #[error("tid {tid}: {op} failed: {errno}")]
    Sys {
        tid: i32,
        op: &'static str,
        errno: Errno,
    },
    #[error("{op}: {errno}")]
    Setup { op: String, errno: Errno },
    #[error("tid {tid}: {what}")]
    Tracee { tid: i32, what: String },
}

impl Error {
    pub fn from_errno(tid: i32, op: &'static str, errno: Errno) -> Self {
        if errno == Errno::ESRCH {
            Error::Died { tid, op }
        } else {
            Error::Sys { tid, op, errno }
        }
    }

    /// The errno the guest should see when this error aborts a syscall the
    /// tracer was handling for it.
    pub fn guest_errno(&self) -> Errno {
        match self {
            Error::Died { .. } => Errno::ESRCH,
            Error::Sys { errno, .. } | Error::Setup { errno, .. } => *errno,
            Error::Tracee { .. } => Errno::EFAULT,
        }
    }

    pub fn is_died(&self) -> bool {
        matches!(self, Error::Died { .. })
    }
}

pub type Result<T> = std::result::Result<T, Error>;
