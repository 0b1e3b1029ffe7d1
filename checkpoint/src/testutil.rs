//! A small fake image for the unit tests of the reader, the views and the
//! core writer: one process, two threads, three mappings.

use crate::dump::manifest;
use crate::image::{codec, Image, ImageWriter, Kind, PROCS};
use crate::model::*;
use std::path::Path;

pub const PID: i32 = 4242;

/// Page `i` of the fake pages section is filled with byte `0x10 + i`.
pub fn page(i: u8) -> Vec<u8> {
    vec![0x10 + i; crate::PAGE_SIZE as usize]
}

pub fn tree() -> ProcessTree {
    let thread = |tid: i32, rip: u64| {
        let mut regs = [0u64; 27];
        regs[16] = rip;
        regs[19] = 0x7ffd_0000_1000;
        let mut xstate = vec![0u8; 832];
        xstate[464..472].copy_from_slice(&0x7u64.to_ne_bytes());
        Thread {
            tid,
            comm: "fake".into(),
            state: "S".into(),
            stop: "interrupt".into(),
            regs,
            xcr0: 7,
            xstate,
            sig_blocked: 1 << 9,
            ..Default::default()
        }
    };
    let vma = |start: u64, end: u64, perms: &str, path: &str, inode: u64, memory| Vma {
        start,
        end,
        perms: perms.into(),
        offset: 0,
        dev: "00:00".into(),
        inode,
        path: path.into(),
        memory,
    };
    let run = |addr, pages, offset| PageRun {
        addr,
        pages,
        offset,
    };
    let vmas = vec![
        vma(
            0x400000,
            0x403000,
            "r-xp",
            "/bin/fake",
            99,
            VmaMemory::Dumped {
                runs: vec![run(0x401000, 1, 0)],
            },
        ),
        vma(
            0x10000000,
            0x10004000,
            "rw-p",
            "",
            0,
            VmaMemory::Dumped {
                runs: vec![run(0x10000000, 2, 4096), run(0x10003000, 1, 3 * 4096)],
            },
        ),
        vma(
            0x7fff0000,
            0x7fff1000,
            "r--p",
            "[vvar]",
            0,
            VmaMemory::Skipped {
                reason: "vvar".into(),
            },
        ),
    ];
    ProcessTree {
        root: PID,
        processes: vec![Process {
            pid: PID,
            ppid: 1,
            pgid: PID,
            sid: PID,
            comm: "fake".into(),
            exe: Some("/bin/fake".into()),
            cwd: Some("/tmp".into()),
            cmdline: b"fake\0--flag\0".to_vec(),
            environ: b"A=1\0B=2\0".to_vec(),
            auxv: [6u64, 4096, 0, 0]
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect(),
            threads: vec![thread(PID, 0x401234), thread(PID + 1, 0x401300)],
            vmas,
            fds: vec![FdEntry {
                fd: 0,
                target: "/dev/null".into(),
                kind: FdKind::Device { major: 1, minor: 3 },
                ..Default::default()
            }],
            pages_section: format!("pages-{PID}.img"),
            ..Default::default()
        }],
    }
}

/// Writes the fake image at `dir` and opens it.
pub fn image(dir: &Path) -> Image {
    let tree = tree();
    let mut w = ImageWriter::create(dir).unwrap();
    let pages: Vec<u8> = (0..4).flat_map(page).collect();
    w.write_section(&format!("pages-{PID}.img"), &pages)
        .unwrap();
    w.write_section(PROCS, &codec::encode(&tree).unwrap())
        .unwrap();
    w.commit(manifest(&tree, Kind::Snapshot)).unwrap();
    Image::open(dir).unwrap()
}
