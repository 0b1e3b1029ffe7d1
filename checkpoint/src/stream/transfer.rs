//! What goes through a session after the handshake.
//!
//! An image directory (IMAGE.md) is sent as, for each section in the
//! manifest's order: `Section {"name","size"}`, its bytes in `Data` frames
//! of at most 1 MiB, `SectionEnd`; then one `Manifest` frame holding
//! manifest.json verbatim. The receiver writes each section where the
//! caller says (a tmpfs directory, not a disk), hashing each as it comes
//! (BLAKE3, IMAGE.md), and the manifest last, once every section matched
//! it. Pre-copy deltas (STREAM.md) are rebuilt from the pre-copy store.
//!
//! A byte stream (the environment's tar) is a run of `Layer` frames ended
//! by `LayerEnd {"bytes"}`: [`FrameSink`] and [`FrameSource`] adapt it to
//! `Write` and `Read`.

use super::frame::{FrameReader, FrameWriter, Kind, CHUNK};
pub use super::receive::recv_image;
use super::{Error, Result};
use crate::image::manifest::{Manifest, MANIFEST};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

#[derive(Serialize, Deserialize)]
pub(super) struct SectionHead {
    pub(super) name: String,
    pub(super) size: u64,
    /// A pages section of this pid sent as a delta: Data and Reuse frames.
    #[serde(default)]
    pub(super) delta_pid: Option<i32>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Reuse {
    pub(super) pid: i32,
    pub(super) addr: u64,
    pub(super) pages: u64,
}

/// Sends the image at `dir`; returns the section bytes sent.
pub fn send_image<W: Write>(tx: &mut FrameWriter<W>, dir: &Path) -> Result<u64> {
    let text = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| Error::io(format!("{}", dir.join(MANIFEST).display()), e))?;
    let manifest =
        Manifest::parse(&text).map_err(|e| Error::Protocol(format!("image to send: {e}")))?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    for s in &manifest.sections {
        let path = dir.join(&s.name);
        let mut file = File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        tx.send_json(
            Kind::Section,
            &SectionHead {
                name: s.name.clone(),
                size: s.size,
                delta_pid: None,
            },
        )?;
        let mut left = s.size;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            file.read_exact(&mut buf[..n])
                .map_err(|e| Error::io(path.display().to_string(), e))?;
            tx.send(Kind::Data, &buf[..n])?;
            left -= n as u64;
        }
        tx.send(Kind::SectionEnd, b"")?;
        total += s.size;
    }
    tx.send(Kind::Manifest, &text)?;
    Ok(total)
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path.display().to_string(), e))
}

/// `Write` as `Layer` frames; [`FrameSink::end`] sends `LayerEnd`.
pub struct FrameSink<'a, W: Write> {
    tx: &'a mut FrameWriter<W>,
    buf: Vec<u8>,
    bytes: u64,
}

impl<'a, W: Write> FrameSink<'a, W> {
    pub fn new(tx: &'a mut FrameWriter<W>) -> Self {
        FrameSink {
            tx,
            buf: Vec::with_capacity(CHUNK),
            bytes: 0,
        }
    }

