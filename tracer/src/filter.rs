//! The classic-BPF seccomp program, derived from the syscall table.
//!
//! Layout: check the architecture, refuse the x32 ABI, then dispatch on the
//! syscall number with a balanced binary decision tree over ranges of
//! consecutive numbers that share one action. The filter runs on every
//! syscall the guest makes, so the tree keeps the untrapped path at about a
//! dozen instructions. The constant part uses only `LD W ABS` of `nr`/`arch`,
//! `JEQ`/`JGE` with K, `JA` and `RET` with K: the kernel's action cache
//! (Linux 5.11+, `seccomp_cache_prepare_bitmap`) emulates the program per
//! number, and every number that reaches `RET ALLOW` without loading an
//! argument is then allowed without running the filter at all. Only the
//! `TraceIfAddrBelowScratch` leaves load an argument.

use isotrace_arch::native::{AUDIT_ARCH, AUDIT_ARCH_COMPAT, X32_SYSCALL_BIT};
use isotrace_arch::{Arg, Mode, Syscall, Trap};

/// What the filter needs to know about the supervisor.
#[derive(Clone, Copy, Debug)]
pub struct FilterConfig {
    /// End (exclusive) of the scratch region. Must fit in 32 bits: the
    /// comparison is made on the low half of the address.
    pub scratch_end: u64,
    /// Whether paths are isolated, and whether the host is read-only for
    /// the tracee; without isolation, calls trapped only for translating
    /// results back are left untrapped, and with a read-only host the
    /// fd-based metadata calls (`Syscall::effective_trap`).
    pub mode: Mode,
    /// Leave getdents64 untrapped until the supervisor adds
    /// [`listing_filter`] to a process (lazy listings, supervisor.rs).
    pub lazy_listings: bool,
}

/// The syscall that lazy listings leave untrapped at first.
pub const LISTING_CALL: &str = "getdents64";

// struct seccomp_data (<linux/seccomp.h>): nr, arch, instruction_pointer,
// args[6]. x86_64 is little-endian, so argument i's low half comes first.
const NR: u32 = 0;
const ARCH: u32 = 4;
const fn arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}
const fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

/// MAP_FIXED: with it, mmap at address 0 replaces whatever is mapped there
/// (possible when vm.mmap_min_addr is 0), so it is no longer a mere hint.
const MAP_FIXED: u32 = libc::MAP_FIXED as u32;

/// The verdict of one leaf of the decision tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    /// A constant `RET k`.
    Ret(u32),
    /// Trace iff argument `addr` is below the scratch end. With `hint`
    /// (the MapFlags argument of mmap), address 0 without MAP_FIXED asks
    /// the kernel to choose, which never lands on an existing mapping.
    AddrCheck { addr: u8, hint: Option<u8> },
    /// Trace iff argument `arg` is not NULL (both halves zero means NULL).
    NonNull { arg: u8 },
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_TRACE: u32 = libc::SECCOMP_RET_TRACE;
const RET_ENOSYS: u32 = errno_ret(libc::ENOSYS);

