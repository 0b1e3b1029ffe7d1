//! The settings in force for a run: plain versioned serde data, so that a
//! checkpoint can carry them.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Version of the serialized [`Settings`].
pub const SETTINGS_VERSION: u32 = 1;

/// Where files of a kind that an application installs go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Into the environment's private layer (the default).
    #[default]
    Env,
    /// Into the global location on the host, shared by every environment.
    Global,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Env => "env",
            Policy::Global => "global",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "env" => Some(Policy::Env),
            "global" => Some(Policy::Global),
            _ => None,
        }
    }
}

/// `[isolation]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    /// Path prefixes that stay public, on top of the built-in /proc, /sys
    /// and /dev and the IDB's global rules.
    pub exceptions: Vec<PathBuf>,
    /// When the supervisor may (CAP_SYS_ADMIN): run the program in a mount
    /// namespace where the host is read-only, so that fd-based metadata
    /// calls need no stop; a metadata change through an fd opened
    /// read-only on a host file then fails with EROFS instead of landing
    /// on a copy (README, "The read-only host"). On by default.
    #[serde(default = "yes")]
    pub read_only_host: bool,
    /// Leave getdents64 untrapped while the group has neither changed its
    /// environment nor opened one of the environment's directories: until
    /// then every directory it can list is a host directory, whose kernel
    /// listing is the merged one (README, "Lazy listings"). On by default.
    #[serde(default = "yes")]
    pub lazy_listings: bool,
}

fn yes() -> bool {
    true
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation {
            exceptions: Vec::new(),
            read_only_host: true,
            lazy_listings: true,
        }
    }
}

/// `[libraries]` and `[fonts]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub policy: Policy,
}

/// `[trace]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Trace every run as if `--trace` were given.
    pub default: bool,
}

/// `[checkpoint]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Periodic checkpoints, as `--checkpoint-every`; none by default.
    #[serde(with = "every_serde")]
    pub every: Option<Duration>,
}

/// Every setting, merged from all sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub version: u32,
    pub isolation: Isolation,
    pub libraries: Placement,
    pub fonts: Placement,
    pub trace: Trace,
    pub checkpoint: Checkpoint,
}

impl Default for Settings {
    /// The built-in defaults.
    fn default() -> Self {
        Settings {
            version: SETTINGS_VERSION,
            isolation: Isolation::default(),
            libraries: Placement::default(),
            fonts: Placement::default(),
            trace: Trace::default(),
            checkpoint: Checkpoint::default(),
        }
    }
}

/// Where shared libraries go under `libraries.policy = "global"`: the
/// directories the dynamic loader searches without any configuration on a
/// multiarch system (ld.so(8): the trusted directories, here the Debian
/// multiarch ones and their 64-bit aliases) and /usr/local/lib, where
/// `make install` puts them. /usr/lib itself is left out: it also holds
/// language packages (python3, perl) that are not libraries.
pub fn library_dirs() -> Vec<PathBuf> {
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        PathBuf::from("/usr/lib").join(&triplet),
        PathBuf::from("/lib").join(&triplet),
        PathBuf::from("/usr/lib64"),
        PathBuf::from("/lib64"),
        PathBuf::from("/usr/local/lib"),
    ]
}

/// Where fonts go under `fonts.policy = "global"`: fontconfig's system
/// font directories (the `<dir>` entries of Debian's /etc/fonts/fonts.conf)
/// and its system cache directory, so that `fc-cache` run by an installer
/// refreshes the cache every other program reads.
pub const FONT_DIRS: [&str; 3] = [
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "/var/cache/fontconfig",
];

impl Settings {
    /// `rules` plus what the settings make public for a run:
    /// `isolation.exceptions`, the library directories when
    /// `libraries.policy` is global, the font directories when
    /// `fonts.policy` is global. An exception is a live host tree, so what
    /// an installer writes there lands in the global location, for every
    /// environment and the host; under the env policy (the default) those
    /// trees are copy-on-write like the rest.
    pub fn apply_exceptions(&self, rules: &mut isotrace_idb::Rules) -> isotrace_idb::Result<()> {
        for p in &self.isolation.exceptions {
            rules.add_exception(p, None)?;
        }
        if self.libraries.policy == Policy::Global {
            for p in library_dirs() {
                rules.add_exception(&p, Some("libraries.policy = global".into()))?;
            }
        }
        if self.fonts.policy == Policy::Global {
            for p in FONT_DIRS {
                rules.add_exception(Path::new(p), Some("fonts.policy = global".into()))?;
            }
        }
        Ok(())
    }
}

/// Parse a duration: one or more `<integer><unit>` with unit ms, s, m or h
/// (`30s`, `1h30m`, `500ms`); `none` or `off` for no value. Zero is refused:
/// a period of zero means nothing sensible.
pub fn parse_every(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if matches!(t, "none" | "off") {
        return Ok(None);
    }
    let bad =
        || format!("expected a duration such as 30s, 5m, 1h30m or 500ms, or none; got {text:?}");
    let mut total = Duration::ZERO;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!(
            "{text:?}: a period must be longer than zero (use none)"
        ));
    }
    Ok(Some(total))
}

/// The canonical text of a duration: the largest unit that is exact.
pub fn format_every(every: Option<Duration>) -> String {
    let Some(d) = every else {
        return "none".into();
    };
    let ms = d.as_millis();
    match ms {
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

mod every_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(_) => s.serialize_str(&super::format_every(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => super::parse_every(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let s = |t| parse_every(t).unwrap().map(|d| d.as_millis());
        assert_eq!(s("30s"), Some(30_000));
        assert_eq!(s("1h30m"), Some(5_400_000));
        assert_eq!(s("500ms"), Some(500));
        assert_eq!(s("none"), None);
        for bad in ["", "0s", "30", "s", "3x", "-1s", "1.5s"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        for t in ["90m", "2h", "45s", "1500ms"] {
            let d = parse_every(t).unwrap();
            assert_eq!(parse_every(&format_every(d)).unwrap(), d);
        }
        assert_eq!(format_every(parse_every("120s").unwrap()), "2m");
    }

    #[test]
    fn global_policies_make_their_dirs_public() {
        let mut s = Settings::default();
        let mut rules = isotrace_idb::Rules::empty();
        s.apply_exceptions(&mut rules).unwrap();
        assert!(rules.exceptions.is_empty());
        s.fonts.policy = Policy::Global;
        s.apply_exceptions(&mut rules).unwrap();
        assert!(rules.is_exception(Path::new("/usr/share/fonts/truetype/x.ttf")));
        assert!(!rules.is_exception(Path::new("/usr/local/lib/libx.so")));
        s.libraries.policy = Policy::Global;
        s.apply_exceptions(&mut rules).unwrap();
        assert!(rules.is_exception(Path::new("/usr/local/lib/libx.so")));
        assert!(!rules.is_exception(Path::new("/usr/lib/python3/dist-packages")));
    }

    #[test]
    fn settings_round_trip() {
        let mut s = Settings::default();
        s.checkpoint.every = Some(Duration::from_secs(30));
        s.fonts.policy = Policy::Global;
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"30s\""), "{json}");
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
    }
}
