//! Process images: the dump of stopped processes, the versioned on-disk
//! image format, and what is built on it for forensics (inspection views
//! and ELF core files). The format is documented in `IMAGE.md`.
//!
//! `unsafe` lives in `sys.rs` files only.

pub mod dump;
pub mod elfcore;
pub mod error;
pub mod image;
pub mod inspect;
pub mod model;
pub mod netlock;
pub mod pageset;
pub mod precopy;
pub mod restore;
pub mod stream;
mod sys;

pub use error::{Error, Result};
pub use image::Image;
/// Call first thing in `main`: the CPUs the image's helper threads may
/// use (`sys/cpus.rs`).
pub use sys::cpus::remember as remember_cpus;

/// Page size of the native architecture.
pub const PAGE_SIZE: u64 = isotrace_arch::native::PAGE_SIZE;

#[cfg(test)]
mod testutil;
