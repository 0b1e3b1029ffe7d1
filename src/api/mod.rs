//! The application-group API (issue #4): each running group has a unix
//! control socket `GROUP.sock` in [`rundir::socket_dir`] that speaks
//! versioned JSON lines ([`protocol`], docs/API.md).
//!
//! - [`server`]: claimed by `isotrace run` before the program starts and
//!   served from a thread of the supervisor. That thread only reads /proc
//!   and sends signals; it never calls ptrace, whose requests must come from
//!   the tracer thread (ptrace(2): the tracer is a thread, not a process).
//! - [`checkpoint`]: the `checkpoint` op and the SIGUSR2 trigger, run at
//!   the supervisor's freeze barrier on the tracer thread (#5).
//! - [`client`]: the Rust API over the socket, used by `isotrace ps`,
//!   `env rm` and `env show`, and by other programs.

pub mod checkpoint;
pub mod client;
pub mod drain;
pub mod migrate;
pub mod procs;
pub mod protocol;
pub mod rundir;
pub mod server;
pub mod state;
