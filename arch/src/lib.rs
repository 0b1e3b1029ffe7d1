//! Syscall tables and register ABI, one file of each per architecture.
//!
//! Everything the supervisor knows about a syscall comes from one declarative
//! table ([`Syscall`] entries): the seccomp filter, the decoder and the
//! `--trace` printer are all derived from it. Adding an architecture means
//! adding `table_<arch>.rs` (its [`Syscall`] table) and `regs_<arch>.rs` (its
//! [`RegAccess`] implementation), and one `cfg` block below.

mod syscall;
pub use syscall::*;

#[cfg(target_arch = "x86_64")]
mod regs_x86_64;
#[cfg(target_arch = "x86_64")]
mod table_x86_64;

/// The architecture the supervisor was built for and traces natively.
#[cfg(target_arch = "x86_64")]
pub mod native {
    pub use crate::regs_x86_64::*;
    pub use crate::table_x86_64::TABLE;
}

/// Looks up a syscall of the native architecture by number.
///
/// The table is sorted by number (a unit test checks it), so this is a binary
/// search: it sits on the hot path of every trapped stop.
pub fn by_nr(nr: u64) -> Option<&'static Syscall> {
    let table = native::TABLE;
    table
        .binary_search_by_key(&nr, |s| u64::from(s.nr))
        .ok()
        .map(|i| &table[i])
}

/// Looks up a syscall of the native architecture by name.
pub fn by_name(name: &str) -> Option<&'static Syscall> {
    native::TABLE.iter().find(|s| s.name == name)
}
