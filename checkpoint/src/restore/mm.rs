//! The mm fields of the restored process (code/data/brk/stack/arg/env
//! boundaries, auxv and /proc/PID/exe) through prctl(PR_SET_MM,
//! PR_SET_MM_MAP) (prctl(2), kernel/sys.c prctl_set_mm_map).
//!
//! The image does not record them, so they are derived: code and data from
//! the executable's mappings, brk from [heap] (the kernel rounds brk to a
//! page, so the heap's end is a valid break; glibc keeps the exact one in
//! its own memory), and arg/env by finding the recorded cmdline and environ
//! bytes in the stack, where execve(2) put them one after the other.
//!
//! PR_SET_MM_MAP itself needs no privilege; replacing auxv needs
//! CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN and the exe link CAP_SYS_ADMIN,
//! so without them the restore retries with neither and says so.

use super::inject::Vessel;
use crate::error::Result;
use crate::model::{Process, Vma};
use crate::Image;
use crate::PAGE_SIZE;

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
/// sizeof(mm->saved_auxv): AT_VECTOR_SIZE (2 * (3 + 22 + 1)) u64s on x86_64.
const SAVED_AUXV_MAX: usize = 52 * 8;
/// The stack is searched for argv/environ only up to this size.
const STACK_SEARCH_MAX: u64 = 64 << 20;

/// struct prctl_mm_map's address fields, in their order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

impl Layout {
    /// struct prctl_mm_map (<linux/prctl.h>): the eleven u64s, then
    /// `__u64 *auxv`, `__u32 auxv_size`, `__u32 exe_fd`.
    pub fn encode(&self, auxv: u64, auxv_size: u32, exe_fd: u32) -> Vec<u8> {
        let fields = [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
            auxv,
        ];
        let mut out: Vec<u8> = fields.iter().flat_map(|f| f.to_ne_bytes()).collect();
        out.extend(auxv_size.to_ne_bytes());
        out.extend(exe_fd.to_ne_bytes());
        out
    }
}

/// Derives the layout from the mappings; `stack` is the [stack] mapping's
/// bytes (absent pages as zeros) if the image has one.
pub fn derive(proc: &Process, stack: Option<(&Vma, &[u8])>) -> Layout {
    let of_exe: Vec<&Vma> = match proc.exe.as_deref() {
        Some(exe) => proc.vmas.iter().filter(|v| v.path == exe).collect(),
        None => Vec::new(),
    };
    let code = of_exe
        .iter()
        .find(|v| v.executable())
        .or_else(|| of_exe.first())
        .copied()
        .or_else(|| proc.vmas.iter().find(|v| v.executable()));
    let (start_code, end_code) = code.map_or((0, 0), |v| (v.start, v.end));
    let data = of_exe.iter().rev().find(|v| v.writable());
    let (start_data, end_data) = data.map_or((end_code, end_code), |v| (v.start, v.end));
    let heap = proc.vmas.iter().find(|v| v.path == "[heap]");
    let (start_brk, brk) = heap.map_or((end_data, end_data), |v| (v.start, v.end));
    let mut l = Layout {
        start_code,
        end_code,
        start_data,
        end_data,
        start_brk,
        brk,
        ..Default::default()
    };
    if let Some((vma, bytes)) = stack {
        let top = vma.end - 8;
        (
            l.start_stack,
            l.arg_start,
            l.arg_end,
            l.env_start,
            l.env_end,
        ) = (top, top, top, top, top);
        if let Some(at) = find(bytes, &proc.cmdline) {
            l.arg_start = vma.start + at as u64;
            l.arg_end = l.arg_start + proc.cmdline.len() as u64;
            l.start_stack = l.arg_start;
            l.env_start = l.arg_end;
            l.env_end = l.arg_end;
            let after = &bytes[at + proc.cmdline.len()..];
            if !proc.environ.is_empty() && after.starts_with(&proc.environ) {
                l.env_end = l.env_start + proc.environ.len() as u64;
            }
        }
    }
    l
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    // The strings sit at the top of the stack: search from the end.
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The [stack] mapping and its bytes from the image.
fn stack_bytes<'a>(image: &Image, proc: &'a Process) -> Result<Option<(&'a Vma, Vec<u8>)>> {
    let Some(vma) = proc.vmas.iter().find(|v| v.path == "[stack]") else {
        return Ok(None);
    };
    if vma.len() > STACK_SEARCH_MAX {
        return Ok(None);
    }
    let mut bytes = vec![0u8; vma.len() as usize];
    for (addr, data) in image.read_memory(proc.pid, vma.start, vma.len())? {
        if let Some(d) = data {
            let at = (addr - vma.start) as usize;
            bytes[at..at + PAGE_SIZE as usize].copy_from_slice(&d);
        }
    }
    Ok(Some((vma, bytes)))
}

