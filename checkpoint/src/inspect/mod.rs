//! What `isotrace inspect` shows of an image: a JSON document following a
//! versioned schema (IMAGE.md, "Inspect JSON"), a human summary, and
//! hexdumps of captured memory.

mod hexdump;
mod human;
mod json;

pub use hexdump::hexdump;
pub use human::human;
pub use json::{json, json_text, SCHEMA_NAME, SCHEMA_VERSION};

/// Which part of the image to show (`inspect IMAGE ps|fds|mems|sockets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    All,
    Ps,
    Fds,
    Mems,
    Sockets,
}

/// NUL-separated strings (cmdline, environ) as a list, lossily decoded.
pub fn nul_list(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The signals in a sigset (bit N-1 is signal N) by name.
pub fn signal_names(set: u64) -> Vec<String> {
    (1..=64i32)
        .filter(|n| set & (1u64 << (n - 1)) != 0)
        .map(|n| {
            nix::sys::signal::Signal::try_from(n)
                .map_or_else(|_| format!("SIG{n}"), |s| s.as_str().to_owned())
        })
        .collect()
}

/// signo and si_code of a raw siginfo_t.
pub fn siginfo_head(raw: &[u8]) -> (i32, i32) {
    let int = |at: usize| {
        raw.get(at..at + 4)
            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
    };
    (int(0), int(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{self, PID};

    #[test]
    fn helpers() {
        assert_eq!(nul_list(b"a\0b c\0"), vec!["a", "b c"]);
        assert!(nul_list(b"").is_empty());
        assert_eq!(signal_names((1 << 1) | (1 << 9)), vec!["SIGINT", "SIGUSR1"]);
    }

    #[test]
    fn views() {
        let tmp = tempfile::tempdir().unwrap();
        let image = testutil::image(&tmp.path().join("img"));
        let doc = json(&image, View::All);
        assert_eq!(doc["schema"], SCHEMA_NAME);
        assert_eq!(doc["schema_version"], SCHEMA_VERSION);
        let p = &doc["processes"][0];
        assert_eq!(p["pid"], PID);
        assert_eq!(p["cmdline"], serde_json::json!(["fake", "--flag"]));
        assert_eq!(p["threads"].as_array().unwrap().len(), 2);
        assert_eq!(p["threads"][0]["regs"]["rip"], "0x401234");
        assert_eq!(
            p["threads"][0]["signals"]["blocked"],
            serde_json::json!(["SIGUSR1"])
        );
        assert_eq!(p["mems"][1]["captured"], 3 * 4096);
        assert_eq!(p["fds"][0]["kind"], "device");
        let ps = json(&image, View::Ps);
        assert!(ps["processes"][0].get("fds").is_none());
        let text = human(&image, View::All);
        assert!(text.contains("process 4242 (fake)"), "{text}");
        assert!(text.contains("rip 0x0000000000401234"), "{text}");
        let dump = hexdump(&image, PID, 0x10002ff8, 16).unwrap();
        assert!(dump.contains("not captured"), "{dump}");
        assert!(dump.contains("0000000010003000  13 13 13"), "{dump}");
    }
}
