//! What an environment changed relative to the host, read from its private
//! layer alone (for `env diff` and the one-line summary when a group
//! exits). Lines are like `git status --short`: A added, M modified (the
//! object was copied up or replaced), D deleted (a whiteout, or a host
//! entry hidden by an opaque directory).

use crate::error::{Error, Result};
use crate::fs::{is_missing, Fs, Kind};
use crate::path::child;
use crate::view::View;
use crate::whiteout::{hidden_by, is_reserved_name, opaque_marker, whiteout_of};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    /// The status letter: A, M or D.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Modified => 'M',
            Change::Deleted => 'D',
        }
    }
}

/// One changed public path. A directory that exists on the host and in
/// upper (copied up because something below it changed) is not listed
/// itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    pub public: PathBuf,
    pub change: Change,
    pub kind: Kind,
}

/// Every change of the environment, sorted by public path.
pub fn diff(view: &View, fs: &dyn Fs) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    let root_opaque = exists(fs, &opaque_marker(view.upper()))?;
    walk(view, fs, Path::new("/"), !root_opaque, &mut out)?;
    out.sort_by(|a, b| a.public.cmp(&b.public));
    Ok(out)
}

fn exists(fs: &dyn Fs, real: &Path) -> Result<bool> {
    match fs.lstat(real) {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(Error::io("lstat", real, e)),
    }
}

/// Diff directory `dir`: the merged view (upper entries, plus the host's
/// when `host_visible`, minus whiteouts) against the host directory.
fn walk(
    view: &View,
    fs: &dyn Fs,
    dir: &Path,
    host_visible: bool,
    out: &mut Vec<DiffEntry>,
) -> Result<()> {
    let real = view.upper_path(dir);
    let upper = fs
        .read_dir(&real)
        .map_err(|e| Error::io("readdir", &real, e))?;
    let mut whiteouts: HashSet<OsString> = HashSet::new();
    let mut names: BTreeMap<OsString, Kind> = BTreeMap::new();
    for e in upper {
        if let Some(gone) = hidden_by(&e.name) {
            whiteouts.insert(gone.to_os_string());
        } else if !is_reserved_name(e.name.as_bytes()) {
            names.insert(e.name, e.kind);
        }
    }
    let host = host_entries(fs, dir);
    for (name, kind) in &names {
        let public = child(dir, name.as_bytes());
        if view.is_exception(&public) {
            continue;
        }
        match host.get(name) {
            Some(Kind::Dir) if *kind == Kind::Dir => {
                let up = view.upper_path(&public);
                let opaque = exists(fs, &opaque_marker(&up))?
                    || whiteout_of(&up).map_or(Ok(false), |w| exists(fs, &w))?;
                walk(view, fs, &public, host_visible && !opaque, out)?;
            }
            Some(_) => out.push(entry(public, Change::Modified, *kind)),
            None => {
                out.push(entry(public.clone(), Change::Added, *kind));
                if *kind == Kind::Dir {
                    walk(view, fs, &public, false, out)?;
                }
            }
        }
    }
    for (name, kind) in host {
        let public = child(dir, name.as_bytes());
        let hidden = !host_visible || whiteouts.contains(&name);
        if hidden && !names.contains_key(&name) && !view.is_exception(&public) {
            out.push(entry(public, Change::Deleted, kind));
        }
    }
    Ok(())
}

fn entry(public: PathBuf, change: Change, kind: Kind) -> DiffEntry {
    DiffEntry {
        public,
        change,
        kind,
    }
}

/// The host directory's entries (none if it is not a directory there).
fn host_entries(fs: &dyn Fs, dir: &Path) -> BTreeMap<OsString, Kind> {
    let list = fs.read_dir(dir).unwrap_or_default();
    list.into_iter()
        .filter(|e| !is_reserved_name(e.name.as_bytes()))
        .map(|e| (e.name, e.kind))
        .collect()
}
