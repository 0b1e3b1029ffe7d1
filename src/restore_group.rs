//! `isotrace restore` of a group checkpoint (#5): the processes come back
//! under a supervisor of the kind that dumped them (isolated in an
//! environment or trace-only), as an application group with its control
//! API, so they can be checkpointed, listed and migrated again.
//!
//! The image's `supervisor.json` (`api::state`) names the group, the mode
//! and the environment; `--env` and `--group` override them. Paths the
//! kernel reported at dump time were private names inside the old
//! environment's layer: each becomes public again, then is resolved in the
//! target environment's merged view, so a file copied up there is reopened
//! from the private layer and any other from the host.

use crate::cli::RestoreArgs;
use crate::envs::RunEnv;
use crate::isolate::Isolation;
use crate::run::{Failure, SuperviseOpts};
use crate::trace::TracePolicy;
use crate::EXIT_USAGE;
use isotrace::api::server::{Claim, ClaimError, GroupInfo};
use isotrace::api::state::{SupervisorState, VERSION};
use isotrace_checkpoint::{restore, Image};
use isotrace_idb::{RealFs, View};
use isotrace_tracer::filter::{self, FilterConfig};
use isotrace_tracer::scratch::SCRATCH_END;
use isotrace_tracer::{Adopted, Outcome, Supervisor};
use std::path::Path;

/// Exit status of a restore that failed.
pub const EXIT_FAILED: i32 = 1;

/// Restores `image` under a supervisor and runs it to the end; returns the
/// root process's exit status. `ready` is told once the group runs.
/// What the caller learns, and may stop, along the way.
pub struct Hooks<'a> {
    /// Called with the restored processes' pids once every task is
    /// rebuilt and filtered, before any of them runs. Err: the copy must
    /// not run; its tasks are killed.
    pub hold: &'a mut dyn FnMut(&[i32]) -> Result<(), String>,
    /// Called with a summary line once the group runs, and how the pages
    /// held from a migration's pre-copy were filled: `eager`, `post-copy`
    /// or "" (none held).
    pub ready: &'a mut dyn FnMut(&str, &str),
    /// Post-copy (a migration's copy, `--control`): told what it did once
    /// every page is in, or why it failed (the group was killed). None
    /// fills eagerly.
    pub post_copied: Option<restore::lazy::Done>,
}

