//! The shape of one syscall table entry. Architecture independent.

/// What one syscall argument is, as far as decoding, printing and path
/// rewriting are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    /// Signed integer printed in decimal.
    Int,
    /// Unsigned integer printed in decimal (sizes, counts, lengths).
    UInt,
    /// A value best shown in hex (masks, cookies, opaque words).
    Hex,
    /// A file descriptor.
    Fd,
    /// A directory fd that a sibling `Path` is relative to (`AT_FDCWD` = -100).
    DirFd,
    /// A NUL-terminated path name the kernel resolves. These are the
    /// arguments isolation rewrites.
    Path,
    /// A NUL-terminated string that is *not* resolved as a path by this
    /// call (symlink's target, xattr names, a module's params).
    Str,
    /// An address in tracee memory, not dereferenced by the printer.
    Ptr,
    /// `open(2)` flags (O_RDONLY|O_CREAT|...).
    OpenFlags,
    /// A file mode (printed in octal).
    Mode,
    /// `AT_*` flags (AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH, AT_REMOVEDIR...).
    AtFlags,
    /// A signal number.
    Signal,
    /// A pid, tid or pgid.
    Pid,
    /// `mmap`/`mprotect` PROT_* bits.
    Prot,
    /// `mmap` MAP_* flags.
    MapFlags,
    /// `clone(2)` flags.
    CloneFlags,
    /// A `struct sockaddr *` (a unix socket path lives inside it).
    SockAddr,
    /// A `struct open_how *` (openat2).
    OpenHow,
    /// `char *const argv[]` or `envp[]`.
    StrArray,
}

/// When the seccomp filter hands a syscall to the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// Never trapped: runs at native speed. Only for calls that take no path
    /// and cannot be used to escape or to attack the supervisor.
    Allow,
    /// Always trapped (SECCOMP_RET_TRACE).
    Trace,
    /// Trapped only when argument `n`, an address, is below the end of the
    /// supervisor's scratch region (the rewritten-path pages, see the tracer's
    /// `scratch` module). Memory-management calls use this so that a tracee
    /// thread can neither unmap, remap nor re-protect the pages that hold a
    /// rewritten path, while ordinary mmap/munmap stay untrapped.
    TraceIfAddrBelowScratch(u8),
    /// Refused by the filter itself with this errno; the supervisor never sees it.
    Deny(i32),
    /// Trapped only when paths are isolated (credential changes, setns).
    /// Without isolation they run untrapped.
    TraceWhenIsolated,
    /// Trapped only when paths are isolated and the host is writable for the
    /// tracee: fd-based calls that could change a host object through an fd
    /// opened read-only (fchmod, fchown, fsetxattr, fremovexattr). Under
    /// [`Mode::ReadOnlyHost`] every host mount is read-only in the tracee's
    /// mount namespace and the kernel itself answers EROFS
    /// (mnt_want_write_file), so they run untrapped.
    TraceWhenHostWritable,
    /// Trapped when argument `n` (a path pointer) is non-NULL; also trapped
    /// with a NULL path under [`Mode::Isolated`]. utimensat(fd, NULL, ...) is
    /// futimens: without isolation, or with a read-only host, it names no
    /// path and needs no stop.
    TraceIfNonNullOrHostWritable(u8),
    /// Under isolation, trapped when argument `n` (an address) is non-NULL;
    /// never trapped without isolation. sendto(2) with a destination address
    /// may name a unix socket path; glibc's send(2) is sendto with NULL,
    /// which stays at native speed.
    TraceIfNonNullWhenIsolated(u8),
}

/// What the seccomp filter is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--no-isolation`: only what guards the supervisor is trapped.
    Native,
    /// Paths are isolated, and the host's mounts are as writable for the
    /// tracee as for the supervisor: every call that could change a host
    /// object is trapped, fd-based ones included.
    Isolated,
    /// Paths are isolated, and the tracee runs in a mount namespace of its
    /// own where every host mount is read-only except the environment's
    /// store and the public exceptions: fd-based metadata calls need no
    /// stop (`TraceWhenHostWritable`).
    ReadOnlyHost,
}

