//! The one place that turns image metadata into bytes and back.
//!
//! The encoding is bincode 2.0.x through its serde integration, with the
//! standard configuration (little-endian, variable-length integers).
//!
//! Why bincode, and why pinned to `=2.0.1`: bincode is compact, fast and
//! schema-less (the Rust types in `model.rs` are the schema), which suits
//! data that only isotrace reads back. But crates.io's bincode 3.0.0 is a
//! tombstone release whose only content is a `compile_error!` announcing
//! that the project is unmaintained, so a plain `bincode = "2"` or a
//! `cargo update` to 3 would break the build. 2.0.1 is the newest 2.0.x and
//! is frozen, so the bytes it produces will not change under us; if it ever
//! must be replaced, only this module changes and FORMAT_VERSION goes up.
//!
//! Decoding is bounded (`with_limit`): a damaged length prefix cannot make
//! the decoder allocate more than the section could possibly hold.

use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};

/// Upper bound on what one decode may allocate.
const DECODE_LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| Error::Invalid {
        what: format!("encoding image metadata: {e}"),
    })
}

/// Decodes a whole section; trailing bytes are corruption too.
pub fn decode<T: DeserializeOwned>(section: &str, bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::corrupt(section, format!("does not decode: {e}")))?;
    if used != bytes.len() {
        return Err(Error::corrupt(
            section,
            format!("{} trailing bytes after the data", bytes.len() - used),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn sample() -> ProcessTree {
        let thread = Thread {
            tid: 7,
            comm: "t".into(),
            regs: [3; 27],
            xstate: vec![1, 2, 3],
            siginfo: vec![vec![0; 128]],
            ..Default::default()
        };
        let vma = Vma {
            start: 0x1000,
            end: 0x3000,
            perms: "rw-p".into(),
            memory: VmaMemory::Dumped {
                runs: vec![PageRun {
                    addr: 0x2000,
                    pages: 1,
                    offset: 0,
                }],
            },
            ..Default::default()
        };
        let fd = FdEntry {
            fd: 3,
            kind: FdKind::Socket(Some(SocketInfo::Unix {
                kind: "stream".into(),
                state: "connected".into(),
                path: "@x".into(),
            })),
            ..Default::default()
        };
        ProcessTree {
            root: 7,
            processes: vec![Process {
                pid: 7,
                limits: vec![Limit {
                    name: "Max open files".into(),
                    soft: Some(1024),
                    hard: None,
                    units: "files".into(),
                }],
                threads: vec![thread],
                vmas: vec![vma],
                fds: vec![fd],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn round_trip() {
        let tree = sample();
        let bytes = encode(&tree).unwrap();
        let back: ProcessTree = decode("procs.bin", &bytes).unwrap();
        assert_eq!(back, tree);
    }

    #[test]
    fn truncated_and_trailing_are_corrupt() {
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let err = decode::<ProcessTree>("procs.bin", &bytes[..cut]).unwrap_err();
            assert!(matches!(err, Error::CorruptSection { ref name, .. } if name == "procs.bin"));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<ProcessTree>("procs.bin", &longer).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            let _ = decode::<ProcessTree>("procs.bin", &bytes);
        }
    }
}
