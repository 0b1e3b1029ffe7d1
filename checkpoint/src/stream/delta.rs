//! The frozen image as a delta over what pre-copy sent (checkpoint/
//! STREAM.md): each pages section whose process was pre-copied goes as
//! `Data` frames for the pages written since, and `Reuse {"pid","addr",
//! "pages"}` frames for the pages the receiver holds. The receiver rebuilds
//! the section byte for byte, and `Image::open` checks it against the
//! SHA-256 the dump computed over the real pages.

use super::frame::{FrameWriter, Kind, CHUNK};
use super::transfer::{Reuse, SectionHead};
use super::{Error, Result};
use crate::image::manifest::{Manifest, MANIFEST};
use crate::image::{decode_tree, PROCS};
use crate::model::{Process, VmaMemory};
use crate::PAGE_SIZE;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Pages the receiver already holds, as the pre-copy says.
pub type Clean<'a> = &'a dyn Fn(i32, u64) -> bool;

/// [`send_image`], except that the pages sections of processes `clean`
/// knows about go as deltas: Reuse frames for the pages the receiver holds,
/// Data for the others. Returns (section bytes sent as data, pages reused).
pub fn send_image_delta<W: Write>(
    tx: &mut FrameWriter<W>,
    dir: &Path,
    clean: Clean,
) -> Result<(u64, u64)> {
    let text = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| Error::io(format!("{}", dir.join(MANIFEST).display()), e))?;
    let manifest =
        Manifest::parse(&text).map_err(|e| Error::Protocol(format!("image to send: {e}")))?;
    let procs = std::fs::read(dir.join(PROCS)).map_err(|e| Error::io(PROCS, e))?;
    let tree = decode_tree(&manifest, &procs)
        .map_err(|e| Error::Protocol(format!("image to send: {e}")))?;
    let (mut data, mut reused) = (0, 0);
    for s in &manifest.sections {
        let path = dir.join(&s.name);
        let file = File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let proc = tree
            .processes
            .iter()
            .find(|p| p.pages_section == s.name && tiled(p, s.size));
        tx.send_json(
            Kind::Section,
            &SectionHead {
                name: s.name.clone(),
                size: s.size,
                delta_pid: proc.map(|p| p.pid),
            },
        )?;
        match proc {
            Some(p) => {
                let (d, r) = send_delta(tx, &file, p, clean)?;
                data += d;
                reused += r;
            }
            None => {
                send_range(tx, &file, 0, s.size)?;
                data += s.size;
            }
        }
        tx.send(Kind::SectionEnd, b"")?;
    }
    tx.send(Kind::Manifest, &text)?;
    Ok((data, reused))
}

/// Whether the process's runs fill its pages section in order, as the
/// dump writes them; only then can the section be sent run by run.
fn tiled(p: &Process, size: u64) -> bool {
    let mut at = 0;
    for v in &p.vmas {
        if let VmaMemory::Dumped { runs } = &v.memory {
            for r in runs {
                if r.offset != at {
                    return false;
                }
                at += r.pages * PAGE_SIZE;
            }
        }
    }
    at == size
}

