//! The table of setting keys: each one's name, help, accepted values, and
//! how it reads from and writes to [`Settings`]. Every source (TOML file,
//! override record, command line) is validated here, so one key means the
//! same thing wherever it is set.

use super::model::{format_every, parse_every, Policy, Settings};
use serde_json::Value as Json;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    IsolationExceptions,
    IsolationReadOnlyHost,
    IsolationLazyListings,
    LibrariesPolicy,
    FontsPolicy,
    TraceDefault,
    CheckpointEvery,
}

/// The tables of the TOML files; a key is `SECTION.NAME`.
pub const SECTIONS: [&str; 5] = ["isolation", "libraries", "fonts", "trace", "checkpoint"];

impl Key {
    pub const ALL: [Key; 7] = [
        Key::IsolationExceptions,
        Key::IsolationReadOnlyHost,
        Key::IsolationLazyListings,
        Key::LibrariesPolicy,
        Key::FontsPolicy,
        Key::TraceDefault,
        Key::CheckpointEvery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::IsolationExceptions => "isolation.exceptions",
            Key::IsolationReadOnlyHost => "isolation.read_only_host",
            Key::IsolationLazyListings => "isolation.lazy_listings",
            Key::LibrariesPolicy => "libraries.policy",
            Key::FontsPolicy => "fonts.policy",
            Key::TraceDefault => "trace.default",
            Key::CheckpointEvery => "checkpoint.every",
        }
    }

    pub fn parse(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The names of all keys, for "unknown key" messages.
    pub fn known() -> String {
        Key::ALL.map(Key::name).join(", ")
    }

    /// What a value must look like, for error messages.
    fn expected(self) -> &'static str {
        match self {
            Key::IsolationExceptions => "a list of absolute, normalized paths other than /",
            Key::LibrariesPolicy | Key::FontsPolicy => "\"env\" or \"global\"",
            Key::TraceDefault | Key::IsolationReadOnlyHost | Key::IsolationLazyListings => {
                "true or false"
            }
            Key::CheckpointEvery => "a duration such as 30s, 5m or 1h30m, or \"none\"",
        }
    }

    pub fn get(self, s: &Settings) -> Value {
        match self {
            Key::IsolationExceptions => Value::Paths(s.isolation.exceptions.clone()),
            Key::LibrariesPolicy => Value::Policy(s.libraries.policy),
            Key::FontsPolicy => Value::Policy(s.fonts.policy),
            Key::IsolationReadOnlyHost => Value::Bool(s.isolation.read_only_host),
            Key::IsolationLazyListings => Value::Bool(s.isolation.lazy_listings),
            Key::TraceDefault => Value::Bool(s.trace.default),
            Key::CheckpointEvery => Value::Every(s.checkpoint.every),
        }
    }

    /// Store `v`, which came from this key's own parser.
    pub fn set(self, s: &mut Settings, v: Value) {
        match (self, v) {
            (Key::IsolationExceptions, Value::Paths(p)) => s.isolation.exceptions = p,
            (Key::LibrariesPolicy, Value::Policy(p)) => s.libraries.policy = p,
            (Key::FontsPolicy, Value::Policy(p)) => s.fonts.policy = p,
            (Key::IsolationReadOnlyHost, Value::Bool(b)) => s.isolation.read_only_host = b,
            (Key::IsolationLazyListings, Value::Bool(b)) => s.isolation.lazy_listings = b,
            (Key::TraceDefault, Value::Bool(b)) => s.trace.default = b,
            (Key::CheckpointEvery, Value::Every(e)) => s.checkpoint.every = e,
            (k, v) => unreachable!("{} cannot hold {v}", k.name()),
        }
    }

    /// A value given as text on the command line (`config set KEY VALUE`).
    /// A list is comma-separated; the empty string is the empty list.
    pub fn parse_text(self, text: &str) -> Result<Value, String> {
        let bad = || format!("bad value {text:?}: expected {}", self.expected());
        match self {
            Key::IsolationExceptions => text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| exception_path(p).map_err(|why| format!("{why} (in {text:?})")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Paths),
            Key::LibrariesPolicy | Key::FontsPolicy => {
                Policy::parse(text).map(Value::Policy).ok_or_else(bad)
            }
            Key::TraceDefault | Key::IsolationReadOnlyHost | Key::IsolationLazyListings => {
                match text {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err(bad()),
                }
            }
            Key::CheckpointEvery => parse_every(text).map(Value::Every).map_err(|_| bad()),
        }
    }

    /// A value from a TOML file or an override record (as JSON: strings,
    /// booleans, arrays, and null for "none").
    pub fn parse_json(self, v: &Json) -> Result<Value, String> {
        let bad = || format!("bad value {v}: expected {}", self.expected());
        match (self, v) {
            (Key::IsolationExceptions, Json::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Json::String(p) => exception_path(p),
                    other => Err(format!("bad list item {other}: expected a path string")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Paths),
            (
                Key::TraceDefault | Key::IsolationReadOnlyHost | Key::IsolationLazyListings,
                Json::Bool(b),
            ) => Ok(Value::Bool(*b)),
            (Key::CheckpointEvery, Json::Null) => Ok(Value::Every(None)),
            (Key::LibrariesPolicy | Key::FontsPolicy | Key::CheckpointEvery, Json::String(s)) => {
                self.parse_text(s).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checked exception prefix: absolute, normalized, not `/`.
pub fn exception_path(text: &str) -> Result<PathBuf, String> {
    let p = Path::new(text);
    let normal: PathBuf = p.components().collect();
    let ok_shape = p.is_absolute()
        && !p
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    if !ok_shape || normal.as_os_str() != text.trim_end_matches('/') && text != "/" {
        return Err(format!(
            "{text:?} is not an absolute, normalized path (no ., .., // or relative paths)"
        ));
    }
    if normal == Path::new("/") {
        return Err("/ would make every path public".into());
    }
    Ok(normal)
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Paths(Vec<PathBuf>),
    Policy(Policy),
    Bool(bool),
    Every(Option<Duration>),
}

impl Value {
    pub fn to_json(&self) -> Json {
        match self {
            Value::Paths(p) => Json::Array(
                p.iter()
                    .map(|p| Json::String(p.to_string_lossy().into_owned()))
                    .collect(),
            ),
            Value::Policy(p) => Json::String(p.as_str().into()),
            Value::Bool(b) => Json::Bool(*b),
            Value::Every(None) => Json::Null,
            Value::Every(e) => Json::String(format_every(*e)),
        }
    }

    /// The TOML value a config file holds (`none` is the string "none":
    /// TOML has no null).
    pub fn to_toml(&self) -> toml::Value {
        match self {
            Value::Paths(p) => toml::Value::Array(
                p.iter()
                    .map(|p| toml::Value::String(p.to_string_lossy().into_owned()))
                    .collect(),
            ),
            Value::Policy(p) => toml::Value::String(p.as_str().into()),
            Value::Bool(b) => toml::Value::Boolean(*b),
            Value::Every(e) => toml::Value::String(format_every(*e)),
        }
    }
}

/// In TOML syntax, as `config show` prints it.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Paths(paths) => {
                f.write_str("[")?;
                for (i, p) in paths.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{:?}", p.to_string_lossy())?;
                }
                f.write_str("]")
            }
            Value::Policy(p) => write!(f, "{:?}", p.as_str()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Every(e) => write!(f, "{:?}", format_every(*e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_paths() {
        assert_eq!(
            exception_path("/srv/shared").unwrap(),
            Path::new("/srv/shared")
        );
        assert_eq!(
            exception_path("/srv/shared/").unwrap(),
            Path::new("/srv/shared")
        );
        for bad in ["/", "srv", "/srv/../etc", "/srv/./x", "/srv//x", ""] {
            assert!(exception_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_values() {
        let k = Key::IsolationExceptions;
        assert_eq!(
            k.parse_text("/a, /b").unwrap(),
            Value::Paths(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(k.parse_text("").unwrap(), Value::Paths(vec![]));
        assert!(Key::FontsPolicy.parse_text("both").is_err());
        assert!(Key::TraceDefault.parse_text("yes").is_err());
        let e = Key::CheckpointEvery.parse_text("30s").unwrap();
        assert_eq!(e.to_string(), "\"30s\"");
        assert_eq!(Key::CheckpointEvery.parse_json(&e.to_json()).unwrap(), e);
        assert_eq!(Value::Paths(vec!["/a".into()]).to_string(), "[\"/a\"]");
    }
}
