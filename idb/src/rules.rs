//! Global exceptions: path prefixes that stay public in every environment.
//! A guest's access below an exception goes to the host object itself, never
//! to the private layer (how /proc, /sys and /dev, or shared storage the
//! admin names, stay live and shared).

use crate::error::{Error, Result};
use crate::path::{bytes, normalize_absolute, within};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the serialized [`Rules`].
pub const RULES_VERSION: u32 = 1;

/// The prefixes every new rule set starts with: kernel-provided trees whose
/// contents are per-boot or per-process and must never be copied up.
pub const DEFAULT_EXCEPTIONS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// One public prefix. It matches whole components: `/dev` covers `/dev` and
/// `/dev/null`, not `/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub prefix: PathBuf,
    /// Why the admin added it, for `rules list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The global rule set, stored as versioned JSON (`rules.json` in the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub version: u32,
    pub exceptions: Vec<Exception>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            version: RULES_VERSION,
            exceptions: DEFAULT_EXCEPTIONS
                .iter()
                .map(|p| Exception {
                    prefix: PathBuf::from(p),
                    note: None,
                })
                .collect(),
        }
    }
}

impl Rules {
    /// A rule set with no exception at all (everything is redirected).
    pub fn empty() -> Self {
        Rules {
            version: RULES_VERSION,
            exceptions: Vec::new(),
        }
    }

    /// Add an exception. The prefix must be absolute, without `..`, and not
    /// `/` (that would switch isolation off). It is stored normalized;
    /// adding one already present is a no-op.
    pub fn add_exception(&mut self, prefix: &Path, note: Option<String>) -> Result<()> {
        let bad = |why| Error::BadRule {
            rule: prefix.to_string_lossy().into_owned(),
            why,
        };
        let norm = normalize_absolute(prefix).ok_or_else(|| bad("must be absolute, without .."))?;
        if bytes(&norm) == b"/" {
            return Err(bad("/ would make every path public"));
        }
        if !self.exceptions.iter().any(|e| e.prefix == norm) {
            self.exceptions.push(Exception { prefix: norm, note });
        }
        Ok(())
    }

    /// Remove an exception; returns whether it was there.
    pub fn remove_exception(&mut self, prefix: &Path) -> bool {
        let norm = normalize_absolute(prefix);
        let before = self.exceptions.len();
        self.exceptions.retain(|e| Some(&e.prefix) != norm.as_ref());
        before != self.exceptions.len()
    }

    /// Whether a normalized public path lies inside an exception.
    pub fn is_exception(&self, public: &Path) -> bool {
        self.exceptions.iter().any(|e| within(public, &e.prefix))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("rules serialize")
    }

    /// Parse and validate a stored rule set; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let corrupt = |what: String| Error::Corrupt {
            path: origin.to_path_buf(),
            what,
        };
        let rules: Rules = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if rules.version != RULES_VERSION {
            return Err(corrupt(format!("unknown rules version {}", rules.version)));
        }
        let mut checked = Rules::empty();
        for e in &rules.exceptions {
            checked
                .add_exception(&e.prefix, e.note.clone())
                .map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(checked)
    }
}