fn send_range<W: Write>(tx: &mut FrameWriter<W>, file: &File, from: u64, len: u64) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0;
    while at < len {
        let n = ((len - at) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], from + at)
            .map_err(|e| Error::io("reading a pages section", e))?;
        tx.send(Kind::Data, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

fn send_delta<W: Write>(
    tx: &mut FrameWriter<W>,
    file: &File,
    p: &Process,
    clean: Clean,
) -> Result<(u64, u64)> {
    let (mut data, mut reused) = (0, 0);
    let runs = p.vmas.iter().flat_map(|v| match &v.memory {
        VmaMemory::Dumped { runs } => runs.as_slice(),
        VmaMemory::Skipped { .. } => &[],
    });
    for r in runs {
        let mut i = 0;
        while i < r.pages {
            let held = clean(p.pid, r.addr + i * PAGE_SIZE);
            let mut j = i + 1;
            while j < r.pages && clean(p.pid, r.addr + j * PAGE_SIZE) == held {
                j += 1;
            }
            let (addr, pages) = (r.addr + i * PAGE_SIZE, j - i);
            if held {
                tx.send_json(
                    Kind::Reuse,
                    &Reuse {
                        pid: p.pid,
                        addr,
                        pages,
                    },
                )?;
                reused += pages;
            } else {
                send_range(tx, file, r.offset + i * PAGE_SIZE, pages * PAGE_SIZE)?;
                data += pages * PAGE_SIZE;
            }
            i = j;
        }
    }
    Ok((data, reused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{codec, Host, ImageWriter, Kind as ImageKind, FORMAT_NAME, FORMAT_VERSION};
    use crate::model::{PageRun, ProcessTree, Vma};
    use crate::stream::pages::{payload, PageStore};
    use crate::stream::transfer::recv_image;
    use crate::stream::FrameReader;

    const PS: usize = PAGE_SIZE as usize;

    fn page(tag: u8) -> Vec<u8> {
        vec![tag; PS]
    }

    /// pid 7 with runs of 4 pages at 0x10000 and 2 at 0x18000; page i
    /// of the section is filled with byte i+1.
    fn image(dir: &Path) -> Vec<u8> {
        let mut w = ImageWriter::create(dir).unwrap();
        let bytes: Vec<u8> = (1..=6u8).flat_map(page).collect();
        w.write_section("pages-7.img", &bytes).unwrap();
        let runs = vec![
            PageRun {
                addr: 0x10000,
                pages: 4,
                offset: 0,
            },
            PageRun {
                addr: 0x18000,
                pages: 2,
                offset: 4 * PAGE_SIZE,
            },
        ];
        let tree = ProcessTree {
            root: 7,
            processes: vec![Process {
                pid: 7,
                pages_section: "pages-7.img".into(),
                vmas: vec![Vma {
                    start: 0x10000,
                    end: 0x20000,
                    perms: "rw-p".into(),
                    memory: VmaMemory::Dumped { runs },
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        w.write_section(PROCS, &codec::encode(&tree).unwrap())
            .unwrap();
        w.commit(Manifest {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            kind: ImageKind::Checkpoint,
            created: "2026-11-26T00:00:00Z".into(),
            host: Host {
                kernel: "k".into(),
                arch: "x86_64".into(),
                xcr0: "0x7".into(),
            },
            root_pid: 7,
            pids: vec![7],
            memory_method: "stopped".into(),
            limitations: vec![],
            sections: vec![],
        })
        .unwrap();
        bytes
    }

    /// Sends the image as a delta over a store holding `held` (address,
    /// byte) pages, with `clean` addresses reused; receives it back.
    fn round_trip(held: &[(u64, u8)], clean: &[u64]) -> (Result<crate::Image>, Vec<u8>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = image(&tmp.path().join("img"));
        let mut store = PageStore::new(tmp.path()).unwrap();
        for &(addr, tag) in held {
            store.put(&payload(7, addr, &page(tag))).unwrap();
        }
        let mut tx = FrameWriter::new(Vec::new(), [4; 32]);
        let is_clean = |pid: i32, a: u64| pid == 7 && clean.contains(&a);
        let (data, reused) = send_image_delta(&mut tx, &tmp.path().join("img"), &is_clean).unwrap();
        // Data covers everything but the reused pages (procs.bin too).
        assert!(data >= bytes.len() as u64 - reused * PAGE_SIZE);
        let dst = tmp.path().join("got");
        std::fs::create_dir(&dst).unwrap();
        let mut rx = FrameReader::new(tx.get_ref().as_slice(), [4; 32]);
        let got = recv_image(&mut rx, &dst, Some(&store));
        let section = std::fs::read(dst.join("pages-7.img")).unwrap_or_default();
        assert_eq!(
            section.len() == bytes.len(),
            got.is_ok() || section.len() == bytes.len()
        );
        (got, section, reused)
    }

    #[test]
    fn clean_pages_are_reused_and_the_section_is_rebuilt() {
        let held = [(0x10000, 1), (0x11000, 2), (0x18000, 5)];
        let (got, section, reused) = round_trip(&held, &[0x10000, 0x11000, 0x18000]);
        let image = got.unwrap();
        assert_eq!(reused, 3);
        assert_eq!(section, (1..=6u8).flat_map(page).collect::<Vec<_>>());
        assert_eq!(image.tree.processes[0].pid, 7);
    }

    #[test]
    fn a_stale_reused_page_fails_the_checksum() {
        // The store holds an old version of 0x11000 that tracking "missed".
        let (got, _, _) = round_trip(&[(0x10000, 1), (0x11000, 9)], &[0x10000, 0x11000]);
        let e = got.err().expect("a stale page must be refused").to_string();
        assert!(e.contains("pages-7.img") && e.contains("corrupt"), "{e}");
    }
}
