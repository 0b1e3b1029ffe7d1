//! ELF64 core files from an image, for gdb: one PT_NOTE (notes.rs) and a
//! PT_LOAD per captured page run plus one with p_filesz = 0 per range the
//! image holds nothing for.
//!
//! gdb reads a p_filesz = 0 range of a file mapping from the file NT_FILE
//! names (so code and read-only data come from the binaries on disk), and
//! any other such range as zeros, which is what never-touched anonymous
//! memory is. Page data is streamed from the image, never held whole.

pub mod notes;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::model::{Process, Vma, VmaMemory};
use crate::PAGE_SIZE;
use goblin::elf::header::{
    EI_CLASS, EI_DATA, EI_VERSION, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_X86_64, ET_CORE, EV_CURRENT,
};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::elf64::program_header::{ProgramHeader, SIZEOF_PHDR};
use scroll::{Pwrite, LE};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One PT_LOAD: where it maps, and where its bytes are in the pages
/// section (None: no bytes in the core, p_filesz = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub vaddr: u64,
    pub memsz: u64,
    pub flags: u32,
    pub src: Option<u64>,
}

fn flags(vma: &Vma) -> u32 {
    (if vma.readable() { PF_R } else { 0 })
        | (if vma.writable() { PF_W } else { 0 })
        | (if vma.executable() { PF_X } else { 0 })
}

/// The PT_LOADs of a process, in address order, covering every mapping.
pub fn loads(proc: &Process) -> Vec<Load> {
    let mut out = Vec::new();
    for vma in &proc.vmas {
        let flags = flags(vma);
        let gap = |out: &mut Vec<Load>, from: u64, to: u64| {
            if to > from {
                out.push(Load {
                    vaddr: from,
                    memsz: to - from,
                    flags,
                    src: None,
                });
            }
        };
        let runs = match &vma.memory {
            VmaMemory::Dumped { runs } => runs.as_slice(),
            VmaMemory::Skipped { .. } => &[],
        };
        let mut cursor = vma.start;
        for run in runs {
            gap(&mut out, cursor, run.addr);
            let memsz = run.pages * PAGE_SIZE;
            out.push(Load {
                vaddr: run.addr,
                memsz,
                flags,
                src: Some(run.offset),
            });
            cursor = run.addr + memsz;
        }
        gap(&mut out, cursor, vma.end);
    }
    out
}

fn header(phnum: u16) -> Header {
    let mut e_ident = [0u8; 16];
    e_ident[..4].copy_from_slice(ELFMAG);
    e_ident[EI_CLASS] = ELFCLASS64;
    e_ident[EI_DATA] = ELFDATA2LSB;
    e_ident[EI_VERSION] = EV_CURRENT;
    Header {
        e_ident,
        e_type: ET_CORE,
        e_machine: EM_X86_64,
        e_version: u32::from(EV_CURRENT),
        e_phoff: SIZEOF_EHDR as u64,
        e_ehsize: SIZEOF_EHDR as u16,
        e_phentsize: SIZEOF_PHDR as u16,
        e_phnum: phnum,
        ..Default::default()
    }
}

/// Header, program headers and notes, plus where the segment data starts.
fn head(proc: &Process, loads: &[Load]) -> Result<(Vec<u8>, Vec<ProgramHeader>)> {
    let phnum = u16::try_from(loads.len() + 1)
        .ok()
        .filter(|&n| n < 0xffff)
        .ok_or_else(|| Error::Invalid {
            what: format!(
                "pid {}: {} segments do not fit an ELF core",
                proc.pid,
                loads.len() + 1
            ),
        })?;
    let notes = notes::all(proc);
    let notes_at = (SIZEOF_EHDR + SIZEOF_PHDR * usize::from(phnum)) as u64;
    let mut data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE_SIZE);
    let mut phdrs = vec![ProgramHeader {
        p_type: PT_NOTE,
        p_offset: notes_at,
        p_filesz: notes.len() as u64,
        p_align: 4,
        ..Default::default()
    }];
    for l in loads {
        let filesz = if l.src.is_some() { l.memsz } else { 0 };
        phdrs.push(ProgramHeader {
            p_type: PT_LOAD,
            p_flags: l.flags,
            p_offset: if filesz > 0 { data_at } else { 0 },
            p_vaddr: l.vaddr,
            p_filesz: filesz,
            p_memsz: l.memsz,
            p_align: PAGE_SIZE,
            ..Default::default()
        });
        data_at += filesz;
    }
    let mut out = vec![0u8; notes_at as usize];
    out.pwrite_with(header(phnum), 0, LE).map_err(goblin_err)?;
    for (i, ph) in phdrs.iter().enumerate() {
        out.pwrite_with(*ph, SIZEOF_EHDR + i * SIZEOF_PHDR, LE)
            .map_err(goblin_err)?;
    }
    out.extend_from_slice(&notes);
    out.resize(out.len().next_multiple_of(PAGE_SIZE as usize), 0);
    Ok((out, phdrs))
}

fn goblin_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid {
        what: format!("building the ELF header: {e}"),
    }
}

/// Writes `pid`'s core (default: the image's root process) to `out`,
/// through a temporary file renamed into place.
pub fn write(image: &Image, pid: Option<i32>, out: &Path) -> Result<u64> {
    let proc = image.process(pid.unwrap_or(image.tree.root))?;
    let loads = loads(proc);
    let (head, _) = head(proc, &loads)?;
    let pages = image.pages_file(proc)?;
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map_or("core".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = write_to(&tmp, &head, &loads, &pages, &proc.pages_section).and_then(|size| {
        std::fs::rename(&tmp, out)
            .map(|()| size)
            .map_err(|e| Error::io(out, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_to(path: &Path, head: &[u8], loads: &[Load], pages: &File, section: &str) -> Result<u64> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    w.write_all(head).map_err(io)?;
    let mut size = head.len() as u64;
    let mut buf = vec![0u8; 1 << 20];
    for l in loads {
        let Some(src) = l.src else { continue };
        let mut done = 0;
        while done < l.memsz {
            let n = (l.memsz - done).min(buf.len() as u64) as usize;
            pages
                .read_exact_at(&mut buf[..n], src + done)
                .map_err(|e| Error::corrupt(section, e.to_string()))?;
            w.write_all(&buf[..n]).map_err(io)?;
            done += n as u64;
        }
        size += l.memsz;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(size)
}

#[cfg(test)]
mod tests;