/// Whether the call, when trapped, also needs a stop at syscall exit
/// (for translating a result back, like getcwd or readlink of
/// /proc/self/exe). Without isolation none does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStop {
    Never,
    /// Only when isolation is on (the result names a path that may be private).
    WhenIsolated,
}

/// How completely isotrace supports the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Works under isolation exactly as natively.
    Full,
    /// Works, with a limitation described in `note`.
    Partial,
    /// Refused on purpose (a known bypass or unsafe under isolation).
    Refused,
    /// Not trapped and not path related: runs natively.
    Native,
}

/// One row of the syscall table.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    pub nr: u32,
    pub name: &'static str,
    /// Kinds of the arguments actually used, in order (at most 6).
    pub args: &'static [Arg],
    pub trap: Trap,
    pub exit: ExitStop,
    pub support: Support,
    /// One line on a limitation or why the call is refused; empty otherwise.
    pub note: &'static str,
}

impl Syscall {
    /// Indexes of the arguments that are paths the kernel resolves.
    pub fn path_args(&self) -> impl Iterator<Item = usize> + '_ {
        self.args
            .iter()
            .enumerate()
            .filter(|(_, a)| **a == Arg::Path)
            .map(|(i, _)| i)
    }

    /// The dirfd argument a path at `path_idx` is relative to, if any: the
    /// nearest `DirFd` argument before it.
    pub fn dirfd_for(&self, path_idx: usize) -> Option<usize> {
        self.args[..path_idx].iter().rposition(|a| *a == Arg::DirFd)
    }

    /// The trap class in force under `mode`: `Trace`, `Allow`, `Deny`,
    /// `TraceIfAddrBelowScratch` or one of the two NULL checks
    /// (`TraceIfNonNullOrHostWritable`, `TraceIfNonNullWhenIsolated`), which
    /// then mean "trapped iff the argument is non-NULL". A call trapped only
    /// so that its result can be translated back (no path argument, exit
    /// stop `WhenIsolated`, like getdents64 and getcwd) runs untrapped when
    /// nothing is isolated.
    pub fn effective_trap(&self, mode: Mode) -> Trap {
        let isolated = mode != Mode::Native;
        match self.trap {
            Trap::TraceWhenIsolated if isolated => Trap::Trace,
            Trap::TraceWhenIsolated => Trap::Allow,
            Trap::TraceWhenHostWritable if mode == Mode::Isolated => Trap::Trace,
            Trap::TraceWhenHostWritable => Trap::Allow,
            Trap::TraceIfNonNullOrHostWritable(_) if mode == Mode::Isolated => Trap::Trace,
            Trap::TraceIfNonNullWhenIsolated(_) if !isolated => Trap::Allow,
            _ if !isolated && self.exit == ExitStop::WhenIsolated && !self.takes_path() => {
                Trap::Allow
            }
            t => t,
        }
    }

    pub fn takes_path(&self) -> bool {
        self.args.contains(&Arg::Path)
    }
}

/// Register access for one architecture's `user_regs_struct`, as seen at a
/// syscall-entry (seccomp) stop or a syscall-exit stop.
pub trait RegAccess {
    /// The syscall number as the kernel will dispatch it (orig_rax on x86_64).
    fn syscall_nr(&self) -> u64;
    fn set_syscall_nr(&mut self, nr: u64);
    /// Argument `i` (0..6) of the syscall.
    fn arg(&self, i: usize) -> u64;
    fn set_arg(&mut self, i: usize, v: u64);
    /// The return value register (valid at syscall exit).
    fn ret(&self) -> i64;
    fn set_ret(&mut self, v: i64);
    fn ip(&self) -> u64;
    fn set_ip(&mut self, v: u64);
    fn sp(&self) -> u64;
}
