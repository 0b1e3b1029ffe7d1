//! Frames: the unit of the migration stream (STREAM.md).
//!
//! On the wire a frame is `kind: u8, len: u32 LE, payload[len], tag[32]`,
//! where tag = HMAC-SHA256(direction key, seq: u64 LE || kind || len ||
//! payload) and seq counts the frames of that direction from 0. A frame
//! whose tag does not match (wrong token, a flipped bit, a frame dropped,
//! reordered or replayed) ends the session. The one exception is
//! [`Kind::Reject`], which a receiver sends, untagged, when it cannot
//! authenticate the peer at all: a sender only ever gives up on it.
//!
//! Bulk frames (page data: `Data`, `PrePages`) carry a zero tag and are
//! authenticated through what commits to them instead: every image section
//! is hashed as it arrives and checked against the BLAKE3 in the tagged
//! `Manifest` frame, and the pre-copied pages against the BLAKE3 in the
//! tagged `PreEnd` frame, before anything is used (STREAM.md,
//! "Authentication of page data"). They still count in `seq`, so adding or
//! dropping one fails the tag of the next control frame. This spares an
//! HMAC pass over the memory of the group on each end.

use super::hmac::{same, Hmac, TAG_LEN};
use super::{Error, Result};
use std::io::{ErrorKind, Read, Write};

/// The largest payload a frame may carry: page data goes in 1 MiB chunks,
/// control frames are small JSON objects.
pub const MAX_PAYLOAD: u32 = 4 << 20;
/// How much page data one DATA frame carries.
pub const CHUNK: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Accept = 2,
    Refuse = 3,
    Layer = 4,
    LayerEnd = 5,
    Section = 6,
    Data = 7,
    SectionEnd = 8,
    Manifest = 9,
    Commit = 10,
    Ready = 11,
    Go = 12,
    Running = 13,
    Failed = 14,
    Abort = 15,
    /// Pre-copy: pid (u32 LE), address (u64 LE), then whole pages.
    PrePages = 16,
    /// In a pages section sent as a delta: `{"pid","addr","pages"}`, pages
    /// the receiver holds from pre-copy.
    Reuse = 17,
    /// The end of pre-copy, before the image: `{"pages","blake3"}`, the
    /// BLAKE3 of every PrePages payload sent, which commits to them.
    PreEnd = 18,
    /// Layer pre-copy, at the freeze, before the delta tar:
    /// `{"paths": [...]}`, entries of the pre-copied layer to remove
    /// (deleted, or replaced by another kind of file), relative to it.
    LayerRemoved = 19,
    /// After `Running`, when the copy's held pages are post-copied:
    /// `{"stats": {...}}` once all are in, or `{"error": "..."}`.
    PostCopied = 20,
    Reject = 0xEE,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        use Kind::*;
        [
            Hello,
            Accept,
            Refuse,
            Layer,
            LayerEnd,
            Section,
            Data,
            SectionEnd,
            Manifest,
            Commit,
            Ready,
            Go,
            Running,
            Failed,
            Abort,
            PrePages,
            Reuse,
            PreEnd,
            LayerRemoved,
            PostCopied,
            Reject,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Whether frames of this kind carry an HMAC (see the module doc).
pub fn tagged(kind: Kind) -> bool {
    !matches!(kind, Kind::Data | Kind::PrePages)
}

fn frame_tag(key: &[u8], seq: u64, kind: u8, len: u32, payload: &[u8]) -> [u8; TAG_LEN] {
    let mut h = Hmac::new(key);
    h.update(&seq.to_le_bytes());
    h.update(&[kind]);
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finish()
}

/// The sending half: tags and numbers every frame.
pub struct FrameWriter<W: Write> {
    out: W,
    key: [u8; TAG_LEN],
    seq: u64,
    /// Payload bytes sent so far.
    pub sent: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W, key: [u8; TAG_LEN]) -> Self {
        FrameWriter {
            out,
            key,
            seq: 0,
            sent: 0,
        }
    }

    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD)
            .ok_or_else(|| Error::Protocol(format!("frame of {} bytes", payload.len())))?;
        let tag = if tagged(kind) {
            frame_tag(&self.key, self.seq, kind as u8, len, payload)
        } else {
            [0; TAG_LEN]
        };
        let mut head = [0u8; 5];
        head[0] = kind as u8;
        head[1..].copy_from_slice(&len.to_le_bytes());
        let io = |e| Error::io("sending", e);
        self.out.write_all(&head).map_err(io)?;
        self.out.write_all(payload).map_err(io)?;
        self.out.write_all(&tag).map_err(io)?;
        self.out.flush().map_err(io)?;
        self.seq += 1;
        self.sent += payload.len() as u64 + 5 + TAG_LEN as u64;
        Ok(())
    }

    pub fn send_json<T: serde::Serialize>(&mut self, kind: Kind, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Protocol(e.to_string()))?;
        self.send(kind, &bytes)
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Sends the untagged refusal a receiver gives a peer it cannot
/// authenticate.
pub fn send_reject(out: &mut impl Write, why: &str) -> std::io::Result<()> {
    let text = why.as_bytes();
    let mut frame = vec![Kind::Reject as u8];
    frame.extend_from_slice(&(text.len() as u32).to_le_bytes());
    frame.extend_from_slice(text);
    frame.extend_from_slice(&[0; TAG_LEN]);
    out.write_all(&frame)?;
    out.flush()
}

