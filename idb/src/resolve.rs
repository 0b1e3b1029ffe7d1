//! Path resolution in the merged view: the kernel's path walk
//! (path_resolution(7), fs/namei.c link_path_walk) re-done one component at
//! a time over the union of the environment's upper layer and the host.
//!
//! The result is a *canonical public path* (absolute, no `.`/`..`, no
//! symlink except a final one that was not followed) plus the *real path* to
//! hand to the kernel. Because every symlink is read and re-walked here, in
//! the merged view, an absolute target restarts at the view's `/` and `..`
//! stops at it: no target, however crafted, names the upper layer's real
//! directory or anything in the store. The kernel then only walks
//! `upper/<canonical>` or the host path `<canonical>`, whose components are
//! all directories the walk checked.
//!
//! Caveat for the caller: the kernel walks the real path again later, so a
//! component swapped for a symlink in between (by another thread) would be
//! followed by the kernel. Add O_NOFOLLOW (or RESOLVE_NO_SYMLINKS with
//! openat2) to rewritten calls whose final component was resolved here.

use crate::cache::Cache;
use crate::error::ResolveError;
use crate::fs::{Fs, Kind};
use crate::lookup::{self, Dir, Found};
use crate::path::{bytes, child, components, from_bytes, NAME_MAX, PATH_MAX};
use crate::view::{is_magic_link, View};
use crate::whiteout::is_reserved_name;
use std::path::{Path, PathBuf};

/// The kernel's MAXSYMLINKS: following a 41st symlink in one walk is ELOOP.
pub const MAXSYMLINKS: u32 = 40;

/// Where the final object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// In the environment's private layer (`upper/<public>`).
    Upper,
    /// On the host, read-only for the environment until copied up.
    Host,
    /// On the host below a global exception: shared, never redirected.
    Exception,
}

/// A resolved path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical public path: absolute, no symlinks except a final one when
    /// the final component was not followed.
    pub public: PathBuf,
    /// `None`: the final component does not exist in the merged view (its
    /// parent does, and is a directory).
    pub loc: Option<Loc>,
    pub kind: Option<Kind>,
    /// The real path to hand to the kernel: `upper/<public>` for
    /// [`Loc::Upper`], the public path for [`Loc::Host`] and
    /// [`Loc::Exception`]; for a missing object, where it would be created
    /// (`upper/<public>`, or the public path inside an exception). Before
    /// creating there, call [`crate::cow::prepare_create`]: the parent may
    /// exist only on the host.
    pub real: PathBuf,
    /// The path ended in `/` (or a followed final symlink's target did): the
    /// object must be a directory. A missing one is fine for mkdir(2);
    /// open(2) with O_CREAT fails with EISDIR.
    pub must_be_dir: bool,
    /// For a directory in upper: the host directory at the same public path
    /// still contributes entries (it is not opaque). False otherwise.
    pub merged: bool,
    /// For a missing object: the walk found its parent directory in upper,
    /// so a create need not look for it again (false: not known).
    pub parent_in_upper: bool,
    /// For a missing object: the walk looked for a whiteout of its name and
    /// found none, so a create has nothing to finish (false: not known).
    pub no_whiteout: bool,
}

/// Resolve `path` as the kernel would in the merged view.
///
/// `base` is the absolute public directory relative paths start from (the
/// tracee's cwd, or the public path of the dirfd). `follow_final` follows a
/// final symlink (false for lstat, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, unlink,
/// rename...). An empty path is ENOENT: AT_EMPTY_PATH is the caller's job.
///
/// /proc is normally an exception, so its entries resolve as host objects;
/// a magic link there that must be followed stops the walk with
/// [`ResolveError::MagicLink`] instead of being read from the supervisor's
/// own /proc (which would describe the supervisor, not the tracee).
pub fn resolve(
    view: &View,
    fs: &dyn Fs,
    base: &Path,
    path: &[u8],
    follow_final: bool,
) -> Result<Resolved, ResolveError> {
    Walk {
        view,
        fs,
        cache: None,
    }
    .run(base, path, follow_final)
}

/// [`resolve`] with lookups memoized in `cache` (see [`Cache`] for when the
/// caller must invalidate it). The cache is tied to one view; given another
/// it starts over.
pub fn resolve_cached(
    view: &View,
    fs: &dyn Fs,
    cache: &mut Cache,
    base: &Path,
    path: &[u8],
    follow_final: bool,
) -> Result<Resolved, ResolveError> {
    cache.bind(view);
    Walk {
        view,
        fs,
        cache: Some(cache),
    }
    .run(base, path, follow_final)
}

