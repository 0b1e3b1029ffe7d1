//! `held.json`: where the held bytes of a migration receiver's image are.
//!
//! A pages section the source dumped at a pre-copied freeze has holes for
//! the pages the receiver already holds (`Section::held`, STREAM.md). The
//! receiver does not copy them out of its pre-copy store into the holes;
//! it writes this file next to the manifest instead, naming the store and,
//! per section, the ranges whose bytes are there. `Image::open_for_restore`
//! reads it into `Image::elsewhere`, and the restore reads those ranges
//! from the store. The section's digest covers the other bytes, in order;
//! the store's were authenticated when they arrived (the `PreEnd` frame).

use super::reader::Extent;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const HELD: &str = "held.json";

#[derive(Serialize, Deserialize)]
struct Held {
    version: u32,
    /// The pre-copy store, absolute.
    file: PathBuf,
    /// Section name to (offset in the section, bytes, offset in the file).
    sections: BTreeMap<String, Vec<(u64, u64, u64)>>,
}

/// Writes `held.json` into `dir` for `extents`, which all lie in `file`.
pub fn write(dir: &Path, file: &Path, extents: &HashMap<String, Vec<Extent>>) -> Result<()> {
    let held = Held {
        version: 1,
        file: file.into(),
        sections: extents
            .iter()
            .map(|(name, es)| {
                let list = es.iter().map(|e| (e.offset, e.len, e.at)).collect();
                (name.clone(), list)
            })
            .collect(),
    };
    let text = serde_json::to_vec(&held).map_err(|e| Error::Invalid {
        what: format!("{HELD}: {e}"),
    })?;
    let path = dir.join(HELD);
    std::fs::write(&path, text).map_err(|e| Error::io(path, e))
}

/// The extents `held.json` in `dir` lists, if it exists.
pub fn read(dir: &Path) -> Result<HashMap<String, Vec<Extent>>> {
    let text = match std::fs::read(dir.join(HELD)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io(dir.join(HELD), e)),
    };
    let held: Held = serde_json::from_slice(&text)
        .map_err(|e| Error::corrupt(HELD, format!("does not parse: {e}")))?;
    if held.version != 1 {
        return Err(Error::corrupt(HELD, format!("version {}", held.version)));
    }
    let file = File::open(&held.file).map_err(|e| {
        Error::corrupt(HELD, format!("pre-copy store {}: {e}", held.file.display()))
    })?;
    let file = Arc::new(file);
    Ok(held
        .sections
        .into_iter()
        .map(|(name, list)| {
            let mut es: Vec<Extent> = list
                .into_iter()
                .map(|(offset, len, at)| Extent {
                    offset,
                    len,
                    file: Arc::clone(&file),
                    at,
                })
                .collect();
            es.sort_by_key(|e| e.offset);
            (name, es)
        })
        .collect())
}
