//! execve(2) of a `#!` script inside an environment.
//!
//! The kernel runs a script by exec'ing its interpreter with the path that
//! was given to execve as an argument (binfmt_script). With that path
//! rewritten to the private copy, the interpreter would be handed a name in
//! the store, which tracees cannot see, and the interpreter named by `#!`
//! would be looked up on the host rather than in the environment. So the
//! supervisor does binfmt_script's work itself: it resolves the interpreter
//! in the merged view and execs it directly with the script's own name.

use super::{paths, Isolation};
use isotrace_tracer::{Action, ArgvItem, Call, TraceeView, Verdict};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The kernel reads at most this much of a `#!` line (BINPRM_BUF_SIZE).
const BINPRM_BUF_SIZE: usize = 256;

/// The interpreter and optional argument of a `#!` line, split as
/// binfmt_script does: the interpreter up to the first blank, the rest
/// (trimmed) as one argument.
pub fn shebang(file: &Path) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let mut f = std::fs::File::open(file).ok()?;
    let n = f.read(&mut buf).ok()?;
    parse(&buf[..n])
}

fn parse(buf: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = buf.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let line = &line[start..];
    let end = line.iter().position(blank).unwrap_or(line.len());
    let interp = line[..end].to_vec();
    let rest = &line[end..];
    let arg = rest
        .iter()
        .position(|b| !blank(b))
        .map(|s| {
            let r = &rest[s..];
            let e = r.iter().rposition(|b| !blank(b)).map_or(0, |e| e + 1);
            r[..e].to_vec()
        })
        .filter(|a| !a.is_empty());
    Some((interp, arg))
}

/// The PT_INTERP path of a 64-bit little-endian ELF executable (the
/// dynamic loader the kernel would map), read with plain file reads.
pub fn elf_interp(file: &Path) -> Option<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(file).ok()?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).ok()?;
    // ELFCLASS64, ELFDATA2LSB.
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let (phoff, phentsize, phnum) = (u64_at(&eh, 0x20), u16_at(&eh, 0x36), u16_at(&eh, 0x38));
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        f.read_exact(&mut ph).ok()?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let (off, len) = (u64_at(&ph, 8), u64_at(&ph, 32));
        if len == 0 || len > 4096 {
            return None;
        }
        let mut interp = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut interp).ok()?;
        let end = interp.iter().position(|&b| b == 0).unwrap_or(interp.len());
        interp.truncate(end);
        return Some(interp);
    }
    None
}

impl Isolation {
    /// execve of a `#!` script whose file or interpreter lives in the
    /// environment: exec the interpreter with the script's public name.
    pub(super) fn script(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        paths: &[(usize, Vec<u8>)],
    ) -> Result<Option<Verdict>, i32> {
        let (Some((_, real)), Some(raw)) = (paths.first(), call.path(0)) else {
            return Ok(None);
        };
        let real = PathBuf::from(std::ffi::OsStr::from_bytes(real));
        let Some((interp, arg)) = shebang(&real) else {
            return self.elf_loader(call, tv, &real, raw);
        };
        let ir = self
            .resolver(call, tv)
            .resolve(None, &interp, true)
            .map_err(|e| e.errno())?;
        if ir.loc.is_none() {
            return Err(libc::ENOENT);
        }
        let script_public = real.as_path() == Path::new(std::ffi::OsStr::from_bytes(raw));
        if script_public && ir.real.as_os_str().as_bytes() == interp.as_slice() {
            // Both live on the host under their own names: the kernel's
            // binfmt_script does the right thing.
            return Ok(None);
        }
        let mut argv = vec![ArgvItem::New(interp)];
        argv.extend(arg.map(ArgvItem::New));
        argv.push(ArgvItem::New(raw.to_vec()));
        argv.extend(
            tracee_argv(call.args[1], tv)?
                .into_iter()
                .skip(1)
                .map(ArgvItem::Tracee),
        );
        Ok(Some(Verdict {
            action: Action::RewriteArgv {
                paths: vec![(0, paths::bytes(&ir.real))],
                argv_idx: 1,
                argv,
            },
            exit_stop: false,
        }))
    }

    /// execve of an ELF whose PT_INTERP the environment replaced (a libc
    /// upgraded inside it): the kernel would map the host's loader. Run the
    /// environment's loader instead, as `ld.so --argv0 ARGV0 PROGRAM ARGS`.
    fn elf_loader(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        real: &Path,
        raw: &[u8],
    ) -> Result<Option<Verdict>, i32> {
        let Some(interp) = elf_interp(real) else {
            return Ok(None);
        };
        let Ok(ir) = self.resolver(call, tv).resolve(None, &interp, true) else {
            return Ok(None);
        };
        if ir.loc != Some(isotrace_idb::Loc::Upper) {
            return Ok(None);
        }
        let argv_ptrs = tracee_argv(call.args[1], tv)?;
        let mut argv = vec![ArgvItem::New(interp), ArgvItem::New(b"--argv0".to_vec())];
        match argv_ptrs.first() {
            Some(&p) => argv.push(ArgvItem::Tracee(p)),
            None => argv.push(ArgvItem::New(raw.to_vec())),
        }
        argv.push(ArgvItem::New(raw.to_vec()));
        argv.extend(argv_ptrs.into_iter().skip(1).map(ArgvItem::Tracee));
        Ok(Some(Verdict {
            action: Action::RewriteArgv {
                paths: vec![(0, paths::bytes(&ir.real))],
                argv_idx: 1,
                argv,
            },
            exit_stop: false,
        }))
    }
}

/// The pointers of a NULL-terminated string array in tracee memory.
fn tracee_argv(mut at: u64, tv: &mut dyn TraceeView) -> Result<Vec<u64>, i32> {
    const MAX: usize = 1 << 17;
    let mut out = Vec::new();
    if at == 0 {
        return Ok(out);
    }
    while out.len() < MAX {
        let chunk = tv.read_bytes(at, 8).ok_or(libc::EFAULT)?;
        let p = u64::from_ne_bytes(chunk.try_into().map_err(|_| libc::EFAULT)?);
        if p == 0 {
            return Ok(out);
        }
        out.push(p);
        at += 8;
    }
    Err(libc::E2BIG)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn splits_like_binfmt_script() {
        assert_eq!(parse(b"#!/bin/sh\necho"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(
            parse(b"#! /usr/bin/env  python3 -u \n"),
            Some((b"/usr/bin/env".to_vec(), Some(b"python3 -u".to_vec())))
        );
        assert_eq!(parse(b"\\x7fELF"), None);
        assert_eq!(parse(b"#!\n"), None);
    }
}
