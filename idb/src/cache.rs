//! Memoized merged-view lookups for the supervisor's hot path.
//!
//! Entries are kept per canonical public directory: a directory gets an id
//! when it is first found, and its children are a hash map under that id.
//! A cached lookup is two hash probes on the component name, whatever the
//! size of the upper layer (nothing is ever scanned). Dropping a directory's
//! entry in its parent orphans its whole subtree at once (the subtree's
//! maps become unreachable: its next lookup gets a fresh id), so
//! invalidation is O(depth) too. Orphans are reclaimed when the cache
//! outgrows its capacity and starts over.
//!
//! What is cached: every lookup outside the global exceptions that found
//! something, and symlink targets. "Missing" answers are not kept (the
//! resolver looks a missing name up again each time), so a name that the
//! host or another group creates is seen at the next lookup. It is the
//! caller's job to call [`Cache::invalidate`] after each mutation it
//! performs or lets the kernel perform in the environment. Other changes
//! made behind the cache's back (a name the host deletes or replaces, or
//! another supervisor's changes to the environment) are seen after
//! [`Cache::clear`]: the isolation policy clears it when a copy-up or a
//! create finds its host source or parent gone, and resolves again.
//!
//! Complete directories. The upper layer changes only through the
//! supervisors (every path-taking syscall is trapped and planned, and the
//! other supervisors of the environment are heard through its generation
//! counter), unlike the host. So for a directory that was *created empty
//! in upper by mkdir(2) during this cache's life* ([`Cache::note_fresh_dir`])
//! the cache can know every name upper has in it: a name it holds no entry
//! for is absent from upper (and so is its whiteout), unless it is one of
//! the names that were invalidated there since ("uncertain": a create was
//! planned, a copy-up, a rename or a removal happened), which are looked up
//! on disk as before. A lookup in such a directory costs one probe of the
//! host (still live) instead of three (upper, whiteout, host). Any
//! invalidation of the directory itself or above ends its completeness
//! (its entry is dropped and its id orphaned), and so does [`Cache::clear`].

use crate::lookup::{Dir, Found};
use crate::path::{bytes, components};
use crate::resolve::Loc;
use crate::view::View;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The id of the root directory's children.
const ROOT_ID: u64 = 0;
/// Default number of cached entries before the cache starts over.
const DEFAULT_CAPACITY: usize = 1 << 20;
/// Directories created but not looked up yet, kept at most (past that they
/// are forgotten: only a lost shortcut).
const MAX_FRESH: usize = 4096;

struct Entry {
    found: Option<Found>,
    target: Option<Box<[u8]>>,
}

