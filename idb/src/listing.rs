//! Merged directory listings, what getdents64(2) must return in an
//! environment: the union of the upper and host directories, minus
//! whiteouts and reserved names, upper winning on duplicates (overlayfs
//! "readdir" semantics).
//!
//! The list is sorted by name, with `.` and `..` first, so it is the same
//! from one call to the next. getdents64 reads a directory in several
//! calls: the caller should take one listing when the tracee reads at
//! offset 0 and serve later calls from it by offset, as overlayfs caches a
//! merged directory's entries per open file.

use crate::error::{Error, Result};
use crate::fs::{dt, is_missing, Fs, Kind, ListEntry};
use crate::path::{bytes, child, split_last};
use crate::resolve::{resolve, Loc, Resolved};
use crate::view::View;
use crate::whiteout::{hidden_by, is_reserved_name};
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

type Entries = BTreeMap<OsString, ListEntry>;

/// The entries of directory `dir` (resolved with `follow_final`) in the
/// merged view, `.` and `..` first, then by name.
pub fn merged_listing(view: &View, fs: &dyn Fs, dir: &Resolved) -> Result<Vec<ListEntry>> {
    let Some(loc) = dir.loc else {
        return Err(Error::NotFound(dir.public.clone()));
    };
    if dir.kind != Some(Kind::Dir) {
        let e = io::Error::from_raw_os_error(libc::ENOTDIR);
        return Err(Error::io("readdir", &dir.public, e));
    }
    let mut map = Entries::new();
    match loc {
        Loc::Exception => add_host(fs, &dir.real, &mut map, &HashSet::new(), false)?,
        Loc::Host => add_host(fs, &dir.real, &mut map, &HashSet::new(), true)?,
        Loc::Upper => {
            let whiteouts = add_upper(fs, &dir.real, &mut map)?;
            if dir.merged {
                add_host(fs, &dir.public, &mut map, &whiteouts, true)?;
            }
        }
    }
    if loc != Loc::Exception {
        apply_exceptions(view, fs, &dir.public, &mut map);
    }
    map.retain(|name, _| !view.is_hidden(&child(&dir.public, name.as_bytes())));
    let mut out = Vec::with_capacity(map.len() + 2);
    out.push(dot(".", ino_of(fs, &dir.real)?));
    out.push(dot("..", parent_ino(view, fs, &dir.public)?));
    out.extend(map.into_values());
    Ok(out)
}

fn dot(name: &str, ino: u64) -> ListEntry {
    ListEntry {
        name: name.into(),
        kind: Kind::Dir,
        ino,
        d_type: dt::DIR,
    }
}

fn ino_of(fs: &dyn Fs, real: &Path) -> Result<u64> {
    fs.lstat(real)
        .map(|s| s.ino)
        .map_err(|e| Error::io("lstat", real, e))
}

/// `..` of `/` is `/` itself (path_resolution(7)).
fn parent_ino(view: &View, fs: &dyn Fs, public: &Path) -> Result<u64> {
    let parent = split_last(public).map_or(Path::new("/"), |(p, _)| p);
    let r = resolve(view, fs, Path::new("/"), bytes(parent), true)?;
    ino_of(fs, &r.real)
}

/// Upper entries; returns the names its whiteouts hide.
fn add_upper(fs: &dyn Fs, real: &Path, map: &mut Entries) -> Result<HashSet<OsString>> {
    let mut whiteouts = HashSet::new();
    let entries = fs
        .read_dir(real)
        .map_err(|e| Error::io("readdir", real, e))?;
    for e in entries {
        if let Some(h) = hidden_by(&e.name) {
            whiteouts.insert(h.to_os_string());
        } else if !is_reserved_name(e.name.as_bytes()) {
            map.insert(e.name.clone(), e);
        }
    }
    Ok(whiteouts)
}

/// Host entries not already present, not whited out, and (outside
/// exceptions) not reserved. A host directory that vanished, or is a file
/// under an upper directory, contributes nothing.
fn add_host(
    fs: &dyn Fs,
    real: &Path,
    map: &mut Entries,
    whiteouts: &HashSet<OsString>,
    reserve: bool,
) -> Result<()> {
    let entries = match fs.read_dir(real) {
        Ok(e) => e,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(Error::io("readdir", real, e)),
    };
    for e in entries {
        let skip = (reserve && is_reserved_name(e.name.as_bytes())) || whiteouts.contains(&e.name);
        if !skip {
            map.entry(e.name.clone()).or_insert(e);
        }
    }
    Ok(())
}

/// A child that is an exception is the host's object, whatever upper or a
/// whiteout says (lookups go to the host for it too).
fn apply_exceptions(view: &View, fs: &dyn Fs, public: &Path, map: &mut Entries) {
    for ex in &view.rules().exceptions {
        let Some((parent, name)) = split_last(&ex.prefix) else {
            continue;
        };
        if parent != public {
            continue;
        }
        match fs.lstat(&ex.prefix) {
            Ok(st) => {
                let d_type = match st.kind {
                    Kind::Dir => dt::DIR,
                    Kind::File => dt::REG,
                    Kind::Symlink => dt::LNK,
                    Kind::Other => dt::UNKNOWN,
                };
                let entry = ListEntry {
                    name: name.to_os_string(),
                    kind: st.kind,
                    ino: st.ino,
                    d_type,
                };
                map.insert(OsStr::to_os_string(name), entry);
            }
            Err(_) => {
                map.remove(name);
            }
        }
    }
}
