//! What an image records about processes: plain serde data, encoded into
//! `procs.bin` by [`crate::image::codec`]. Changing a field changes the
//! on-disk format: bump [`crate::image::FORMAT_VERSION`] and IMAGE.md.

use serde::{Deserialize, Serialize};

/// Every process of one image, the first being the one asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessTree {
    pub root: i32,
    pub processes: Vec<Process>,
}

impl ProcessTree {
    pub fn process(&self, pid: i32) -> Option<&Process> {
        self.processes.iter().find(|p| p.pid == pid)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub comm: String,
    /// readlink of /proc/PID/exe, cwd and root (None if unreadable).
    pub exe: Option<String>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    /// /proc/PID/cmdline and environ as the kernel gives them: NUL-separated.
    pub cmdline: Vec<u8>,
    pub environ: Vec<u8>,
    /// /proc/PID/auxv: (type, value) pairs of native-endian u64s.
    pub auxv: Vec<u8>,
    pub creds: Creds,
    pub umask: Option<u32>,
    pub limits: Vec<Limit>,
    pub signals: ProcessSignals,
    pub threads: Vec<Thread>,
    pub vmas: Vec<Vma>,
    pub fds: Vec<FdEntry>,
    /// The section holding this process's page data.
    pub pages_section: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Creds {
    /// Real, effective, saved and filesystem ids (/proc/PID/status).
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter (/proc/PID/status Seccomp).
    pub seccomp: u32,
}

/// One line of /proc/PID/limits; None is "unlimited".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    pub units: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSignals {
    pub ignored: u64,
    pub caught: u64,
    /// Process-wide pending set (ShdPnd) and their siginfos
    /// (PTRACE_PEEKSIGINFO with PTRACE_PEEKSIGINFO_SHARED).
    pub shared_pending: u64,
    pub shared_siginfo: Vec<Vec<u8>>,
}

/// The names of `user_regs_struct`'s fields, in order (x86_64,
/// arch/x86/include/asm/user_64.h). `Thread::regs` follows this order.
pub const REG_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub tid: i32,
    pub comm: String,
    /// Scheduler state letter before the freeze (/proc/TID/stat).
    pub state: String,
    /// How the thread was stopped for the dump ("interrupt",
    /// "signal-delivery SIGxxx", "group-stop SIGxxx").
    pub stop: String,
    /// `user_regs_struct` in [`REG_NAMES`] order (fs_base/gs_base included).
    pub regs: [u64; 27],
    /// The raw XSAVE area from PTRACE_GETREGSET NT_X86_XSTATE.
    pub xstate: Vec<u8>,
    /// XCR0 as the kernel exported it in the XSAVE area's sw_reserved bytes.
    pub xcr0: u64,
    pub sig_blocked: u64,
    pub sig_pending: u64,
    /// Thread-private pending siginfos (PTRACE_PEEKSIGINFO), 128 bytes each.
    pub siginfo: Vec<Vec<u8>>,
    /// /proc/TID/syscall at the stop: the syscall it was in, if any.
    pub syscall: String,
}

impl Thread {
    pub fn reg(&self, name: &str) -> u64 {
        REG_NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.regs[i])
    }
}

/// One line of /proc/PID/maps and what the image holds of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// "rwxp"/"r--s" as in maps.
    pub perms: String,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    /// The pathname column: a file, "[heap]", "[stack]", "[vdso]", or "".
    pub path: String,
    pub memory: VmaMemory,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn readable(&self) -> bool {
        self.perms.starts_with('r')
    }
    pub fn writable(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w')
    }
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
    pub fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
    /// Backed by a file on a real device (inode != 0), as NT_FILE wants.
    pub fn file_backed(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }
    pub fn captured_bytes(&self) -> u64 {
        match &self.memory {
            VmaMemory::Dumped { runs } => runs.iter().map(|r| r.pages * crate::PAGE_SIZE).sum(),
            VmaMemory::Skipped { .. } => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum VmaMemory {
    /// The pages present (or swapped) at the dump, in address order.
    Dumped { runs: Vec<PageRun> },
    /// Not captured, and why ("[vvar]", "device mapping", "shared file mapping").
    Skipped { reason: String },
}

impl Default for VmaMemory {
    fn default() -> Self {
        VmaMemory::Dumped { runs: Vec::new() }
    }
}

/// `pages` consecutive pages from `addr`, stored at `offset` in the
/// process's pages section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    pub addr: u64,
    pub pages: u64,
    pub offset: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FdEntry {
    pub fd: i32,
    /// readlink of /proc/PID/fd/N.
    pub target: String,
    /// From /proc/PID/fdinfo/N.
    pub pos: u64,
    pub flags: u32,
    pub mnt_id: u64,
    pub ino: u64,
    pub kind: FdKind,
    /// The rest of fdinfo (eventfd-count, tfd lines of an epoll, timerfd
    /// settings, signalfd mask, inotify watches...), verbatim.
    pub fdinfo_extra: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum FdKind {
    File {
        deleted: bool,
    },
    Dir,
    Pipe,
    Fifo,
    Socket(Option<SocketInfo>),
    /// anon_inode:[eventfd] and friends: the bracketed name.
    AnonInode(String),
    Memfd(String),
    Device {
        major: u32,
        minor: u32,
    },
    Tty,
    #[default]
    Other,
}

impl FdKind {
    pub fn name(&self) -> &'static str {
        match self {
            FdKind::File { .. } => "file",
            FdKind::Dir => "dir",
            FdKind::Pipe => "pipe",
            FdKind::Fifo => "fifo",
            FdKind::Socket(_) => "socket",
            FdKind::AnonInode(_) => "anon_inode",
            FdKind::Memfd(_) => "memfd",
            FdKind::Device { .. } => "device",
            FdKind::Tty => "tty",
            FdKind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SocketInfo {
    /// /proc/PID/net/unix: type (stream, dgram, seqpacket), state and path.
    Unix {
        kind: String,
        state: String,
        path: String,
    },
    /// /proc/PID/net/{tcp,tcp6,udp,udp6}.
    Inet {
        proto: String,
        local: String,
        remote: String,
        state: String,
    },
}
