//! The PT_NOTE contents of a Linux x86_64 core, laid out as the kernel's
//! fs/binfmt_elf.c writes them and gdb reads them.

use crate::model::{Process, Thread, Vma};
use crate::PAGE_SIZE;
use goblin::elf::note::{Nhdr32, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, NT_SIGINFO};
use scroll::{Pwrite, LE};

/// <linux/elf.h> note types goblin does not name.
pub const NT_FPREGSET: u32 = 2;
pub const NT_AUXV: u32 = 6;
pub const NT_X86_XSTATE: u32 = 0x202;

/// sizeof(struct elf_prstatus) and sizeof(struct elf_prpsinfo) on x86_64
/// (include/uapi/linux/elfcore.h, include/linux/elfcore.h).
pub const PRSTATUS_SIZE: usize = 336;
pub const PRPSINFO_SIZE: usize = 136;
/// Offset of pr_reg (the user_regs_struct) in elf_prstatus.
const PR_REG: usize = 112;
/// sizeof(struct user_i387_struct): the FXSAVE area, NT_FPREGSET's body.
const FXSAVE_SIZE: usize = 512;
const SIGINFO_SIZE: usize = 128;
/// ELF_PRARGSZ.
const PRARGSZ: usize = 80;

pub struct Note {
    pub name: &'static str,
    pub ntype: u32,
    pub desc: Vec<u8>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Encodes notes back to back: Elf64_Nhdr (three u32s, as Linux uses even
/// for ELF64), the NUL-terminated name and the body, each padded to 4.
pub fn encode(notes: &[Note]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in notes {
        let hdr = Nhdr32 {
            n_namesz: n.name.len() as u32 + 1,
            n_descsz: n.desc.len() as u32,
            n_type: n.ntype,
        };
        let at = out.len();
        out.resize(at + 12, 0);
        out.pwrite_with(hdr, at, LE).expect("12-byte header");
        out.extend_from_slice(n.name.as_bytes());
        out.resize(at + 12 + pad4(n.name.len() + 1), 0);
        out.extend_from_slice(&n.desc);
        out.resize(pad4(out.len()), 0);
    }
    out
}

fn put<T: scroll::ctx::TryIntoCtx<scroll::Endian, Error = scroll::Error>>(
    buf: &mut [u8],
    at: usize,
    v: T,
) {
    buf.pwrite_with(v, at, LE).expect("field inside the struct");
}

/// struct elf_prstatus: pr_info (signo, code, errno), pr_cursig, pending
/// and held signal sets, the ids, four zero timevals, pr_reg, pr_fpvalid.
pub fn prstatus(proc: &Process, thread: &Thread, cursig: i32) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_SIZE];
    put(&mut b, 0, cursig);
    put(&mut b, 12, cursig as i16);
    put(&mut b, 16, thread.sig_pending | proc.signals.shared_pending);
    put(&mut b, 24, thread.sig_blocked);
    put(&mut b, 32, thread.tid);
    put(&mut b, 36, proc.ppid);
    put(&mut b, 40, proc.pgid);
    put(&mut b, 44, proc.sid);
    for (i, r) in thread.regs.iter().enumerate() {
        put(&mut b, PR_REG + i * 8, *r);
    }
    put(&mut b, PR_REG + 27 * 8, 1i32);
    b
}

/// struct elf_prpsinfo: state, name, ids, and the start of the command
/// line with NULs turned into spaces.
pub fn prpsinfo(proc: &Process) -> Vec<u8> {
    let mut b = vec![0u8; PRPSINFO_SIZE];
    let state = proc.threads.first().map_or("R", |t| t.state.as_str());
    let sname = state.bytes().next().unwrap_or(b'R');
    b[0] = b"RSDTZW".iter().position(|&c| c == sname).unwrap_or(0) as u8;
    b[1] = sname;
    b[2] = u8::from(sname == b'Z');
    put(&mut b, 16, proc.creds.uid[0]);
    put(&mut b, 20, proc.creds.gid[0]);
    put(&mut b, 24, proc.pid);
    put(&mut b, 28, proc.ppid);
    put(&mut b, 32, proc.pgid);
    put(&mut b, 36, proc.sid);
    let fname = proc.comm.as_bytes();
    let n = fname.len().min(15);
    b[40..40 + n].copy_from_slice(&fname[..n]);
    let args: Vec<u8> = proc
        .cmdline
        .iter()
        .map(|&c| if c == 0 { b' ' } else { c })
        .collect();
    let args = args.trim_ascii_end();
    let n = args.len().min(PRARGSZ - 1);
    b[56..56 + n].copy_from_slice(&args[..n]);
    b
}

/// A siginfo_t saying the process was stopped by SIGSTOP from userspace:
/// the snapshot is not a crash, and gdb wants some NT_SIGINFO.
pub fn siginfo() -> Vec<u8> {
    let mut b = vec![0u8; SIGINFO_SIZE];
    put(&mut b, 0, libc::SIGSTOP);
    b
}

pub fn fpregset(thread: &Thread) -> Vec<u8> {
    let mut b = thread.xstate.get(..FXSAVE_SIZE).unwrap_or(&[]).to_vec();
    b.resize(FXSAVE_SIZE, 0);
    b
}