pub fn run(
    args: &RestoreArgs,
    image: &Image,
    state: Option<SupervisorState>,
    hooks: &mut Hooks<'_>,
) -> Result<i32, Failure> {
    let state = state.unwrap_or_else(|| SupervisorState {
        version: VERSION,
        group: format!("restored-{}", image.manifest.root_pid),
        mode: "no-isolation".into(),
        ..Default::default()
    });
    let env_name = match (&args.env, state.mode.as_str()) {
        (Some(e), _) => Some(e.clone()),
        (None, "no-isolation") => None,
        (None, _) => state.env.clone(),
    };
    let app = image
        .tree
        .processes
        .first()
        .map_or_else(|| "restored".to_string(), |p| p.comm.clone());
    let mut env = match &env_name {
        Some(name) => Some(crate::envs::open_named(name, &app)?),
        None => None,
    };
    // A `--rm` group stays throwaway when it comes back in its own env.
    if let (Some(e), "throwaway", None) = (env.as_mut(), state.mode.as_str(), &args.env) {
        e.set_throwaway();
    }
    let mut group = claim(args, &state, env.as_ref())?;
    group.set_checkpoint_root(crate::envs::home().ok().map(|h| h.join("checkpoints")));
    let mut opts = restore_options(args, &state, env.as_ref().map(|e| &e.view));
    opts.post_copy = hooks.post_copied.is_some() && post_copy_wanted();
    let mut restored = restore::restore(image, &opts).map_err(|e| {
        (
            EXIT_FAILED,
            format!("{}: {e}; nothing was restored", args.image.display()),
        )
    })?;
    for note in &restored.notes {
        eprintln!("isotrace: note: {note}");
    }
    // A migration's receiver (--control) leaves the lock to the source.
    if args.control.is_none() {
        if let Err(e) = restore::tcp::unlock(image) {
            eprintln!("isotrace: note: {e}");
        }
    }
    let tasks = adopted(image, &restored);
    let held = filtered(&tasks)
        .and_then(|()| {
            (hooks.hold)(&restored.processes().iter().map(|p| p.1).collect::<Vec<_>>())
                .map_err(|why| (EXIT_FAILED, why))
        })
        .and_then(|()| restore::stop_again(&restored).map_err(|e| (EXIT_FAILED, e.to_string())));
    if let Err(e) = held {
        for t in &tasks {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(t.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(init) = restored.init {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        return Err(e);
    }
    let mut trace = TracePolicy::new(state.trace, None).map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let sup_opts = SuperviseOpts {
        stats: false,
        every: None,
        state: SupervisorState {
            version: VERSION,
            group: group.group().to_string(),
            mode: group.info().mode.clone(),
            env: env_name.clone(),
            upper: env
                .as_ref()
                .map(|e| isotrace::api::rundir::canonical(e.view.upper())),
            trace: state.trace,
            rules: env
                .as_ref()
                .and_then(|e| serde_json::from_str(&e.view.rules().to_json()).ok()),
            read_only_host: false,
        },
        migrate_on_signal: None,
    };
    let line = format!(
        "restored pid {} from {} as pid {} (group {}{})",
        restored.old_pid,
        args.image.display(),
        restored.pid,
        group.group(),
        env_name
            .as_deref()
            .map(|e| format!(", env {e}"))
            .unwrap_or_default()
    );
    let mut post_copy = restored.post_copy.take();
    let held = !image.elsewhere.is_empty();
    let mut released = |hooks: &mut Hooks<'_>| {
        let victims: Vec<i32> = restored
            .init
            .into_iter()
            .chain(restored.processes().into_iter().map(|p| p.1))
            .collect();
        let server = post_copy.take().zip(hooks.post_copied.take());
        let fill = match &server {
            Some((pc, _)) if pc.lazy() > 0 => "post-copy",
            // Every process was filled eagerly (post-copy refused).
            _ if held => "eager",
            _ => "",
        };
        // Said first: the post-copy's own report comes after it.
        (hooks.ready)(&line, fill);
        if let Some((pc, done)) = server {
            pc.go(victims, done);
        }
    };
    let outcome = match env {
        None => {
            let sup = adopt(restored.pid, &tasks, &mut trace)?;
            released(hooks);
            let o = crate::run::drive(sup, &sup_opts, &mut group);
            trace.finish();
            o
        }
        Some(mut env) => {
            let mut policy = Isolation::new(env.view.clone(), trace, env.generation.take());
            let sup = adopt(restored.pid, &tasks, &mut policy)?;
            released(hooks);
            let o = crate::run::drive(sup, &sup_opts, &mut group);
            policy.finish();
            env.finish(&policy.changed);
            o
        }
    };
    match outcome? {
        Outcome::Exited(how) => Ok(how.shell_status()),
        Outcome::NotStarted(_) => Ok(EXIT_FAILED),
    }
}

/// ISOTRACE_POST_COPY=0 makes a migration's destination fill the pages it
/// holds from pre-copy before the group runs, as before post-copy (for
/// comparison, benches/migrate.sh --fill).
fn post_copy_wanted() -> bool {
    std::env::var("ISOTRACE_POST_COPY").as_deref() != Ok("0")
}

/// Fails closed: every restored thread must run under the seccomp filter
/// (proc(5), /proc/PID/status "Seccomp: 2" is filter mode), or it would
/// escape the isolation. The caller's error return kills them (their
/// tracer exits; PTRACE_O_EXITKILL).
fn filtered(tasks: &[Adopted]) -> Result<(), Failure> {
    for t in tasks {
        let status = std::fs::read_to_string(format!("/proc/{}/status", t.tid)).unwrap_or_default();
        let mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        if mode != Some("2") {
            return Err((
                EXIT_FAILED,
                format!(
                    "restored thread {} has no seccomp filter (Seccomp: {}); refusing to run it unsupervised",
                    t.tid,
                    mode.unwrap_or("?")
                ),
            ));
        }
    }
    Ok(())
}

fn adopt<'p>(
    root: i32,
    tasks: &[Adopted],
    policy: &'p mut dyn isotrace_tracer::Policy,
) -> Result<Supervisor<'p>, Failure> {
    Supervisor::adopt(root, tasks, policy).map_err(|e| {
        (
            EXIT_FAILED,
            format!("cannot supervise the restored processes: {e}"),
        )
    })
}

