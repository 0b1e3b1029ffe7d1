//! `isotrace env ...`: the environment lifecycle of CLI.md (create, list,
//! show, copy, rm, export, import, diff). The store's mechanics (atomic
//! placement, copy, diff) live in the IDB; this module parses, reports and
//! maps errors to exit statuses.

mod archive;
pub mod args;
mod carry;
mod progress;
mod usage;

use crate::envs::home;
use crate::run::Failure;
use crate::EXIT_USAGE;
use args::{EnvArgs, EnvVerb};
use isotrace::api::client::{running_groups, stop_and_wait};
use isotrace::api::protocol::GroupStatus;
use isotrace_idb::{Environment, Kind, RealFs, Store};
use serde_json::json;
use std::fmt::Write as _;
use std::io::Write as _;

/// An operation that failed for a reason other than usage: I/O, a corrupt
/// archive or record.
pub const EXIT_FAILED: i32 = 1;

/// Run one `env` verb; returns the exit status.
pub fn main(args: EnvArgs) -> i32 {
    match dispatch(args.verb) {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("isotrace: {msg}");
            code
        }
    }
}

fn dispatch(verb: EnvVerb) -> Result<(), Failure> {
    let store = Store::open(&home()?).map_err(idb_err)?;
    match verb {
        EnvVerb::Create { name, from: None } => store.create(&name).map(drop).map_err(idb_err),
        EnvVerb::Create {
            name,
            from: Some(src),
        } => copy(&store, &src, &name, false),
        EnvVerb::List { json } => list(&store, json),
        EnvVerb::Show { name, json } => show(&store, &name, json),
        EnvVerb::Copy { src, dst, force } => copy(&store, &src, &dst, force),
        EnvVerb::Rm { name, force } => rm(&store, &name, force),
        EnvVerb::Export { name, output } => archive::export(&store, &name, &output),
        EnvVerb::Import { file, name } => archive::import(&store, &file, name.as_deref()),
        EnvVerb::Diff { name, json } => diff(&store, &name, json),
    }
}

/// `env copy` and `env create --from`, with a progress bar on a terminal.
/// The copy gets the source's own settings too (`config set --env SRC`),
/// written before it is placed, as `env import` does (see `carry`).
///
/// The copy shares SRC's files by hard link (idb::share), and a change
/// breaks the link first; but a program of SRC writing through an fd it
/// opened for writing before the copy would write into the shared inode.
/// So it is refused while a group runs in SRC, and `--force` copies every
/// file for real instead (sharing nothing, as a plain `cp -a` would).
fn copy(store: &Store, src: &str, dst: &str, force: bool) -> Result<(), Failure> {
    let from = store.get(src).map_err(idb_err)?;
    let groups = groups_in(src)?;
    if let (Some(g), false) = (groups.first(), force) {
        return Err((
            EXIT_FAILED,
            format!(
                "env {src} is in use by group {} (supervisor pid {}); \
                 use --force to copy every file for real while it runs",
                g.group, g.supervisor_pid
            ),
        ));
    }
    isotrace_idb::validate_name(dst).map_err(idb_err)?;
    if store.get(dst).is_ok() {
        return Err(idb_err(isotrace_idb::Error::EnvExists(dst.to_string())));
    }
    let carried = carry::export(store, src)?.unwrap_or_default();
    let written = carry::restore(store, dst, &carried)?;
    let total = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        usage::of(&from.upper()).map_or(0, |u| u.bytes)
    } else {
        0
    };
    let bar = progress::Progress::bytes(&format!("copying env {src} to {dst}"), total);
    let done = if groups.is_empty() {
        store.copy_with(src, dst, &|n| bar.add(n))
    } else {
        store.copy_full(src, dst, &|n| bar.add(n))
    };
    bar.finish();
    if done.is_err() {
        carry::undo(store, dst, written);
    }
    done.map(drop).map_err(idb_err)
}

