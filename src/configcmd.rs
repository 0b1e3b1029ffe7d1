//! `isotrace config show|set|unset`: the settings in force and where each
//! comes from, and editing them. The model, files and merge live in the
//! library ([`isotrace::config`]); this module parses and prints.

use crate::EXIT_USAGE;
use clap::{Args, Subcommand};
use isotrace::config::{self, ConfigError, Key, Target};
use isotrace_idb::Scope;
use serde_json::json;
use std::io::Write as _;

/// Failures that are not the configuration's fault (a write that failed).
const EXIT_FAILED: i32 = 1;

const AFTER_HELP: &str = "\
Keys:
  isolation.exceptions  path prefixes that stay public (added to the built-in /proc, /sys, /dev
                        and the IDB's `rules`); `config set` takes a comma-separated list
  isolation.read_only_host
                        true | false: when run as root, the program sees every host mount
                        read-only (its own mount namespace), so fd-based chmod/chown/utimes/
                        xattr calls are not trapped; such a change through an fd opened
                        read-only on a host file fails with EROFS instead of landing on the
                        env's copy. false keeps every trap (default true)
  isolation.lazy_listings
                        true | false: getdents64 is not trapped until the group changes its
                        env or opens one of the env's directories; from then on every
                        process of the group traps it. false traps it from the start
                        (default true)
  libraries.policy      env | global: where shared libraries an app installs go (default env,
                        the env's private layer). global makes the loader's library dirs
                        (/usr/lib/TRIPLET, /lib/TRIPLET, /usr/lib64, /lib64, /usr/local/lib)
                        public: installs land on the host, for every env. Set it before the install.
  fonts.policy          env | global: where fonts an app installs go (default env). global makes
                        /usr/share/fonts, /usr/local/share/fonts and /var/cache/fontconfig public.
  trace.default         true | false: trace every run as with --trace (default false)
  checkpoint.every      a duration (30s, 5m, 1h30m) or none, as --checkpoint-every (default none)
Runs apply these settings (with the env's and the program's overrides): isolation.exceptions and
the two policies in environments, trace.default and checkpoint.every when --trace or --checkpoint-every is not given.
The exceptions of `isotrace rules add` apply to every run started after them.

Sources, merged in this order (a later one wins key by key; a list is replaced, not extended):
  default   built in
  system    /etc/isotrace/config.toml ($ISOTRACE_SYSTEM_CONFIG names another file)
  user      $XDG_CONFIG_HOME/isotrace/config.toml (default ~/.config/isotrace/config.toml)
  env NAME  the environment's overrides, $ISOTRACE_HOME/settings/env/NAME.json
  app NAME  the program's overrides (by its file name), $ISOTRACE_HOME/settings/app/NAME.json

The files are TOML, e.g.
  [libraries]
  policy = \"global\"
  [isolation]
  exceptions = [\"/srv/shared\"]

Exit status: 0; 125 for a malformed file, an unknown key or a bad value (the message names the
file, line and key); 1 when a file cannot be written.";

#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub verb: ConfigVerb,
}

/// `--env NAME | --app NAME`: which override record.
#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// The overrides of environment NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "app")]
    pub env: Option<String>,
    /// The overrides of the program whose file name is NAME.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
}

impl ScopeArgs {
    fn target(&self) -> Target<'_> {
        match (&self.env, &self.app) {
            (Some(e), _) => Target::Record(Scope::Env(e)),
            (None, Some(a)) => Target::Record(Scope::App(a)),
            (None, None) => Target::User,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigVerb {
    /// Print the merged settings in force and where each comes from:
    /// `key = value    # source`.
    Show {
        /// Include the overrides of environment NAME.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Include the overrides of the program whose file name is NAME.
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
        /// Print JSON: {"KEY": {"value", "source", "origin"}}, origin being
        /// the file or name of the source (absent for default).
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE in the user's file (created if needed; other keys
    /// are kept, comments are not), or with --env/--app in that override
    /// record. The file is replaced atomically.
    Set {
        /// One of the keys listed below.
        #[arg(value_name = "KEY")]
        key: String,
        /// The key's value; a list is comma-separated ("" is the empty list).
        #[arg(value_name = "VALUE", allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Remove KEY from the user's file or the --env/--app override record,
    /// so the next source down applies again.
    Unset {
        /// One of the keys listed below.
        #[arg(value_name = "KEY")]
        key: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// Run one `config` verb; returns the exit status.
pub fn main(args: ConfigArgs) -> i32 {
    let result = match args.verb {
        ConfigVerb::Show { env, app, json } => show(env.as_deref(), app.as_deref(), json),
        ConfigVerb::Set { key, value, scope } => set(&key, Some(&value), &scope).map(drop),
        ConfigVerb::Unset { key, scope } => set(&key, None, &scope).map(drop),
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// Print a config error on one line; its exit status.
pub fn report(e: &ConfigError) -> i32 {
    eprintln!("isotrace: {e}");
    if e.io {
        EXIT_FAILED
    } else {
        EXIT_USAGE
    }
}

fn show(env: Option<&str>, app: Option<&str>, as_json: bool) -> Result<(), ConfigError> {
    let eff = config::load(env, app)?;
    let text = if as_json {
        let mut obj = serde_json::Map::new();
        for (key, value, source) in eff.entries() {
            let mut o = json!({"value": value.to_json(), "source": source.kind()});
            if let Some(origin) = source.origin() {
                o["origin"] = origin.into();
            }
            obj.insert(key.name().into(), o);
        }
        format!("{:#}\n", serde_json::Value::Object(obj))
    } else {
        let lines: Vec<(String, String)> = eff
            .entries()
            .map(|(k, v, s)| (format!("{k} = {v}"), s.to_string()))
            .collect();
        let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        lines
            .iter()
            .map(|(l, s)| format!("{l:width$}    # {s}\n"))
            .collect()
    };
    // A closed pipe (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn set(
    key: &str,
    value: Option<&str>,
    scope: &ScopeArgs,
) -> Result<std::path::PathBuf, ConfigError> {
    let k = Key::parse(key).ok_or_else(|| {
        ConfigError::usage(key, format!("unknown key (known keys: {})", Key::known()))
    })?;
    let v = value
        .map(|text| {
            k.parse_text(text)
                .map_err(|why| ConfigError::usage(key, why))
        })
        .transpose()?;
    config::set(k, v.as_ref(), scope.target())
}
