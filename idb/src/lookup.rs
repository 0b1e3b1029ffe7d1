//! One step of the merged-view walk: find `name` in a directory whose own
//! place in the view is already known. This is overlayfs' ovl_lookup() for a
//! single upper layer over a single lower one, with OCI whiteouts.
//!
//! One difference, on purpose: the host (the lower layer) is live. Each
//! lookup asks it afresh, and the cache above keeps no "missing" answer
//! (cache.rs), so a name the host makes is found by the next lookup, and a
//! directory upper made before the host made the same one (not opaque)
//! merges the host's entries at once. overlayfs leaves changes to a lower
//! layer while mounted undefined: a negative dentry keeps such a name
//! missing, and a merged directory keeps the lower directories it found
//! at its own lookup, until the dentries are dropped.

use crate::error::ResolveError;
use crate::fs::{is_missing, Fs, Kind};
use crate::path::bytes;
use crate::resolve::Loc;
use crate::view::View;
use crate::whiteout::{is_reserved_name, opaque_marker, whiteout_of};
use std::io;
use std::path::{Path, PathBuf};

/// A directory on the canonical path being walked.
#[derive(Clone, Debug)]
pub(crate) struct Dir {
    pub public: PathBuf,
    pub loc: Loc,
    /// Whether the host directory at the same public path contributes
    /// entries: false once an opaque directory was crossed, because
    /// overlayfs stops looking in lower layers below an opaque one.
    pub host_visible: bool,
    /// The cache's id for this directory's children (0 when uncached).
    pub id: u64,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub loc: Loc,
    pub kind: Kind,
    /// For a directory: whether the host contributes its entries.
    pub host_visible: bool,
    pub id: u64,
}

fn io_err(public: &Path, e: &io::Error) -> ResolveError {
    ResolveError::Io {
        path: public.to_path_buf(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// lstat that maps "not there" to `None` and keeps other errors.
fn probe(fs: &dyn Fs, real: &Path, public: &Path) -> Result<Option<crate::Stat>, ResolveError> {
    match fs.lstat(real) {
        Ok(st) => Ok(Some(st)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(io_err(public, &e)),
    }
}

/// The root of the view: the upper root always exists (it is created with
/// the environment), and the host shows through unless it is opaque.
pub(crate) fn root(view: &View, fs: &dyn Fs) -> Result<Dir, ResolveError> {
    let up = view.upper();
    let opaque = probe(fs, &opaque_marker(up), Path::new("/"))?.is_some();
    Ok(Dir {
        public: PathBuf::from("/"),
        loc: Loc::Upper,
        host_visible: !opaque,
        id: 0,
    })
}

/// Look `public` (= `dir.public` + one component) up in the merged view.
/// The caller has checked that `public` is neither hidden nor an exception.
pub(crate) fn merged(
    view: &View,
    fs: &dyn Fs,
    dir: &Dir,
    name: &[u8],
    public: &Path,
) -> Result<Option<Found>, ResolveError> {
    merged_probe(view, fs, dir, name, public).map(|(found, _)| found)
}

/// [`merged`], also saying whether a whiteout of the name was looked for
/// and not found (a create then has nothing to finish).
pub(crate) fn merged_probe(
    view: &View,
    fs: &dyn Fs,
    dir: &Dir,
    name: &[u8],
    public: &Path,
) -> Result<(Option<Found>, bool), ResolveError> {
    if is_reserved_name(name) {
        return Ok((None, false));
    }
    if dir.loc == Loc::Upper {
        let up = view.upper_path(public);
        if let Some(st) = probe(fs, &up, public)? {
            let host_visible =
                st.kind == Kind::Dir && dir.host_visible && !opaque(fs, &up, public)?;
            let found = Found {
                loc: Loc::Upper,
                kind: st.kind,
                host_visible,
                id: 0,
            };
            return Ok((Some(found), false));
        }
        if !dir.host_visible || whited_out(fs, &up, public)? {
            return Ok((None, false));
        }
        return Ok((host(view, fs, public, Loc::Host)?, true));
    } else if !dir.host_visible {
        return Ok((None, false));
    }
    Ok((host(view, fs, public, Loc::Host)?, false))
}

/// [`merged_probe`] in a directory of upper whose own names are known and
/// do not include `name` or its whiteout (a complete directory of the
/// cache): only the host is asked.
pub(crate) fn host_probe(
    view: &View,
    fs: &dyn Fs,
    dir: &Dir,
    name: &[u8],
    public: &Path,
) -> Result<(Option<Found>, bool), ResolveError> {
    if is_reserved_name(name) {
        return Ok((None, false));
    }
    if !dir.host_visible {
        return Ok((None, true));
    }
    Ok((host(view, fs, public, Loc::Host)?, true))
}

/// A directory in upper is opaque if it holds the marker, or if a whiteout
/// of its own name sits beside it (created over a deleted host object and
/// not yet finished by `cow::finish_create`).
fn opaque(fs: &dyn Fs, up: &Path, public: &Path) -> Result<bool, ResolveError> {
    Ok(probe(fs, &opaque_marker(up), public)?.is_some() || whited_out(fs, up, public)?)
}

fn whited_out(fs: &dyn Fs, up: &Path, public: &Path) -> Result<bool, ResolveError> {
    match whiteout_of(up) {
        Some(wh) => Ok(probe(fs, &wh, public)?.is_some()),
        None => Ok(false),
    }
}

/// Look a public path up on the host only (below an exception, or in a
/// directory upper has nothing for).
pub(crate) fn host(
    view: &View,
    fs: &dyn Fs,
    public: &Path,
    loc: Loc,
) -> Result<Option<Found>, ResolveError> {
    let Some(st) = probe(fs, public, public)? else {
        return Ok(None);
    };
    if st.kind == Kind::Dir && view.is_hidden_id(&st) {
        return Err(ResolveError::Hidden(public.to_path_buf()));
    }
    Ok(Some(Found {
        loc,
        kind: st.kind,
        host_visible: true,
        id: 0,
    }))
}

/// Read a symlink from the layer that holds it.
pub(crate) fn target(
    view: &View,
    fs: &dyn Fs,
    found: &Found,
    public: &Path,
) -> Result<Vec<u8>, ResolveError> {
    let real = match found.loc {
        Loc::Upper => view.upper_path(public),
        Loc::Host | Loc::Exception => public.to_path_buf(),
    };
    match fs.readlink(&real) {
        Ok(t) => Ok(bytes(&t).to_vec()),
        Err(e) if is_missing(&e) => Err(ResolveError::NotFound(public.to_path_buf())),
        Err(e) => Err(io_err(public, &e)),
    }
}
