//! The environment's change counter, shared by every supervisor that uses
//! the environment.
//!
//! Each supervisor caches merged-view lookups ([`crate::Cache`]). When
//! several application groups run in one environment, one group's create,
//! delete or rename must be seen by the others at once. Every supervisor
//! bumps this counter after changing the layer's names and compares it with
//! the value it last saw before each lookup; a difference clears its cache.
//! The counter is a u64 in a file of the environment, mapped shared: a check
//! is one memory load.

use crate::sys::SharedU64;
use std::io;
use std::path::Path;

pub const GENERATION_FILE: &str = "generation";

pub struct Generation {
    shared: SharedU64,
    seen: u64,
}

impl Generation {
    /// Maps `dir/generation`, creating it if needed.
    pub fn open(env_dir: &Path) -> io::Result<Generation> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(env_dir.join(GENERATION_FILE))?;
        let shared = SharedU64::open(&file)?;
        let seen = shared.load();
        Ok(Generation { shared, seen })
    }

    /// Whether another supervisor changed the layer since the last call (or
    /// since [`Generation::bump`]).
    pub fn changed_elsewhere(&mut self) -> bool {
        let now = self.shared.load();
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// Records a change made by this supervisor, whose own cache was
    /// already invalidated precisely.
    pub fn bump(&mut self) {
        let now = self.shared.bump();
        // Adopt our own bump; one made elsewhere in between is caught by the
        // next check only if it raced past ours, so compare before adopting.
        if now == self.seen + 1 {
            self.seen = now;
        }
    }
}
