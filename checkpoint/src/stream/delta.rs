//! The frozen image as a delta over what pre-copy sent (checkpoint/
//! STREAM.md). First a tagged `PreEnd {"pages","blake3"}` commits to every
//! PrePages payload sent. Then each pages section the frozen dump left
//! holes in (the pages the receiver holds, `Section::held`) goes as `Data`
//! frames for the pages it read, and `Reuse {"pid","addr","pages"}` frames
//! for the holes. The receiver rebuilds the section, checks the `Data`
//! bytes against the manifest's BLAKE3 (which covers exactly those) and
//! the reused ones against `PreEnd`.

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

/// Pages the receiver already holds, as the pre-copy says: the run of
/// `pages` pages of `pid` at `addr` cut where pages go from held to not,
/// as (address, pages, held) in address order.
pub type Clean<'a> = &'a dyn Fn(i32, u64, u64) -> Vec<(u64, u64, bool)>;

/// What the source sent in pre-copy: the PrePages payloads' count and
/// BLAKE3 (`PreCopy::sent_digest`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct PreEnd {
    pub pages: u64,
    pub blake3: String,
}

/// [`send_image`], except that the pages sections the dump left holes in
/// (`Section::held`, the pages `clean` says the receiver holds) go as
/// deltas: Reuse frames for the holes, Data for the rest. `pre` commits to
/// the pre-copy first. Returns (section bytes sent as data, pages reused).
pub fn send_image_delta<W: Write>(
    tx: &mut FrameWriter<W>,
    dir: &Path,
    clean: Clean,
    pre: &PreEnd,
) -> Result<(u64, u64)> {
    tx.send_json(Kind::PreEnd, pre)?;
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
        let proc = match s.held {
            0 => None,
            _ => Some(
                tree.processes
                    .iter()
                    .find(|p| p.pages_section == s.name && tiled(p, s.size))
                    .ok_or_else(|| {
                        Error::Protocol(format!(
                            "image to send: section {} has holes but is no process's whole pages",
                            s.name
                        ))
                    })?,
            ),
        };
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
                if r * PAGE_SIZE != s.held {
                    return Err(Error::Protocol(format!(
                        "image to send: {} has {} bytes of holes but {r} pages are held",
                        s.name, s.held
                    )));
                }
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
        for (addr, pages, held) in clean(p.pid, r.addr, r.pages) {
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
                send_range(tx, file, r.offset + (addr - r.addr), pages * PAGE_SIZE)?;
                data += pages * PAGE_SIZE;
            }
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
    /// Addresses of the section's pages, in order.
    const ADDRS: [u64; 6] = [0x10000, 0x11000, 0x12000, 0x13000, 0x18000, 0x19000];

    fn page(tag: u8) -> Vec<u8> {
        vec![tag; PS]
    }

    /// pid 7 with runs of 4 pages at 0x10000 and 2 at 0x18000; page i
    /// of the section is filled with byte i+1, except the `held` ones,
    /// which the dump left as holes (as at a pre-copied freeze).
    fn image(dir: &Path, held: &[u64]) -> Vec<u8> {
        let mut w = ImageWriter::create(dir).unwrap();
        let bytes: Vec<u8> = (1..=6u8).flat_map(page).collect();
        let mut s = w.section("pages-7.img").unwrap();
        for (i, addr) in ADDRS.iter().enumerate() {
            match held.contains(addr) {
                true => s.skip(PAGE_SIZE).unwrap(),
                false => s.write(&page(i as u8 + 1)).unwrap(),
            }
        }
        w.finish(s).unwrap();
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
    /// byte) pages, with `clean` addresses left out of the dump and
    /// reused; `sent` is the pre-copy the source claims (None: what the
    /// store holds). Receives it back.
    fn round_trip(
        held: &[(u64, u8)],
        clean: &[u64],
        sent: Option<&[(u64, u8)]>,
    ) -> (Result<crate::Image>, Vec<u8>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        let bytes = image(&img, clean);
        let mut store = PageStore::new(tmp.path()).unwrap();
        for &(addr, tag) in held {
            store.put(&payload(7, addr, &page(tag))).unwrap();
        }
        let claimed_dir = tmp.path().join("claimed");
        std::fs::create_dir(&claimed_dir).unwrap();
        let mut claimed = PageStore::new(&claimed_dir).unwrap();
        for &(addr, tag) in sent.unwrap_or(held) {
            claimed.put(&payload(7, addr, &page(tag))).unwrap();
        }
        let pre = PreEnd {
            pages: claimed.received,
            blake3: claimed.digest(),
        };
        let mut tx = FrameWriter::new(Vec::new(), [4; 32]);
        let mut set = crate::pageset::PageSet::new();
        clean.iter().for_each(|&a| set.insert(a, 1));
        let is_clean = |pid: i32, a: u64, n: u64| match pid {
            7 => set.split(a, n),
            _ => vec![(a, n, false)],
        };
        let (data, reused) = send_image_delta(&mut tx, &img, &is_clean, &pre).unwrap();
        // Data covers everything but the reused pages (procs.bin too).
        assert!(data >= bytes.len() as u64 - reused * PAGE_SIZE);
        let dst = tmp.path().join("got");
        std::fs::create_dir(&dst).unwrap();
        let mut rx = FrameReader::new(tx.get_ref().as_slice(), [4; 32]);
        let got = recv_image(&mut rx, &dst, Some(&store));
        // The section as a restore of the directory reads it (held.json):
        // the held pages from the store, the rest from the section's file,
        // whose digest it checks.
        let section = match &got {
            Ok(_) => {
                let image = crate::Image::open_for_restore(&dst).unwrap();
                let mut r = crate::image::SectionReader::open(&image, "pages-7.img").unwrap();
                let mut out = Vec::new();
                let len = bytes.len() as u64;
                r.read(0, len, &mut |_, b| {
                    out.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
                r.finish().unwrap();
                out
            }
            Err(_) => Vec::new(),
        };
        (got, section, reused)
    }

    #[test]
    fn clean_pages_are_reused_and_the_section_is_rebuilt() {
        let held = [(0x10000, 1), (0x11000, 2), (0x18000, 5)];
        let (got, section, reused) = round_trip(&held, &[0x10000, 0x11000, 0x18000], None);
        let image = got.unwrap();
        assert_eq!(reused, 3);
        let whole: Vec<u8> = (1..=6u8).flat_map(page).collect();
        assert_eq!(section, whole);
        assert_eq!(image.tree.processes[0].pid, 7);
        // The received image is still a delta: its held pages are the
        // store's.
        let s = image.manifest.section("pages-7.img").unwrap();
        assert_eq!(s.held, 3 * PAGE_SIZE);
        assert_eq!(image.elsewhere["pages-7.img"].len(), 2);
    }

    #[test]
    fn altered_pre_copied_pages_are_refused() {
        // A page of the pre-copy was changed on the way: the store's
        // digest differs from the one PreEnd commits to.
        let (got, _, _) = round_trip(
            &[(0x10000, 1), (0x11000, 9)],
            &[0x10000, 0x11000],
            Some(&[(0x10000, 1), (0x11000, 2)]),
        );
        let e = got
            .err()
            .expect("an altered page must be refused")
            .to_string();
        assert!(e.contains("pre-copied pages differ"), "{e}");
    }

    #[test]
    fn holes_and_reuse_must_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        image(&img, &[0x10000]);
        let store = PageStore::new(tmp.path()).unwrap();
        let pre = PreEnd {
            pages: 0,
            blake3: store.digest(),
        };
        // The sender would reuse pages the dump read: refused before the
        // section is sent.
        let mut tx = FrameWriter::new(Vec::new(), [4; 32]);
        let all = |_: i32, a: u64, n: u64| vec![(a, n, true)];
        assert!(send_image_delta(&mut tx, &img, &all, &pre).is_err());
        // A whole-section image opens; one with holes does not.
        let e = crate::Image::open(&img).err().unwrap().to_string();
        assert!(e.contains("pages-7.img") && e.contains("held"), "{e}");
    }
}