/// The receiving half: checks every frame's tag and sequence.
pub struct FrameReader<R: Read> {
    inp: R,
    /// A frame given back with [`FrameReader::unread`].
    pending: Option<Frame>,
    key: [u8; TAG_LEN],
    seq: u64,
    pub received: u64,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inp: R, key: [u8; TAG_LEN]) -> Self {
        FrameReader {
            inp,
            pending: None,
            key,
            seq: 0,
            received: 0,
        }
    }

    /// Fills `buf`; an EOF before it is full is a truncated stream
    /// (`Closed` when nothing of the frame had arrived yet).
    fn fill(&mut self, buf: &mut [u8], first: bool) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.inp.read(&mut buf[done..]) {
                Ok(0) if first && done == 0 => return Err(Error::Closed),
                Ok(0) => return Err(Error::Truncated),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("receiving", e)),
            }
        }
        Ok(())
    }

    /// Makes `frame` the next one [`FrameReader::recv`] returns.
    pub fn unread(&mut self, frame: Frame) {
        self.pending = Some(frame);
    }

    pub fn recv(&mut self) -> Result<Frame> {
        if let Some(f) = self.pending.take() {
            return Ok(f);
        }
        let mut head = [0u8; 5];
        self.fill(&mut head, true)?;
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Err(Error::Protocol(format!(
                "a frame of {len} bytes (at most {MAX_PAYLOAD})"
            )));
        }
        let mut payload = vec![0u8; len as usize];
        self.fill(&mut payload, false)?;
        let mut tag = [0u8; TAG_LEN];
        self.fill(&mut tag, false)?;
        let kind = Kind::from_byte(head[0]);
        if kind == Some(Kind::Reject) {
            return Err(Error::Rejected(
                String::from_utf8_lossy(&payload).into_owned(),
            ));
        }
        let kind = match kind {
            Some(k) if !tagged(k) => k,
            _ => {
                let want = frame_tag(&self.key, self.seq, head[0], len, &payload);
                if !same(&want, &tag) {
                    return Err(Error::Auth { frame: self.seq });
                }
                kind.ok_or_else(|| Error::Protocol(format!("unknown frame kind {}", head[0])))?
            }
        };
        self.seq += 1;
        self.received += u64::from(len) + 5 + TAG_LEN as u64;
        Ok(Frame { kind, payload })
    }

    /// The next frame, which must be of kind `want`; a `Failed` or
    /// `Refuse` from the peer becomes `Error::Peer` with its reason.
    pub fn expect(&mut self, want: Kind) -> Result<Vec<u8>> {
        let f = self.recv()?;
        match f.kind {
            k if k == want => Ok(f.payload),
            Kind::Failed | Kind::Refuse | Kind::Abort => Err(Error::Peer(reason(&f.payload))),
            k => Err(Error::Protocol(format!("expected {want:?}, got {k:?}"))),
        }
    }

    pub fn expect_json<T: serde::de::DeserializeOwned>(&mut self, want: Kind) -> Result<T> {
        let bytes = self.expect(want)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("{want:?} frame: {e}")))
    }

    pub fn get_ref(&self) -> &R {
        &self.inp
    }
}

