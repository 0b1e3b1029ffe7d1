//! One environment's merged view: where its upper layer is, which rules are
//! in force, and what must stay invisible. Also the public <-> real mapping.

use crate::fs::Stat;
use crate::path::{bytes, components, from_bytes, relative, within};
use crate::rules::Rules;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Everything resolution needs to know about one environment. All paths are
/// real, absolute and canonical (symlink-free on the host): the store's
/// `home` is compared with canonical public paths.
#[derive(Clone, Debug)]
pub struct View {
    upper: PathBuf,
    work: PathBuf,
    home: PathBuf,
    rules: Rules,
    hidden_ids: Vec<(u64, u64)>,
    /// Host directories renamed inside the environment, shared by every
    /// clone of this view ([`View::record_move`]).
    moved: Arc<RwLock<Vec<(PathBuf, PathBuf)>>>,
}

impl View {
    /// `upper` and `work` are the environment's layer and scratch directory
    /// (same filesystem), `home` the store that holds them.
    pub fn new(upper: PathBuf, work: PathBuf, home: PathBuf, rules: Rules) -> Self {
        View {
            upper,
            work,
            home,
            rules,
            hidden_ids: Vec::new(),
            moved: Arc::default(),
        }
    }

    /// Records that the directory at public path `from` was renamed to
    /// `to`. A rename of a directory with host content moves a copy (the
    /// host keeps its own), so a process whose cwd or an fd was inside the
    /// host directory before still holds the host's: [`public_of`] then
    /// names what it holds by where the environment's copy is now, as the
    /// kernel would have named the moved directory itself. `from_host`
    /// says whether `from` had host content; moves recorded before whose
    /// new place was inside `from` follow it either way.
    pub fn record_move(&self, from: &Path, to: &Path, from_host: bool) {
        self.record_moves(&[(from, to, from_host)]);
    }

    /// [`View::record_move`] of several directories at once, each
    /// `(from, to, from_host)`: RENAME_EXCHANGE moves two, each to the
    /// other's place.
    pub fn record_moves(&self, moves: &[(&Path, &Path, bool)]) {
        let mut moved = self.moved.write().unwrap_or_else(|e| e.into_inner());
        for (_, now) in moved.iter_mut() {
            if let Some((from, to, _)) = moves.iter().find(|(from, _, _)| within(now, from)) {
                *now = rebase(now, from, to);
            }
        }
        for &(from, to, from_host) in moves {
            if from_host {
                moved.retain(|(old, _)| old != from);
                moved.push((from.to_path_buf(), to.to_path_buf()));
            }
        }
    }

    /// Where a host directory renamed inside the environment (or a path
    /// below it) is now, by the longest recorded move that holds it.
    fn moved_to(&self, real: &Path) -> Option<PathBuf> {
        let moved = self.moved.read().unwrap_or_else(|e| e.into_inner());
        moved
            .iter()
            .filter(|(old, _)| within(real, old))
            .max_by_key(|(old, _)| bytes(old).len())
            .map(|(old, now)| rebase(real, old, now))
    }

    /// Hide a directory by identity as well as by path: a host directory
    /// found during a walk with this (st_dev, st_ino) is ENOENT. This catches
    /// the store reached through a bind mount, which no path prefix reveals.
    pub fn hide_dir_id(&mut self, dev: u64, ino: u64) {
        if !self.hidden_ids.contains(&(dev, ino)) {
            self.hidden_ids.push((dev, ino));
        }
    }

    pub fn upper(&self) -> &Path {
        &self.upper
    }

    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether a normalized public path is inside a global exception.
    pub fn is_exception(&self, public: &Path) -> bool {
        self.rules.is_exception(public)
    }

    /// Whether a normalized public path is inside the store: such paths do
    /// not exist for guests, whatever the host holds there.
    pub fn is_hidden(&self, public: &Path) -> bool {
        within(public, &self.home)
    }

    pub(crate) fn is_hidden_id(&self, st: &Stat) -> bool {
        self.hidden_ids.contains(&(st.dev, st.ino))
    }

    /// `upper/<public>`: where the private copy of a public path lives.
    pub fn upper_path(&self, public: &Path) -> PathBuf {
        let rel = relative(public);
        if rel.as_os_str().is_empty() {
            self.upper.clone()
        } else {
            self.upper.join(rel)
        }
    }

    /// The real path a new object at `public` is created at: the public path
    /// itself inside an exception, else its place in upper.
    pub fn real_of(&self, public: &Path) -> PathBuf {
        if self.is_exception(public) {
            public.to_path_buf()
        } else {
            self.upper_path(public)
        }
    }
}

/// The public name of a real path (the reverse of [`View::real_of`]), for
/// translating back what the kernel reports (getcwd, /proc/PID/fd/N,
/// /proc/PID/exe): `upper/<p>` is `/<p>`; any other path inside the store
/// (another environment, `work/`) has no public name; a host path is itself.
/// `real` must be absolute and normalized, as the kernel reports paths.
pub fn public_of(view: &View, real: &Path) -> Option<PathBuf> {
    if within(real, &view.upper) {
        let rest = &bytes(real)[bytes(&view.upper).len()..];
        let mut out = rest.to_vec();
        if out.is_empty() {
            out.push(b'/');
        }
        return Some(from_bytes(out));
    }
    if view.is_hidden(real) {
        return None;
    }
    if let Some(now) = view.moved_to(real) {
        return Some(now);
    }
    Some(real.to_path_buf())
}

/// `path`, which is `from` or below it, moved to `to`.
fn rebase(path: &Path, from: &Path, to: &Path) -> PathBuf {
    let rest = &bytes(path)[bytes(from).len()..];
    let mut out = bytes(to).to_vec();
    if out == b"/" && rest.first() == Some(&b'/') {
        out.clear();
    }
    out.extend_from_slice(rest);
    from_bytes(out)
}

/// Whether a public path is a /proc link whose meaning depends on the
/// process that reads it: `/proc/self` and `/proc/thread-self`, and under
/// `/proc/{PID,self,thread-self}[/task/TID]` the links `root`, `cwd`, `exe`,
/// `fd/N`, `map_files/RANGE` and `ns/NAME` (proc(5)). Following one is not a
/// text substitution (proc(5), "magic links"): the kernel jumps to the
/// target process's object. The supervisor must never read its *own* /proc
/// to follow them: [`crate::resolve()`] stops with
/// [`crate::ResolveError::MagicLink`] and the policy substitutes the
/// tracee's public root, cwd or fd path.
pub fn is_magic_link(public: &Path) -> bool {
    let c: Vec<&[u8]> = components(bytes(public)).collect();
    let is_pid = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if c.len() < 2 || c[0] != b"proc" {
        return false;
    }
    let me = c[1] == b"self" || c[1] == b"thread-self";
    if !(me || is_pid(c[1])) {
        return false;
    }
    let mut rest = &c[2..];
    if rest.is_empty() {
        return me;
    }
    if rest.len() >= 2 && rest[0] == b"task" && is_pid(rest[1]) {
        rest = &rest[2..];
    }
    match rest {
        [b"root"] | [b"cwd"] | [b"exe"] => true,
        [b"fd", n] => is_pid(n),
        [b"map_files", _] | [b"ns", _] => true,
        _ => false,
    }
}