struct Walk<'a> {
    view: &'a View,
    fs: &'a dyn Fs,
    cache: Option<&'a mut Cache>,
}

/// The walk's progress: components still to walk (a stack, next on top) and
/// the canonical directories walked so far (`..` pops one).
struct State {
    pending: Vec<Vec<u8>>,
    dirs: Vec<Dir>,
    must_be_dir: bool,
    links: u32,
}

fn push(pending: &mut Vec<Vec<u8>>, p: &[u8]) {
    pending.extend(components(p).rev().map(<[u8]>::to_vec));
}

impl Walk<'_> {
    fn run(&mut self, base: &Path, path: &[u8], follow: bool) -> Result<Resolved, ResolveError> {
        if path.is_empty() {
            return Err(ResolveError::NotFound(PathBuf::new()));
        }
        if path.len() >= PATH_MAX {
            return Err(ResolveError::NameTooLong);
        }
        let mut s = State {
            pending: Vec::with_capacity(16),
            dirs: vec![self.root()?],
            must_be_dir: path.ends_with(b"/"),
            links: 0,
        };
        push(&mut s.pending, path);
        if path[0] != b'/' {
            push(&mut s.pending, bytes(base));
        }
        while let Some(comp) = s.pending.pop() {
            let last = s.pending.is_empty();
            match comp.as_slice() {
                b"." => {}
                b".." => {
                    if s.dirs.len() > 1 {
                        s.dirs.pop();
                    }
                }
                _ => {
                    if let Some(done) = self.step(&mut s, comp, last, follow)? {
                        return Ok(done);
                    }
                }
            }
        }
        let cur = s.dirs.last().expect("root stays on the stack");
        Ok(self.resolved(cur.public.clone(), &found_dir(cur), s.must_be_dir))
    }

    fn root(&mut self) -> Result<Dir, ResolveError> {
        if let Some(c) = self.cache.as_deref_mut() {
            if let Some(r) = c.root() {
                return Ok(r.clone());
            }
            let r = lookup::root(self.view, self.fs)?;
            c.set_root(r.clone());
            return Ok(r);
        }
        lookup::root(self.view, self.fs)
    }

    /// Walk one named component. `Some` when the walk is over.
    fn step(
        &mut self,
        s: &mut State,
        name: Vec<u8>,
        last: bool,
        follow_final: bool,
    ) -> Result<Option<Resolved>, ResolveError> {
        if name.len() > NAME_MAX {
            return Err(ResolveError::NameTooLong);
        }
        let cur = s.dirs.last().expect("root stays on the stack");
        let public = child(&cur.public, &name);
        if self.view.is_hidden(&public) {
            return Err(ResolveError::Hidden(public));
        }
        let dir_id = cur.id;
        let parent_in_upper = cur.loc == Loc::Upper;
        let mut no_whiteout = false;
        let Some(f) = self.lookup(cur, &name, &public, &mut no_whiteout)? else {
            if !last {
                return Err(ResolveError::NotFound(public));
            }
            if is_reserved_name(&name) && !self.view.is_exception(&public) {
                return Err(ResolveError::Reserved(public));
            }
            let real = self.view.real_of(&public);
            let mut r = missing(public, real, s.must_be_dir);
            r.parent_in_upper = parent_in_upper;
            r.no_whiteout = no_whiteout;
            return Ok(Some(r));
        };
        if f.kind == Kind::Symlink && (!last || follow_final || s.must_be_dir) {
            self.follow(s, dir_id, &name, public, &f, last)?;
            return Ok(None);
        }
        if last {
            if s.must_be_dir && f.kind != Kind::Dir {
                return Err(ResolveError::NotDir(public));
            }
            return Ok(Some(self.resolved(public, &f, s.must_be_dir)));
        }
        if f.kind != Kind::Dir {
            return Err(ResolveError::NotDir(public));
        }
        s.dirs.push(Dir {
            public,
            loc: f.loc,
            host_visible: f.host_visible,
            id: f.id,
        });
        Ok(None)
    }

    /// Replace a symlink by its target, read from the layer holding it and
    /// walked in the merged view from the view's `/` or from the link's
    /// directory (the top of `s.dirs`).
    fn follow(
        &mut self,
        s: &mut State,
        dir_id: u64,
        name: &[u8],
        public: PathBuf,
        f: &Found,
        last: bool,
    ) -> Result<(), ResolveError> {
        if f.loc != Loc::Upper && is_magic_link(&public) {
            let rest = rest_of(&s.pending, s.must_be_dir);
            return Err(ResolveError::MagicLink { at: public, rest });
        }
        s.links += 1;
        if s.links > MAXSYMLINKS {
            return Err(ResolveError::Loop(public));
        }
        let target = self.target(dir_id, name, f, &public)?;
        if target.is_empty() {
            return Err(ResolveError::NotFound(public));
        }
        if last && target.ends_with(b"/") {
            s.must_be_dir = true;
        }
        if target[0] == b'/' {
            s.dirs.truncate(1);
        }
        push(&mut s.pending, &target);
        Ok(())
    }

    /// `no_whiteout` is set when the name is missing and a probe found no
    /// whiteout of it.
    fn lookup(
        &mut self,
        cur: &Dir,
        name: &[u8],
        public: &Path,
        no_whiteout: &mut bool,
    ) -> Result<Option<Found>, ResolveError> {
        // Exceptions are live host trees (/proc changes with every fork):
        // never cached.
        if self.view.is_exception(public) {
            return lookup::host(self.view, self.fs, public, Loc::Exception);
        }
        let Some(c) = self.cache.as_deref_mut() else {
            let (found, no_wh) = lookup::merged_probe(self.view, self.fs, cur, name, public)?;
            *no_whiteout = no_wh;
            return Ok(found);
        };
        if let Some(Some(hit)) = c.get(cur.id, name) {
            return Ok(Some(hit));
        }
        // A name found missing is looked up again every time: the host (or
        // another group in the environment) may create it at any moment,
        // and it must be seen at once, as on an overlay mount. In a
        // complete directory upper's answer is known (cache.rs).
        let probed = if cur.loc == Loc::Upper && c.absent_from_upper(cur.id, name) {
            lookup::host_probe(self.view, self.fs, cur, name, public)?
        } else {
            lookup::merged_probe(self.view, self.fs, cur, name, public)?
        };
        match probed {
            (Some(found), _) => Ok(Some(c.insert_found(cur.id, name, public, found))),
            (None, no_wh) => {
                *no_whiteout = no_wh;
                Ok(None)
            }
        }
    }

    fn target(
        &mut self,
        dir_id: u64,
        name: &[u8],
        f: &Found,
        public: &Path,
    ) -> Result<Vec<u8>, ResolveError> {
        let cacheable = f.loc != Loc::Exception;
        match self.cache.as_deref_mut() {
            Some(c) if cacheable => {
                if let Some(t) = c.target(dir_id, name) {
                    return Ok(t.to_vec());
                }
                let t = lookup::target(self.view, self.fs, f, public)?;
                c.set_target(dir_id, name, &t);
                Ok(t)
            }
            _ => lookup::target(self.view, self.fs, f, public),
        }
    }

    fn resolved(&self, public: PathBuf, f: &Found, must_be_dir: bool) -> Resolved {
        let real = match f.loc {
            Loc::Upper => self.view.upper_path(&public),
            Loc::Host | Loc::Exception => public.clone(),
        };
        Resolved {
            public,
            loc: Some(f.loc),
            kind: Some(f.kind),
            real,
            must_be_dir,
            merged: f.loc == Loc::Upper && f.kind == Kind::Dir && f.host_visible,
            parent_in_upper: false,
            no_whiteout: false,
        }
    }
}

fn found_dir(d: &Dir) -> Found {
    Found {
        loc: d.loc,
        kind: Kind::Dir,
        host_visible: d.host_visible,
        id: d.id,
    }
}

fn missing(public: PathBuf, real: PathBuf, must_be_dir: bool) -> Resolved {
    Resolved {
        public,
        loc: None,
        kind: None,
        real,
        must_be_dir,
        merged: false,
        parent_in_upper: false,
        no_whiteout: false,
    }
}

/// The components not walked yet, as a relative path. A trailing slash
/// that still applies is kept as a final `.`, so that resolving the rest
/// from a non-directory fails with ENOTDIR as the kernel would.
fn rest_of(pending: &[Vec<u8>], must_be_dir: bool) -> PathBuf {
    let mut out = Vec::new();
    for c in pending.iter().rev() {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    if must_be_dir {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.push(b'.');
    }
    from_bytes(out)
}
