//! Isolation: the policy that maps a program's paths into its environment.
//!
//! For every trapped path syscall it resolves each path in the
//! environment's merged view (idb), prepares the copy-on-write layer (copy
//! up before a write, create parents before a create, whiteouts for
//! deletions) and answers with a rewrite to the real path, pinned in the
//! tracer's scratch region so no sibling thread can swap it. Results that
//! name real paths (getcwd, readlink of /proc magic links) are translated
//! back at syscall exit; directory listings are merged (`dirents`).

mod back;
pub mod classify;
mod creds;
pub mod dirents;
mod exec;
mod fdops;
mod gate;
mod open2;
mod openat2;
mod ops;
mod paths;
mod procdirs;
mod procfs;
mod procmaps;
pub mod readonly;
mod unixaddr;

use crate::trace::TracePolicy;
use classify::{classify, Op, PathUse};
use isotrace_arch::Syscall;
use isotrace_idb::{Cache, Generation, View};
use isotrace_tracer::{Action, Call, ExitAction, Policy, TraceeView, Verdict};
use nix::errno::Errno;
use ops::{After, Plan};
use paths::Resolver;
use std::collections::HashMap;
use std::path::PathBuf;

pub struct Isolation {
    view: View,
    generation: Option<Generation>,
    cache: Cache,
    trace: TracePolicy,
    /// Per thread: what to finish at the exit of its current syscall.
    pending: HashMap<i32, Pending>,
    dirs: dirents::Listings,
    /// Public paths the group changed, for the closing summary.
    pub changed: std::collections::HashSet<PathBuf>,
    /// The tracees' file-system credentials (creds.rs).
    creds: creds::Creds,
    /// The tracees' pid numbering in /proc (procfs.rs).
    procs: procfs::ProcView,
    /// Host mounts are read-only in the tracees' namespace (readonly.rs).
    read_only_host: bool,
    /// Handles on the tracees' /proc/PID (procdirs.rs).
    proc_dirs: procdirs::ProcDirs,
    /// The group may list a directory of the environment: it changed the
    /// environment, opened one of its directories, or another group
    /// changed it (tracer listings.rs: getdents64 is trapped from then on).
    listings_trapped: bool,
}

enum Pending {
    After(Vec<After>),
    Back(back::Back),
}

/// sizeof(struct sockaddr_un).
const SOCKADDR_UN_LEN: usize = 110;
const RENAME_NOREPLACE: u64 = 1;
const RENAME_EXCHANGE: u64 = 2;

impl Isolation {
    /// `generation` is the environment's shared change counter, when the
    /// environment may be shared with other supervisors.
    pub fn new(view: View, mut trace: TracePolicy, generation: Option<Generation>) -> Isolation {
        if let Some(report) = trace.report.as_mut() {
            // The report names paths as the program knows them.
            let v = view.clone();
            report.set_public_name(Box::new(move |real| isotrace_idb::public_of(&v, real)));
        }
        Isolation {
            view,
            generation,
            cache: Cache::new(),
            trace,
            pending: HashMap::new(),
            dirs: dirents::Listings::default(),
            changed: Default::default(),
            creds: creds::Creds::new(),
            procs: procfs::ProcView::default(),
            read_only_host: false,
            proc_dirs: procdirs::ProcDirs::default(),
            listings_trapped: false,
        }
    }

    /// The program runs with a read-only host (readonly.rs).
    pub fn set_read_only_host(&mut self, yes: bool) {
        self.read_only_host = yes;
    }

    /// The `--report` accesses, once the group has exited.
    pub fn take_report(&mut self) -> Option<crate::report::Report> {
        self.trace.report.take()
    }

    pub fn finish(&mut self) {
        self.trace.finish();
    }

    fn resolver<'a>(&'a mut self, call: &Call, tv: &'a mut dyn TraceeView) -> Resolver<'a> {
        Resolver {
            view: &self.view,
            cache: &mut self.cache,
            tv,
            pid: call.pid,
            tid: call.tid,
            procs: &mut self.procs,
        }
    }

    /// Records a change of the layer: for the closing summary, and for the
    /// other supervisors sharing the environment.
    fn note_change(&mut self, public: PathBuf) {
        self.listings_trapped = true;
        self.changed.insert(public);
        if let Some(g) = self.generation.as_mut() {
            g.bump();
        }
    }

