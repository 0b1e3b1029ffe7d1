//! Per-environment and per-application setting overrides, kept with the
//! store: `home/settings/env/NAME.json` and `home/settings/app/NAME.json`.
//!
//! The IDB stores them without knowing the settings' schema: a record maps
//! dotted keys (`libraries.policy`) to JSON values, and the binary's config
//! module validates both when it merges them over the TOML files. A record
//! lives outside `envs/` so an admin can set an environment's policy before
//! the environment exists (before the first install into it); like every
//! store record it is replaced atomically (see `durable`).

use crate::durable::write_atomic;
use crate::env::{validate_name, Store};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// Version of the serialized [`Overrides`].
pub const OVERRIDES_VERSION: u32 = 1;
const SETTINGS: &str = "settings";

/// What an override record applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every group run in the environment NAME.
    Env(&'a str),
    /// Every run of a program whose file name is NAME (`python3`, `g++`).
    App(&'a str),
}

impl Scope<'_> {
    fn dir(&self) -> &'static str {
        match self {
            Scope::Env(_) => "env",
            Scope::App(_) => "app",
        }
    }

    /// Check the name: an environment name, or a program's file name (no
    /// `/` or NUL, not empty, not starting with `.`, at most 250 bytes so
    /// that `NAME.json` fits NAME_MAX).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Scope::Env(name) => validate_name(name),
            Scope::App(name) => {
                let ok = !name.is_empty()
                    && name.len() <= 250
                    && !name.starts_with('.')
                    && !name.contains(['/', '\0']);
                if ok {
                    Ok(())
                } else {
                    Err(Error::BadAppName(name.to_string()))
                }
            }
        }
    }

    pub fn name(&self) -> &str {
        match *self {
            Scope::Env(n) | Scope::App(n) => n,
        }
    }
}

/// One override record: dotted setting key to value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    pub version: u32,
    pub values: BTreeMap<String, serde_json::Value>,
}

impl Overrides {
    pub fn new() -> Self {
        Overrides {
            version: OVERRIDES_VERSION,
            values: BTreeMap::new(),
        }
    }
}

impl Store {
    /// Where the record of `scope` is kept (it may not exist).
    pub fn overrides_path(&self, scope: Scope<'_>) -> Result<PathBuf> {
        scope.validate()?;
        Ok(self
            .home()
            .join(SETTINGS)
            .join(scope.dir())
            .join(format!("{}.json", scope.name())))
    }

    /// The overrides of `scope`; an empty record if none were saved.
    pub fn overrides(&self, scope: Scope<'_>) -> Result<Overrides> {
        let path = self.overrides_path(scope)?;
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Overrides::new()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let corrupt = |what: String| Error::Corrupt {
            path: path.clone(),
            what,
        };
        let rec: Overrides = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if rec.version != OVERRIDES_VERSION {
            return Err(corrupt(format!(
                "unknown overrides version {}",
                rec.version
            )));
        }
        Ok(rec)
    }

    /// Replace the overrides of `scope` atomically; an empty record removes
    /// the file.
    pub fn save_overrides(&self, scope: Scope<'_>, rec: &Overrides) -> Result<()> {
        let path = self.overrides_path(scope)?;
        if rec.values.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", &path, e)),
                _ => Ok(()),
            };
        }
        let dir = path.parent().expect("record has a parent");
        DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .map_err(|e| Error::io("mkdir", dir, e))?;
        let mut rec = rec.clone();
        rec.version = OVERRIDES_VERSION;
        let json = serde_json::to_vec_pretty(&rec).expect("overrides serialize");
        write_atomic(&path, &json).map_err(|e| Error::io("write", &path, e))
    }
}