const fn errno_ret(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

fn leaf(sc: &Syscall, mode: Mode) -> Leaf {
    match sc.effective_trap(mode) {
        Trap::Allow => Leaf::Ret(RET_ALLOW),
        // effective_trap resolved it to Trace or Allow already.
        Trap::Trace | Trap::TraceWhenIsolated | Trap::TraceWhenHostWritable => Leaf::Ret(RET_TRACE),
        Trap::Deny(e) => Leaf::Ret(errno_ret(e)),
        // An argument index past the six registers cannot be checked:
        // fail closed.
        Trap::TraceIfAddrBelowScratch(i)
        | Trap::TraceIfNonNullOrHostWritable(i)
        | Trap::TraceIfNonNullWhenIsolated(i)
            if i >= 6 =>
        {
            Leaf::Ret(RET_TRACE)
        }
        Trap::TraceIfNonNullOrHostWritable(i) | Trap::TraceIfNonNullWhenIsolated(i) => {
            Leaf::NonNull { arg: i }
        }
        Trap::TraceIfAddrBelowScratch(i) => Leaf::AddrCheck {
            addr: i,
            hint: sc
                .args
                .iter()
                .position(|a| *a == Arg::MapFlags)
                .and_then(|p| u8::try_from(p).ok())
                .filter(|p| *p < 6),
        },
    }
}

/// Builds the program for seccomp(SECCOMP_SET_MODE_FILTER). Pure: no syscalls.
///
/// `Allow`, `Trace` and `Deny(e)` become RET_ALLOW, RET_TRACE and
/// RET_ERRNO|e. `TraceIfAddrBelowScratch(n)` traces iff argument n is below
/// `scratch_end`, except that a call with a MapFlags argument (mmap) whose
/// address is 0 without MAP_FIXED is allowed: that is a hint, and the kernel
/// never places such a mapping over an existing one. Numbers absent from
/// `table` fail with ENOSYS, as do x32 calls; i386 calls (`int 0x80`) fail
/// with ENOSYS, any other architecture kills the process.
///
/// # Panics
/// If `cfg.scratch_end` does not fit in 32 bits.
pub fn build(table: &[Syscall], cfg: &FilterConfig) -> Vec<libc::sock_filter> {
    let scratch_end = u32::try_from(cfg.scratch_end).expect("scratch_end must fit in 32 bits");
    let mut prog = vec![
        ld(ARCH),
        jump(libc::BPF_JEQ, AUDIT_ARCH, 3, 0),
        jump(libc::BPF_JEQ, AUDIT_ARCH_COMPAT, 0, 1),
        ret(RET_ENOSYS),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        ld(NR),
        jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(RET_ENOSYS),
    ];
    prog.extend(tree(&ranges(table, cfg), scratch_end));
    prog
}

/// The filter a process gets on top of one built with `lazy_listings`
/// once its listings must be trapped: getdents64 traps, everything else
/// is left to the first filter (RET_ALLOW is the weakest verdict, so the
/// strictest of the two filters' verdicts stands: seccomp(2)). Like the
/// first, it loads only `nr` and `arch`, so the kernel's action cache
/// still allows the untrapped numbers without running it.
pub fn listing_filter() -> Vec<libc::sock_filter> {
    let nr = isotrace_arch::by_name(LISTING_CALL)
        .expect("getdents64 in the table")
        .nr;
    vec![
        ld(ARCH),
        jump(libc::BPF_JEQ, AUDIT_ARCH, 0, 3),
        ld(NR),
        jump(libc::BPF_JEQ, nr, 0, 1),
        ret(RET_TRACE),
        ret(RET_ALLOW),
    ]
}

/// Maximal runs of consecutive numbers below the x32 bit with one leaf, as
/// (first number, leaf), covering 0..X32_SYSCALL_BIT.
fn ranges(table: &[Syscall], cfg: &FilterConfig) -> Vec<(u32, Leaf)> {
    let mut rows: Vec<(u32, Leaf)> = table
        .iter()
        .filter(|s| s.nr < X32_SYSCALL_BIT)
        .map(|s| match leaf(s, cfg.mode) {
            Leaf::Ret(RET_TRACE) if cfg.lazy_listings && s.name == LISTING_CALL => {
                (s.nr, Leaf::Ret(RET_ALLOW))
            }
            l => (s.nr, l),
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows.dedup_by_key(|r| r.0);
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let mut push = |start: u32, l: Leaf| {
        if out.last().map(|r| r.1) != Some(l) {
            out.push((start, l));
        }
    };
    let mut next = 0;
    for (nr, l) in rows {
        if nr > next {
            push(next, Leaf::Ret(RET_ENOSYS));
        }
        push(nr, l);
        next = nr + 1;
    }
    if next < X32_SYSCALL_BIT {
        push(next, Leaf::Ret(RET_ENOSYS));
    }
    out
}

/// Code for a subtree: `JGE start(mid)` splits the ranges in two halves.
/// Jumps are relative and forward only, so a subtree's code is
/// self-contained and can be concatenated. A conditional jump reaches at
/// most 255 instructions: longer left halves go through a `JA` trampoline.
fn tree(ranges: &[(u32, Leaf)], scratch_end: u32) -> Vec<libc::sock_filter> {
    match ranges {
        [] => vec![ret(RET_ENOSYS)],
        [(_, l)] => leaf_code(*l, scratch_end),
        _ => {
            let mid = ranges.len() / 2;
            let left = tree(&ranges[..mid], scratch_end);
            let right = tree(&ranges[mid..], scratch_end);
            let split = ranges[mid].0;
            let mut out = Vec::with_capacity(left.len() + right.len() + 2);
            match u8::try_from(left.len()) {
                Ok(skip) => out.push(jump(libc::BPF_JGE, split, skip, 0)),
                Err(_) => {
                    out.push(jump(libc::BPF_JGE, split, 0, 1));
                    out.push(stmt(libc::BPF_JMP | libc::BPF_JA, left.len() as u32));
                }
            }
            out.extend(left);
            out.extend(right);
            out
        }
    }
}

fn leaf_code(l: Leaf, scratch_end: u32) -> Vec<libc::sock_filter> {
    use libc::{BPF_JEQ, BPF_JGE, BPF_JSET};
    match l {
        Leaf::Ret(k) => vec![ret(k)],
        Leaf::NonNull { arg } => vec![
            ld(arg_lo(arg)),
            jump(BPF_JEQ, 0, 0, 2),
            ld(arg_hi(arg)),
            jump(BPF_JEQ, 0, 1, 0),
            ret(RET_TRACE),
            ret(RET_ALLOW),
        ],
        // An address with a non-zero high half is above any 32-bit end.
        Leaf::AddrCheck { addr, hint: None } => vec![
            ld(arg_hi(addr)),
            jump(BPF_JEQ, 0, 0, 3),
            ld(arg_lo(addr)),
            jump(BPF_JGE, scratch_end, 1, 0),
            ret(RET_TRACE),
            ret(RET_ALLOW),
        ],
        Leaf::AddrCheck {
            addr,
            hint: Some(flags),
        } => vec![
            ld(arg_hi(addr)),
            jump(BPF_JEQ, 0, 0, 6),
            ld(arg_lo(addr)),
            jump(BPF_JEQ, 0, 0, 2),
            ld(arg_lo(flags)),
            jump(BPF_JSET, MAP_FIXED, 1, 2),
            jump(BPF_JGE, scratch_end, 1, 0),
            ret(RET_TRACE),
            ret(RET_ALLOW),
        ],
    }
}

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(op: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

const fn ld(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

const fn ret(k: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isotrace_arch::native::TABLE;

    const SCRATCH_END: u64 = 0x21_0000;
    const CFG: FilterConfig = FilterConfig {
        scratch_end: SCRATCH_END,
        mode: Mode::Isolated,
        lazy_listings: false,
    };
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

    /// struct seccomp_data, as the kernel hands it to the filter.
    #[derive(Clone, Copy)]
    struct Data {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    impl Data {
        fn word(&self, off: u32) -> u32 {
            match off {
                0 => self.nr,
                4 => self.arch,
                8..=15 => 0,
                _ => {
                    let a = self.args[(off as usize - 16) / 8];
                    if off & 4 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
            }
        }
    }

    /// Result of one run of the interpreter.
    struct Run {
        verdict: u32,
        steps: usize,
        loaded_arg: bool,
    }

    /// A classic-BPF interpreter for the subset seccomp programs use.
    fn run(prog: &[libc::sock_filter], d: &Data) -> Run {
        let (mut a, mut pc, mut steps, mut loaded_arg) = (0u32, 0usize, 0, false);
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            steps += 1;
            match code & 0x07 {
                libc::BPF_LD => {
                    assert_eq!(code, libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
                    loaded_arg |= ins.k >= 16;
                    a = d.word(ins.k);
                    pc += 1;
                }
                libc::BPF_JMP if code & 0xf0 == libc::BPF_JA => pc += 1 + ins.k as usize,
                libc::BPF_JMP => {
                    assert_eq!(code & 0x08, libc::BPF_K);
                    let taken = match code & 0xf0 {
                        libc::BPF_JEQ => a == ins.k,
                        libc::BPF_JGE => a >= ins.k,
                        libc::BPF_JGT => a > ins.k,
                        libc::BPF_JSET => a & ins.k != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
                }
                libc::BPF_RET => {
                    return Run {
                        verdict: ins.k,
                        steps,
                        loaded_arg,
                    }
                }
                class => panic!("class {class:#x} at {pc}"),
            }
        }
    }

    /// What the table says, written independently of the program builder.
    fn expected(d: &Data, mode: Mode) -> u32 {
        if d.arch != AUDIT_ARCH {
            return if d.arch == AUDIT_ARCH_COMPAT {
                RET_ENOSYS
            } else {
                libc::SECCOMP_RET_KILL_PROCESS
            };
        }
        let Some(sc) = TABLE.iter().find(|s| s.nr == d.nr) else {
            return RET_ENOSYS;
        };
        match sc.effective_trap(mode) {
            Trap::Allow => RET_ALLOW,
            Trap::Trace | Trap::TraceWhenIsolated | Trap::TraceWhenHostWritable => RET_TRACE,
            Trap::TraceIfNonNullOrHostWritable(i) | Trap::TraceIfNonNullWhenIsolated(i) => {
                if d.args[usize::from(i)] != 0 {
                    RET_TRACE
                } else {
                    RET_ALLOW
                }
            }
            Trap::Deny(e) => libc::SECCOMP_RET_ERRNO | e as u32,
            Trap::TraceIfAddrBelowScratch(i) => {
                let addr = d.args[usize::from(i)];
                let hint = sc.name == "mmap" && addr == 0 && d.args[3] & 0x10 == 0;
                if addr < SCRATCH_END && !hint {
                    RET_TRACE
                } else {
                    RET_ALLOW
                }
            }
        }
    }

    const ADDRS: [u64; 10] = [
        0,
        0x1000,
        0x1_0000,
        SCRATCH_END - 1,
        SCRATCH_END,
        0x7f00_0000_0000,
        1 << 32,
        (1 << 32) + 0x1_0000,
        0xffff_ffff,
        u64::MAX,
    ];

    fn check(prog: &[libc::sock_filter], mode: Mode, nr: u32, arch: u32) {
        for addr in ADDRS {
            for flags in [0x22, 0x22 | u64::from(MAP_FIXED)] {
                let d = Data {
                    nr,
                    arch,
                    args: [addr, addr, addr, flags, addr, addr],
                };
                assert_eq!(
                    run(prog, &d).verdict,
                    expected(&d, mode),
                    "nr {nr:#x} arch {arch:#x} addr {addr:#x} flags {flags:#x}"
                );
            }
        }
    }

    #[test]
    fn verdicts_match_the_table() {
        for mode in [Mode::Isolated, Mode::ReadOnlyHost, Mode::Native] {
            let prog = build(TABLE, &FilterConfig { mode, ..CFG });
            for nr in 0..600 {
                check(&prog, mode, nr, AUDIT_ARCH);
                check(&prog, mode, nr | X32_SYSCALL_BIT, AUDIT_ARCH);
                check(&prog, mode, nr, AUDIT_ARCH_COMPAT);
            }
            for nr in [0x3fff_ffff, 0x8000_0000, u32::MAX] {
                check(&prog, mode, nr, AUDIT_ARCH);
            }
            check(&prog, mode, 39, AUDIT_ARCH_AARCH64);
        }
    }

    #[test]
    fn scratch_checks_follow_the_brief() {
        let prog = build(TABLE, &CFG);
        let verdict = |name: &str, args: [u64; 6]| {
            let nr = isotrace_arch::by_name(name).expect(name).nr;
            let d = Data {
                nr,
                arch: AUDIT_ARCH,
                args,
            };
            run(&prog, &d).verdict
        };
        assert_eq!(verdict("mmap", [0x1_0000, 4096, 3, 0x22, 0, 0]), RET_TRACE);
        assert_eq!(
            verdict("mmap", [0x7f00_0000_0000, 4096, 3, 0x22, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(verdict("mmap", [0, 4096, 3, 0x22, 0, 0]), RET_ALLOW);
        assert_eq!(verdict("mmap", [0, 1 << 30, 3, 0x32, 0, 0]), RET_TRACE);
        assert_eq!(verdict("munmap", [0, 1 << 30, 0, 0, 0, 0]), RET_TRACE);
        assert_eq!(verdict("madvise", [0x1_0000, 4096, 4, 0, 0, 0]), RET_TRACE);
        assert_eq!(verdict("shmat", [1, 0, 0, 0, 0, 0]), RET_TRACE);
        assert_eq!(verdict("shmat", [1, 1 << 40, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(verdict("mremap", [1 << 40, 4096, 8192, 0, 0, 0]), RET_TRACE);
        assert_eq!(verdict("io_uring_setup", [0; 6]), RET_ENOSYS);
        assert_eq!(verdict("open_by_handle_at", [0; 6]), errno_ret(libc::EPERM));
    }

    #[test]
    fn lazy_listings_leave_getdents64_to_the_listing_filter() {
        let lazy = build(
            TABLE,
            &FilterConfig {
                lazy_listings: true,
                ..CFG
            },
        );
        let second = listing_filter();
        let nr = |name| isotrace_arch::by_name(name).expect(name).nr;
        let d = |nr, arch| Data {
            nr,
            arch,
            args: [0; 6],
        };
        let gd = nr("getdents64");
        assert_eq!(run(&lazy, &d(gd, AUDIT_ARCH)).verdict, RET_ALLOW);
        assert_eq!(
            run(&build(TABLE, &CFG), &d(gd, AUDIT_ARCH)).verdict,
            RET_TRACE
        );
        // Every other number keeps its verdict.
        for other in ["stat", "openat", "getdents", "mmap", "getpid"] {
            let n = nr(other);
            assert_eq!(
                run(&lazy, &d(n, AUDIT_ARCH)).verdict,
                run(&build(TABLE, &CFG), &d(n, AUDIT_ARCH)).verdict,
                "{other}"
            );
        }
        // The listing filter traps getdents64 and leaves the rest (and
        // other architectures) to the first filter.
        assert_eq!(run(&second, &d(gd, AUDIT_ARCH)).verdict, RET_TRACE);
        assert_eq!(run(&second, &d(nr("stat"), AUDIT_ARCH)).verdict, RET_ALLOW);
        assert_eq!(run(&second, &d(gd, AUDIT_ARCH_COMPAT)).verdict, RET_ALLOW);
    }

    #[test]
    fn translate_back_calls_are_untrapped_without_isolation() {
        let open = FilterConfig {
            mode: Mode::Native,
            ..CFG
        };
        let prog = build(TABLE, &open);
        let getdents64 = isotrace_arch::by_name("getdents64").unwrap().nr;
        let stat = isotrace_arch::by_name("stat").unwrap().nr;
        let d = |nr| Data {
            nr,
            arch: AUDIT_ARCH,
            args: [0; 6],
        };
        assert_eq!(run(&prog, &d(getdents64)).verdict, RET_ALLOW);
        assert_eq!(run(&prog, &d(stat)).verdict, RET_TRACE);
        assert_eq!(run(&build(TABLE, &CFG), &d(getdents64)).verdict, RET_TRACE);
        let utimensat = isotrace_arch::by_name("utimensat").unwrap().nr;
        let futimens = Data {
            nr: utimensat,
            arch: AUDIT_ARCH,
            args: [3, 0, 0x7000, 0, 0, 0],
        };
        let with_path = Data {
            args: [3, 0x1_0000_0000, 0x7000, 0, 0, 0],
            ..futimens
        };
        assert_eq!(run(&prog, &futimens).verdict, RET_ALLOW);
        assert_eq!(run(&prog, &with_path).verdict, RET_TRACE);
        assert_eq!(run(&build(TABLE, &CFG), &futimens).verdict, RET_TRACE);
        let fchmod = isotrace_arch::by_name("fchmod").unwrap().nr;
        assert_eq!(run(&prog, &d(fchmod)).verdict, RET_ALLOW);
        assert_eq!(run(&build(TABLE, &CFG), &d(fchmod)).verdict, RET_TRACE);
        // A read-only host: the kernel refuses fd metadata changes of host
        // files (EROFS), so only utimensat with a path still stops.
        let ro = build(
            TABLE,
            &FilterConfig {
                mode: Mode::ReadOnlyHost,
                ..CFG
            },
        );
        assert_eq!(run(&ro, &d(fchmod)).verdict, RET_ALLOW);
        assert_eq!(run(&ro, &futimens).verdict, RET_ALLOW);
        assert_eq!(run(&ro, &with_path).verdict, RET_TRACE);
        assert_eq!(run(&ro, &d(getdents64)).verdict, RET_TRACE);
        assert_eq!(run(&ro, &d(stat)).verdict, RET_TRACE);
    }

    #[test]
    fn program_is_well_formed_and_small() {
        let prog = build(TABLE, &CFG);
        assert!(
            prog.len() < libc::BPF_MAXINSNS as usize,
            "{} insns",
            prog.len()
        );
        let last = prog.last().expect("empty program");
        assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
        for (pc, ins) in prog.iter().enumerate() {
            let code = u32::from(ins.code);
            let within = |off: usize| pc + 1 + off < prog.len();
            match code & 0x07 {
                libc::BPF_LD => assert!(ins.k < 64 && ins.k % 4 == 0, "load at {pc}"),
                libc::BPF_JMP if code & 0xf0 == libc::BPF_JA => {
                    assert!(within(ins.k as usize), "ja at {pc}")
                }
                libc::BPF_JMP => assert!(
                    within(ins.jt.into()) && within(ins.jf.into()),
                    "jump at {pc}"
                ),
                _ => {}
            }
        }
    }

    #[test]
    fn untrapped_calls_are_cacheable_and_fast() {
        let prog = build(TABLE, &CFG);
        let mut worst = 0;
        for sc in TABLE.iter().filter(|s| s.trap == Trap::Allow) {
            let d = Data {
                nr: sc.nr,
                arch: AUDIT_ARCH,
                args: [u64::MAX; 6],
            };
            let r = run(&prog, &d);
            assert_eq!(r.verdict, RET_ALLOW, "{}", sc.name);
            assert!(!r.loaded_arg, "{} loads an argument", sc.name);
            worst = worst.max(r.steps);
        }
        assert!(worst <= 16, "allowed path takes {worst} instructions");
    }

    #[test]
    fn long_branches_use_trampolines() {
        // Alternating actions over many numbers make left subtrees longer
        // than a conditional jump can skip.
        let rows: Vec<Syscall> = (0..1200u32)
            .map(|nr| Syscall {
                nr,
                name: "x",
                args: &[Arg::Ptr],
                trap: match nr % 3 {
                    0 => Trap::Allow,
                    1 => Trap::Deny(libc::EPERM),
                    _ => Trap::TraceIfAddrBelowScratch(0),
                },
                exit: isotrace_arch::ExitStop::Never,
                support: isotrace_arch::Support::Native,
                note: "",
            })
            .collect();
        let prog = build(&rows, &CFG);
        assert!(prog
            .iter()
            .any(|i| u32::from(i.code) == libc::BPF_JMP | libc::BPF_JA));
        for row in &rows {
            for addr in [0, SCRATCH_END] {
                let d = Data {
                    nr: row.nr,
                    arch: AUDIT_ARCH,
                    args: [addr; 6],
                };
                let want = match row.trap {
                    Trap::Allow => RET_ALLOW,
                    Trap::Deny(e) => errno_ret(e),
                    _ if addr == 0 => RET_TRACE,
                    _ => RET_ALLOW,
                };
                assert_eq!(run(&prog, &d).verdict, want, "nr {}", row.nr);
            }
        }
    }

    /// Installs the real filter in a forked child and checks the Allow and
    /// Deny paths there. Nothing here may hit RET_TRACE: with no tracer
    /// attached the kernel fails such a call with ENOSYS (seccomp(2),
    /// SECCOMP_RET_TRACE), which would be indistinguishable from a denial.
    #[test]
    fn kernel_enforces_the_filter() {
        let prog = build(TABLE, &CFG);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the child runs only async-signal-safe syscalls on memory
        // prepared before the fork, then _exit()s; it never returns here.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: see above; `fprog` points at `prog`, alive in the child.
            unsafe { libc::_exit(child_checks(&fprog)) }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child into a live local.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed");
    }

    /// Runs in the forked child; returns 0 or the number of the failed check.
    ///
    /// # Safety
    /// Only to be called in a freshly forked child, which it confines.
    unsafe fn child_checks(fprog: &libc::sock_fprog) -> i32 {
        // SAFETY (whole body): raw syscalls with integer arguments or
        // pointers to live memory; errno is thread-local.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return 1;
            }
            let mode = libc::SECCOMP_SET_MODE_FILTER;
            if libc::syscall(libc::SYS_seccomp, mode, 0, fprog as *const libc::sock_fprog) != 0 {
                return 2;
            }
            let fails = |nr: libc::c_long, errno: i32| {
                libc::syscall(nr, 0, 0, 0, 0, 0, 0) == -1 && *libc::__errno_location() == errno
            };
            if !fails(libc::SYS_io_uring_setup, libc::ENOSYS) {
                return 3;
            }
            if !fails(999, libc::ENOSYS) {
                return 4;
            }
            if !fails(libc::c_long::from(X32_SYSCALL_BIT) | 39, libc::ENOSYS) {
                return 5;
            }
            if !fails(libc::SYS_open_by_handle_at, libc::EPERM) {
                return 6;
            }
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return 7;
            }
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            let p = libc::mmap(std::ptr::null_mut(), 4096, prot, flags, -1, 0);
            if p == libc::MAP_FAILED || libc::munmap(p, 4096) != 0 {
                return 8;
            }
            0
        }
    }
}
