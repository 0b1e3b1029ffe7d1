//! Opening a session. Each side first sends a plaintext preamble: the magic
//! `ISOTMIG1`, the stream version (u16 LE) and 32 random bytes (its
//! nonce). Both then derive the two direction keys from the shared token
//! and both nonces ([`super::hmac::session_key`]). The source's first frame
//! is a tagged [`Hello`]: a receiver that cannot verify it answers with an
//! untagged Reject and closes. The receiver's answer, [`Accept`] or a
//! `Refuse` naming why (another architecture, a CPU feature missing), is
//! tagged with the receiver's key, so the source learns that the receiver
//! holds the token too before it sends a byte of the image.

use super::frame::{FrameReader, FrameWriter};
use super::hmac::{session_key, TAG_LEN};
use super::{Error, Result, STREAM_VERSION};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

const MAGIC: &[u8; 8] = b"ISOTMIG1";
const NONCE_LEN: usize = 32;

/// What the source says about itself and the group it sends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    /// `migrate` (the source is released once the copy runs) or `clone`.
    pub purpose: String,
    pub group: String,
    /// The image format version of the sections that follow (IMAGE.md).
    pub image_version: u32,
    pub arch: String,
    pub kernel: String,
    /// XCR0 of the source CPU: the XSAVE components the threads may use.
    pub xcr0: u64,
    /// The source CPU's instruction-set flags (from /proc/cpuinfo) that
    /// programs test with CPUID and then rely on.
    pub cpu_flags: Vec<String>,
    /// The group's environment, if it runs in one.
    pub env: Option<EnvOffer>,
    /// The environment the sender asks for on the destination.
    pub dest_env: Option<String>,
    /// The sender would send the layer in two parts (`--pre-copy`), if the
    /// receiver agrees (`Accept.layer_precopy`). Absent from older senders.
    #[serde(default)]
    pub layer_precopy: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnvOffer {
    pub name: String,
    /// The store (`ISOTRACE_HOME`) holding it, canonical.
    pub home: String,
    /// The private layer's directory, canonical.
    pub upper: String,
}

/// How the environment reaches the destination.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EnvPlan {
    /// No environment (`--no-isolation`).
    None,
    /// The destination sees the same store (shared storage): nothing is
    /// sent, the group runs on in the same environment.
    Shared,
    /// The private layer is streamed as a tar after the freeze.
    Stream,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Accept {
    pub host: String,
    pub xcr0: u64,
    pub env_plan: EnvPlan,
    /// The environment the group will run in on the destination.
    pub dest_env: Option<String>,
    /// The layer comes in two parts (the sender offered it in `Hello` and
    /// the plan is `stream`): whole while the group runs, then what changed
    /// at the freeze (`LayerRemoved` frames and a delta tar). Absent
    /// (false) from older receivers, which get the whole layer at the
    /// freeze.
    #[serde(default)]
    pub layer_precopy: bool,
}

/// ISA extensions user code picks at run time (glibc's ifuncs, JITs,
/// numpy): a process moved to a CPU without one of them can die of SIGILL.
pub const ISA_FLAGS: &[&str] = &[
    "sse3",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "popcnt",
    "aes",
    "pclmulqdq",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi1",
    "bmi2",
    "adx",
    "sha_ni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_vnni",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "vaes",
    "vpclmulqdq",
    "gfni",
    "movbe",
    "rdrand",
    "rdseed",
    "erms",
    "fsrm",
];

/// The ISA flags of this CPU (the first `flags` line of /proc/cpuinfo).
pub fn local_cpu_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map_or("", |(_, v)| v);
    line.split_whitespace()
        .filter(|f| ISA_FLAGS.contains(f))
        .map(str::to_string)
        .collect()
}

/// Why a group from `hello`'s CPU cannot run here, if it cannot: another
/// architecture, XSAVE components this CPU lacks (the restored XSAVE area
/// would not load), or ISA extensions this CPU lacks.
pub fn incompatibility(hello: &Hello, xcr0: u64, flags: &[String]) -> Option<String> {
    // The receiver checks each section against the digest of this
    // version as it arrives (IMAGE.md: version 2 is BLAKE3).
    if hello.image_version != crate::image::FORMAT_VERSION {
        return Some(format!(
            "the source sends image format version {}; this host receives version {}",
            hello.image_version,
            crate::image::FORMAT_VERSION
        ));
    }
    if hello.arch != std::env::consts::ARCH {
        return Some(format!(
            "the group is {} code; this host is {}",
            hello.arch,
            std::env::consts::ARCH
        ));
    }
    let missing_bits = hello.xcr0 & !xcr0;
    let missing: Vec<&str> = hello
        .cpu_flags
        .iter()
        .filter(|f| !flags.contains(f))
        .map(String::as_str)
        .collect();
    if missing_bits == 0 && missing.is_empty() {
        return None;
    }
    Some(format!(
        "this CPU lacks features the group may use: xcr0 {xcr0:#x} lacks bits {missing_bits:#x} of the source's {:#x}{}{}",
        hello.xcr0,
        if missing.is_empty() { "" } else { "; missing: " },
        missing.join(" ")
    ))
}

/// An open session: the tagged halves of one TCP connection.
pub struct Session {
    pub tx: FrameWriter<TcpStream>,
    pub rx: FrameReader<BufReader<TcpStream>>,
}

fn nonce() -> Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(n)
}