/// NT_FILE: count, page size, then (start, end, file offset in pages) per
/// file-backed mapping, then their NUL-terminated names.
pub fn file_note(vmas: &[Vma]) -> Vec<u8> {
    let files: Vec<&Vma> = vmas.iter().filter(|v| v.file_backed()).collect();
    let mut b = vec![0u8; 16 + files.len() * 24];
    put(&mut b, 0, files.len() as u64);
    put(&mut b, 8, PAGE_SIZE);
    for (i, v) in files.iter().enumerate() {
        let at = 16 + i * 24;
        put(&mut b, at, v.start);
        put(&mut b, at + 8, v.end);
        put(&mut b, at + 16, v.offset / PAGE_SIZE);
    }
    for v in files {
        b.extend_from_slice(v.path.as_bytes());
        b.push(0);
    }
    b
}

/// All notes in the kernel's order: the first thread's NT_PRSTATUS, then
/// the process-wide notes, then its FP/xstate notes; then each other
/// thread's PRSTATUS, FPREGSET and XSTATE. gdb attaches register notes to
/// the thread of the PRSTATUS before them, and the first is the current
/// thread.
pub fn all(proc: &Process) -> Vec<u8> {
    let mut notes = Vec::new();
    for (i, t) in proc.threads.iter().enumerate() {
        let cursig = if i == 0 { libc::SIGSTOP } else { 0 };
        notes.push(Note {
            name: "CORE",
            ntype: NT_PRSTATUS,
            desc: prstatus(proc, t, cursig),
        });
        if i == 0 {
            notes.push(Note {
                name: "CORE",
                ntype: NT_PRPSINFO,
                desc: prpsinfo(proc),
            });
            notes.push(Note {
                name: "CORE",
                ntype: NT_SIGINFO,
                desc: siginfo(),
            });
            notes.push(Note {
                name: "CORE",
                ntype: NT_AUXV,
                desc: proc.auxv.clone(),
            });
            notes.push(Note {
                name: "CORE",
                ntype: NT_FILE,
                desc: file_note(&proc.vmas),
            });
        }
        notes.push(Note {
            name: "CORE",
            ntype: NT_FPREGSET,
            desc: fpregset(t),
        });
        if !t.xstate.is_empty() {
            notes.push(Note {
                name: "LINUX",
                ntype: NT_X86_XSTATE,
                desc: xstate_for_gdb(&t.xstate, t.xcr0).into_owned(),
            });
        }
    }
    encode(&notes)
}

/// XCR0 bits of the components [`xstate_for_gdb`] knows (Intel SDM vol. 1,
/// 13.1): x87, SSE, AVX; AVX-512 opmask, ZMM_Hi256, Hi16_ZMM; PKRU.
const XCR0_LEGACY_AVX: u64 = 0x7;
const XCR0_AVX512: u64 = 0xe0;
const XCR0_PKRU: u64 = 1 << 9;
/// Sizes of the opmask, ZMM_Hi256, Hi16_ZMM and PKRU components, and their
/// offsets in the two standard (non-compacted) XSAVE layouts shipped with
/// AVX-512: Intel's, which leaves 960..1088 to MPX, and AMD Zen 4's, which
/// has no MPX and packs them right after AVX (CPUID leaf 0xD, sub-leaves
/// 5, 6, 7 and 9, EBX; on this project's AMD EPYC CI machine 832, 896,
/// 1408 and an XSAVE size of 2432).
const AVX512_PKRU_SIZES: [usize; 4] = [64, 512, 1024, 8];
const INTEL_OFFSETS: [usize; 4] = [1088, 1152, 1664, 2688];
const AMD_OFFSETS: [usize; 4] = [832, 896, 1408, 2432];
/// Everything before the opmask component: legacy area, XSAVE header, AVX.
const BEFORE_OPMASK: usize = 832;

/// The XSAVE area as gdb reads NT_X86_XSTATE. gdb up to 13 has no notion
/// of per-CPU layouts: it takes the components at Intel's fixed offsets
/// (gdb/i387-tdep.c, the I387_*_OFFSET tables), so on an AMD Zen 4 core
/// the upper halves of ymm and all of zmm come out as `<unavailable>` or
/// wrong; gdb's own gcore on that CPU even writes zeros there. Moving
/// each component to Intel's offset (the size becomes Intel's 2688, or
/// 2696 with PKRU) loses nothing and is read correctly by gdb 13 and by
/// later gdbs, which guess the layout from that size. Any other area
/// (Intel's already, no AVX-512, or components this does not know, such
/// as AMX) is written as the kernel gave it.
pub fn xstate_for_gdb(xstate: &[u8], xcr0: u64) -> std::borrow::Cow<'_, [u8]> {
    let pkru = xcr0 & XCR0_PKRU != 0;
    let known = XCR0_LEGACY_AVX | XCR0_AVX512 | XCR0_PKRU;
    let amd_size = AMD_OFFSETS[3] + if pkru { 8 } else { 0 };
    if xcr0 & XCR0_AVX512 != XCR0_AVX512 || xcr0 & !known != 0 || xstate.len() != amd_size {
        return std::borrow::Cow::Borrowed(xstate);
    }
    let mut out = vec![0u8; INTEL_OFFSETS[3] + if pkru { 8 } else { 0 }];
    out[..BEFORE_OPMASK].copy_from_slice(&xstate[..BEFORE_OPMASK]);
    let components = if pkru { 4 } else { 3 };
    for i in 0..components {
        let (from, to, len) = (AMD_OFFSETS[i], INTEL_OFFSETS[i], AVX512_PKRU_SIZES[i]);
        out[to..to + len].copy_from_slice(&xstate[from..from + len]);
    }
    std::borrow::Cow::Owned(out)
}
