//! The strace-style printer behind `--trace`, derived from the syscall table.
//!
//! Each argument is decoded by its [`Arg`] kind; nothing here is specific to
//! one syscall beyond the few conventions strace has too (mode shown only
//! with O_CREAT/O_TMPFILE, AT_EACCESS vs AT_REMOVEDIR, address-returning
//! calls). Errno names and texts come from a static table rather than
//! strerror(3), so the output does not depend on the C library or locale.
//! Nothing here panics, whatever the argument values or tracee memory hold.

use isotrace_arch::{Arg, Syscall};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// Read access to the tracee's memory for the printer.
pub trait StrReader {
    /// Up to `max` bytes at `addr`, stopping before the first NUL (which is
    /// not included). `None` if the memory cannot be read.
    fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>>;
    /// Up to `len` bytes at `addr` (fewer where readable memory ends).
    /// `None` if nothing can be read.
    fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>>;
}

/// Longest `Str` shown before "..." (strace's default -s is 32; paths and
/// names are more useful whole).
const STR_MAX: usize = 256;
/// Longest `Path` shown: PATH_MAX.
const PATH_MAX: usize = 4096;
/// Most `StrArray` entries shown.
const ARRAY_MAX: usize = 32;
/// sizeof(struct sockaddr_storage).
const SOCKADDR_MAX: usize = 128;
/// Open flags after which a mode argument means something (open(2)).
const O_CREAT: u64 = 0o100;
const O_TMPFILE_BIT: u64 = 0o20000000;

/// "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC)".
///
/// `args` are the values the guest passed. `rewritten` holds (argument
/// index, private path) for the arguments the tracer redirected; they are
/// shown as `"/public" => "/private"`.
pub fn format_call(
    sc: &Syscall,
    args: &[u64; 6],
    rewritten: &[(usize, Vec<u8>)],
    mem: &mut dyn StrReader,
) -> String {
    let mut shown = Vec::with_capacity(sc.args.len());
    for (i, kind) in sc.args.iter().enumerate().take(args.len()) {
        if *kind == Arg::Mode && i > 0 && sc.args.get(i - 1) == Some(&Arg::OpenFlags) {
            let flags = args.get(i - 1).copied().unwrap_or(0);
            if flags & (O_CREAT | O_TMPFILE_BIT) == 0 {
                continue;
            }
        }
        let private = rewritten
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, p)| p.as_slice());
        shown.push(format_arg(sc, i, *kind, args, private, mem));
    }
    format!("{}({})", sc.name, shown.join(", "))
}

/// "3", "0x7f12…", or "-1 ENOENT (No such file or directory)". A syscall
/// that did not return (execve seen at its exec event, exit) is printed by
/// the caller as "?".
pub fn format_ret(sc: &Syscall, ret: i64) -> String {
    if (-4095..=-1).contains(&ret) {
        let e = (-ret) as i32;
        let text = errno_text(e);
        // The kernel restarts these (or returns EINTR): the final result is
        // not known yet, so strace shows "?" too.
        let lead = if (512..=516).contains(&e) { "?" } else { "-1" };
        return match text {
            Some(t) => format!("{lead} {} ({t})", errno_name(e)),
            None => format!("{lead} {} (errno {e})", errno_name(e)),
        };
    }
    match sc.name {
        "mmap" | "mremap" | "brk" | "shmat" => format!("{:#x}", ret as u64),
        "umask" => octal(ret as u64 & 0o7777),
        _ => ret.to_string(),
    }
}

/// The symbolic name of errno `e` ("ENOENT"), or "E???" if Linux defines
/// no such number.
pub fn errno_name(e: i32) -> &'static str {
    errno_entry(e).map_or("E???", |x| x.1)
}

fn errno_text(e: i32) -> Option<&'static str> {
    errno_entry(e).map(|x| x.2)
}

fn errno_entry(e: i32) -> Option<&'static (i32, &'static str, &'static str)> {
    ERRNOS
        .binary_search_by_key(&e, |x| x.0)
        .ok()
        .and_then(|i| ERRNOS.get(i))
}

