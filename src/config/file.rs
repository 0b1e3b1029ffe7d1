//! The TOML config files: reading one into a layer of settings with errors
//! that name the file, line and key, and rewriting the user's file for
//! `config set`.
//!
//! The document is parsed with spans (`toml::de::DeTable`) and walked key by
//! key against the key table, rather than deserialized into a struct: that
//! way every error, unknown key or bad value, knows both its dotted key and
//! its line, and nothing falls back to a default silently.

use super::keys::{Key, Value, SECTIONS};
use super::ConfigError;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The settings one source sets.
pub type Layer = BTreeMap<Key, Value>;

/// Read a config file; `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<Layer>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::io("read", path, e)),
    }
}

/// `FILE:LINE` of a byte offset.
fn place(file: &Path, text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line = 1 + text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    format!("{}:{line}", file.display())
}

/// Parse a config file's text; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Layer, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        ConfigError::invalid(
            place(file, text, at),
            key_near(text, at),
            e.message().trim().to_string(),
        )
    })?;
    let mut layer = Layer::new();
    let at = |span: Range<usize>| place(file, text, span.start);
    for (section, value) in doc.get_ref().iter() {
        let name = section.get_ref().as_ref();
        if !SECTIONS.contains(&name) {
            return Err(unknown(at(section.span()), name));
        }
        let DeValue::Table(table) = value.get_ref() else {
            let why = format!("expected a table ([{name}])");
            return Err(ConfigError::invalid(
                at(value.span()),
                Some(name.into()),
                why,
            ));
        };
        for (leaf, value) in table.iter() {
            let full = format!("{name}.{}", leaf.get_ref());
            let key = Key::parse(&full).ok_or_else(|| unknown(at(leaf.span()), &full))?;
            let v = to_value(key, value)
                .map_err(|(span, why)| ConfigError::invalid(at(span), Some(full.clone()), why))?;
            layer.insert(key, v);
        }
    }
    Ok(layer)
}

fn unknown(place: String, key: &str) -> ConfigError {
    ConfigError::invalid(
        place,
        Some(key.to_string()),
        format!("unknown key (known keys: {})", Key::known()),
    )
}

/// Check one value against its key; on error, the span of the offending
/// value (the list item, for a list).
fn to_value(key: Key, value: &Spanned<DeValue<'_>>) -> Result<Value, (Range<usize>, String)> {
    let json = to_json(value)?;
    key.parse_json(&json).map_err(|why| {
        if let DeValue::Array(items) = value.get_ref() {
            for item in items.iter() {
                let one = Json::Array(to_json(item).into_iter().collect());
                if let Err(why) = key.parse_json(&one) {
                    return (item.span(), why);
                }
            }
        }
        (value.span(), why)
    })
}

/// The JSON form of the TOML types settings use (strings, booleans,
/// arrays); any other type is an error at its span.
fn to_json(value: &Spanned<DeValue<'_>>) -> Result<Json, (Range<usize>, String)> {
    match value.get_ref() {
        DeValue::String(s) => Ok(Json::String(s.to_string())),
        DeValue::Boolean(b) => Ok(Json::Bool(*b)),
        DeValue::Array(items) => items
            .iter()
            .map(to_json)
            .collect::<Result<_, _>>()
            .map(Json::Array),
        other => Err((
            value.span(),
            format!("a {} is not a valid value here", other.type_str()),
        )),
    }
}

/// Best effort at the dotted key of the line holding byte `at`, for syntax
/// errors (where the parser gives only a span): the last `[table]` header
/// before it and the text left of `=` on that line.
fn key_near(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let (left, _) = line.split_once('=')?;
    let leaf = left.trim().trim_matches(['"', '\'']);
    if leaf.is_empty() || leaf.starts_with('[') {
        return None;
    }
    let header = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim_start_matches('[').trim().to_string())
    });
    Some(match header {
        Some(h) if !h.is_empty() => format!("{h}.{leaf}"),
        _ => leaf.to_string(),
    })
}

/// Set (`Some`) or remove (`None`) one key in the TOML file at `path`,
/// keeping the other keys, and write it back atomically (creating its
/// directory). The file must be valid first: a broken file is reported,
/// not overwritten. Comments are not kept: `toml` has no lossless editor.
pub fn update(path: &Path, key: Key, value: Option<&Value>) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ConfigError::io("read", path, e)),
    };
    parse(&text, path)?;
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::invalid(path.display().to_string(), None, e.message().to_string())
    })?;
    let (section, leaf) = key.name().split_once('.').expect("keys are dotted");
    match value {
        Some(v) => {
            let table = doc
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = table {
                t.insert(leaf.to_string(), v.to_toml());
            }
        }
        None => {
            if let Some(toml::Value::Table(t)) = doc.get_mut(section) {
                t.remove(leaf);
                if t.is_empty() {
                    doc.remove(section);
                }
            }
        }
    }
    let out = toml::to_string(&doc)
        .map_err(|e| ConfigError::invalid(path.display().to_string(), None, e.to_string()))?;
    let target = write_target(path);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ConfigError::io("mkdir", dir, e))?;
    }
    isotrace_idb::write_atomic(&target, out.as_bytes())
        .map_err(|e| ConfigError::io("write", &target, e))
}

/// A config file kept as a symlink (dotfile managers do that) is replaced
/// where it points, so the link survives the atomic rename.
fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("/c.toml")).unwrap_err().to_string()
    }

    #[test]
    fn good_file() {
        let l = parse(
            "[libraries]\npolicy = \"global\"\n[isolation]\nexceptions = [\"/srv/a\"]\n\
             checkpoint.every = \"30s\"\n",
            Path::new("/c.toml"),
        );
        // `checkpoint.every` under [isolation] is isolation.checkpoint.
        assert!(l.is_err());
        let l = parse(
            "checkpoint.every = \"30s\"\n[libraries]\npolicy = \"global\"\n\
             [isolation]\nexceptions = [\"/srv/a\"]\n",
            Path::new("/c.toml"),
        )
        .unwrap();
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn errors_name_file_line_key() {
        assert_eq!(
            err("[fonts]\npolcy = \"env\"\n"),
            format!(
                "/c.toml:2: fonts.polcy: unknown key (known keys: {})",
                Key::known()
            )
        );
        let e = err("[fonts]\n\npolicy = \"both\"\n");
        assert!(e.starts_with("/c.toml:3: fonts.policy: bad value"), "{e}");
        let e = err("[trace]\ndefault = tru\n");
        assert!(e.starts_with("/c.toml:2: trace.default: "), "{e}");
        let e = err("[isolation]\nexceptions = [\n  \"/a\",\n  \"rel\",\n]\n");
        assert!(e.starts_with("/c.toml:4: isolation.exceptions: "), "{e}");
        let e = err("bogus = 1\n");
        assert!(e.starts_with("/c.toml:1: bogus: unknown key"), "{e}");
        let e = err("[trace]\ndefault = 1\n");
        assert!(e.contains("integer"), "{e}");
    }
}
