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
/// It sits on the hot path of every trapped stop, so it is one index into a
/// dense array built once (numbers run from 0 to about 470), not a search.
pub fn by_nr(nr: u64) -> Option<&'static Syscall> {
    static INDEX: std::sync::OnceLock<Vec<Option<&'static Syscall>>> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let max = native::TABLE.iter().map(|s| s.nr).max().unwrap_or(0);
        let mut v = vec![None; max as usize + 1];
        for s in native::TABLE {
            v[s.nr as usize] = Some(s);
        }
        v
    });
    index.get(usize::try_from(nr).ok()?).copied().flatten()
}

/// Looks up a syscall of the native architecture by name.
pub fn by_name(name: &str) -> Option<&'static Syscall> {
    native::TABLE.iter().find(|s| s.name == name)
}