fn format_arg(
    sc: &Syscall,
    i: usize,
    kind: Arg,
    args: &[u64; 6],
    private: Option<&[u8]>,
    mem: &mut dyn StrReader,
) -> String {
    let v = args.get(i).copied().unwrap_or(0);
    match kind {
        Arg::Int => (v as i64).to_string(),
        Arg::UInt => v.to_string(),
        Arg::Hex => hex(v),
        Arg::Fd | Arg::Pid => (v as i32).to_string(),
        Arg::DirFd if v as i32 == libc::AT_FDCWD => "AT_FDCWD".to_string(),
        Arg::DirFd => (v as i32).to_string(),
        Arg::Path => path(v, private, mem),
        Arg::Str => string(v, STR_MAX, mem),
        Arg::Ptr => ptr(v),
        Arg::OpenFlags => open_flags(v),
        Arg::Mode => mode(v),
        Arg::AtFlags => at_flags(sc.name, v),
        Arg::Signal => signal(v),
        Arg::Prot => prot(v),
        Arg::MapFlags => map_flags(v),
        Arg::CloneFlags => clone_flags(v),
        Arg::SockAddr => {
            // The length is the next argument where the call has one.
            let len = match sc.args.get(i + 1) {
                Some(Arg::UInt) => args.get(i + 1).map_or(SOCKADDR_MAX as u64, |l| *l),
                _ => SOCKADDR_MAX as u64,
            };
            let len = usize::try_from(len).map_or(SOCKADDR_MAX, |l| l.min(SOCKADDR_MAX));
            sockaddr(v, len, private, mem)
        }
        Arg::OpenHow => open_how(v, mem),
        Arg::StrArray => str_array(v, mem),
    }
}

fn hex(v: u64) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