/// The group's name: --group, else the image's; it must be free.
fn claim(
    args: &RestoreArgs,
    state: &SupervisorState,
    env: Option<&RunEnv>,
) -> Result<Claim, Failure> {
    let group = args.group.clone().unwrap_or_else(|| state.group.clone());
    let mode = match (env, state.mode.as_str()) {
        (None, _) => "no-isolation",
        (Some(_), "throwaway") if args.env.is_none() => "throwaway",
        (Some(_), _) => "isolated",
    };
    let home = env
        .and_then(|_| crate::envs::home().ok())
        .map(|h| isotrace::api::rundir::canonical(&h).display().to_string());
    let info = GroupInfo {
        group: group.clone(),
        env: env.map(|e| e.name().to_string()),
        home,
        mode: mode.into(),
    };
    match Claim::new(info.clone()) {
        // A migration's copy on the same host: the source group still
        // holds its name until the copy runs. The copy takes its env's
        // name (as `run --env NAME` would), else NAME-PID.
        Err(ClaimError::Running { .. }) if args.control.is_some() && args.group.is_none() => {
            let mut alt = info.clone();
            alt.group = info.env.clone().unwrap_or_else(|| group.clone());
            Claim::new(alt.clone()).or_else(|_| {
                alt.group = format!("{group}-{}", std::process::id());
                Claim::new(alt)
            })
        }
        other => other,
    }
    .map_err(|e| {
        (
            EXIT_USAGE,
            format!("{e}; give the restored group another name with --group NAME"),
        )
    })
}

/// The seccomp filter the adopted tasks need, and the path translation
/// into the target environment.
fn restore_options(
    args: &RestoreArgs,
    state: &SupervisorState,
    view: Option<&View>,
) -> restore::Options {
    let filter = filter::build(
        isotrace_arch::native::TABLE,
        &FilterConfig {
            scratch_end: SCRATCH_END,
            // A restored group keeps every trap, whatever mode the
            // checkpointed run had (README, "The read-only host").
            mode: if view.is_some() {
                isotrace_arch::Mode::Isolated
            } else {
                isotrace_arch::Mode::Native
            },
            // Its processes may hold directories of the environment open:
            // every listing is trapped from the start.
            lazy_listings: false,
        },
    );
    let map_path: Option<restore::PathMap> = match view {
        None => None,
        Some(view) => {
            let view = view.clone();
            let state = state.clone();
            Some(Box::new(move |p: &str| real_in(&view, &state.public_of(p))))
        }
    };
    restore::Options {
        new_session: args.detach,
        same_pids: !args.new_pids,
        map_path,
        seccomp_filter: Some(filter),
        post_copy: false,
    }
}

/// Where the object at public path `public` is in `view`'s merged view
/// (its private copy, or the host's); unchanged if it cannot be resolved
/// there, so that the restore's error names the path. The restore opens
/// it as the image says, for writing too, without the isolation policy:
/// a private file that `env copy` shares with another environment
/// (idb::share) gets its own copy first, as a write under the policy would.
fn real_in(view: &View, public: &str) -> String {
    match isotrace_idb::resolve(view, &RealFs, Path::new("/"), public.as_bytes(), false) {
        Ok(r) => {
            if r.loc == Some(isotrace_idb::Loc::Upper) {
                if let Err(e) = isotrace_idb::share::break_link(view, &r.real, false) {
                    eprintln!("isotrace: note: {public}: {e}");
                }
            }
            r.real.to_string_lossy().into_owned()
        }
        Err(_) => public.to_string(),
    }
}

/// Every restored thread, as the supervisor takes it over, each process
/// with its restored parent (None for the root, whose parent is us).
fn adopted(image: &Image, r: &restore::Restored) -> Vec<Adopted> {
    let now: std::collections::HashMap<i32, i32> = r.processes().into_iter().collect();
    let parent_of = |old_pid: i32| {
        let p = image.tree.processes.iter().find(|p| p.pid == old_pid)?;
        now.get(&p.ppid).copied()
    };
    r.tasks
        .iter()
        .map(|t| Adopted {
            tid: t.tid,
            pid: t.pid,
            parent: parent_of(t.old_pid),
        })
        .collect()
}