    fn push(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.tx
                .send(Kind::Layer, &self.buf)
                .map_err(io::Error::other)?;
            self.bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends what is buffered and the end marker; returns the bytes sent.
    pub fn end(mut self) -> Result<u64> {
        self.push().map_err(|e| Error::io("sending the layer", e))?;
        let bytes = self.bytes;
        self.tx
            .send_json(Kind::LayerEnd, &serde_json::json!({ "bytes": bytes }))?;
        Ok(bytes)
    }
}

impl<W: Write> Write for FrameSink<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.push()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Read` over `Layer` frames up to `LayerEnd` (then EOF). Anything else
/// (an Abort from the source, a bad tag) is an error, never an EOF, so a
/// tar reader cannot mistake a cut stream for a short archive.
pub struct FrameSource<'a, R: Read> {
    rx: &'a mut FrameReader<R>,
    buf: Vec<u8>,
    at: usize,
    done: bool,
    pub bytes: u64,
}

impl<'a, R: Read> FrameSource<'a, R> {
    pub fn new(rx: &'a mut FrameReader<R>) -> Self {
        FrameSource {
            rx,
            buf: Vec::new(),
            at: 0,
            done: false,
            bytes: 0,
        }
    }

    /// Reads up to the end marker (what a tar reader left unread) and
    /// checks the byte count it announces.
    pub fn finish(mut self) -> Result<u64> {
        let mut sink = [0u8; 64 * 1024];
        while self
            .read(&mut sink)
            .map_err(|e| Error::io("receiving the layer", e))?
            > 0
        {}
        Ok(self.bytes)
    }
}

impl<R: Read> Read for FrameSource<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() && !self.done {
            let frame = self.rx.recv().map_err(io::Error::other)?;
            match frame.kind {
                Kind::Layer => {
                    self.bytes += frame.payload.len() as u64;
                    self.buf = frame.payload;
                    self.at = 0;
                }
                Kind::LayerEnd => {
                    #[derive(Deserialize)]
                    struct End {
                        bytes: u64,
                    }
                    let end: End = serde_json::from_slice(&frame.payload)
                        .map_err(|e| io::Error::other(format!("layer end: {e}")))?;
                    if end.bytes != self.bytes {
                        return Err(io::Error::other(format!(
                            "the layer is {} bytes, the sender says {}",
                            self.bytes, end.bytes
                        )));
                    }
                    self.done = true;
                }
                k => {
                    let why = match k {
                        Kind::Abort | Kind::Failed => super::frame::reason(&frame.payload),
                        k => format!("unexpected {k:?} in the layer"),
                    };
                    return Err(io::Error::other(why));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Host, ImageWriter, Kind as ImageKind, FORMAT_NAME, FORMAT_VERSION};

    fn image(dir: &Path) {
        let mut w = ImageWriter::create(dir).unwrap();
        w.write_section("pages-1.img", &vec![9u8; 3 * CHUNK + 17])
            .unwrap();
        w.write_section("procs.bin", b"not decoded here").unwrap();
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            kind: ImageKind::Checkpoint,
            created: "2026-11-26T00:00:00Z".into(),
            host: Host {
                kernel: "k".into(),
                arch: "x86_64".into(),
                xcr0: "0x7".into(),
            },
            root_pid: 1,
            pids: vec![1],
            memory_method: "stopped".into(),
            limitations: vec![],
            sections: vec![],
        };
        w.commit(manifest).unwrap();
    }

    #[test]
    fn image_and_layer_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("img");
        image(&src);
        let mut tx = FrameWriter::new(Vec::new(), [3; 32]);
        let mut sink = FrameSink::new(&mut tx);
        sink.write_all(&vec![5u8; CHUNK + 3]).unwrap();
        assert_eq!(sink.end().unwrap(), CHUNK as u64 + 3);
        assert_eq!(
            send_image(&mut tx, &src).unwrap(),
            3 * CHUNK as u64 + 17 + 16
        );
        let bytes = tx.get_ref().clone();
        let mut rx = FrameReader::new(bytes.as_slice(), [3; 32]);
        let mut layer = Vec::new();
        let mut source = FrameSource::new(&mut rx);
        source.read_to_end(&mut layer).unwrap();
        assert_eq!(layer, vec![5u8; CHUNK + 3]);
        let dst = tmp.path().join("got");
        std::fs::create_dir(&dst).unwrap();
        let image = recv_image(&mut rx, &dst, None).err().unwrap();
        // procs.bin here is not a real tree: everything up to decoding passed.
        assert!(image.to_string().contains("procs.bin"), "{image}");
        for name in ["pages-1.img", "procs.bin", MANIFEST] {
            assert_eq!(
                std::fs::read(src.join(name)).unwrap(),
                std::fs::read(dst.join(name)).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_cut_or_hostile_image_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("img");
        image(&src);
        let mut tx = FrameWriter::new(Vec::new(), [3; 32]);
        send_image(&mut tx, &src).unwrap();
        let bytes = tx.get_ref().clone();
        let dst = tmp.path().join("cut");
        std::fs::create_dir(&dst).unwrap();
        let mut rx = FrameReader::new(&bytes[..bytes.len() / 2], [3; 32]);
        assert!(matches!(
            recv_image(&mut rx, &dst, None),
            Err(Error::Truncated)
        ));
        assert!(!dst.join(MANIFEST).exists());
        // One byte of page data flipped on the way (Data frames are not
        // tagged): the section's BLAKE3 refuses it, naming the section.
        let mut bad = bytes.clone();
        let at = bytes.windows(4).position(|w| w == [9, 9, 9, 9]).unwrap() + 1000;
        bad[at] ^= 1;
        let flipped = tmp.path().join("flipped");
        std::fs::create_dir(&flipped).unwrap();
        let mut rx = FrameReader::new(bad.as_slice(), [3; 32]);
        let e = recv_image(&mut rx, &flipped, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("pages-1.img") && e.contains("corrupt"), "{e}");
        let mut tx = FrameWriter::new(Vec::new(), [3; 32]);
        tx.send_json(
            Kind::Section,
            &SectionHead {
                name: "../x".into(),
                size: 1,
                delta_pid: None,
            },
        )
        .unwrap();
        let bytes = tx.get_ref().clone();
        let mut rx = FrameReader::new(bytes.as_slice(), [3; 32]);
        assert!(matches!(
            recv_image(&mut rx, &dst, None),
            Err(Error::Protocol(_))
        ));
    }
}
