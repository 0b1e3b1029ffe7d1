//! Settings: what an administrator sets once and overrides per environment
//! or per application (issue #4, CLI.md "Configuration and rules").
//!
//! Sources, merged in this order (a later one wins, key by key; a list such
//! as `isolation.exceptions` is replaced, not appended to):
//! 1. built-in defaults;
//! 2. the system file, `/etc/isotrace/config.toml` (`$ISOTRACE_SYSTEM_CONFIG`
//!    names another one, for tests and packaging);
//! 3. the user file, `$XDG_CONFIG_HOME/isotrace/config.toml` (default
//!    `~/.config/isotrace/config.toml`);
//! 4. the environment's override record in the store;
//! 5. the application's override record (keyed by the program's file name).
//!
//! A file that does not parse, an unknown key or a bad value is an error
//! naming the file, line and key: never a silent default.

mod file;
pub mod keys;
pub mod model;

pub use keys::{Key, Value};
pub use model::{Policy, Settings};

use isotrace_idb::{Overrides, Scope, Store};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The system-wide file, unless `$ISOTRACE_SYSTEM_CONFIG` names another.
pub const SYSTEM_FILE: &str = "/etc/isotrace/config.toml";

/// A configuration that cannot be read or written. Displayed as
/// `PLACE: KEY: message`, PLACE being `FILE:LINE` where there is one.
#[derive(Debug)]
pub struct ConfigError {
    pub place: Option<String>,
    pub key: Option<String>,
    pub message: String,
    /// An I/O failure while reading or writing, rather than a bad setting.
    pub io: bool,
}

impl ConfigError {
    pub(crate) fn invalid(place: String, key: Option<String>, message: String) -> Self {
        ConfigError {
            place: Some(place),
            key,
            message,
            io: false,
        }
    }

    /// A bad key or value on the command line.
    pub fn usage(key: &str, message: String) -> Self {
        ConfigError {
            place: None,
            key: Some(key.to_string()),
            message,
            io: false,
        }
    }

    pub(crate) fn io(op: &str, path: &Path, e: std::io::Error) -> Self {
        ConfigError {
            place: Some(path.display().to_string()),
            key: None,
            message: format!("{op}: {e}"),
            io: true,
        }
    }