/// Memoized lookups of one environment's merged view.
pub struct Cache {
    upper: PathBuf,
    root: Option<Dir>,
    dirs: HashMap<u64, HashMap<OsString, Entry>>,
    /// Complete directories (by id) and the names in each that were
    /// invalidated since it became complete (see the module's doc).
    complete: HashMap<u64, HashSet<OsString>>,
    /// Public paths of directories a planned mkdir(2) will create empty in
    /// upper, until the walk first finds them there.
    fresh: HashSet<PathBuf>,
    next_id: u64,
    len: usize,
    capacity: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A cache that starts over once it holds `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Cache {
            upper: PathBuf::new(),
            root: None,
            dirs: HashMap::new(),
            complete: HashMap::new(),
            fresh: HashSet::new(),
            next_id: ROOT_ID + 1,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Number of entries held (including orphaned ones).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.root = None;
        self.dirs.clear();
        self.complete.clear();
        self.fresh.clear();
        self.len = 0;
    }

    /// A mkdir(2) of the missing `public` (a canonical public path outside
    /// the exceptions) is about to create it, empty, in upper, with no
    /// whiteout beside it left to finish. When the walk first finds it
    /// there as a directory, the directory is complete (module doc).
    pub fn note_fresh_dir(&mut self, public: &Path) {
        if self.fresh.len() >= MAX_FRESH {
            self.fresh.clear();
        }
        self.fresh.insert(public.to_path_buf());
    }

    /// No directory noted by [`Cache::note_fresh_dir`] is fresh any more: a
    /// rename may move a full directory to one of those names before the
    /// mkdir that was planned for it fails.
    pub fn forget_fresh(&mut self) {
        self.fresh.clear();
    }

    /// Whether `name` in directory `dir` is known to be absent from upper,
    /// with no whiteout of it either (`dir` is complete and `name` was not
    /// invalidated there).
    pub(crate) fn absent_from_upper(&self, dir: u64, name: &[u8]) -> bool {
        self.complete.get(&dir).is_some_and(|uncertain| {
            !uncertain.contains(OsStr::from_bytes(name))
                && !self
                    .dirs
                    .get(&dir)
                    .is_some_and(|c| c.contains_key(OsStr::from_bytes(name)))
        })
    }

    /// `name` in `dir` may have changed in upper: if `dir` is complete, the
    /// name is looked up on disk from now on (its whiteout too).
    fn uncertain(&mut self, dir: u64, name: &[u8]) {
        if let Some(u) = self.complete.get_mut(&dir) {
            if u.insert(OsStr::from_bytes(name).to_os_string()) {
                self.len += 1;
            }
        }
    }

    /// Forget what is known about `public` (a canonical public path), and
    /// everything below it, after a mutation there: create, delete, rename
    /// (call it for both names), copy-up, chmod/chown/utimes/xattr (which
    /// copy up), [`crate::cow::finish_create`], [`crate::cow::whiteout`].
    ///
    /// Copy-up also moves the *ancestors* that were host-only into upper,
    /// which changes how their children are looked up; so the topmost
    /// cached ancestor that is not in upper is dropped instead, with its
    /// subtree.
    ///
    /// The name where this stops (the one dropped, or the first one not
    /// cached) becomes uncertain in its directory if that is complete, and
    /// directories noted fresh at, below or above `public` are fresh no
    /// longer.
    pub fn invalidate(&mut self, public: &Path) {
        let comps: Vec<&[u8]> = components(bytes(public)).collect();
        if comps.is_empty() {
            self.clear();
            return;
        }
        if !self.fresh.is_empty() {
            // Below a fresh directory: something is being made in it behind
            // the walk (a copy-up's parents); at or above: it may be gone.
            self.fresh
                .retain(|p| !p.starts_with(public) && !public.starts_with(p));
        }
        let mut dir = ROOT_ID;
        for (i, name) in comps.iter().enumerate() {
            let key = OsStr::from_bytes(name);
            let Some(e) = self.dirs.get(&dir).and_then(|c| c.get(key)) else {
                self.uncertain(dir, name);
                return;
            };
            match e.found {
                Some(f) if i + 1 < comps.len() && f.loc == Loc::Upper && f.id != 0 => {
                    dir = f.id;
                }
                _ => {
                    if let Some(children) = self.dirs.get_mut(&dir) {
                        children.remove(key);
                        self.len -= 1;
                    }
                    self.uncertain(dir, name);
                    return;
                }
            }
        }
    }

    /// Tie the cache to `view`; a cache used with another view starts over.
    pub(crate) fn bind(&mut self, view: &View) {
        if self.upper != view.upper() {
            self.clear();
            self.upper = view.upper().to_path_buf();
        }
    }

    pub(crate) fn root(&self) -> Option<&Dir> {
        self.root.as_ref()
    }

    pub(crate) fn set_root(&mut self, mut root: Dir) {
        root.id = ROOT_ID;
        self.root = Some(root);
    }

    pub(crate) fn get(&self, dir: u64, name: &[u8]) -> Option<Option<Found>> {
        let e = self.dirs.get(&dir)?.get(OsStr::from_bytes(name))?;
        Some(e.found)
    }

    /// [`Cache::insert`] of what a lookup of `public` found; a directory
    /// noted fresh becomes complete under its new id.
    pub(crate) fn insert_found(
        &mut self,
        dir: u64,
        name: &[u8],
        public: &Path,
        found: Found,
    ) -> Found {
        let stored = self
            .insert(dir, name, Some(found))
            .expect("a found entry is stored as found");
        if stored.kind == crate::Kind::Dir && stored.loc == Loc::Upper && self.fresh.remove(public)
        {
            self.complete.insert(stored.id, HashSet::new());
        }
        stored
    }

    /// Remember a lookup; a directory gets the id its children are kept
    /// under. Returns the lookup as stored.
    pub(crate) fn insert(&mut self, dir: u64, name: &[u8], found: Option<Found>) -> Option<Found> {
        if self.len >= self.capacity {
            let root = self.root.take();
            self.clear();
            self.root = root;
            // Ids handed out before stay unique, so a walk in progress that
            // still holds one simply finds nothing under it.
        }
        let found = found.map(|mut f| {
            if f.kind == crate::Kind::Dir {
                f.id = self.next_id;
                self.next_id += 1;
            }
            f
        });
        let entry = Entry {
            found,
            target: None,
        };
        let children = self.dirs.entry(dir).or_default();
        if children
            .insert(OsStr::from_bytes(name).to_os_string(), entry)
            .is_none()
        {
            self.len += 1;
        }
        found
    }

    pub(crate) fn target(&self, dir: u64, name: &[u8]) -> Option<&[u8]> {
        let e = self.dirs.get(&dir)?.get(OsStr::from_bytes(name))?;
        e.target.as_deref()
    }

    pub(crate) fn set_target(&mut self, dir: u64, name: &[u8], target: &[u8]) {
        if let Some(e) = self
            .dirs
            .get_mut(&dir)
            .and_then(|c| c.get_mut(OsStr::from_bytes(name)))
        {
            e.target = Some(target.into());
        }
    }
}