/// Swaps preambles; returns (ours, theirs).
fn preamble(conn: &mut TcpStream) -> Result<([u8; NONCE_LEN], [u8; NONCE_LEN])> {
    let ours = nonce()?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&STREAM_VERSION.to_le_bytes());
    out.extend_from_slice(&ours);
    conn.write_all(&out)
        .map_err(|e| Error::io("sending the preamble", e))?;
    let mut theirs = [0u8; 8 + 2 + NONCE_LEN];
    conn.read_exact(&mut theirs).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Closed,
        _ => Error::io("reading the peer's preamble", e),
    })?;
    if &theirs[..8] != MAGIC {
        return Err(Error::Protocol(
            "the peer is not an isotrace migration endpoint".into(),
        ));
    }
    let version = u16::from_le_bytes([theirs[8], theirs[9]]);
    if version != STREAM_VERSION {
        return Err(Error::Incompatible(format!(
            "the peer speaks stream version {version}, this isotrace {STREAM_VERSION}"
        )));
    }
    Ok((ours, theirs[10..].try_into().expect("nonce")))
}

fn keys(token: &[u8], source: &[u8], dest: &[u8]) -> ([u8; TAG_LEN], [u8; TAG_LEN]) {
    (
        session_key(token, "isotrace-migrate source->dest", source, dest),
        session_key(token, "isotrace-migrate dest->source", source, dest),
    )
}

fn split(conn: TcpStream, tx: [u8; TAG_LEN], rx: [u8; TAG_LEN]) -> Result<Session> {
    let read = conn
        .try_clone()
        .map_err(|e| Error::io("cloning the socket", e))?;
    Ok(Session {
        tx: FrameWriter::new(conn, tx),
        rx: FrameReader::new(BufReader::with_capacity(1 << 20, read), rx),
    })
}

impl Session {
    /// The source's side: preamble, Hello, then the receiver's Accept (a
    /// Refuse becomes `Error::Peer` with the receiver's reason).
    pub fn open(mut conn: TcpStream, token: &[u8], hello: &Hello) -> Result<(Session, Accept)> {
        let _ = conn.set_nodelay(true);
        let (ours, theirs) = preamble(&mut conn)?;
        let (s2d, d2s) = keys(token, &ours, &theirs);
        let mut s = split(conn, s2d, d2s)?;
        s.tx.send_json(super::Kind::Hello, hello)?;
        let accept = s.rx.expect_json(super::Kind::Accept)?;
        Ok((s, accept))
    }

    /// The receiver's side: preamble and the source's Hello. A Hello that
    /// fails authentication is answered with a Reject before the error is
    /// returned.
    pub fn accept(mut conn: TcpStream, token: &[u8]) -> Result<(Session, Hello)> {
        let _ = conn.set_nodelay(true);
        let (ours, theirs) = preamble(&mut conn)?;
        let (s2d, d2s) = keys(token, &theirs, &ours);
        let mut s = split(conn, d2s, s2d)?;
        match s.rx.expect_json::<Hello>(super::Kind::Hello) {
            Ok(h) => Ok((s, h)),
            Err(e @ Error::Auth { .. }) => {
                let why = "authentication failed: the sender's token is not this receiver's";
                let mut raw = s.tx.get_ref();
                let _ = super::frame::send_reject(&mut raw, why);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    pub fn fail(&mut self, kind: super::Kind, why: &str) {
        let _ = self
            .tx
            .send_json(kind, &serde_json::json!({ "reason": why }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(xcr0: u64, flags: &[&str]) -> Hello {
        Hello {
            purpose: "migrate".into(),
            group: "g".into(),
            image_version: crate::image::FORMAT_VERSION,
            arch: std::env::consts::ARCH.into(),
            kernel: "6.18".into(),
            xcr0,
            cpu_flags: flags.iter().map(|s| s.to_string()).collect(),
            env: None,
            dest_env: None,
            layer_precopy: false,
        }
    }

    #[test]
    fn cpu_compatibility() {
        let here: Vec<String> = ["avx", "avx2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(incompatibility(&hello(0x7, &["avx"]), 0x7, &here), None);
        let why = incompatibility(&hello(0xe7, &["avx"]), 0x7, &here).unwrap();
        assert!(why.contains("lacks bits 0xe0"), "{why}");
        let why = incompatibility(&hello(0x7, &["avx512f"]), 0x7, &here).unwrap();
        assert!(why.contains("missing: avx512f"), "{why}");
        let mut other = hello(0x7, &[]);
        other.arch = "aarch64-not-here".into();
        assert!(incompatibility(&other, 0x7, &here).is_some());
    }

    /// Over a real loopback connection: matching tokens open a session;
    /// a wrong token is rejected by the receiver and the source is told.
    #[test]
    fn sessions_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (conn, _) = listener.accept().unwrap();
                match Session::accept(conn, b"right") {
                    Ok((mut s, h)) => {
                        let a = Accept {
                            host: "h".into(),
                            xcr0: h.xcr0,
                            env_plan: EnvPlan::None,
                            dest_env: None,
                            layer_precopy: false,
                        };
                        s.tx.send_json(super::super::Kind::Accept, &a).unwrap();
                        results.push(true);
                    }
                    Err(_) => results.push(false),
                }
            }
            results
        });
        let h = hello(crate::stream::local_xcr0(), &[]);
        let conn = TcpStream::connect(addr).unwrap();
        let (_, a) = Session::open(conn, b"right", &h).unwrap();
        assert_eq!(a.xcr0, h.xcr0);
        let conn = TcpStream::connect(addr).unwrap();
        let e = Session::open(conn, b"wrong", &h).err().unwrap();
        assert!(matches!(e, Error::Rejected(_)), "{e}");
        assert_eq!(server.join().unwrap(), vec![true, false]);
    }
}