    fn decide(&mut self, call: &Call, tv: &mut dyn TraceeView) -> Result<Verdict, i32> {
        if self
            .generation
            .as_mut()
            .is_some_and(|g| g.changed_elsewhere())
        {
            // Another group changed the environment: forget what we knew.
            self.cache.clear();
            self.listings_trapped = true;
        }
        match call.sc.name {
            "getcwd" => return Ok(self.expect_back(call, back::Back::Getcwd)),
            "getdents64" => return self.getdents64(call, tv),
            "getdents" => return Err(libc::ENOSYS),
            "openat2" => return self.openat2(call, tv),
            "fchmod" | "fchown" | "fsetxattr" | "fremovexattr" => {
                return self.fd_metadata(call, call.args[0] as i32, tv);
            }
            "bind" | "connect" => return self.unix_socket(call, tv, (1, 2)),
            // Trapped only with a destination address (the filter).
            "sendto" => return self.unix_socket(call, tv, (4, 5)),
            "setuid" | "setgid" | "setreuid" | "setregid" | "setresuid" | "setresgid"
            | "setfsuid" | "setfsgid" | "setgroups" | "capset" => {
                // Read again at the thread's next supervisor-made change.
                self.creds.forget(call.tid);
                return Ok(Verdict::CONTINUE);
            }
            "setns" => return Ok(readonly::setns(call, tv)),
            "getsockname" | "getpeername" => {
                return Ok(self.expect_back(call, back::Back::SockName));
            }
            "readlink" | "readlinkat" => {
                if let Some(v) = self.magic_readlink(call, tv) {
                    return v;
                }
            }
            // futimens(fd, times) is utimensat(fd, NULL, times, 0).
            "utimensat" if call.args[1] == 0 => {
                return self.fd_metadata(call, call.args[0] as i32, tv);
            }
            _ => {}
        }
        let Some(uses) = classify(call.sc, &call.args) else {
            return Ok(Verdict::CONTINUE);
        };
        if let [from, to] = uses.as_slice() {
            if from.op == Op::RenameFrom {
                return self.rename(call, tv, from, to);
            }
        }
        let mut paths = Vec::with_capacity(uses.len());
        let mut after = Vec::new();
        for u in &uses {
            match self.one_path(call, tv, u)? {
                PathOutcome::Rewrite(p) => {
                    after.extend(p.after);
                    paths.push((u.idx, paths::bytes(&p.real)));
                }
                PathOutcome::Keep => {}
                PathOutcome::Done(ret) => return Ok(Verdict::emulate(ret)),
            }
        }
        if paths.is_empty() && after.is_empty() {
            return Ok(Verdict::CONTINUE);
        }
        if call.sc.name == "execve" {
            if let Some(v) = self.script(call, tv, &paths)? {
                return Ok(v);
            }
        }
        let exit_stop = !after.is_empty();
        if exit_stop {
            self.pending.insert(call.tid, Pending::After(after));
        }
        let action = match open2::harden(call, paths) {
            Ok(action) => action,
            Err(paths) => Action::Rewrite {
                paths,
                args: Vec::new(),
            },
        };
        Ok(Verdict { action, exit_stop })
    }

    /// Whether a thread is inside a rename (or another call that creates a
    /// name with work left for its exit).
    fn rename_in_flight(&self) -> bool {
        self.pending.values().any(|p| {
            matches!(p, Pending::After(after) if after.iter().any(|a| {
                matches!(a, ops::After::FinishCreate(_) | ops::After::Replaced(_))
            }))
        })
    }

