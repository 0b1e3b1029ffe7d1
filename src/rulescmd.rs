//! `isotrace rules list|add|rm`: the global exceptions, paths that stay
//! public in every environment. Three origins add up: the built-in /proc,
//! /sys and /dev; the IDB's global rules (`$ISOTRACE_HOME/rules.json`,
//! which `add` and `rm` edit and every new run reads); and the
//! configuration's `isolation.exceptions` (see `isotrace config`).

use crate::configcmd::report;
use clap::{Args, Subcommand};
use isotrace::config::{self, keys::exception_path, ConfigError};
use isotrace_idb::rules::DEFAULT_EXCEPTIONS;
use isotrace_idb::Store;
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(after_help = "\
An exception is a path prefix that stays public: inside every environment, reads and writes \
below it go to the host itself, never to the environment's private layer. It matches whole \
components (/srv covers /srv/x, not /srvx). `add` and `rm` edit $ISOTRACE_HOME/rules.json \
atomically; runs started afterwards use the new rules.\n\
Exit status: 0; 125 for a bad path (relative, not normalized, /, inside $ISOTRACE_HOME), an \
unknown one for rm, or a malformed configuration; 1 when the rules cannot be written.")]
pub struct RulesArgs {
    #[command(subcommand)]
    pub verb: RulesVerb,
}

#[derive(Subcommand, Debug)]
pub enum RulesVerb {
    /// List the exceptions in force, one per line: `PATH    # origin[: note]`.
    List {
        /// Include the configuration overrides of environment NAME.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Include the configuration overrides of program NAME.
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
        /// Print JSON: {"version":1,"exceptions":[{"path","source","origin","note"}]},
        /// source being builtin, rules, system, user, env or app.
        #[arg(long)]
        json: bool,
    },
    /// Add a global exception: PATH (absolute, normalized, not / and not
    /// inside $ISOTRACE_HOME) stays public in every environment.
    Add {
        /// The prefix to make public, e.g. /srv/shared.
        #[arg(value_name = "PATH")]
        path: String,
        /// Why it is public, shown by `rules list`.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Remove a global exception added with `rules add`.
    Rm {
        /// The prefix, as `rules list` shows it.
        #[arg(value_name = "PATH")]
        path: String,
    },
}

/// Run one `rules` verb; returns the exit status.
pub fn main(args: RulesArgs) -> i32 {
    let result = match args.verb {
        RulesVerb::List { env, app, json } => list(env.as_deref(), app.as_deref(), json),
        RulesVerb::Add { path, note } => add(&path, note),
        RulesVerb::Rm { path } => rm(&path),
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

fn idb(e: isotrace_idb::Error) -> ConfigError {
    let io = matches!(e, isotrace_idb::Error::Io { .. });
    ConfigError {
        place: None,
        key: None,
        message: e.to_string(),
        io,
    }
}

fn bad_path(path: &str, why: String) -> ConfigError {
    ConfigError {
        place: None,
        key: Some(path.to_string()),
        message: why,
        io: false,
    }
}

/// One exception in force and where it comes from.
struct Listed {
    path: PathBuf,
    source: String,
    origin: Option<String>,
    note: Option<String>,
}

fn list(env: Option<&str>, app: Option<&str>, as_json: bool) -> Result<(), ConfigError> {
    let store = config::open_store()?;
    let rules_file = store.home().join("rules.json");
    let mut all: Vec<Listed> = Vec::new();
    for e in store.rules().map_err(idb)?.exceptions {
        let builtin = DEFAULT_EXCEPTIONS.iter().any(|d| e.prefix == Path::new(d));
        all.push(Listed {
            path: e.prefix,
            source: if builtin { "builtin" } else { "rules" }.into(),
            origin: (!builtin).then(|| rules_file.display().to_string()),
            note: e.note,
        });
    }
    let eff = config::load(env, app)?;
    let source = &eff.sources[&config::Key::IsolationExceptions];
    for p in &eff.settings.isolation.exceptions {
        if !all.iter().any(|l| &l.path == p) {
            all.push(Listed {
                path: p.clone(),
                source: source.kind().into(),
                origin: source.origin(),
                note: None,
            });
        }
    }
    let text = if as_json {
        let items: Vec<_> = all
            .iter()
            .map(
                |l| json!({"path": l.path, "source": l.source, "origin": l.origin, "note": l.note}),
            )
            .collect();
        format!("{:#}\n", json!({"version": 1, "exceptions": items}))
    } else {
        let width = all
            .iter()
            .map(|l| l.path.as_os_str().len())
            .max()
            .unwrap_or(0);
        all.iter()
            .map(|l| {
                let mut from = l.source.clone();
                if let Some(o) = &l.origin {
                    from = format!("{from} {o}");
                }
                if let Some(n) = &l.note {
                    from = format!("{from}: {n}");
                }
                format!("{:width$}    # {from}\n", l.path.display())
            })
            .collect()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// PATH checked for `add`/`rm`: absolute, normalized, not `/`, and not in
/// the store (the store must stay invisible to guests, whatever the rules).
fn checked(store: &Store, text: &str) -> Result<PathBuf, ConfigError> {
    let path = exception_path(text).map_err(|why| bad_path(text, why))?;
    let mut homes = vec![store.home().to_path_buf()];
    homes.extend(config::store_home());
    let real = path.canonicalize().ok();
    let inside = homes
        .iter()
        .any(|h| path.starts_with(h) || real.as_ref().is_some_and(|r| r.starts_with(h)));
    if inside {
        let why = format!("inside the environment store {}", store.home().display());
        return Err(bad_path(text, why));
    }
    Ok(path)
}

fn add(text: &str, note: Option<String>) -> Result<(), ConfigError> {
    let store = config::open_store()?;
    let path = checked(&store, text)?;
    let _lock = config::lock(&store)?;
    let mut rules = store.rules().map_err(idb)?;
    if let Some(e) = rules
        .exceptions
        .iter()
        .find(|e| path.starts_with(&e.prefix))
    {
        eprintln!(
            "isotrace: {} is already public (exception {})",
            path.display(),
            e.prefix.display()
        );
        return Ok(());
    }
    rules.add_exception(&path, note).map_err(idb)?;
    store.save_rules(&rules).map_err(idb)
}

fn rm(text: &str) -> Result<(), ConfigError> {
    let store = config::open_store()?;
    let path = exception_path(text).map_err(|why| bad_path(text, why))?;
    if DEFAULT_EXCEPTIONS.iter().any(|d| path == Path::new(d)) {
        return Err(bad_path(text, "is built in and cannot be removed".into()));
    }
    let _lock = config::lock(&store)?;
    let mut rules = store.rules().map_err(idb)?;
    if !rules.remove_exception(&path) {
        let eff = config::load(None, None)?;
        let why = if eff.settings.isolation.exceptions.contains(&path) {
            let src = &eff.sources[&config::Key::IsolationExceptions];
            format!("comes from the configuration ({src}): change isolation.exceptions there")
        } else {
            "is not an exception (see `isotrace rules list`)".into()
        };
        return Err(bad_path(text, why));
    }
    store.save_rules(&rules).map_err(idb)
}
