use crate::error::Error;
use crate::image::{Image, ImageWriter, PROCS};
use crate::testutil::{self, page, PID};
use std::fs;

#[test]
fn write_then_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let image = testutil::image(&dir);
    assert_eq!(image.tree, testutil::tree());
    assert_eq!(image.manifest.sections.len(), 2);
    assert_eq!(image.manifest.memory_method, "stopped");
    // No temporary directory is left next to the image.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["img"]);
}

#[test]
fn memory_reads_by_page() {
    let tmp = tempfile::tempdir().unwrap();
    let image = testutil::image(&tmp.path().join("img"));
    let got = image.read_memory(PID, 0x10000ff0, 0x20).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (0x10000000, Some(page(1))));
    assert_eq!(got[1], (0x10001000, Some(page(2))));
    let got = image.read_memory(PID, 0x10002000, 0x2000).unwrap();
    assert_eq!(got, vec![(0x10002000, None), (0x10003000, Some(page(3)))]);
    assert!(matches!(
        image.read_memory(1, 0, 1),
        Err(Error::NoSuchPid { pid: 1 })
    ));
}

#[test]
fn flipped_byte_names_the_section() {
    for section in [PROCS.to_owned(), format!("pages-{PID}.img")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        testutil::image(&dir);
        let path = dir.join(&section);
        let mut bytes = fs::read(&path).unwrap();
        bytes[5] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        match Image::open(&dir) {
            Err(Error::CorruptSection { name, .. }) => assert_eq!(name, section),
            other => panic!("{section}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn truncated_section_and_bad_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    testutil::image(&dir);
    let pages = dir.join(format!("pages-{PID}.img"));
    let len = fs::metadata(&pages).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(Error::CorruptSection { .. })
    ));
    fs::write(dir.join("manifest.json"), b"{not json").unwrap();
    match Image::open(&dir) {
        Err(Error::CorruptSection { name, .. }) => assert_eq!(name, "manifest.json"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(matches!(
        Image::open(tmp.path()),
        Err(Error::NotAnImage { .. })
    ));
}

#[test]
fn uncommitted_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    {
        let mut w = ImageWriter::create(&dir).unwrap();
        w.write_section("procs.bin", b"half").unwrap();
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    fs::create_dir(&dir).unwrap();
    assert!(matches!(
        ImageWriter::create(&dir),
        Err(Error::Exists { .. })
    ));
}

/// Metadata that checksums fine but lies (a hand-made image) is refused
/// before anything computes with it.
#[test]
fn inconsistent_metadata_is_refused() {
    use crate::dump::manifest;
    use crate::image::{codec, Kind};
    use crate::model::{PageRun, VmaMemory};
    type Breakage = Box<dyn Fn(&mut crate::model::ProcessTree)>;
    let cases: Vec<Breakage> = vec![
        Box::new(|t| t.processes[0].vmas[1].end = t.processes[0].vmas[1].start),
        Box::new(|t| t.processes[0].vmas.swap(0, 1)),
        Box::new(|t| t.processes[0].vmas[0].start += 1),
        Box::new(|t| t.processes[0].pages_section = "pages-1.img".into()),
        Box::new(|t| {
            t.processes[0].vmas[1].memory = VmaMemory::Dumped {
                runs: vec![PageRun {
                    addr: 0x10000000,
                    pages: u64::MAX / 2,
                    offset: 0,
                }],
            }
        }),
        Box::new(|t| {
            t.processes[0].vmas[1].memory = VmaMemory::Dumped {
                runs: vec![PageRun {
                    addr: 0x10000000,
                    pages: 1,
                    offset: 1 << 40,
                }],
            }
        }),
        Box::new(|t| {
            t.processes[0].vmas[1].memory = VmaMemory::Dumped {
                runs: vec![
                    PageRun {
                        addr: 0x10001000,
                        pages: 1,
                        offset: 0,
                    },
                    PageRun {
                        addr: 0x10000000,
                        pages: 1,
                        offset: 4096,
                    },
                ],
            }
        }),
    ];
    for (i, break_it) in cases.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let mut tree = testutil::tree();
        break_it(&mut tree);
        let mut w = ImageWriter::create(&dir).unwrap();
        w.write_section(&format!("pages-{PID}.img"), &vec![0; 4 * 4096])
            .unwrap();
        w.write_section(PROCS, &codec::encode(&tree).unwrap())
            .unwrap();
        w.commit(manifest(&tree, Kind::Snapshot)).unwrap();
        match Image::open(&dir) {
            Err(Error::CorruptSection { name, .. }) => assert_eq!(name, PROCS, "case {i}"),
            other => panic!("case {i}: {:?}", other.map(|_| ())),
        }
    }
}

/// Reads `(offset, len)` ranges of the pages section through a
/// `SectionReader`, then finishes it.
fn read_ranges(image: &Image, ranges: &[(u64, u64)]) -> (Vec<u8>, crate::error::Result<()>) {
    use crate::image::SectionReader;
    let name = format!("pages-{PID}.img");
    let mut r = SectionReader::open(image, &name).unwrap();
    let mut got = Vec::new();
    for &(offset, len) in ranges {
        let mut part = vec![0u8; len as usize];
        r.read(offset, len, &mut |at, bytes| {
            part[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
            Ok(())
        })
        .unwrap();
        got.extend(part);
    }
    (got, r.finish())
}

#[test]
fn pages_are_checked_as_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    testutil::image(&dir);
    let image = Image::open_for_restore(&dir).unwrap();
    assert_eq!(image.unverified, vec![format!("pages-{PID}.img")]);
    // In order, skipping a page, and going back: the bytes are the
    // section's, and the digest checks out.
    let (got, done) = read_ranges(&image, &[(0, 4096), (2 * 4096, 8192), (4096, 4096)]);
    let want: Vec<u8> = [0, 2, 3, 1].into_iter().flat_map(page).collect();
    assert_eq!(got, want);
    done.unwrap();
    // A flipped byte opens (only the size is checked up front) but fails
    // the finish, naming the section, even if that page is never read.
    let path = dir.join(format!("pages-{PID}.img"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[3 * 4096 + 5] ^= 0x40;
    fs::write(&path, bytes).unwrap();
    let image = Image::open_for_restore(&dir).unwrap();
    match read_ranges(&image, &[(0, 4096)]).1 {
        Err(Error::CorruptSection { name, why }) => {
            assert_eq!(name, format!("pages-{PID}.img"));
            assert!(why.contains("blake3"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Image::open(&dir),
        Err(Error::CorruptSection { .. })
    ));
}

/// A version 1 image (SHA-256 digests) is still read and checked.
#[test]
fn version_1_images_are_read() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    testutil::image(&dir);
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    m["version"] = 1.into();
    for s in m["sections"].as_array_mut().unwrap() {
        let bytes = fs::read(dir.join(s["name"].as_str().unwrap())).unwrap();
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let s = s.as_object_mut().unwrap();
        s.remove("blake3");
        s.insert("sha256".into(), hex.into());
    }
    fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(Image::open(&dir).unwrap().tree, testutil::tree());
    let image = Image::open_for_restore(&dir).unwrap();
    read_ranges(&image, &[(0, 4 * 4096)]).1.unwrap();
    // A version 1 manifest with a BLAKE3 digest is refused.
    m["sections"][0]["blake3"] = "00".into();
    fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(Error::CorruptSection { name, .. }) if name == "manifest.json"
    ));
}

/// A section that starts with a hole (pages a migration's receiver
/// holds), then more data than one buffer, another hole and a last page:
/// the write thread starts after the first hole was left, and allocates
/// blocks ahead (on a filesystem with blocks) and cuts them off at the
/// end; the file still has exactly the section's size, the data lands at
/// its offsets, and the holes read as zeros.
#[test]
fn a_section_with_holes_keeps_its_size_and_offsets() {
    use crate::dump::manifest;
    use crate::image::{codec, Kind, WRITE_CHUNK};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let name = format!("pages-{PID}.img");
    let data: Vec<u8> = (0..3 * WRITE_CHUNK + 4096)
        .map(|i| (i / 4096 % 251) as u8 + 1)
        .collect();
    let last = page(7);
    let mut w = ImageWriter::create(&dir).unwrap();
    let mut s = w.section(&name).unwrap();
    s.skip(2 * 4096).unwrap();
    s.write(&data).unwrap();
    s.skip(4096).unwrap();
    s.write(&last).unwrap();
    w.finish(s).unwrap();
    let tree = testutil::tree();
    w.write_section(PROCS, &codec::encode(&tree).unwrap())
        .unwrap();
    w.commit(manifest(&tree, Kind::Snapshot)).unwrap();
    let bytes = fs::read(dir.join(&name)).unwrap();
    let mut want = vec![0u8; 2 * 4096];
    want.extend_from_slice(&data);
    want.extend_from_slice(&[0u8; 4096]);
    want.extend_from_slice(&last);
    assert_eq!(bytes.len(), want.len());
    assert!(bytes == want, "the section's bytes differ");
}
