//! `manifest.json`: what the image is and the checksum of every section.

use super::digest::Algo;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `format` field of every manifest.
pub const FORMAT_NAME: &str = "isotrace-image";
/// The on-disk format this code writes (IMAGE.md). Version 2 digests
/// sections with BLAKE3; version 1 (SHA-256) images are still read.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this code reads.
pub const OLDEST_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A group frozen under a supervisor, restorable (#5).
    Checkpoint,
    /// A forensic capture of any process (#7): not meant to be restored.
    Snapshot,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// uname -r of the machine that wrote the image.
    pub kernel: String,
    pub arch: String,
    /// XCR0 of the dumped threads, hex: which xstate components the XSAVE
    /// areas hold.
    pub xcr0: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the section's bytes (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Lower-case hex BLAKE3 of the section's bytes (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Bytes of the section the writer did not have: the pages a
    /// migration's receiver already holds from pre-copy (STREAM.md), left
    /// as holes. The digest then covers only the other bytes, in order. A
    /// section with held bytes is not a whole image's (`Image::open`
    /// refuses it); the receiver rebuilds it and writes its own digest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Section {
    /// A version 2 section of `size` bytes whose BLAKE3 is `hex`.
    pub fn blake3(name: &str, size: u64, hex: String) -> Section {
        Section {
            name: name.into(),
            size,
            sha256: None,
            blake3: Some(hex),
            held: 0,
        }
    }

    /// The algorithm and the expected hex digest; [`Manifest::parse`]
    /// guarantees the one of the manifest's version is there.
    pub fn digest(&self) -> (Algo, &str) {
        match (&self.blake3, &self.sha256) {
            (Some(b), _) => (Algo::Blake3, b),
            (None, Some(s)) => (Algo::Sha256, s),
            (None, None) => (Algo::Blake3, ""),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub kind: Kind,
    /// RFC 3339 UTC time the image was committed.
    pub created: String,
    pub host: Host,
    /// The pid asked for, and every pid in the image.
    pub root_pid: i32,
    pub pids: Vec<i32>,
    /// How memory was captured: "stopped" (read while every thread was
    /// stopped by ptrace).
    pub memory_method: String,
    /// What this capture cannot see, in words.
    pub limitations: Vec<String>,
    pub sections: Vec<Section>,
}

impl Manifest {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Probe {
            format: String,
            version: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(MANIFEST, format!("not a manifest: {e}")))?;
        if probe.format != FORMAT_NAME {
            return Err(Error::corrupt(
                MANIFEST,
                format!("format is {:?}, not {FORMAT_NAME:?}", probe.format),
            ));
        }
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&probe.version) {
            return Err(Error::UnsupportedVersion {
                found: probe.version,
                oldest: OLDEST_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(MANIFEST, format!("bad field: {e}")))?;
        for s in &manifest.sections {
            if !valid_section_name(&s.name) {
                return Err(Error::corrupt(
                    MANIFEST,
                    format!("bad section name {:?}", s.name),
                ));
            }
            // Each version has exactly its own digest: a version 2 section
            // without a BLAKE3 would otherwise go unchecked.
            let ok = match manifest.version {
                1 => s.sha256.is_some() && s.blake3.is_none(),
                _ => s.blake3.is_some() && s.sha256.is_none(),
            };
            if !ok {
                return Err(Error::corrupt(
                    MANIFEST,
                    format!(
                        "section {} lacks the digest of format version {}",
                        s.name, manifest.version
                    ),
                ));
            }
        }
        Ok(manifest)
    }
}

/// Section names are plain file names inside the image directory: no path
/// separators, no dot-files, nothing that could escape the directory.
pub fn valid_section_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name != MANIFEST
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `secs` since the epoch as RFC 3339 UTC (days-from-civil inverted,
/// H. Hinnant's algorithm), so no date crate is needed for one field.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn section_names() {
        assert!(valid_section_name("pages-123.img"));
        assert!(valid_section_name("procs.bin"));
        for bad in ["", "../x", "a/b", ".hidden", "manifest.json"] {
            assert!(!valid_section_name(bad), "{bad}");
        }
    }

    #[test]
    fn version_is_checked() {
        let text = br#"{"format":"isotrace-image","version":99}"#;
        assert!(matches!(
            Manifest::parse(text),
            Err(Error::UnsupportedVersion { found: 99, .. })
        ));
        let text = br#"{"format":"other","version":2}"#;
        assert!(matches!(
            Manifest::parse(text),
            Err(Error::CorruptSection { .. })
        ));
    }
}