/// Sets the mm fields in the vessel. Returns what could not be set.
pub fn apply(
    v: &Vessel,
    image: &Image,
    proc: &Process,
    opts: &super::Options,
) -> Result<Vec<String>> {
    let stack = stack_bytes(image, proc)?;
    let layout = derive(proc, stack.as_ref().map(|(v, b)| (*v, b.as_slice())));
    let mut notes = Vec::new();
    let exe_fd = match &proc.exe {
        Some(exe) => {
            let at = v.stage_path(&opts.path(exe))?;
            let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
            let rc = v.raw(
                libc::SYS_openat,
                [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
            )?;
            (rc >= 0).then_some(rc as u32)
        }
        None => None,
    };
    let auxv = if proc.auxv.len() <= SAVED_AUXV_MAX {
        proc.auxv.as_slice()
    } else {
        &[]
    };
    let auxv_at = v.stage(512, auxv)?;
    let attempts = [
        (auxv_at, auxv.len() as u32, exe_fd.unwrap_or(u32::MAX)),
        (0, 0, u32::MAX),
    ];
    let mut result = 0;
    for (i, (at, size, fd)) in attempts.into_iter().enumerate() {
        let map = v.stage(0, &layout.encode(at, size, fd))?;
        let len = layout.encode(0, 0, 0).len() as u64;
        result = v.raw(libc::SYS_prctl, [PR_SET_MM, PR_SET_MM_MAP, map, len, 0, 0])?;
        if result == 0 {
            if i > 0 {
                notes.push(format!(
                    "/proc/PID/exe and auxv not restored (PR_SET_MM_MAP refused them: {}; needs CAP_SYS_ADMIN)",
                    nix::errno::Errno::from_raw(-result.max(-4095) as i32)
                ));
            }
            break;
        }
    }
    if let Some(fd) = exe_fd {
        v.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    if result != 0 {
        notes.push(format!(
            "brk and the arg/env boundaries not restored (PR_SET_MM_MAP: {}): malloc falls back to mmap",
            nix::errno::Errno::from_raw(-result as i32)
        ));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, perms: &str, path: &str) -> Vma {
        Vma {
            start,
            end,
            perms: perms.into(),
            path: path.into(),
            inode: u64::from(path.starts_with('/')),
            ..Default::default()
        }
    }

    #[test]
    fn derives_from_mappings_and_stack() {
        let proc = Process {
            exe: Some("/bin/x".into()),
            cmdline: b"x\0a\0".to_vec(),
            environ: b"A=1\0".to_vec(),
            vmas: vec![
                vma(0x400000, 0x401000, "r--p", "/bin/x"),
                vma(0x401000, 0x402000, "r-xp", "/bin/x"),
                vma(0x403000, 0x404000, "rw-p", "/bin/x"),
                vma(0x500000, 0x521000, "rw-p", "[heap]"),
                vma(0x7ffd0000, 0x7ffd2000, "rw-p", "[stack]"),
            ],
            ..Default::default()
        };
        let mut stack = vec![0u8; 0x2000];
        stack[0x1f00..0x1f04].copy_from_slice(b"x\0a\0");
        stack[0x1f04..0x1f08].copy_from_slice(b"A=1\0");
        let l = derive(&proc, Some((&proc.vmas[4], &stack)));
        assert_eq!((l.start_code, l.end_code), (0x401000, 0x402000));
        assert_eq!((l.start_data, l.end_data), (0x403000, 0x404000));
        assert_eq!((l.start_brk, l.brk), (0x500000, 0x521000));
        assert_eq!((l.arg_start, l.arg_end), (0x7ffd1f00, 0x7ffd1f04));
        assert_eq!((l.env_start, l.env_end), (0x7ffd1f04, 0x7ffd1f08));
        assert_eq!(l.encode(0, 0, u32::MAX).len(), 104);
    }

    #[test]
    fn without_heap_brk_is_end_of_data() {
        let proc = Process {
            vmas: vec![
                vma(0x1000, 0x2000, "r-xp", "/a"),
                vma(0x3000, 0x4000, "rw-p", ""),
            ],
            ..Default::default()
        };
        let l = derive(&proc, None);
        assert_eq!((l.start_code, l.end_code), (0x1000, 0x2000));
        assert_eq!((l.start_brk, l.brk), (0x2000, 0x2000));
    }
}