    /// unlink/rmdir are done by the supervisor (ops::remove); the checks the
    /// kernel would make for the tracee come first (creds.rs): write and
    /// search permission on the parent directory, as the tracee, and the
    /// sticky rule.
    fn may_not_remove(&mut self, tid: i32, r: &isotrace_idb::Resolved) -> Option<i32> {
        let parent = r.real.parent()?.to_path_buf();
        let t = self.creds.of(tid)?.clone();
        if self.creds.differ(&t) {
            let wx = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
            let (_fd, link) = match creds::via_fd(&parent) {
                Ok(v) => v,
                Err(e) => return Some(e),
            };
            let check = || {
                nix::unistd::faccessat(
                    nix::fcntl::AT_FDCWD,
                    &link,
                    wx,
                    nix::fcntl::AtFlags::AT_EACCESS,
                )
            };
            match isotrace_tracer::sys::with_fs_creds(&t.fs, check) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Some(e as i32),
                Err(_) => return Some(libc::EPERM),
            }
        }
        creds::sticky_denies(&t, &parent, &r.real).then_some(libc::EPERM)
    }

    /// openat2(2): the tracee's open_how is validated and its RESOLVE_*
    /// restrictions are checked in the merged view (openat2.rs); then the
    /// call is decided as the openat it amounts to. A kept path (an
    /// exception) runs with the tracee's own open_how.
    fn openat2(&mut self, call: &Call, tv: &mut dyn TraceeView) -> Result<Verdict, i32> {
        let size = call.args[3] as usize;
        if size < openat2::HOW_SIZE {
            return Err(libc::EINVAL);
        }
        if size > 4096 {
            return Err(libc::E2BIG);
        }
        let bytes = tv.read_bytes(call.args[2], size).ok_or(libc::EFAULT)?;
        let how = openat2::parse(&bytes, open2::VALID_OPEN_FLAGS)?;
        let raw = call.path(1).ok_or(libc::EFAULT)?.to_vec();
        if raw.is_empty() {
            return Err(libc::ENOENT);
        }
        let dirfd = Some(call.args[0] as i32);
        if how.resolve & !openat2::RESOLVE_CACHED != 0 {
            let path = std::path::Path::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw),
            );
            let base = self.resolver(call, tv).base(dirfd)?;
            openat2::check_before(&how, &base, path)?;
            if how.resolve & (openat2::RESOLVE_NO_SYMLINKS | openat2::RESOLVE_BENEATH) != 0 {
                let r = self
                    .resolver(call, tv)
                    .resolve(dirfd, &raw, false)
                    .map_err(|e| e.errno())?;
                let link = r.kind == Some(isotrace_idb::Kind::Symlink);
                openat2::check_after(&how, &base, path, &r.public, link)?;
            }
        }
        let openat = isotrace_arch::by_name("openat").ok_or(libc::ENOSYS)?;
        let as_openat = Call {
            tid: call.tid,
            pid: call.pid,
            sc: openat,
            args: [call.args[0], call.args[1], how.flags, how.mode, 0, 0],
            paths: call.paths.clone(),
        };
        self.decide(&as_openat, tv)
    }

    fn one_path(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        u: &PathUse,
    ) -> Result<PathOutcome, i32> {
        self.one_path_try(call, tv, u, false)
    }

    fn one_path_try(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        u: &PathUse,
        retried: bool,
    ) -> Result<PathOutcome, i32> {
        let raw = match call.paths.iter().find(|p| p.idx == u.idx) {
            Some(p) => p.path.clone().map_err(|e| e as i32)?,
            None => return Err(libc::EFAULT),
        };
        if raw.is_empty() {
            // AT_EMPTY_PATH: the call acts on the dirfd's object, which is
            // already open; a write to a host object through it is caught
            // by the fd-based checks. Without the flag: ENOENT.
            if !u.empty_ok {
                return Err(libc::ENOENT);
            }
            if u.op == Op::Modify && call.sc.name == "linkat" {
                // linkat(fd, "", ..., AT_EMPTY_PATH): a host object's inode
                // must not get a name in the environment.
                let fd = call.args[0] as i32;
                let real = tv.fd_path(fd).ok_or(libc::EBADF)?;
                let upper = self.view.upper();
                if real.is_absolute() && !real.starts_with(upper) && !self.view.is_exception(&real)
                {
                    return Err(libc::EXDEV);
                }
            }
            return Ok(PathOutcome::Keep);
        }
        let dirfd = call.sc.dirfd_for(u.idx).map(|i| call.args[i] as i32);
        let r = self
            .resolver(call, tv)
            .resolve(dirfd, &raw, u.follow)
            .map_err(|e| match u.op {
                Op::Create | Op::CreateOrOpen { .. } => e.create_errno(),
                _ => e.errno(),
            })?;
        if !self.procs.foreign(call.pid) && back::is_supervisor_proc(&r.public) {
            // /proc/SUPERVISOR/{mem,fd,...}: a root tracee could otherwise
            // write the supervisor's memory or reach its fds. (A tracee in a
            // pid namespace of its own has a procfs of its own, where the
            // supervisor has no entry.)
            return Err(libc::ENOENT);
        }
        if back::is_proc_mem(&r.public) && u.op != Op::Read {
            // Writing through /proc/PID/mem ignores page protections: it
            // could rewrite the scratch region under a pinned path.
            return Err(libc::EACCES);
        }
        if u.op == Op::Read && matches!(call.sc.name, "open" | "openat" | "openat2") {
            if let Some(plan) = self.proc_maps(call, &r) {
                return Ok(PathOutcome::Rewrite(plan));
            }
        }
        if r.loc == Some(isotrace_idb::Loc::Exception) {
            return Ok(PathOutcome::Rewrite(Plan {
                real: r.real,
                after: Vec::new(),
            }));
        }
        if self.read_only_host && r.loc == Some(isotrace_idb::Loc::Host) {
            if let Some(mode) = readonly::write_access_mode(call) {
                let ret = readonly::host_write_access(&mut self.creds, call.tid, &r.real, mode);
                return Ok(PathOutcome::Done(ret));
            }
        }
        if u.op != Op::Read {
            // The layer may change below (a copy-up, a parent made, a
            // whiteout): a host directory may become one of the
            // environment's, maybe one the group has open.
            self.listings_trapped = true;
        } else if r.loc == Some(isotrace_idb::Loc::Upper)
            && r.kind == Some(isotrace_idb::Kind::Dir)
            && matches!(call.sc.name, "open" | "openat" | "openat2")
        {
            // An fd on a directory of the environment: its listing must
            // be merged (dirents.rs).
            self.listings_trapped = true;
        }
        if let Op::Remove { dir } = u.op {
            if let Some(errno) = self.may_not_remove(call.tid, &r) {
                return Ok(PathOutcome::Done(-(errno as i64)));
            }
            let ret = ops::remove(&self.view, &mut self.cache, &r, dir);
            if ret == 0 {
                self.note_change(r.public.clone());
            }
            return Ok(PathOutcome::Done(ret));
        }
        let plan = match ops::plan(&self.view, &mut self.cache, &r, u.op) {
            // The copy-up's source or a parent the cache knew is gone: the
            // host deleted it behind the cache's back (cache.rs). Look
            // again, once, with a cache that starts over.
            Err(libc::ENOENT) if !retried && (r.loc.is_some() || u.op != Op::Modify) => {
                self.cache.clear();
                return self.one_path_try(call, tv, u, true);
            }
            other => other?,
        };
        if u.op != Op::Read && !matches!(u.op, Op::CreateOrOpen { write: false }) {
            self.note_change(r.public.clone());
        }
        if u.op == Op::Create
            && matches!(call.sc.name, "mkdir" | "mkdirat")
            && r.loc.is_none()
            && plan.after.is_empty()
            && !self.view.is_exception(&r.public)
            && !self.rename_in_flight()
        {
            // The kernel is about to make it, empty, at plan.real in upper:
            // lookups in it need not ask upper (idb cache.rs). Not while a
            // rename that could put a full directory there first is still
            // running (ops::rename forgets the fresh ones when planned).
            self.cache.note_fresh_dir(&r.public);
        }
        Ok(PathOutcome::Rewrite(plan))
    }

    fn rename(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        from: &PathUse,
        to: &PathUse,
    ) -> Result<Verdict, i32> {
        let flags = if call.sc.name == "renameat2" {
            call.args[4]
        } else {
            0
        };

        let path = |u: &PathUse| -> Result<Vec<u8>, i32> {
            call.path(u.idx).map(<[u8]>::to_vec).ok_or(libc::EFAULT)
        };
        let (fp, tp) = (path(from)?, path(to)?);
        let fdir = call.sc.dirfd_for(from.idx).map(|i| call.args[i] as i32);
        let tdir = call.sc.dirfd_for(to.idx).map(|i| call.args[i] as i32);
        let mut res = self.resolver(call, tv);
        let fr = res.resolve(fdir, &fp, false).map_err(|e| e.errno())?;
        let tr = res
            .resolve(tdir, &tp, false)
            .map_err(|e| e.create_errno())?;
        let noreplace = flags & RENAME_NOREPLACE != 0;
        let (src, dst) = if flags & RENAME_EXCHANGE != 0 {
            if noreplace {
                return Err(libc::EINVAL);
            }
            ops::exchange(&self.view, &mut self.cache, &fr, &tr)?
        } else {
            ops::rename(&self.view, &mut self.cache, &fr, &tr, noreplace)?
        };
        self.note_change(fr.public.clone());
        self.note_change(tr.public.clone());
        let mut after = src.after.clone();
        after.extend(dst.after.iter().cloned());
        self.pending.insert(call.tid, Pending::After(after));
        Ok(Verdict {
            action: Action::Rewrite {
                paths: vec![
                    (from.idx, paths::bytes(&src.real)),
                    (to.idx, paths::bytes(&dst.real)),
                ],
                args: Vec::new(),
            },
            exit_stop: true,
        })
    }

    fn fd_metadata(
        &mut self,
        call: &Call,
        fd: i32,
        tv: &mut dyn TraceeView,
    ) -> Result<Verdict, i32> {
        let tracee = self.creds.of(call.tid).cloned();
        let creds = tracee.filter(|t| self.creds.differ(t)).map(|t| t.fs);
        match fdops::fd_metadata(&self.view, &mut self.cache, call, fd, tv, creds.as_ref())? {
            fdops::FdOp::Kernel => Ok(Verdict::CONTINUE),
            fdops::FdOp::Done(ret) => {
                self.listings_trapped = true;
                if let Some(g) = self.generation.as_mut() {
                    g.bump();
                }
                Ok(Verdict::emulate(ret))
            }
        }
    }

    fn expect_back(&mut self, call: &Call, b: back::Back) -> Verdict {
        self.pending.insert(call.tid, Pending::Back(b));
        Verdict::CONTINUE.with_exit_stop(true)
    }
}

