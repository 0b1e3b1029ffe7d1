//! Carrying out one path's effect on the copy-on-write layer before the
//! kernel runs the call on the real path.

use super::classify::Op;
use isotrace_idb::{self as idb, cow, Cache, Kind, Loc, RealFs, Resolved, View};
use std::path::{Path, PathBuf};

/// Work left for syscall exit, done only if the call succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum After {
    /// A create happened at this public path (drop the whiteout beside it,
    /// make a directory over a deleted one opaque).
    FinishCreate(PathBuf),
    /// The object moved away from this public path (rename source).
    Whiteout(PathBuf),
    /// Another object now has this public path (RENAME_EXCHANGE): only
    /// what the resolution cache knew of it is stale.
    Replaced(PathBuf),
    /// A file the supervisor made for this call only (a translated
    /// /proc/PID/maps, procmaps.rs): removed at exit, whatever the result.
    Unlink(PathBuf),
    /// A directory was renamed from `from` to `to`; `host` if it had host
    /// content, which stays where it was (`View::record_move`).
    Moved {
        from: PathBuf,
        to: PathBuf,
        host: bool,
    },
    /// Two objects swapped places (RENAME_EXCHANGE); each `bool` says
    /// whether that one was a directory with host content.
    Swapped((PathBuf, bool), (PathBuf, bool)),
}

/// Where the kernel should act for one path argument.
pub struct Plan {
    pub real: PathBuf,
    pub after: Vec<After>,
}

type Res<T> = Result<T, i32>;

fn err(e: idb::Error) -> i32 {
    e.errno()
}

/// Prepares the layer for `op` on `r` and says which real path the kernel
/// must be given. Mutations invalidate the cache for what they touch.
pub fn plan(view: &View, cache: &mut Cache, r: &Resolved, op: Op) -> Res<Plan> {
    let real = |p: PathBuf| {
        Ok(Plan {
            real: p,
            after: Vec::new(),
        })
    };
    match (op, r.loc) {
        (Op::Refuse, _) => Err(libc::EPERM),
        (Op::Read, _) => real(r.real.clone()),
        (Op::Modify, None) => Err(libc::ENOENT),
        // Strict: the source of link(2) is a Modify too, and a program's
        // own link must go to a private inode (idb::share).
        (Op::Modify, Some(_)) => real(own(view, cache, r, true)?),
        (Op::CreateOrOpen { .. }, None) | (Op::Create, None) => {
            if r.must_be_dir && op != Op::Create {
                return Err(libc::EISDIR);
            }
            let at = cow::prepare_create(view, r).map_err(err)?;
            cache.invalidate(&r.public);
            // Only a create over a whiteout has work left for the exit stop
            // (the walk may have looked for one already).
            let after = if !r.no_whiteout && cow::needs_finish(view, &r.public) {
                vec![After::FinishCreate(r.public.clone())]
            } else {
                Vec::new()
            };
            Ok(Plan { real: at, after })
        }
        (Op::CreateOrOpen { write: true }, Some(_)) => real(own(view, cache, r, false)?),
        (Op::CreateOrOpen { write: false }, Some(_)) => real(r.real.clone()),
        (Op::Create, Some(_)) => Err(libc::EEXIST),
        // Removal and rename are planned as a whole by their callers; a
        // path reaching here alone is refused rather than guessed at.
        (Op::Remove { .. } | Op::RenameFrom | Op::RenameTo, _) => Err(libc::EINVAL),
    }
}

/// [`copy_up`] before a change to the object: an upper file that `env
/// copy` shares with another environment is first given its own copy
/// (idb::share::break_link), so that the change stays in this one.
fn own(view: &View, cache: &mut Cache, r: &Resolved, strict: bool) -> Res<PathBuf> {
    if r.loc == Some(Loc::Upper) && r.kind == Some(Kind::File) {
        if idb::share::break_link(view, &r.real, strict).map_err(err)? {
            cache.invalidate(&r.public);
        }
        return Ok(r.real.clone());
    }
    copy_up(view, cache, r)
}

fn copy_up(view: &View, cache: &mut Cache, r: &Resolved) -> Res<PathBuf> {
    if r.loc != Some(Loc::Host) {
        return Ok(r.real.clone());
    }
    let at = cow::copy_up(view, r).map_err(err)?;
    cache.invalidate(&r.public);
    Ok(at)
}