fn ptr(v: u64) -> String {
    if v == 0 {
        "NULL".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// C-style `%#03o`: "0644", "022", "000".
fn octal(v: u64) -> String {
    let s = if v == 0 {
        "0".to_string()
    } else {
        format!("0{v:o}")
    };
    format!("{s:0>3}")
}

/// A C string literal for `bytes`, cut at `limit` with "..." after it.
fn quote(bytes: &[u8], limit: usize) -> String {
    let shown = bytes.get(..limit).unwrap_or(bytes);
    let mut out = String::with_capacity(shown.len() + 2);
    out.push('"');
    for &b in shown {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    if bytes.len() > limit {
        out.push_str("...");
    }
    out
}

/// A NUL-terminated string in tracee memory; its address if unreadable.
fn string(addr: u64, limit: usize, mem: &mut dyn StrReader) -> String {
    if addr == 0 {
        return "NULL".to_string();
    }
    match mem.read_cstr(addr, limit.saturating_add(1)) {
        Some(b) => quote(&b, limit),
        None => ptr(addr),
    }
}

fn path(addr: u64, private: Option<&[u8]>, mem: &mut dyn StrReader) -> String {
    let public = string(addr, PATH_MAX, mem);
    match private {
        Some(p) => format!("{public} => {}", quote(p, PATH_MAX)),
        None => public,
    }
}

/// Names the bits of `v` found in `table` (entries may span several bits;
/// put wider masks first), then any bits left over in hex.
fn flags(mut v: u64, table: &[(u64, &str)], mut names: Vec<String>) -> String {
    for &(mask, name) in table {
        if mask != 0 && v & mask == mask {
            names.push(name.to_string());
            v &= !mask;
        }
    }
    if v != 0 {
        names.push(format!("{v:#x}"));
    }
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

/// <asm-generic/fcntl.h> values, which x86_64 uses. O_LARGEFILE is 0 in
/// the 64-bit C library but the kernel's own bit may still show up.
const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

fn open_flags(v: u64) -> String {
    // open flags are an int: the upper half of the register is ignored.
    let v = v & 0xffff_ffff;
    let acc = match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    flags(v & !3, OPEN_FLAGS, vec![acc.to_string()])
}

const FILE_TYPES: &[(u64, &str)] = &[
    (0o140000, "S_IFSOCK"),
    (0o120000, "S_IFLNK"),
    (0o100000, "S_IFREG"),
    (0o060000, "S_IFBLK"),
    (0o040000, "S_IFDIR"),
    (0o020000, "S_IFCHR"),
    (0o010000, "S_IFIFO"),
];

fn mode(v: u64) -> String {
    let perm = octal(v & 0o7777);
    let ty = v & 0o170000;
    let rest = v & !0o177777;
    let mut out = match FILE_TYPES.iter().find(|(m, _)| *m == ty) {
        Some((_, name)) => format!("{name}|{perm}"),
        None => perm,
    };
    if rest != 0 {
        out.push_str(&format!("|{rest:#x}"));
    }
    out
}

fn at_flags(name: &str, v: u64) -> String {
    // 0x200 is AT_EACCESS for faccessat and AT_REMOVEDIR elsewhere
    // (<linux/fcntl.h>).
    let x200 = if name.starts_with("faccessat") {
        "AT_EACCESS"
    } else {
        "AT_REMOVEDIR"
    };
    let table = [
        (0x100, "AT_SYMLINK_NOFOLLOW"),
        (0x200, x200),
        (0x400, "AT_SYMLINK_FOLLOW"),
        (0x800, "AT_NO_AUTOMOUNT"),
        (0x1000, "AT_EMPTY_PATH"),
        (0x2000, "AT_STATX_FORCE_SYNC"),
        (0x4000, "AT_STATX_DONT_SYNC"),
        (0x8000, "AT_RECURSIVE"),
    ];
    flags(v & 0xffff_ffff, &table, Vec::new())
}

#[rustfmt::skip]
const SIGNALS: [&str; 31] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
    "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
];

fn signal(v: u64) -> String {
    let s = v as i32;
    match s {
        1..=31 => SIGNALS
            .get(s as usize - 1)
            .map_or_else(|| s.to_string(), |n| n.to_string()),
        32 => "SIGRTMIN".to_string(),
        33..=64 => format!("SIGRT_{}", s - 32),
        _ => s.to_string(),
    }
}

fn prot(v: u64) -> String {
    if v == 0 {
        return "PROT_NONE".to_string();
    }
    let table = [
        (0x1, "PROT_READ"),
        (0x2, "PROT_WRITE"),
        (0x4, "PROT_EXEC"),
        (0x8, "PROT_SEM"),
        (0x0100_0000, "PROT_GROWSDOWN"),
        (0x0200_0000, "PROT_GROWSUP"),
    ];
    flags(v, &table, Vec::new())
}

const MAP_FLAGS: &[(u64, &str)] = &[
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    (0x4000000, "MAP_UNINITIALIZED"),
];
const MAP_HUGETLB: u64 = 0x40000;
const MAP_HUGE_SHIFT: u32 = 26;
const MAP_HUGE_MASK: u64 = 0x3f;

fn map_flags(v: u64) -> String {
    let mut names = Vec::new();
    match v & 0xf {
        0 => {}
        1 => names.push("MAP_SHARED".to_string()),
        2 => names.push("MAP_PRIVATE".to_string()),
        3 => names.push("MAP_SHARED_VALIDATE".to_string()),
        t => names.push(format!("{t:#x}")),
    }
    let mut rest = v & !0xf;
    // With MAP_HUGETLB, bits 26..32 give log2 of the page size
    // (<asm-generic/hugetlb_encode.h>).
    let shift = (rest >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if rest & MAP_HUGETLB != 0 && shift != 0 {
        rest &= !(MAP_HUGE_MASK << MAP_HUGE_SHIFT);
        let (n, unit) = match shift {
            30.. => (shift - 30, "GB"),
            20..=29 => (shift - 20, "MB"),
            _ => (shift.saturating_sub(10), "KB"),
        };
        names.push(format!("MAP_HUGE_{}{unit}", 1u64 << n.min(63)));
    }
    flags(rest, MAP_FLAGS, names)
}

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];

fn clone_flags(v: u64) -> String {
    // The low byte is the exit signal (CSIGNAL), named last like strace.
    let sig = v & 0xff;
    let mut s = flags(v & !0xff, CLONE_FLAGS, Vec::new());
    if sig != 0 {
        s = if s == "0" {
            signal(sig)
        } else {
            format!("{s}|{}", signal(sig))
        };
    }
    s
}

fn sockaddr(addr: u64, len: usize, private: Option<&[u8]>, mem: &mut dyn StrReader) -> String {
    if addr == 0 {
        return "NULL".to_string();
    }
    let Some(b) = mem.read_bytes(addr, len) else {
        return ptr(addr);
    };
    let (Some(&f0), Some(&f1)) = (b.first(), b.get(1)) else {
        return ptr(addr);
    };
    let family = u16::from_le_bytes([f0, f1]);
    let body = b.get(2..).unwrap_or_default();
    let detail = match family as i32 {
        libc::AF_UNIX => unix_path(body, private),
        libc::AF_INET => inet(body),
        libc::AF_INET6 => inet6(body),
        _ => None,
    };
    let name = match family as i32 {
        libc::AF_UNSPEC => "AF_UNSPEC".to_string(),
        libc::AF_UNIX => "AF_UNIX".to_string(),
        libc::AF_INET => "AF_INET".to_string(),
        libc::AF_INET6 => "AF_INET6".to_string(),
        libc::AF_NETLINK => "AF_NETLINK".to_string(),
        libc::AF_PACKET => "AF_PACKET".to_string(),
        _ => family.to_string(),
    };
    match detail {
        Some(d) => format!("{{sa_family={name}, {d}}}"),
        None => format!("{{sa_family={name}}}"),
    }
}

/// sun_path: a path up to its NUL, "@name" for the abstract namespace
/// (leading NUL, length-delimited), nothing for an unnamed socket.
fn unix_path(body: &[u8], private: Option<&[u8]>) -> Option<String> {
    let shown = match body.split_first() {
        None => return None,
        Some((0, abs)) => format!("@{}", quote(abs, PATH_MAX)),
        Some(_) => {
            let end = body.iter().position(|c| *c == 0).unwrap_or(body.len());
            quote(body.get(..end).unwrap_or(body), PATH_MAX)
        }
    };
    Some(match private {
        Some(p) => format!("sun_path={shown} => {}", quote(p, PATH_MAX)),
        None => format!("sun_path={shown}"),
    })
}

/// struct sockaddr_in after the family: port, address.
fn inet(body: &[u8]) -> Option<String> {
    let port = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let ip: [u8; 4] = body.get(2..6)?.try_into().ok()?;
    Some(format!(
        "addr={}",
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    ))
}

/// struct sockaddr_in6 after the family: port, flowinfo, addr, scope id.
fn inet6(body: &[u8]) -> Option<String> {
    let port = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let ip: [u8; 16] = body.get(6..22)?.try_into().ok()?;
    let scope = body
        .get(22..26)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes);
    let sa = SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope);
    Some(format!("addr={sa}"))
}

fn open_how(addr: u64, mem: &mut dyn StrReader) -> String {
    if addr == 0 {
        return "NULL".to_string();
    }
    let b = mem.read_bytes(addr, 24).unwrap_or_default();
    let word = |i: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(i * 8..i * 8 + 8)?.try_into().ok()?;
        Some(u64::from_ne_bytes(s))
    };
    let (Some(fl), Some(md), Some(rs)) = (word(0), word(1), word(2)) else {
        return ptr(addr);
    };
    let resolve = [
        (0x01, "RESOLVE_NO_XDEV"),
        (0x02, "RESOLVE_NO_MAGICLINKS"),
        (0x04, "RESOLVE_NO_SYMLINKS"),
        (0x08, "RESOLVE_BENEATH"),
        (0x10, "RESOLVE_IN_ROOT"),
        (0x20, "RESOLVE_CACHED"),
    ];
    format!(
        "{{flags={}, mode={}, resolve={}}}",
        open_flags(fl),
        mode(md),
        flags(rs, &resolve, Vec::new())
    )
}

