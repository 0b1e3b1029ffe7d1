//! Turning a tracee's path argument into a resolved object in its
//! environment's merged view: the base directory of a relative path, and
//! the tracee-dependent /proc magic links.

use super::procfs::{self, ProcPath, ProcView};
use isotrace_idb::{self as idb, Cache, RealFs, ResolveError, Resolved, View};
use isotrace_tracer::TraceeView;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// AT_FDCWD from <fcntl.h>.
pub const AT_FDCWD: i32 = -100;

/// How many magic links one resolution may substitute before ELOOP.
const MAX_MAGIC: usize = 8;

pub struct Resolver<'a> {
    pub view: &'a View,
    pub cache: &'a mut Cache,
    pub tv: &'a mut dyn TraceeView,
    pub pid: i32,
    pub tid: i32,
    /// The tracee's pid numbering, when it is not the supervisor's.
    pub procs: &'a mut ProcView,
}

impl Resolver<'_> {
    /// The public directory a relative path starts from: the cwd for
    /// AT_FDCWD, else the directory the fd refers to.
    pub fn base(&mut self, dirfd: Option<i32>) -> Result<PathBuf, i32> {
        let real = match dirfd {
            None | Some(AT_FDCWD) => self.tv.cwd(),
            Some(fd) if fd < 0 => return Err(libc::EBADF),
            Some(fd) => self.tv.fd_path(fd),
        }
        .ok_or(libc::EBADF)?;
        if !real.is_absolute() {
            // "pipe:[123]" and friends: not a directory.
            return Err(libc::ENOTDIR);
        }
        idb::public_of(self.view, &real).ok_or(libc::ENOENT)
    }

    /// Resolves `path` (relative to `dirfd`) in the merged view,
    /// substituting the tracee's own meaning for /proc magic links.
    pub fn resolve(
        &mut self,
        dirfd: Option<i32>,
        path: &[u8],
        follow: bool,
    ) -> Result<Resolved, ResolveError> {
        let io = |errno| ResolveError::Io {
            path: PathBuf::new(),
            errno,
        };
        // A /proc path is the kernel's to walk in the tracee's own procfs,
        // up to its first magic link (procfs.rs).
        let mut jump = match procfs::classify(path, follow) {
            ProcPath::Kernel => return Ok(opaque(PathBuf::from(OsStr::from_bytes(path)))),
            ProcPath::Magic { at, rest } => Some((at, rest)),
            ProcPath::Walk => None,
        };
        let mut base = if path.first() == Some(&b'/') {
            PathBuf::from("/")
        } else {
            self.base(dirfd).map_err(io)?
        };
        let mut path = path.to_vec();
        for _ in 0..MAX_MAGIC {
            let (at, rest) = match jump.take() {
                Some(link) => link,
                None => {
                    match idb::resolve_cached(self.view, &RealFs, self.cache, &base, &path, follow)
                    {
                        Err(ResolveError::MagicLink { at, rest }) => (at, rest),
                        other => return other,
                    }
                }
            };
            let target = match self.magic_target(&at) {
                // pipe:[N], socket:[N], anon_inode:...: the link names an
                // object, not a path; the kernel may follow it itself, it
                // leads nowhere else.
                Err(libc::ENOTDIR) if rest.as_os_str().is_empty() => {
                    return Ok(opaque(at));
                }
                t => t.map_err(io)?,
            };
            if rest.as_os_str().is_empty() {
                base = PathBuf::from("/");
                path = bytes(&target);
            } else {
                base = target;
                path = rest.into_os_string().into_vec();
            }
        }
        Err(ResolveError::Loop(base))
    }

    /// What a magic link means for this tracee, as a public path. `at` is
    /// `/proc/{self,thread-self,PID}[/task/TID]/{root,cwd,exe,fd/N,...}` or
    /// `/proc/self` itself.
    fn magic_target(&mut self, at: &Path) -> Result<PathBuf, i32> {
        let mut parts: Vec<&OsStr> = at.iter().skip(2).collect(); // "/", "proc"
        let who = match parts.first().map(|p| p.as_bytes()) {
            Some(b"self") => self.pid.to_string(),
            Some(b"thread-self") => format!("{}/task/{}", self.pid, self.tid),
            Some(other) => {
                let named = String::from_utf8_lossy(other);
                self.host(&named)?.to_string()
            }
            None => return Err(libc::ENOENT),
        };
        parts.remove(0);
        if parts.len() >= 2 && parts[0] == "task" {
            // /proc/X/task/TID/...: TID is numbered in the tracee's namespace.
            let tid = self.host(&parts[1].to_string_lossy())?;
            let who_tid = format!("{who}/task/{tid}");
            parts.drain(..2);
            return self.link_of(&who_tid, parts);
        }
        self.link_of(&who, parts)
    }

    /// The host pid of the pid the tracee named `named` in its /proc.
    fn host(&mut self, named: &str) -> Result<i32, i32> {
        self.procs.host_pid(self.pid, named).ok_or(libc::ENOENT)
    }

    /// What link `parts` under the supervisor's `/proc/{who}` means for the
    /// tracee, as a public path.
    fn link_of(&mut self, who: &str, parts: Vec<&OsStr>) -> Result<PathBuf, i32> {
        if parts.is_empty() {
            // /proc/self itself: the directory of the tracee's process.
            return Ok(PathBuf::from(format!("/proc/{who}")));
        }
        let link: PathBuf = parts.iter().collect();
        if link == Path::new("root") || link.ends_with("root") {
            // No tracee is chrooted (chroot is refused): its root is the
            // view's root.
            return Ok(PathBuf::from("/"));
        }
        let real = std::fs::read_link(format!("/proc/{who}/{}", link.display()))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        if !real.is_absolute() {
            // pipe:[N], socket:[N], anon_inode:...: no path to walk into.
            return Err(libc::ENOTDIR);
        }
        idb::public_of(self.view, &real).ok_or(libc::ENOENT)
    }
}

/// A magic link to a pathless object, handed to the kernel as it is.
fn opaque(at: PathBuf) -> Resolved {
    Resolved {
        public: at.clone(),
        loc: Some(idb::Loc::Exception),
        kind: None,
        real: at,
        must_be_dir: false,
        merged: false,
        parent_in_upper: false,
        no_whiteout: false,
    }
}

/// The bytes of a path, as the kernel takes them.
pub fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

trait IntoVec {
    fn into_vec(self) -> Vec<u8>;
}

impl IntoVec for std::ffi::OsString {
    fn into_vec(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}
