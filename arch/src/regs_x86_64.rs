//! x86_64 register ABI: where the syscall number, arguments and result live.
//!
//! syscall(2), "Architecture calling conventions": the number in rax
//! (orig_rax once the kernel has entered), arguments in rdi, rsi, rdx, r10,
//! r8, r9, the result in rax.

use crate::RegAccess;

/// `user_regs_struct` as PTRACE_GETREGS returns it.
pub type Regs = libc::user_regs_struct;

/// AUDIT_ARCH_X86_64 from <linux/audit.h>: what `seccomp_data.arch` holds for
/// a native 64-bit syscall.
pub const AUDIT_ARCH: u32 = 0xC000_003E;
/// AUDIT_ARCH_I386: an `int 0x80` call from a 64-bit or 32-bit process.
pub const AUDIT_ARCH_COMPAT: u32 = 0x4000_0003;
/// __X32_SYSCALL_BIT: set in the number of an x32-ABI call.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Length of the `syscall` instruction (0f 05): rewinding rip by this much
/// makes the tracee execute the same syscall again.
pub const SYSCALL_INSN_LEN: u64 = 2;
/// The `syscall` instruction bytes, for finding a gadget to inject through.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// Page size of the architecture's smallest page.
pub const PAGE_SIZE: u64 = 4096;

/// Word index in `user_regs_struct` (a PTRACE_POKEUSER offset divided by
/// 8) of the syscall number, of each argument in order, and of the result.
pub const NR_WORD: usize = std::mem::offset_of!(Regs, orig_rax) / 8;
pub const ARG_WORDS: [usize; 6] = [
    std::mem::offset_of!(Regs, rdi) / 8,
    std::mem::offset_of!(Regs, rsi) / 8,
    std::mem::offset_of!(Regs, rdx) / 8,
    std::mem::offset_of!(Regs, r10) / 8,
    std::mem::offset_of!(Regs, r8) / 8,
    std::mem::offset_of!(Regs, r9) / 8,
];
pub const RET_WORD: usize = std::mem::offset_of!(Regs, rax) / 8;

impl RegAccess for Regs {
    fn syscall_nr(&self) -> u64 {
        self.orig_rax
    }
    fn set_syscall_nr(&mut self, nr: u64) {
        self.orig_rax = nr;
    }
    fn arg(&self, i: usize) -> u64 {
        match i {
            0 => self.rdi,
            1 => self.rsi,
            2 => self.rdx,
            3 => self.r10,
            4 => self.r8,
            5 => self.r9,
            _ => 0,
        }
    }
    fn set_arg(&mut self, i: usize, v: u64) {
        match i {
            0 => self.rdi = v,
            1 => self.rsi = v,
            2 => self.rdx = v,
            3 => self.r10 = v,
            4 => self.r8 = v,
            5 => self.r9 = v,
            _ => {}
        }
    }
    fn ret(&self) -> i64 {
        self.rax as i64
    }
    fn set_ret(&mut self, v: i64) {
        self.rax = v as u64;
    }
    fn ip(&self) -> u64 {
        self.rip
    }
    fn set_ip(&mut self, v: u64) {
        self.rip = v;
    }
    fn sp(&self) -> u64 {
        self.rsp
    }
}