fn str_array(addr: u64, mem: &mut dyn StrReader) -> String {
    if addr == 0 {
        return "NULL".to_string();
    }
    let mut items = Vec::new();
    let mut complete = false;
    for i in 0..=ARRAY_MAX as u64 {
        let slot = i.checked_mul(8).and_then(|o| addr.checked_add(o));
        let Some(p) = slot.and_then(|a| mem.read_bytes(a, 8)) else {
            if i == 0 {
                return ptr(addr);
            }
            break;
        };
        let Some(p) = p.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
            break;
        };
        let p = u64::from_ne_bytes(p);
        if p == 0 {
            complete = true;
            break;
        }
        if items.len() == ARRAY_MAX {
            break;
        }
        items.push(string(p, STR_MAX, mem));
    }
    if !complete {
        items.push("...".to_string());
    }
    format!("[{}]", items.join(", "))
}

/// (number, name, text) from <asm-generic/errno-base.h>, <asm-generic/errno.h>
/// and the kernel-internal restart codes of <linux/errno.h>, which a tracer
/// sees at syscall-exit stops. Texts are glibc's strerror(3) (strace's for
/// 512..=516). Sorted by number.
#[rustfmt::skip]
static ERRNOS: &[(i32, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"),
    (9, "EBADF", "Bad file descriptor"),
    (10, "ECHILD", "No child processes"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (15, "ENOTBLK", "Block device required"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (18, "EXDEV", "Invalid cross-device link"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (26, "ETXTBSY", "Text file busy"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"),
    (31, "EMLINK", "Too many links"),
    (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (36, "ENAMETOOLONG", "File name too long"),
    (37, "ENOLCK", "No locks available"),
    (38, "ENOSYS", "Function not implemented"),
    (39, "ENOTEMPTY", "Directory not empty"),
    (40, "ELOOP", "Too many levels of symbolic links"),
    (42, "ENOMSG", "No message of desired type"),
    (43, "EIDRM", "Identifier removed"),
    (44, "ECHRNG", "Channel number out of range"),
    (45, "EL2NSYNC", "Level 2 not synchronized"),
    (46, "EL3HLT", "Level 3 halted"),
    (47, "EL3RST", "Level 3 reset"),
    (48, "ELNRNG", "Link number out of range"),
    (49, "EUNATCH", "Protocol driver not attached"),
    (50, "ENOCSI", "No CSI structure available"),
    (51, "EL2HLT", "Level 2 halted"),
    (52, "EBADE", "Invalid exchange"),
    (53, "EBADR", "Invalid request descriptor"),
    (54, "EXFULL", "Exchange full"),
    (55, "ENOANO", "No anode"),
    (56, "EBADRQC", "Invalid request code"),
    (57, "EBADSLT", "Invalid slot"),
    (59, "EBFONT", "Bad font file format"),
    (60, "ENOSTR", "Device not a stream"),
    (61, "ENODATA", "No data available"),
    (62, "ETIME", "Timer expired"),
    (63, "ENOSR", "Out of streams resources"),
    (64, "ENONET", "Machine is not on the network"),
    (65, "ENOPKG", "Package not installed"),
    (66, "EREMOTE", "Object is remote"),
    (67, "ENOLINK", "Link has been severed"),
    (68, "EADV", "Advertise error"),
    (69, "ESRMNT", "Srmount error"),
    (70, "ECOMM", "Communication error on send"),
    (71, "EPROTO", "Protocol error"),
    (72, "EMULTIHOP", "Multihop attempted"),
    (73, "EDOTDOT", "RFS specific error"),
    (74, "EBADMSG", "Bad message"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (76, "ENOTUNIQ", "Name not unique on network"),
    (77, "EBADFD", "File descriptor in bad state"),
    (78, "EREMCHG", "Remote address changed"),
    (79, "ELIBACC", "Can not access a needed shared library"),
    (80, "ELIBBAD", "Accessing a corrupted shared library"),
    (81, "ELIBSCN", ".lib section in a.out corrupted"),
    (82, "ELIBMAX", "Attempting to link in too many shared libraries"),
    (83, "ELIBEXEC", "Cannot exec a shared library directly"),
    (84, "EILSEQ", "Invalid or incomplete multibyte or wide character"),
    (85, "ERESTART", "Interrupted system call should be restarted"),
    (86, "ESTRPIPE", "Streams pipe error"),
    (87, "EUSERS", "Too many users"),
    (88, "ENOTSOCK", "Socket operation on non-socket"),
    (89, "EDESTADDRREQ", "Destination address required"),
    (90, "EMSGSIZE", "Message too long"),
    (91, "EPROTOTYPE", "Protocol wrong type for socket"),
    (92, "ENOPROTOOPT", "Protocol not available"),
    (93, "EPROTONOSUPPORT", "Protocol not supported"),
    (94, "ESOCKTNOSUPPORT", "Socket type not supported"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (96, "EPFNOSUPPORT", "Protocol family not supported"),
    (97, "EAFNOSUPPORT", "Address family not supported by protocol"),
    (98, "EADDRINUSE", "Address already in use"),
    (99, "EADDRNOTAVAIL", "Cannot assign requested address"),
    (100, "ENETDOWN", "Network is down"),
    (101, "ENETUNREACH", "Network is unreachable"),
    (102, "ENETRESET", "Network dropped connection on reset"),
    (103, "ECONNABORTED", "Software caused connection abort"),
    (104, "ECONNRESET", "Connection reset by peer"),
    (105, "ENOBUFS", "No buffer space available"),
    (106, "EISCONN", "Transport endpoint is already connected"),
    (107, "ENOTCONN", "Transport endpoint is not connected"),
    (108, "ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
    (109, "ETOOMANYREFS", "Too many references: cannot splice"),
    (110, "ETIMEDOUT", "Connection timed out"),
    (111, "ECONNREFUSED", "Connection refused"),
    (112, "EHOSTDOWN", "Host is down"),
    (113, "EHOSTUNREACH", "No route to host"),
    (114, "EALREADY", "Operation already in progress"),
    (115, "EINPROGRESS", "Operation now in progress"),
    (116, "ESTALE", "Stale file handle"),
    (117, "EUCLEAN", "Structure needs cleaning"),
    (118, "ENOTNAM", "Not a XENIX named type file"),
    (119, "ENAVAIL", "No XENIX semaphores available"),
    (120, "EISNAM", "Is a named type file"),
    (121, "EREMOTEIO", "Remote I/O error"),
    (122, "EDQUOT", "Disk quota exceeded"),
    (123, "ENOMEDIUM", "No medium found"),
    (124, "EMEDIUMTYPE", "Wrong medium type"),
    (125, "ECANCELED", "Operation canceled"),
    (126, "ENOKEY", "Required key not available"),
    (127, "EKEYEXPIRED", "Key has expired"),
    (128, "EKEYREVOKED", "Key has been revoked"),
    (129, "EKEYREJECTED", "Key was rejected by service"),
    (130, "EOWNERDEAD", "Owner died"),
    (131, "ENOTRECOVERABLE", "State not recoverable"),
    (132, "ERFKILL", "Operation not possible due to RF-kill"),
    (133, "EHWPOISON", "Memory page has hardware error"),
    (512, "ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    (513, "ERESTARTNOINTR", "To be restarted"),
    (514, "ERESTARTNOHAND", "To be restarted if no handler"),
    (515, "ENOIOCTLCMD", "No ioctl command"),
    (516, "ERESTART_RESTARTBLOCK", "Interrupted by signal"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use isotrace_arch::by_name;
    use std::collections::BTreeMap;

    /// Tracee memory as a few disjoint byte runs keyed by start address.
    #[derive(Default)]
    struct Mem(BTreeMap<u64, Vec<u8>>);

    impl Mem {
        fn put(&mut self, addr: u64, bytes: &[u8]) -> u64 {
            self.0.insert(addr, bytes.to_vec());
            addr
        }
        fn put_ptrs(&mut self, addr: u64, ptrs: &[u64]) -> u64 {
            let bytes: Vec<u8> = ptrs.iter().flat_map(|p| p.to_ne_bytes()).collect();
            self.put(addr, &bytes)
        }
        fn at(&self, addr: u64) -> Option<&[u8]> {
            let (start, run) = self.0.range(..=addr).next_back()?;
            run.get(usize::try_from(addr - start).ok()?..)
                .filter(|r| !r.is_empty())
        }
    }

    impl StrReader for Mem {
        fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>> {
            let run = self.at(addr)?;
            let end = run.iter().position(|c| *c == 0).unwrap_or(run.len());
            Some(run[..end.min(max)].to_vec())
        }
        fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
            let run = self.at(addr)?;
            Some(run[..len.min(run.len())].to_vec())
        }
    }

    fn call(name: &str, args: [u64; 6], mem: &mut Mem) -> String {
        format_call(by_name(name).expect(name), &args, &[], mem)
    }

    const AT_FDCWD: u64 = -100i64 as u64;

    #[test]
    fn openat_like_strace() {
        let mut m = Mem::default();
        let p = m.put(0x1000, b"/etc/passwd\0");
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
        assert_eq!(
            call("openat", [AT_FDCWD, p, flags, 0o777, 0, 0], &mut m),
            r#"openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC)"#
        );
        let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64;
        assert_eq!(
            call("openat", [3, p, flags, 0o644, 0, 0], &mut m),
            r#"openat(3, "/etc/passwd", O_WRONLY|O_CREAT|O_TRUNC, 0644)"#
        );
        let flags = (libc::O_RDWR | libc::O_TMPFILE | libc::O_SYNC) as u64 | 0o100000;
        assert_eq!(
            call("open", [p, flags, 0o600, 0, 0, 0], &mut m),
            r#"open("/etc/passwd", O_RDWR|O_SYNC|O_LARGEFILE|O_TMPFILE, 0600)"#
        );
    }

    #[test]
    fn rewritten_paths_show_both_sides() {
        let mut m = Mem::default();
        let a = m.put(0x1000, b"/data/a\0");
        let b = m.put(0x2000, b"b\0");
        let sc = by_name("renameat2").expect("renameat2");
        let rw = [(1, b"/priv/data/a".to_vec()), (3, b"/priv/cwd/b".to_vec())];
        assert_eq!(
            format_call(sc, &[AT_FDCWD, a, 5, b, 1, 0], &rw, &mut m),
            r#"renameat2(AT_FDCWD, "/data/a" => "/priv/data/a", 5, "b" => "/priv/cwd/b", 0x1)"#
        );
    }

    #[test]
    fn memory_and_process_flags() {
        let mut m = Mem::default();
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        assert_eq!(
            call("mmap", [0, 4096, rw, flags, u64::MAX, 0], &mut m),
            "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
        );
        let huge = (libc::MAP_SHARED | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB) as u64;
        assert_eq!(map_flags(huge), "MAP_SHARED|MAP_HUGE_2MB|MAP_HUGETLB");
        assert_eq!(prot(0), "PROT_NONE");
        assert_eq!(prot(0x10), "0x10");
        let thread = 0x3d0f00;
        assert_eq!(
            clone_flags(thread),
            "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|\
             CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"
        );
        assert_eq!(
            clone_flags(0x1200011),
            "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"
        );
        assert_eq!(clone_flags(0), "0");
        assert_eq!(
            call("kill", [42, 15, 0, 0, 0, 0], &mut m),
            "kill(42, SIGTERM)"
        );
        assert_eq!(signal(34), "SIGRT_2");
        assert_eq!(signal(99), "99");
    }

    #[test]
    fn at_flags_and_modes() {
        let mut m = Mem::default();
        let p = m.put(0x1000, b"\0");
        assert_eq!(
            call("newfstatat", [7, p, 0x5000, 0x1100, 0, 0], &mut m),
            r#"newfstatat(7, "", 0x5000, AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH)"#
        );
        assert_eq!(at_flags("unlinkat", 0x200), "AT_REMOVEDIR");
        assert_eq!(at_flags("faccessat2", 0x200), "AT_EACCESS");
        assert_eq!(at_flags("statx", 0), "0");
        assert_eq!(at_flags("statx", 0x10_0000), "0x100000");
        assert_eq!(mode(0o644), "0644");
        assert_eq!(mode(0), "000");
        assert_eq!(mode(0o22), "022");
        assert_eq!(mode(0o20620), "S_IFCHR|0620");
    }

    #[test]
    fn strings_are_escaped_and_truncated() {
        let mut m = Mem::default();
        let p = m.put(0x1000, b"a\"b\\c\n\t\x01\xff\0");
        assert_eq!(
            call("memfd_create", [p, 1, 0, 0, 0, 0], &mut m),
            r#"memfd_create("a\"b\\c\n\t\001\377", 0x1)"#
        );
        let long = [b'x'; 300];
        let p = m.put(0x2000, &long);
        let shown = call("memfd_create", [p, 0, 0, 0, 0, 0], &mut m);
        assert_eq!(
            shown,
            format!("memfd_create(\"{}\"..., 0)", "x".repeat(256))
        );
        let deep = [b'd'; 5000];
        let p = m.put(0x4000, &deep);
        let shown = call("chdir", [p, 0, 0, 0, 0, 0], &mut m);
        assert_eq!(shown, format!("chdir(\"{}\"...)", "d".repeat(4096)));
    }

    #[test]
    fn unreadable_and_null_pointers() {
        let mut m = Mem::default();
        assert_eq!(
            call("chdir", [0xdead0000, 0, 0, 0, 0, 0], &mut m),
            "chdir(0xdead0000)"
        );
        assert_eq!(call("chdir", [0; 6], &mut m), "chdir(NULL)");
        assert_eq!(
            call("execve", [0, 0x10, 0, 0, 0, 0], &mut m),
            "execve(NULL, 0x10, NULL)"
        );
        assert_eq!(
            call("connect", [3, 0x10, 16, 0, 0, 0], &mut m),
            "connect(3, 0x10, 16)"
        );
        assert_eq!(
            call("openat2", [3, 0, 0x10, 24, 0, 0], &mut m),
            "openat2(3, NULL, 0x10, 24)"
        );
    }

    #[test]
    fn argv_arrays() {
        let mut m = Mem::default();
        let prog = m.put(0x1000, b"/bin/ls\0");
        let a0 = m.put(0x1100, b"ls\0");
        let a1 = m.put(0x1200, b"-l\0");
        let argv = m.put_ptrs(0x2000, &[a0, a1, 0]);
        let envp = m.put_ptrs(0x3000, &[0]);
        assert_eq!(
            call("execve", [prog, argv, envp, 0, 0, 0], &mut m),
            r#"execve("/bin/ls", ["ls", "-l"], [])"#
        );
        let many = m.put_ptrs(0x4000, &[a0; 40]);
        let shown = str_array(many, &mut m);
        assert_eq!(shown, format!("[{}, ...]", vec!["\"ls\""; 32].join(", ")));
        // The array runs into unreadable memory.
        let cut = m.put_ptrs(0x5000, &[a0, a1]);
        assert_eq!(str_array(cut, &mut m), r#"["ls", "-l", ...]"#);
    }

    #[test]
    fn socket_addresses() {
        let mut m = Mem::default();
        let mut un = vec![1, 0];
        un.extend_from_slice(b"/run/x.sock\0");
        let p = m.put(0x1000, &un);
        assert_eq!(
            call("connect", [3, p, 110, 0, 0, 0], &mut m),
            r#"connect(3, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 110)"#
        );
        let sc = by_name("bind").expect("bind");
        assert_eq!(
            format_call(sc, &[3, p, 14, 0, 0, 0], &[(1, b"/p/x".to_vec())], &mut m),
            r#"bind(3, {sa_family=AF_UNIX, sun_path="/run/x.sock" => "/p/x"}, 14)"#
        );
        let p = m.put(0x2000, b"\x01\x00\x00abstract");
        assert_eq!(
            sockaddr(p, 11, None, &mut m),
            r#"{sa_family=AF_UNIX, sun_path=@"abstract"}"#
        );
        let p = m.put(0x3000, &[2, 0, 0, 80, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            call("connect", [3, p, 16, 0, 0, 0], &mut m),
            "connect(3, {sa_family=AF_INET, addr=127.0.0.1:80}, 16)"
        );
        let mut v6 = vec![10, 0, 1, 187, 0, 0, 0, 0];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0; 4]);
        let p = m.put(0x4000, &v6);
        assert_eq!(
            sockaddr(p, 28, None, &mut m),
            "{sa_family=AF_INET6, addr=[::1]:443}"
        );
        let p = m.put(0x5000, &[16, 0, 0, 0]);
        assert_eq!(sockaddr(p, 12, None, &mut m), "{sa_family=AF_NETLINK}");
        let p = m.put(0x6000, &[2]);
        assert_eq!(sockaddr(p, 16, None, &mut m), "0x6000");
    }

    #[test]
    fn open_how_struct() {
        let mut m = Mem::default();
        let path = m.put(0x1000, b"f\0");
        let how: Vec<u8> = [(libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0, 0x18]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let p = m.put(0x2000, &how);
        assert_eq!(
            call("openat2", [AT_FDCWD, path, p, 24, 0, 0], &mut m),
            r#"openat2(AT_FDCWD, "f", {flags=O_RDONLY|O_CLOEXEC, mode=000, resolve=RESOLVE_BENEATH|RESOLVE_IN_ROOT}, 24)"#
        );
    }

    #[test]
    fn return_values() {
        let sc = |n| by_name(n).expect(n);
        assert_eq!(format_ret(sc("openat"), 3), "3");
        assert_eq!(
            format_ret(sc("openat"), -2),
            "-1 ENOENT (No such file or directory)"
        );
        assert_eq!(format_ret(sc("mmap"), 0x7f12_3456_7000), "0x7f1234567000");
        assert_eq!(
            format_ret(sc("mmap"), -12),
            "-1 ENOMEM (Cannot allocate memory)"
        );
        assert_eq!(format_ret(sc("umask"), 0o22), "022");
        assert_eq!(
            format_ret(sc("read"), -512),
            "? ERESTARTSYS (To be restarted if SA_RESTART is set)"
        );
        assert_eq!(format_ret(sc("read"), -4000), "-1 E??? (errno 4000)");
        assert_eq!(format_ret(sc("lseek"), -4096), "-4096");
    }

    #[test]
    fn errno_names_match_libc() {
        let known = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::EAGAIN, "EAGAIN"),
            (libc::EACCES, "EACCES"),
            (libc::ENOSYS, "ENOSYS"),
            (libc::ELOOP, "ELOOP"),
            (libc::EOPNOTSUPP, "EOPNOTSUPP"),
            (libc::ECONNREFUSED, "ECONNREFUSED"),
            (libc::ENOTRECOVERABLE, "ENOTRECOVERABLE"),
            (libc::EHWPOISON, "EHWPOISON"),
        ];
        for (e, name) in known {
            assert_eq!(errno_name(e), name);
        }
        assert_eq!(errno_name(0), "E???");
        assert!(ERRNOS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn flag_tables_match_libc() {
        let open = [
            (libc::O_CREAT, "O_CREAT"),
            (libc::O_EXCL, "O_EXCL"),
            (libc::O_NOCTTY, "O_NOCTTY"),
            (libc::O_TRUNC, "O_TRUNC"),
            (libc::O_APPEND, "O_APPEND"),
            (libc::O_NONBLOCK, "O_NONBLOCK"),
            (libc::O_SYNC, "O_SYNC"),
            (libc::O_DSYNC, "O_DSYNC"),
            (libc::O_ASYNC, "O_ASYNC"),
            (libc::O_DIRECT, "O_DIRECT"),
            (libc::O_TMPFILE, "O_TMPFILE"),
            (libc::O_DIRECTORY, "O_DIRECTORY"),
            (libc::O_NOFOLLOW, "O_NOFOLLOW"),
            (libc::O_NOATIME, "O_NOATIME"),
            (libc::O_CLOEXEC, "O_CLOEXEC"),
            (libc::O_PATH, "O_PATH"),
        ];
        for (v, name) in open {
            assert_eq!(open_flags(v as u64), format!("O_RDONLY|{name}"));
        }
        for (v, name) in [
            (libc::MAP_FIXED, "MAP_FIXED"),
            (libc::MAP_ANONYMOUS, "MAP_ANONYMOUS"),
            (libc::MAP_NORESERVE, "MAP_NORESERVE"),
            (libc::MAP_STACK, "MAP_STACK"),
            (libc::MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"),
        ] {
            assert_eq!(map_flags(v as u64), name);
        }
        for (v, name) in [
            (libc::CLONE_VM, "CLONE_VM"),
            (libc::CLONE_PIDFD, "CLONE_PIDFD"),
            (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
            (libc::CLONE_IO, "CLONE_IO"),
        ] {
            assert_eq!(clone_flags(v as u32 as u64), name);
        }
        assert_eq!(at_flags("x", libc::AT_EMPTY_PATH as u64), "AT_EMPTY_PATH");
    }

    /// Every row with arbitrary registers and arbitrary memory: no panic.
    #[test]
    fn never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut m = Mem::default();
        for base in [0x1000u64, 0x2000, 0x3000] {
            let junk: Vec<u8> = (0..64).map(|_| next() as u8).collect();
            m.put(base, &junk);
        }
        for sc in isotrace_arch::native::TABLE {
            for _ in 0..50 {
                let mut args = [0u64; 6];
                for a in &mut args {
                    *a = match next() % 4 {
                        0 => 0x1000 + next() % 0x2040,
                        1 => next(),
                        2 => next() % 64,
                        _ => 0,
                    };
                }
                let rw = [(next() as usize % 7, vec![0xff, 0])];
                let s = format_call(sc, &args, &rw, &mut m);
                assert!(s.starts_with(sc.name));
                format_ret(sc, next() as i64);
            }
        }
    }
}
