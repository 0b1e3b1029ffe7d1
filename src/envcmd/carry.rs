//! The per-environment settings (`isotrace config set --env NAME`) that an
//! archive carries: `env export` copies the env's override record into the
//! manifest, and `env import` restores it under the new name.
//!
//! The record lives outside `envs/` (see `isotrace_idb::settings`), so it
//! is written before the imported env is placed: a kill -9 in between
//! leaves a record with no env (shown by `config show --env`, harmless),
//! never an env running without the settings it was exported with.

use super::{idb_err, EXIT_FAILED};
use crate::run::Failure;
use isotrace::config::{self, Key};
use isotrace_idb::{Overrides, Scope, Store};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Dotted key to value, as an override record holds them.
pub type Carried = BTreeMap<String, Json>;

/// What `env export NAME` puts in the manifest: `None` without overrides.
pub fn export(store: &Store, name: &str) -> Result<Option<Carried>, Failure> {
    let rec = store.overrides(Scope::Env(name)).map_err(idb_err)?;
    Ok(Some(rec.values).filter(|v| !v.is_empty()))
}

/// Refuse an archive whose settings this version cannot apply (an unknown
/// key, a bad value), before anything is created.
pub fn check(carried: &Carried) -> Result<(), String> {
    for (name, value) in carried {
        let key = Key::parse(name)
            .ok_or_else(|| format!("setting {name}: unknown key (known keys: {})", Key::known()))?;
        key.parse_json(value)
            .map_err(|why| format!("setting {name}: {why}"))?;
    }
    Ok(())
}

/// The record written for the new env `name`, to be undone with [`undo`]
/// if the import fails.
pub struct Written {
    before: Overrides,
}

/// Merge the carried settings into env `name`'s record. A setting the
/// admin already made for that name here wins, and is reported.
pub fn restore(store: &Store, name: &str, carried: &Carried) -> Result<Written, Failure> {
    let scope = Scope::Env(name);
    let _lock = config::lock(store).map_err(|e| (EXIT_FAILED, e.to_string()))?;
    let before = store.overrides(scope).map_err(idb_err)?;
    let mut rec = before.clone();
    for (k, v) in carried {
        match before.values.get(k) {
            Some(ours) if ours != v => eprintln!(
                "isotrace: note: env {name}: keeping this store's {k} = {ours}, \
                 not the archive's {v}"
            ),
            Some(_) => {}
            None => {
                rec.values.insert(k.clone(), v.clone());
            }
        }
    }
    if rec != before {
        store.save_overrides(scope, &rec).map_err(idb_err)?;
    }
    Ok(Written { before })
}

/// Put env `name`'s record back as it was before [`restore`].
pub fn undo(store: &Store, name: &str, w: Written) {
    let _lock = config::lock(store);
    if let Err(e) = store.save_overrides(Scope::Env(name), &w.before) {
        eprintln!("isotrace: warning: restoring the settings of env {name}: {e}");
    }
}
