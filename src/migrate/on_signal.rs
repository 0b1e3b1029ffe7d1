//! The signal trigger of a migration (#6): `isotrace run --migrate-to-env
//! NAME` (or `--migrate-to HOST:PORT`) makes SIGPWR sent to the
//! supervisor run `isotrace migrate GROUP --to-env NAME` (or `--to`), with
//! `--pre-copy` if `--migrate-pre-copy` was given. SIGPWR is the signal a
//! UPS daemon or an orchestrator sends when a machine must be vacated.
//!
//! The migration is the CLI verb itself, started as a process of its own
//! in a new session: a same-host migration's receiver becomes the new
//! group's supervisor and must outlive this one, which ends when its group
//! has moved (with the group's status, 137: it was killed once the copy
//! ran, as after `isotrace migrate`). It is started re-parented (not our
//! child), so the tracer's waitpid(-1) never sees it. It reports on this
//! supervisor's stderr.

use crate::cli::RunArgs;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

/// The signal that triggers the migration.
pub const SIGNAL: i32 = libc::SIGPWR;

/// What follows `isotrace migrate GROUP` when the signal comes, or None if
/// no `--migrate-to*` flag was given. A `--migrate-to HOST:PORT` without a
/// usable token is refused now rather than when the signal comes.
pub fn args_from(run: &RunArgs) -> Result<Option<Vec<String>>, String> {
    let mut args = match (&run.migrate_to_env, &run.migrate_to) {
        (Some(env), _) => vec!["--to-env".to_string(), env.clone()],
        (None, Some(to)) => {
            super::token::load(run.migrate_token_file.as_deref())
                .map_err(|e| format!("--migrate-to {to}: {e}"))?;
            let mut a = vec!["--to".to_string(), to.clone()];
            if let Some(f) = &run.migrate_token_file {
                let f = std::path::absolute(f)
                    .map_err(|e| format!("--migrate-token-file {}: {e}", f.display()))?;
                a.extend(["--token-file".to_string(), f.display().to_string()]);
            }
            a
        }
        (None, None) => return Ok(None),
    };
    if run.migrate_pre_copy {
        args.push("--pre-copy".into());
    }
    Ok(Some(args))
}

/// Makes SIGPWR start `isotrace migrate GROUP ARGS...` for as long as this
/// process lives.
pub fn arm(group: &str, args: &[String]) -> Result<(), String> {
    let mut argv = vec!["/proc/self/exe".to_string(), "migrate".into(), group.into()];
    argv.extend(args.iter().cloned());
    let shown = argv[1..].join(" ");
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(std::ffi::OsStr::new(a).as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| "an argument holds a NUL byte".to_string())?;
    let mut pipe = isotrace_tracer::notify_on_signal(SIGNAL).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("migrate-on-signal".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while matches!(pipe.read(&mut byte), Ok(1)) {
                eprintln!("isotrace: SIGPWR: isotrace {shown}");
                if let Err(e) = isotrace_tracer::sys::spawn_orphan(&argv) {
                    eprintln!("isotrace: SIGPWR: cannot start the migration: {e}");
                }
            }
        })
        .map_err(|e| format!("a thread for SIGPWR: {e}"))?;
    Ok(())
}