/// The `reason` of a Failed/Refuse/Abort payload (`{"reason": "..."}`).
pub fn reason(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Why {
        reason: String,
    }
    serde_json::from_slice::<Why>(payload)
        .map(|w| w.reason)
        .unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(key: [u8; 32]) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new(), key);
        w.send(Kind::Hello, b"{\"a\":1}").unwrap();
        w.send(Kind::Data, &[7u8; 3000]).unwrap();
        w.send(Kind::Commit, b"").unwrap();
        w.out
    }

    #[test]
    fn round_trip() {
        let bytes = frames([1; 32]);
        let mut r = FrameReader::new(bytes.as_slice(), [1; 32]);
        assert_eq!(r.expect(Kind::Hello).unwrap(), b"{\"a\":1}");
        assert_eq!(r.expect(Kind::Data).unwrap(), vec![7u8; 3000]);
        assert!(r.expect(Kind::Commit).unwrap().is_empty());
        assert!(matches!(r.recv(), Err(Error::Closed)));
    }

    #[test]
    fn wrong_key_flipped_bit_and_truncation_are_refused() {
        let bytes = frames([1; 32]);
        let mut r = FrameReader::new(bytes.as_slice(), [2; 32]);
        assert!(matches!(r.recv(), Err(Error::Auth { frame: 0 })));
        // Flips in headers and in tagged frames; page data (the Data
        // frame's payload) is checked by the section's BLAKE3 instead
        // (transfer.rs tests).
        for at in [
            0usize,
            3,
            9,
            20,
            5 + 7 + 32,
            5 + 7 + 32 + 2,
            bytes.len() - 1,
        ] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let mut r = FrameReader::new(bad.as_slice(), [1; 32]);
            let all: Result<Vec<Frame>> = (0..3).map(|_| r.recv()).collect();
            assert!(all.is_err(), "flip at {at} went unnoticed");
        }
        let mut r = FrameReader::new(&bytes[..bytes.len() - 5], [1; 32]);
        r.recv().unwrap();
        r.recv().unwrap();
        assert!(matches!(r.recv(), Err(Error::Truncated)));
    }

    #[test]
    fn dropped_frame_breaks_the_sequence() {
        let bytes = frames([1; 32]);
        let first = 5 + 7 + 32;
        let mut r = FrameReader::new(&bytes[first..], [1; 32]);
        // The untagged Data frame passes; the next tagged one, numbered 2
        // by the sender, fails as frame 1.
        assert_eq!(r.recv().unwrap().kind, Kind::Data);
        assert!(matches!(r.recv(), Err(Error::Auth { frame: 1 })));
    }

    #[test]
    fn reject_and_peer_failures() {
        let mut out = Vec::new();
        send_reject(&mut out, "bad token").unwrap();
        let mut r = FrameReader::new(out.as_slice(), [1; 32]);
        assert!(matches!(r.recv(), Err(Error::Rejected(w)) if w == "bad token"));
        let mut w = FrameWriter::new(Vec::new(), [1; 32]);
        w.send(Kind::Failed, br#"{"reason":"no avx512"}"#).unwrap();
        let mut r = FrameReader::new(w.out.as_slice(), [1; 32]);
        assert!(matches!(r.expect(Kind::Running), Err(Error::Peer(w)) if w == "no avx512"));
    }
}
