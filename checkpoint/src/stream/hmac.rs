//! HMAC-SHA256 (RFC 2104, FIPS 198-1) over the `sha2` crate, and the
//! derivation of a session's two keys from the shared token.
//!
//! HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), where K' is K padded
//! with zeros to the block size (64 bytes for SHA-256), or H(K) padded when
//! K is longer than a block; ipad is 0x36 repeated, opad 0x5c repeated.

use sha2::{Digest, Sha256};

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;
/// Length of a tag.
pub const TAG_LEN: usize = 32;

/// An HMAC-SHA256 computation, fed in pieces.
#[derive(Clone)]
pub struct Hmac {
    inner: Sha256,
    outer_key: [u8; BLOCK],
}

impl Hmac {
    pub fn new(key: &[u8]) -> Hmac {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(padded.map(|b| b ^ 0x36));
        Hmac {
            inner,
            outer_key: padded.map(|b| b ^ 0x5c),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    pub fn finish(self) -> [u8; TAG_LEN] {
        let inner = self.inner.finalize();
        let mut outer = Sha256::new();
        outer.update(self.outer_key);
        outer.update(inner);
        outer.finalize().into()
    }
}

/// One-shot HMAC of `parts` concatenated.
pub fn tag(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut h = Hmac::new(key);
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// Compares two tags in time independent of where they differ, so a peer
/// cannot learn a valid tag byte by byte from response timing.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key of one direction of one session: HMAC(token, label || both
/// nonces). Fresh nonces from both ends make every session's keys new, so
/// a recorded stream cannot be replayed into another session, and the
/// label keeps one direction's frames from being reflected as the other's.
pub fn session_key(token: &[u8], label: &str, source: &[u8], dest: &[u8]) -> [u8; TAG_LEN] {
    tag(token, &[label.as_bytes(), source, dest])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn rfc4231_vectors() {
        assert_eq!(
            hex(&tag(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&tag(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&tag(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn comparison_and_keys() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let a = session_key(b"t", "s2d", b"1", b"2");
        assert_ne!(a, session_key(b"t", "d2s", b"1", b"2"));
        assert_ne!(a, session_key(b"u", "s2d", b"1", b"2"));
        assert_ne!(a, session_key(b"t", "s2d", b"1", b"3"));
    }
}