enum PathOutcome {
    Rewrite(Plan),
    /// Hand the argument to the kernel as it is (AT_EMPTY_PATH).
    Keep,
    /// The call was carried out by the supervisor: this is its result.
    Done(i64),
}

impl Policy for Isolation {
    fn wants_paths(&self, _sc: &Syscall) -> bool {
        true
    }

    fn gate(&self, sc: &Syscall, args: &[u64; 6]) -> isotrace_tracer::gate::Gate {
        gate::of(sc, args)
    }

    fn listings_must_trap(&self) -> bool {
        self.listings_trapped
    }

    fn on_entry(&mut self, call: &Call, tv: &mut dyn TraceeView) -> Verdict {
        let mut dirs = std::mem::take(&mut self.proc_dirs);
        let mut via = procdirs::Via {
            inner: tv,
            dirs: &mut dirs,
            tid: call.tid,
        };
        let mut verdict = match self.decide(call, &mut via) {
            Ok(v) => v,
            Err(errno) => Verdict::deny(Errno::from_raw(errno)),
        };
        verdict.exit_stop |= self.trace.on_entry_with(call, &verdict, &mut via);
        self.proc_dirs = dirs;
        verdict
    }

    fn on_exit(
        &mut self,
        call: &Call,
        rewritten: &[(usize, Vec<u8>)],
        ret: i64,
        tv: &mut dyn TraceeView,
    ) -> ExitAction {
        let act = match self.pending.remove(&call.tid) {
            Some(Pending::After(after)) if ret >= 0 => {
                ops::finish(&self.view, &mut self.cache, &after);
                if let Some(g) = self
                    .generation
                    .as_mut()
                    .filter(|_| ops::changes_env(&after))
                {
                    g.bump();
                }
                ExitAction::NONE
            }
            Some(Pending::After(after)) => {
                ops::discard(&after);
                ExitAction::NONE
            }
            Some(Pending::Back(b)) => back::translate(&self.view, b, call, ret, tv),
            _ => ExitAction::NONE,
        };
        let shown = act.ret.unwrap_or(ret);
        self.trace.on_exit(call, rewritten, shown, tv);
        act
    }

    fn on_abandoned(&mut self, call: &Call, rewritten: &[(usize, Vec<u8>)]) {
        if let Some(Pending::After(after)) = self.pending.remove(&call.tid) {
            ops::discard(&after);
        }
        self.trace.on_abandoned(call, rewritten);
    }

    fn on_event(&mut self, event: &isotrace_tracer::Event) {
        match event {
            isotrace_tracer::Event::Exited { tid, pid, .. } => {
                if tid == pid {
                    self.dirs.forget(*pid);
                }
                self.pending.remove(tid);
                self.creds.forget(*tid);
                self.proc_dirs.forget(*tid);
            }
            // A set-user-ID program changes its credentials at exec.
            isotrace_tracer::Event::Exec { pid, former_tid } => {
                self.creds.forget(*pid);
                self.creds.forget(*former_tid);
                self.proc_dirs.forget(*pid);
                self.proc_dirs.forget(*former_tid);
            }
            isotrace_tracer::Event::Spawned { .. } => {}
        }
    }
}