/// unlink(2)/rmdir(2) in the merged view, done by the supervisor: the
/// whiteout must exist before the upper copy goes, so that the host object
/// never shows through. Returns the syscall's result.
pub fn remove(view: &View, cache: &mut Cache, r: &Resolved, dir: bool) -> i64 {
    let res = match (r.loc, dir) {
        (None, _) => Err(libc::ENOENT),
        // Exceptions are removed by the kernel (the caller rewrites them);
        // never by the supervisor on the host.
        (Some(Loc::Exception), _) => Err(libc::EPERM),
        (Some(_), false) => cow::unlink(view, r).map_err(err),
        (Some(_), true) => cow::rmdir(view, r).map_err(err),
    };
    cache.invalidate(&r.public);
    match res {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

/// Prepares rename(2) of `from` to `to`: the source moves into upper whole
/// (a host directory is copied up recursively, so that the kernel's rename
/// of the upper copy carries every entry), the target's parent exists in
/// upper. Returns the two real paths and what to do after success.
pub fn rename(
    view: &View,
    cache: &mut Cache,
    from: &Resolved,
    to: &Resolved,
    noreplace: bool,
) -> Res<(Plan, Plan)> {
    if from.loc.is_none() {
        return Err(libc::ENOENT);
    }
    if noreplace && to.loc.is_some() {
        return Err(libc::EEXIST);
    }
    // A missing target below an exception has no loc: it is public by its
    // path (fontconfig renames `X.NEW` to a new `X` in its shared cache).
    let exception = |r: &Resolved| {
        r.loc == Some(Loc::Exception) || r.loc.is_none() && view.is_exception(&r.public)
    };
    if exception(from) != exception(to)
        && (from.loc.is_some() && to.loc.is_some() || exception(from))
    {
        // Across the boundary between the layer and a shared exception:
        // different filesystems as far as the guest may know.
        return Err(libc::EXDEV);
    }
    let src = if from.kind == Some(Kind::Dir) {
        copy_up_tree(view, cache, from)?
    } else {
        copy_up(view, cache, from)?
    };
    let dst = cow::prepare_rename_target(view, to).map_err(err)?;
    cache.invalidate(&from.public);
    cache.invalidate(&to.public);
    cache.forget_fresh();
    let mut after = vec![After::FinishCreate(to.public.clone())];
    let host = from.loc == Some(Loc::Host) || from.merged;
    if host {
        after.insert(0, After::Whiteout(from.public.clone()));
    }
    if from.kind == Some(Kind::Dir) {
        after.push(After::Moved {
            from: from.public.clone(),
            to: to.public.clone(),
            host,
        });
    }
    Ok((
        Plan {
            real: src,
            after: Vec::new(),
        },
        Plan { real: dst, after },
    ))
}

/// Prepares renameat2(RENAME_EXCHANGE) of `a` and `b`: both must exist;
/// each moves into upper whole (a directory recursively, made opaque), so
/// that the kernel's exchange of the two upper copies swaps everything the
/// guest sees under both names, and nothing of the host shows through
/// either afterwards. No whiteout is needed: both names stay taken.
pub fn exchange(view: &View, cache: &mut Cache, a: &Resolved, b: &Resolved) -> Res<(Plan, Plan)> {
    if a.loc.is_none() || b.loc.is_none() {
        return Err(libc::ENOENT);
    }
    let exception = |r: &Resolved| r.loc == Some(Loc::Exception);
    if exception(a) != exception(b) {
        return Err(libc::EXDEV);
    }
    let whole = |cache: &mut Cache, r: &Resolved| {
        if exception(r) {
            Ok(r.real.clone())
        } else if r.kind == Some(Kind::Dir) {
            copy_up_tree(view, cache, r)
        } else {
            copy_up(view, cache, r)
        }
    };
    let (ra, rb) = (whole(cache, a)?, whole(cache, b)?);
    cache.invalidate(&a.public);
    cache.invalidate(&b.public);
    cache.forget_fresh();
    let plan = |real: PathBuf, public: &Path| Plan {
        real,
        after: vec![After::Replaced(public.to_path_buf())],
    };
    let (mut pa, pb) = (plan(ra, &a.public), plan(rb, &b.public));
    let host_dir =
        |r: &Resolved| r.kind == Some(Kind::Dir) && (r.loc == Some(Loc::Host) || r.merged);
    pa.after.push(After::Swapped(
        (a.public.clone(), host_dir(a)),
        (b.public.clone(), host_dir(b)),
    ));
    Ok((pa, pb))
}

/// Copies a directory and everything under it into upper, so that it no
/// longer depends on the host (the copy is marked opaque).
fn copy_up_tree(view: &View, cache: &mut Cache, dir: &Resolved) -> Res<PathBuf> {
    let at = copy_up(view, cache, dir)?;
    for entry in idb::merged_listing(view, &RealFs, dir).map_err(err)? {
        if entry.name == "." || entry.name == ".." {
            continue;
        }
        let public = dir.public.join(&entry.name);
        let child = idb::resolve_cached(
            view,
            &RealFs,
            cache,
            Path::new("/"),
            public.as_os_str().as_encoded_bytes(),
            false,
        )
        .map_err(|e| e.errno())?;
        if child.kind == Some(Kind::Dir) {
            copy_up_tree(view, cache, &child)?;
        } else {
            copy_up(view, cache, &child)?;
        }
    }
    make_opaque(view, &dir.public)?;
    cache.invalidate(&dir.public);
    Ok(at)
}

/// Runs the work left for exit after a successful call.
pub fn finish(view: &View, cache: &mut Cache, after: &[After]) {
    discard(after);
    for a in after {
        let (res, p) = match a {
            After::Unlink(_) => continue,
            After::FinishCreate(p) => (cow::finish_create(view, p), p),
            After::Whiteout(p) => (cow::whiteout(view, p).map(drop), p),
            After::Replaced(p) => (Ok(()), p),
            After::Moved { from, to, host } => {
                view.record_move(from, to, *host);
                continue;
            }
            After::Swapped((a, host_a), (b, host_b)) => {
                view.record_moves(&[(a, b, *host_a), (b, a, *host_b)]);
                continue;
            }
        };
        if let Err(e) = res {
            tracing::warn!("{}: {e}", p.display());
        }
        cache.invalidate(p);
    }
}

/// Removes the files made for the call only ([`After::Unlink`]): after it
/// succeeded, failed, or was abandoned (the tracee died in it).
pub fn discard(after: &[After]) {
    for a in after {
        if let After::Unlink(p) = a {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!("{}: {e}", p.display());
            }
        }
    }
}

/// Whether `after` changes the environment (others must forget what they
/// cached), beyond removing the call's own scratch files.
pub fn changes_env(after: &[After]) -> bool {
    after.iter().any(|a| !matches!(a, After::Unlink(_)))
}

/// Marks an upper directory opaque (`.wh..wh..opq`): the host's entries at
/// the same public path no longer show through it.
fn make_opaque(view: &View, public: &Path) -> Res<()> {
    let marker = view.upper_path(public).join(idb::OPAQUE_NAME);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(marker)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}
