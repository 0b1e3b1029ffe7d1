//! Choosing and opening the environment a run uses (CLI.md run modes).

use crate::cli::RunArgs;
use crate::run::Failure;
use crate::EXIT_USAGE;
use isotrace_idb::{Environment, Store, View};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The environment of one run, and what to do with it at the end.
pub struct RunEnv {
    pub view: View,
    /// The environment's change counter shared with other supervisors.
    pub generation: Option<isotrace_idb::Generation>,
    store: Store,
    env: Environment,
    throwaway: bool,
    /// `--diff`: print the env's changes when the group exits.
    show_diff: bool,
}

/// Where environments and the IDB live (config::store_home's rule).
pub fn home() -> Result<PathBuf, Failure> {
    isotrace::config::store_home().ok_or_else(|| {
        (
            EXIT_USAGE,
            "cannot place environments: set ISOTRACE_HOME (or HOME)".into(),
        )
    })
}

fn idb_err(e: isotrace_idb::Error) -> Failure {
    (EXIT_USAGE, e.to_string())
}

/// `--env NAME`, `--rm`, or the env named after CMD's file name.
pub fn open_for_run(args: &RunArgs, cmd: &OsStr) -> Result<RunEnv, Failure> {
    let (name, throwaway) = match (&args.env, args.rm) {
        (Some(n), _) => (n.clone(), false),
        (None, true) => (format!("rm-{}", std::process::id()), true),
        (None, false) => {
            let base = Path::new(cmd).file_name().unwrap_or(cmd);
            (base.to_string_lossy().into_owned(), false)
        }
    };
    let app = Path::new(cmd)
        .file_name()
        .unwrap_or(cmd)
        .to_string_lossy()
        .into_owned();
    let mut env = open_named(&name, &app)?;
    env.throwaway = throwaway;
    env.show_diff = args.diff;
    Ok(env)
}

/// The environment NAME, created if it does not exist, with the rules in
/// force for program `app` in it.
pub fn open_named(name: &str, app: &str) -> Result<RunEnv, Failure> {
    let store = Store::open(&home()?).map_err(idb_err)?;
    isotrace_idb::validate_name(name).map_err(idb_err)?;
    let env = match store.get(name) {
        Ok(env) => env,
        // Two groups starting at once may both find the env missing: the
        // one that loses the creation race uses the winner's.
        Err(isotrace_idb::Error::NoSuchEnv(_)) => match store.create(name) {
            Err(isotrace_idb::Error::EnvExists(_)) => store.get(name).map_err(idb_err)?,
            other => other.map_err(idb_err)?,
        },
        Err(e) => return Err(idb_err(e)),
    };
    // The global exceptions, plus those the configuration adds for this
    // env and this program (`isotrace config`).
    let settings =
        isotrace::config::effective_for_run(name, app).map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let mut rules = store.rules().map_err(idb_err)?;
    settings.apply_exceptions(&mut rules).map_err(idb_err)?;
    let view = store.view(&env, rules).map_err(idb_err)?;
    searchable_for_tracees(&[
        home()?,
        home()?.join("envs"),
        env.dir().to_path_buf(),
        view.upper().to_path_buf(),
    ]);
    let generation = isotrace_idb::Generation::open(env.dir())
        .map_err(|e| (EXIT_USAGE, format!("{}: {e}", env.dir().display())))?;
    Ok(RunEnv {
        view,
        generation: Some(generation),
        store,
        env,
        throwaway: false,
        show_diff: false,
    })
}

/// A root supervisor's tracees may drop privileges (daemons, `su`, apt's
/// `_apt` sandbox) and must still reach the private layer, whose real
/// paths the kernel walks for them: the store's directories down to
/// `upper` get search permission (x, not r) for group and others. What is
/// inside keeps the permissions the files have on the host. A store below
/// a directory others cannot search (root's own home, 0700) still keeps
/// them out; README says so.
fn searchable_for_tracees(dirs: &[PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    for d in dirs {
        if let Ok(meta) = std::fs::metadata(d) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o011 != 0o011 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011));
            }
        }
    }
}

impl RunEnv {
    pub fn name(&self) -> &str {
        self.env.name()
    }

    /// Removed when the group exits (`--rm`, or a restored `--rm` group).
    pub fn set_throwaway(&mut self) {
        self.throwaway = true;
    }

    /// After the group exited: the one-line summary (issue #3), and the
    /// throwaway env's removal.
    pub fn finish(self, changed: &std::collections::HashSet<PathBuf>) {
        let name = self.env.name().to_string();
        if self.show_diff {
            match isotrace_idb::diff(&self.view, &isotrace_idb::RealFs) {
                Ok(changes) => {
                    for c in changes {
                        eprintln!("{} {}", c.change.letter(), c.public.display());
                    }
                }
                Err(e) => eprintln!("isotrace: env diff {name}: {e}"),
            }
        }
        if self.throwaway && isotrace::api::checkpoint::terminated_by_checkpoint() {
            eprintln!(
                "isotrace: throwaway env {name} is kept: the group's checkpoint needs it to be restored (`isotrace env rm {name}` when done)"
            );
            return;
        }
        if self.throwaway {
            if let Err(e) = self.store.remove(&name) {
                eprintln!("isotrace: could not remove throwaway env {name}: {e}");
            }
            return;
        }
        if !changed.is_empty() {
            eprintln!(
                "isotrace: {} path(s) changed in env {name}; see `isotrace env diff {name}`",
                changed.len()
            );
        }
    }
}
