//! The migration stream (#6): an image, and the environment layer that goes
//! with it, sent over one TCP connection and never written to disk on the
//! way. The format is documented in `STREAM.md` (next to IMAGE.md).
//!
//! - [`hmac`]: HMAC-SHA256 and the session keys derived from the token.
//! - [`frame`]: tagged, numbered frames.
//! - [`handshake`]: the plaintext preamble (magic, version, nonces), then
//!   the authenticated `Hello`/`Accept` with the CPU compatibility check.
//! - [`transfer`]: an image directory as frames, and back; a byte stream
//!   (the environment's tar) as frames, and back.
//!
//! `unsafe` (XGETBV) lives in `sys.rs` only.

pub mod delta;
pub mod frame;
pub mod handshake;
pub mod hmac;
pub mod pages;
mod receive;
mod sys;
pub mod transfer;

pub use frame::{Frame, FrameReader, FrameWriter, Kind};
pub use handshake::{Accept, EnvOffer, EnvPlan, Hello, Session};

/// Version of the stream format (frames and handshake), sent in the
/// preamble; a peer with another version is refused before any frame.
pub const STREAM_VERSION: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the peer closed the connection")]
    Closed,
    #[error("the stream was cut off in the middle of a frame")]
    Truncated,
    #[error("frame {frame} failed authentication (a wrong token, or the stream was altered)")]
    Auth { frame: u64 },
    #[error("the receiver rejected the stream: {0}")]
    Rejected(String),
    #[error("{0}")]
    Peer(String),
    #[error("malformed stream: {0}")]
    Protocol(String),
    #[error("{0}")]
    Incompatible(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// This CPU's XCR0 (which XSAVE components the OS enabled), or 0 where
/// XSAVE is not available.
pub fn local_xcr0() -> u64 {
    sys::xcr0()
}