/// Usage and configuration errors (a bad or unknown name, a taken one) are
/// 125, as CLI.md fixes for isotrace's own errors; the rest failed while
/// working.
pub(crate) fn idb_err(e: isotrace_idb::Error) -> Failure {
    use isotrace_idb::Error as E;
    let code = match e {
        E::BadName(_) | E::NoSuchEnv(_) | E::EnvExists(_) | E::BadRule { .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    };
    (code, e.to_string())
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn json_out(value: &serde_json::Value) {
    out(&format!("{value:#}\n"));
}

fn list(store: &Store, as_json: bool) -> Result<(), Failure> {
    let envs = store.list().map_err(idb_err)?;
    if as_json {
        let envs: Vec<_> = envs
            .iter()
            .map(|e| {
                let m = e.meta();
                json!({"name": m.name, "created": m.created, "base": m.base, "dir": e.dir()})
            })
            .collect();
        json_out(&json!({"version": 1, "envs": envs}));
    } else {
        out(&envs.iter().fold(String::new(), |mut s, e| {
            let _ = writeln!(s, "{}", e.name());
            s
        }));
    }
    Ok(())
}

fn show(store: &Store, name: &str, as_json: bool) -> Result<(), Failure> {
    let env = store.get(name).map_err(idb_err)?;
    let rules = store.rules().map_err(idb_err)?;
    let u = usage::of(&env.upper()).map_err(|e| {
        (
            EXIT_FAILED,
            format!("reading {}: {e}", env.upper().display()),
        )
    })?;
    let m = env.meta();
    let groups = groups_in(name)?;
    let prefixes = prefixes_of(&rules);
    let (in_force, libs, fonts) = in_force(name, &rules)?;
    if as_json {
        json_out(&json!({
            "version": 1,
            "name": m.name,
            "base": m.base,
            "created": m.created,
            "dir": env.dir(),
            "size_bytes": u.bytes,
            "files": u.files,
            "dirs": u.dirs,
            "whiteouts": u.whiteouts,
            "groups": groups,
            "rules": rules,
            "policies": {"libraries": libs, "fonts": fonts},
            "exceptions_in_force": in_force,
        }));
        return Ok(());
    }
    let mut s = String::new();
    let _ = writeln!(s, "name: {}", m.name);
    let _ = writeln!(s, "base: {}", m.base.display());
    let _ = writeln!(s, "created: {}", usage::utc(m.created));
    let _ = writeln!(s, "dir: {}", env.dir().display());
    let _ = writeln!(s, "size: {} bytes (private layer)", u.bytes);
    let _ = writeln!(s, "files: {}", u.files);
    let _ = writeln!(s, "dirs: {}", u.dirs);
    let _ = writeln!(s, "whiteouts: {}", u.whiteouts);
    if groups.is_empty() {
        let _ = writeln!(s, "groups: none running");
    }
    for g in &groups {
        let _ = writeln!(
            s,
            "group: {} (supervisor pid {}, {} processes)",
            g.group, g.supervisor_pid, g.processes
        );
    }
    let _ = writeln!(s, "rules: global exceptions {}", prefixes.join(" "));
    let _ = writeln!(s, "policies: libraries {libs}, fonts {fonts}");
    let _ = writeln!(s, "exceptions in force: {}", in_force.join(" "));
    out(&s);
    Ok(())
}

fn prefixes_of(rules: &isotrace_idb::Rules) -> Vec<String> {
    rules
        .exceptions
        .iter()
        .map(|e| e.prefix.display().to_string())
        .collect()
}

/// What a run in env `name` gets on top of the global rules: `isotrace
/// config` for the env, the library and font policies included. Returns
/// the exceptions in force and the two policies.
fn in_force(
    name: &str,
    rules: &isotrace_idb::Rules,
) -> Result<(Vec<String>, &'static str, &'static str), Failure> {
    let settings = isotrace::config::load(Some(name), None)
        .map_err(|e| (EXIT_USAGE, e.to_string()))?
        .settings;
    let mut all = rules.clone();
    settings.apply_exceptions(&mut all).map_err(idb_err)?;
    Ok((
        prefixes_of(&all),
        settings.libraries.policy.as_str(),
        settings.fonts.policy.as_str(),
    ))
}

/// The running groups whose env is `name` in this store (src/api): the
/// same name in another ISOTRACE_HOME is another env.
fn groups_in(name: &str) -> Result<Vec<GroupStatus>, Failure> {
    let home = isotrace::api::rundir::canonical(&home()?);
    let listing = running_groups().map_err(|e| (EXIT_FAILED, format!("listing groups: {e}")))?;
    for p in &listing.problems {
        eprintln!("isotrace: warning: {p}");
    }
    let home = home.display().to_string();
    Ok(listing
        .groups
        .into_iter()
        .filter(|g| g.env.as_deref() == Some(name) && g.home.as_deref() == Some(&home))
        .collect())
}

/// `env rm`: refused while a group runs in the env; `--force` stops those
/// groups (SIGTERM, then SIGKILL after 5 s) and waits for them first.
fn rm(store: &Store, name: &str, force: bool) -> Result<(), Failure> {
    store.get(name).map_err(idb_err)?;
    let groups = groups_in(name)?;
    if let (Some(g), false) = (groups.first(), force) {
        let more = match groups.len() {
            1 => String::new(),
            n => format!(" and {} other group(s)", n - 1),
        };
        return Err((
            EXIT_FAILED,
            format!(
                "env {name} is in use by group {} (supervisor pid {}){more}; use --force",
                g.group, g.supervisor_pid
            ),
        ));
    }
    for g in &groups {
        stop_and_wait(&g.group, std::time::Duration::from_secs(5)).map_err(|e| {
            (
                EXIT_FAILED,
                format!("env {name}: cannot stop group {}: {e}", g.group),
            )
        })?;
    }
    store.remove(name).map_err(idb_err)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Dir => "dir",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Other => "other",
    }
}

fn diff(store: &Store, name: &str, as_json: bool) -> Result<(), Failure> {
    let env: Environment = store.get(name).map_err(idb_err)?;
    let rules = store.rules().map_err(idb_err)?;
    let view = store.view(&env, rules).map_err(idb_err)?;
    let changes = isotrace_idb::diff(&view, &RealFs).map_err(idb_err)?;
    if as_json {
        let list: Vec<_> = changes
            .iter()
            .map(|c| {
                json!({
                    "status": c.change.letter().to_string(),
                    "path": c.public,
                    "kind": kind_name(c.kind),
                })
            })
            .collect();
        json_out(&json!({"version": 1, "env": name, "changes": list}));
        return Ok(());
    }
    let mut s = String::new();
    for c in &changes {
        let _ = writeln!(s, "{} {}", c.change.letter(), c.public.display());
    }
    out(&s);
    Ok(())
}