    fn idb(e: isotrace_idb::Error) -> Self {
        use isotrace_idb::Error as E;
        let io = matches!(e, E::Io { .. });
        ConfigError {
            place: None,
            key: None,
            message: e.to_string(),
            io,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.place, &self.key].into_iter().flatten() {
            write!(f, "{part}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where a setting's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    System(PathBuf),
    User(PathBuf),
    Env(String),
    App(String),
}

impl Source {
    /// `default`, `system`, `user`, `env` or `app`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::System(_) => "system",
            Source::User(_) => "user",
            Source::Env(_) => "env",
            Source::App(_) => "app",
        }
    }

    /// The file or the name the source is, if any.
    pub fn origin(&self) -> Option<String> {
        match self {
            Source::Default => None,
            Source::System(p) | Source::User(p) => Some(p.display().to_string()),
            Source::Env(n) | Source::App(n) => Some(n.clone()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin() {
            Some(o) => write!(f, "{} {o}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// The merged settings and each key's source.
#[derive(Clone, Debug)]
pub struct Effective {
    pub settings: Settings,
    pub sources: BTreeMap<Key, Source>,
}

impl Effective {
    /// Every key with its value and source, in the key table's order.
    pub fn entries(&self) -> impl Iterator<Item = (Key, Value, &Source)> {
        Key::ALL
            .into_iter()
            .map(|k| (k, k.get(&self.settings), &self.sources[&k]))
    }

    fn apply(&mut self, layer: file::Layer, source: &Source) {
        for (k, v) in layer {
            k.set(&mut self.settings, v);
            self.sources.insert(k, source.clone());
        }
    }
}

/// The system file in force.
pub fn system_file() -> PathBuf {
    std::env::var_os("ISOTRACE_SYSTEM_CONFIG")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(SYSTEM_FILE), PathBuf::from)
}

/// The user's file: `$XDG_CONFIG_HOME/isotrace/config.toml` (an absolute
/// XDG_CONFIG_HOME only, per the XDG Base Directory spec), else under
/// `$HOME/.config`; `None` without either.
pub fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("isotrace").join("config.toml"))
}

/// Where environments and the IDB live: $ISOTRACE_HOME, else
/// $XDG_DATA_HOME/isotrace, else /var/lib/isotrace for root, else
/// ~/.local/share/isotrace.
pub fn store_home() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    store_home_from(
        var("ISOTRACE_HOME"),
        var("XDG_DATA_HOME"),
        var("HOME"),
        nix::unistd::geteuid().is_root(),
    )
}

/// Root's store is a system directory: under /root (mode 0700) the private
/// layers would be out of reach of a program that drops privileges inside
/// an environment (apt's _apt, a daemon's own user), whose files the kernel
/// creates there as that user.
pub const ROOT_STORE: &str = "/var/lib/isotrace";

/// [`store_home`]'s rule, from the variables' values and whether we are root.
pub fn store_home_from(
    isotrace_home: Option<std::ffi::OsString>,
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
    root: bool,
) -> Option<PathBuf> {
    if let Some(h) = isotrace_home {
        return Some(PathBuf::from(h));
    }
    if let Some(x) = xdg_data_home.filter(|h| Path::new(h).is_absolute()) {
        return Some(PathBuf::from(x).join("isotrace"));
    }
    if root {
        return Some(PathBuf::from(ROOT_STORE));
    }
    home.map(|h| PathBuf::from(h).join(".local/share/isotrace"))
}

/// Open the store for override records.
pub fn open_store() -> Result<Store, ConfigError> {
    let home = store_home().ok_or_else(|| ConfigError {
        place: None,
        key: None,
        message: "cannot place the store: set ISOTRACE_HOME (or HOME)".into(),
        io: false,
    })?;
    Store::open(&home).map_err(ConfigError::idb)
}

/// An override record's values, checked against the key table.
fn record_layer(store: &Store, scope: Scope<'_>) -> Result<file::Layer, ConfigError> {
    let rec = store.overrides(scope).map_err(ConfigError::idb)?;
    let path = store.overrides_path(scope).map_err(ConfigError::idb)?;
    let mut layer = file::Layer::new();
    for (name, json) in &rec.values {
        let place = || path.display().to_string();
        let key = Key::parse(name).ok_or_else(|| {
            let why = format!("unknown key (known keys: {})", Key::known());
            ConfigError::invalid(place(), Some(name.clone()), why)
        })?;
        let v = key
            .parse_json(json)
            .map_err(|why| ConfigError::invalid(place(), Some(name.clone()), why))?;
        layer.insert(key, v);
    }
    Ok(layer)
}

/// The settings in force for `env` and `app` (either may be absent), with
/// their sources. The store is opened only when a record is asked for.
pub fn load(env: Option<&str>, app: Option<&str>) -> Result<Effective, ConfigError> {
    let mut eff = Effective {
        settings: Settings::default(),
        sources: Key::ALL.map(|k| (k, Source::Default)).into(),
    };
    let system = system_file();
    if let Some(layer) = file::read(&system)? {
        eff.apply(layer, &Source::System(system));
    }
    if let Some(user) = user_file() {
        if let Some(layer) = file::read(&user)? {
            eff.apply(layer, &Source::User(user));
        }
    }
    if env.is_none() && app.is_none() {
        return Ok(eff);
    }
    let store = open_store()?;
    if let Some(env) = env {
        let layer = record_layer(&store, Scope::Env(env))?;
        eff.apply(layer, &Source::Env(env.to_string()));
    }
    if let Some(app) = app {
        let layer = record_layer(&store, Scope::App(app))?;
        eff.apply(layer, &Source::App(app.to_string()));
    }
    Ok(eff)
}

/// The settings a run of program `app` (its file name) in environment
/// `env` uses.
pub fn effective_for_run(env: &str, app: &str) -> Result<Settings, ConfigError> {
    load(Some(env), Some(app)).map(|e| e.settings)
}

/// Where `config set` writes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// The user's TOML file.
    User,
    /// An override record in the store.
    Record(Scope<'a>),
}

/// Set `key` to `value` (`None`: remove it, so the next source down shows
/// through) at `target`. Returns the file written.
pub fn set(key: Key, value: Option<&Value>, target: Target<'_>) -> Result<PathBuf, ConfigError> {
    match target {
        Target::User => {
            let path = user_file().ok_or_else(|| {
                ConfigError::usage(
                    key.name(),
                    "no user config file: set XDG_CONFIG_HOME or HOME".into(),
                )
            })?;
            file::update(&path, key, value)?;
            Ok(path)
        }
        Target::Record(scope) => {
            let store = open_store()?;
            let path = store.overrides_path(scope).map_err(ConfigError::idb)?;
            let _lock = lock(&store)?;
            // Refuse to rewrite a record that holds a key this version does
            // not know: it would be lost or kept blindly.
            record_layer(&store, scope)?;
            let mut rec: Overrides = store.overrides(scope).map_err(ConfigError::idb)?;
            match value {
                Some(v) => rec.values.insert(key.name().to_string(), v.to_json()),
                None => rec.values.remove(key.name()),
            };
            store
                .save_overrides(scope, &rec)
                .map_err(ConfigError::idb)?;
            Ok(path)
        }
    }
}

/// Serializes read-modify-write cycles of the store's settings and rules
/// between concurrent `config set`/`rules add` commands (flock(2) on
/// `home/.settings.lock`; released when the file is closed).
pub fn lock(store: &Store) -> Result<nix::fcntl::Flock<std::fs::File>, ConfigError> {
    let path = store.home().join(".settings.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ConfigError::io("open", &path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| ConfigError::io("flock", &path, e.into()))
}

#[cfg(test)]
mod store_home_tests {
    use super::*;

    #[test]
    fn the_store_rule() {
        let s = |v: &str| Some(std::ffi::OsString::from(v));
        let home = |a, b, c, root| store_home_from(a, b, c, root).unwrap();
        assert_eq!(home(s("/x"), s("/d"), s("/h"), true), Path::new("/x"));
        assert_eq!(home(None, s("/d"), s("/h"), true), Path::new("/d/isotrace"));
        assert_eq!(home(None, None, s("/root"), true), Path::new(ROOT_STORE));
        assert_eq!(
            home(None, s("relative"), s("/home/u"), false),
            Path::new("/home/u/.local/share/isotrace")
        );
        assert_eq!(store_home_from(None, None, None, false), None);
    }
}
