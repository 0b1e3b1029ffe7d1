//! The Interception Database (IDB) of isotrace: pure policy and the private
//! layer's on-disk format. It never uses ptrace and never imports nix; the
//! tracer's policy asks it what a guest path means and to mutate the private
//! layer, then carries the answer out on the tracee.
//!
//! # Model: a merged overlay kept by the supervisor
//! An environment is a private *upper* layer over the host's root, with the
//! semantics of overlayfs (Documentation/filesystems/overlayfs.rst) and the
//! on-disk whiteout format of OCI image layers:
//! - `upper/` mirrors the host tree and holds only what the environment
//!   changed. A path present in upper hides the host's object at that path.
//! - Deleting host path `/a/b` creates the *whiteout* `upper/a/.wh.b`.
//! - A directory whose host contents must stay hidden holds the *opaque*
//!   marker `upper/a/b/.wh..wh..opq`. A directory in upper that still has a
//!   whiteout of its own name beside it (`upper/a/.wh.b` next to `upper/a/b/`)
//!   is opaque too: that is the crash-safe intermediate state of "directory
//!   created over a deleted one" (see [`cow::finish_create`]).
//! - Names starting with `.wh.` are reserved in the merged view.
//! - Global *exceptions* ([`Rules`]) stay public: never redirected.
//! - The environment store (`ISOTRACE_HOME`) is invisible to guests.
//!
//! # Why a filesystem store, not an embedded database
//! Every record the IDB keeps is either a small JSON document (`env.json`,
//! `rules.json`) or a file in the private layer itself. Each is replaced with
//! the POSIX-atomic `rename(2)` of a fully written, fsynced temp file from the
//! same filesystem, so after a kill -9 at any point a reader sees the old
//! record or the new one, never a mix. Copy-up uses `renameat2(2)`
//! `RENAME_NOREPLACE`, so when several supervisors copy up the same file at
//! once exactly one copy lands and the others discard theirs. The private
//! layer must be a real directory tree anyway (the kernel opens files in it
//! by path on the tracee's behalf), so a database would only duplicate it and
//! add a second source of truth that can disagree with the tree after a
//! crash. What a checkpoint must capture is plain versioned serde data
//! ([`EnvMeta`], [`Rules`]) plus the tree.
//!
//! # Modules
//! - [`mod@env`]: the store and its environments.
//! - [`rules`]: global exceptions.
//! - [`settings`]: per-environment and per-application setting overrides.
//! - [`view`]: one environment's merged view, public/real path mapping.
//! - [`mod@resolve`]: path walk in the merged view (the hot path) and [`Cache`].
//! - [`cow`]: copy-up, create, whiteout; [`listing`]: merged directory lists.
//! - [`mod@diff`]: what an environment changed (A/M/D).
//! - [`share`]: files `env copy` shares by hard link, and breaking the
//!   link before a change.
//! - `stage`: environments built out of sight and renamed into place
//!   ([`Staged`]): `env create`, `copy`, `import`.
//!
//! `unsafe` and libc calls live in `sys.rs` only.

mod attrs;
mod cache;
pub mod cow;
pub mod diff;
mod durable;
pub mod env;
mod error;
pub mod fs;
mod generation;
pub mod listing;
mod lookup;
mod path;
pub mod resolve;
pub mod rules;
pub mod settings;
pub mod share;
mod stage;
mod sys;
pub mod view;
mod whiteout;
pub mod xattr;

#[cfg(test)]
mod tests;

pub use cache::Cache;
pub use cow::{copy_up, finish_create, prepare_create, whiteout};
pub use diff::{diff, Change, DiffEntry};
pub use durable::{write_atomic, Unnamed};
pub use env::{validate_name, EnvMeta, Environment, Store};
pub use error::{Error, ResolveError, Result};
pub use fs::{Fs, Kind, ListEntry, RealFs, Stat};
pub use generation::{Generation, GENERATION_FILE};
pub use listing::merged_listing;
pub use resolve::{resolve, resolve_cached, Loc, Resolved};
pub use rules::{Exception, Rules};
pub use settings::{Overrides, Scope};
pub use stage::Staged;
pub use view::{is_magic_link, public_of, View};
pub use whiteout::{is_reserved_name, OPAQUE_NAME, WHITEOUT_PREFIX};
