//! `isotrace run`: glue between the CLI, the tracer and the policy.

use crate::cli::RunArgs;
use crate::isolate::Isolation;
use crate::trace::TracePolicy;
use crate::EXIT_USAGE;
use isotrace::api::server::{Claim, ClaimError, GroupInfo};
use isotrace::api::state::SupervisorState;
use isotrace_arch::Mode;
use isotrace_tracer::filter::{self, FilterConfig};
use isotrace_tracer::scratch::SCRATCH_END;
use isotrace_tracer::{ChildFailure, Outcome, ReadOnlyHost, SpawnSpec, Supervisor};
use nix::errno::Errno;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const EXIT_CANNOT_EXEC: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// Runs the command line's program; returns the exit status to use.
pub fn main(args: RunArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("isotrace: {msg}");
            code
        }
    }
}

pub type Failure = (i32, String);

fn run(args: RunArgs) -> Result<i32, Failure> {
    let Some(cmd) = args.cmd.first().cloned() else {
        return Err((
            EXIT_USAGE,
            "no command given (usage: isotrace [RUN-FLAGS] -- CMD [ARGS...])".into(),
        ));
    };
    let program = resolve(&cmd)?;
    let migrate_on_signal =
        crate::migrate::on_signal::args_from(&args).map_err(|e| (EXIT_USAGE, e))?;
    if migrate_on_signal.is_none() && args.migrate_pre_copy {
        return Err((
            EXIT_USAGE,
            "--migrate-pre-copy needs --migrate-to-env NAME or --migrate-to HOST:PORT".into(),
        ));
    }
    // The env exists before the group's socket appears, so that a client
    // that sees the group (ps, env show) also finds its env.
    let env = if args.no_isolation {
        None
    } else {
        Some(crate::envs::open_for_run(&args, &cmd)?)
    };
    // `isotrace config`: trace.default and checkpoint.every apply when the
    // flags are not given (the env's and the program's overrides included).
    let app = Path::new(&cmd)
        .file_name()
        .unwrap_or(&cmd)
        .to_string_lossy()
        .into_owned();
    let config_env = env.as_ref().map_or(app.clone(), |e| e.name().to_string());
    let settings = isotrace::config::effective_for_run(&config_env, &app)
        .map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let every = match &args.checkpoint_every {
        Some(text) => isotrace::config::model::parse_every(text)
            .map_err(|e| (EXIT_USAGE, format!("--checkpoint-every {text}: {e}")))?,
        None => settings.checkpoint.every,
    };
    // Issue #3: with CAP_SYS_ADMIN, the program may run with a read-only
    // host, where fd-based metadata calls need no stop.
    let read_only_host = match &env {
        Some(env) if settings.isolation.read_only_host && has_cap_sys_admin() => {
            read_only_host_plan(&env.view)
        }
        Some(_) if settings.isolation.read_only_host => Err("no CAP_SYS_ADMIN".into()),
        Some(_) => Err("isolation.read_only_host = false".into()),
        None => Err("no isolation".into()),
    };
    let mode = match (&env, &read_only_host) {
        (None, _) => Mode::Native,
        (Some(_), Ok(_)) => Mode::ReadOnlyHost,
        (Some(_), Err(why)) => {
            tracing::info!("the host stays writable, every fd call is trapped: {why}");
            Mode::Isolated
        }
    };
    // Issue #3: getdents64 untrapped until the group changes its env or
    // opens one of its directories (tracer listings.rs).
    let lazy_listings = mode != Mode::Native
        && settings.isolation.lazy_listings
        && match crate::isolate::readonly::inherited_directory_fd() {
            Some((fd, path)) => {
                tracing::info!(
                    "listings trapped from the start: fd {fd} is open on the directory {}",
                    path.display()
                );
                false
            }
            None => true,
        };
    // Issue #4: the group's socket; dropped (removed) on every way out.
    let mut group = match claim_group(&args, &cmd) {
        Ok(g) => g,
        Err(e) => {
            // A throwaway env made for this run goes with it.
            if let Some(env) = env {
                env.finish(&Default::default());
            }
            return Err(e);
        }
    };
    // Issue #5: where checkpoints of the group go by default.
    group.set_checkpoint_root(checkpoint_root(&args)?);
    let spec = SpawnSpec {
        program: cstring(program.as_os_str())?,
        argv: args
            .cmd
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        envp: std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect::<Result<_, _>>()?,
        filter: filter::build(
            isotrace_arch::native::TABLE,
            &FilterConfig {
                scratch_end: SCRATCH_END,
                mode,
                lazy_listings,
            },
        ),
        no_new_privs: !has_cap_sys_admin(),
        lazy_listings,
        read_only_host: read_only_host.as_ref().ok().cloned(),
    };
    let mut trace = TracePolicy::new(
        args.out.trace || settings.trace.default,
        args.out.trace_file.as_deref(),
    )
    .map_err(|e| (EXIT_USAGE, format!("--trace-file: {e}")))?;
    if args.out.report.is_some() {
        trace.report = Some(crate::report::Report::new());
    }
    let env_name = env.as_ref().map(|e| e.name().to_string());
    // Issue #5: what a checkpoint of this group records of its supervisor.
    let state = SupervisorState {
        version: isotrace::api::state::VERSION,
        group: group.group().to_string(),
        mode: group.info().mode.clone(),
        env: env_name.clone(),
        // As the kernel reports paths (fd links, cwd): symlinks resolved.
        upper: env
            .as_ref()
            .map(|e| isotrace::api::rundir::canonical(e.view.upper())),
        trace: args.out.trace || settings.trace.default,
        rules: env
            .as_ref()
            .and_then(|e| serde_json::from_str(&e.view.rules().to_json()).ok()),
        read_only_host: mode == Mode::ReadOnlyHost,
    };
    if args.out.stats && env.is_some() {
        match &read_only_host {
            Ok(_) => eprintln!("isotrace: host: read-only"),
            Err(why) => eprintln!("isotrace: host: writable, fd calls trapped ({why})"),
        }
    }
    let sup = SuperviseOpts {
        stats: args.out.stats,
        every,
        state,
        migrate_on_signal,
    };
    let (outcome, report) = match env {
        None => {
            let outcome = supervise(&spec, &mut trace, &sup, &mut group);
            (outcome, trace.report.take())
        }
        Some(mut env) => {
            let mut policy = Isolation::new(env.view.clone(), trace, env.generation.take());
            policy.set_read_only_host(read_only_host.is_ok());
            let outcome = supervise_with(&spec, &mut policy, &sup, &mut group);
            policy.finish();
            env.finish(&policy.changed);
            (outcome, policy.take_report())
        }
    };
    let outcome = outcome?;
    if let (Some(file), Some(report)) = (&args.out.report, report) {
        let status = match outcome {
            Outcome::Exited(how) => how.shell_status(),
            Outcome::NotStarted(_) => EXIT_NOT_FOUND,
        };
        let command: Vec<String> = args
            .cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        report
            .write(file, &command, env_name.as_deref(), status)
            .map_err(|e| (EXIT_USAGE, format!("--report {}: {e}", file.display())))?;
    }
    match outcome {
        Outcome::Exited(how) => Ok(how.shell_status()),
        Outcome::NotStarted(ChildFailure::Exec(e)) => {
            let code = if e == Errno::ENOENT {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXEC
            };
            Err((
                code,
                format!("{}: cannot execute: {}", cmd.to_string_lossy(), e.desc()),
            ))
        }
        Outcome::NotStarted(ChildFailure::Mounts(e)) => Err((
            EXIT_USAGE,
            format!(
                "cannot make the host read-only for the program ({}); \
                 `isotrace config set isolation.read_only_host false` keeps it writable",
                e.desc()
            ),
        )),
        Outcome::NotStarted(ChildFailure::Seccomp(e)) => Err((
            EXIT_USAGE,
            format!(
                "cannot install the seccomp filter ({}): seccomp may be unavailable here",
                e.desc()
            ),
        )),
    }
}

/// How a group is supervised, whether spawned or restored.
pub struct SuperviseOpts {
    /// `--stats`: print the tracer's counters at the end.
    pub stats: bool,
    /// `--checkpoint-every`.
    pub every: Option<std::time::Duration>,
    /// Written into each checkpoint of the group.
    pub state: SupervisorState,
    /// `--migrate-to-env`/`--migrate-to`: what follows `isotrace migrate
    /// GROUP` when SIGPWR comes.
    pub migrate_on_signal: Option<Vec<String>>,
}

fn supervise(
    spec: &SpawnSpec,
    policy: &mut TracePolicy,
    opts: &SuperviseOpts,
    group: &mut Claim,
) -> Result<Outcome, Failure> {
    let outcome = supervise_with(spec, policy, opts, group);
    policy.finish();
    outcome
}

fn supervise_with(
    spec: &SpawnSpec,
    policy: &mut dyn isotrace_tracer::Policy,
    opts: &SuperviseOpts,
    group: &mut Claim,
) -> Result<Outcome, Failure> {
    let sup = Supervisor::spawn(spec, policy).map_err(|e| (EXIT_USAGE, setup_hint(&e)))?;
    drive(sup, opts, group)
}

/// Connects a started supervisor to the group's API and runs it to the end.
pub fn drive(
    mut sup: Supervisor<'_>,
    opts: &SuperviseOpts,
    group: &mut Claim,
) -> Result<Outcome, Failure> {
    isotrace::api::checkpoint::attach(&mut sup, group, Some(opts.state.clone()));
    match group.serve(sup.root()) {
        Ok(()) => {
            if let Some(every) = opts.every {
                periodic_checkpoints(group.path().to_path_buf(), every);
            }
            if let Some(args) = &opts.migrate_on_signal {
                if let Err(e) = crate::migrate::on_signal::arm(group.group(), args) {
                    eprintln!(
                        "isotrace: group {}: no SIGPWR migration: {e}",
                        group.group()
                    );
                }
            }
        }
        Err(e) => eprintln!("isotrace: group {} has no control API: {e}", group.group()),
    }
    let outcome = sup.run().map_err(|e| (EXIT_USAGE, e.to_string()))?;
    if opts.stats {
        print_stats(&sup.stats());
    }
    Ok(outcome)
}

/// `--checkpoint-every`: a client of the group's own control socket asks
/// for a leave-running checkpoint (into the group's checkpoint directory)
/// every period, until the group is gone. The freeze itself happens on the
/// supervisor's ptrace thread, as for `isotrace checkpoint`.
fn periodic_checkpoints(socket: PathBuf, every: std::time::Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        let Ok(mut client) = isotrace::api::client::Client::connect(&socket) else {
            return;
        };
        match client.checkpoint(None, true) {
            Ok(done) => tracing::info!("periodic checkpoint: {done:?}"),
            Err(e) => eprintln!("isotrace: periodic checkpoint failed: {e}"),
        }
    });
}

/// --checkpoint-dir (made absolute), else $ISOTRACE_HOME/checkpoints.
fn checkpoint_root(args: &RunArgs) -> Result<Option<PathBuf>, Failure> {
    match &args.checkpoint_dir {
        Some(d) => std::path::absolute(d)
            .map(Some)
            .map_err(|e| (EXIT_USAGE, format!("--checkpoint-dir: {e}"))),
        None => Ok(crate::envs::home().ok().map(|h| h.join("checkpoints"))),
    }
}

fn setup_hint(e: &isotrace_tracer::Error) -> String {
    match e {
        isotrace_tracer::Error::Sys { op: "PTRACE_SEIZE", errno, .. } => format!(
            "ptrace is not permitted here (PTRACE_SEIZE: {}); check /proc/sys/kernel/yama/ptrace_scope and any container seccomp profile",
            errno.desc()
        ),
        other => other.to_string(),
    }
}

fn cstring(s: &OsStr) -> Result<CString, Failure> {
    CString::new(s.as_bytes()).map_err(|_| {
        (
            EXIT_USAGE,
            format!("argument contains a NUL byte: {}", s.to_string_lossy()),
        )
    })
}

/// execvp(3)'s search: a name with a slash is used as is, others are looked
/// up in PATH. Distinguishes "not found" (127) from "cannot execute" (126).
fn resolve(cmd: &OsStr) -> Result<PathBuf, Failure> {
    let name = cmd.to_string_lossy();
    if cmd.is_empty() {
        return Err((EXIT_NOT_FOUND, "'': command not found".into()));
    }
    if cmd.as_bytes().contains(&b'/') {
        let p = PathBuf::from(cmd);
        return check_exec(&p, &name).map(|_| p);
    }
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = None;
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(cmd);
        if cand.exists() {
            match check_exec(&cand, &name) {
                Ok(()) => return Ok(cand),
                Err(e) => denied = denied.or(Some(e)),
            }
        }
    }
    Err(denied.unwrap_or((EXIT_NOT_FOUND, format!("{name}: command not found"))))
}

fn check_exec(p: &Path, name: &str) -> Result<(), Failure> {
    let meta = std::fs::metadata(p).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_EXEC
        };
        (code, format!("{name}: {e}"))
    })?;
    if meta.is_dir() {
        return Err((EXIT_CANNOT_EXEC, format!("{name}: is a directory")));
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).map_err(|e| {
        (
            EXIT_CANNOT_EXEC,
            format!("{name}: cannot execute: {}", e.desc()),
        )
    })
}

/// The read-only-host namespace for a run in `view`, or why not.
fn read_only_host_plan(view: &isotrace_idb::View) -> Result<ReadOnlyHost, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    crate::isolate::readonly::plan(view, &crate::isolate::readonly::parse_mountinfo(&info))
}

/// CAP_SYS_ADMIN (bit 21) in the effective set: seccomp then works without
/// PR_SET_NO_NEW_PRIVS, and set-user-ID programs keep working.
fn has_cap_sys_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

fn print_stats(s: &isotrace_tracer::Stats) {
    use nix::sys::resource::{getrusage, UsageWho};
    let peak = getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.max_rss());
    eprintln!(
        "isotrace: stats: stops={} seccomp_stops={} exit_stops={} rewrites={} injections={} probes={} tasks={} peak_rss_kib={}",
        s.stops, s.seccomp_stops, s.exit_stops, s.rewrites, s.injections, s.probes, s.tasks_seen, peak
    );
}

// ---- Issue #4: the application group and its control socket (src/api) ----

/// Claims the group's name and socket before anything starts. The group is
/// `--group`, else the env's name; under --no-isolation and --rm it is the
/// command's file name and our pid, so that such runs never collide. Only
/// an explicit --group must be free: several programs may share one env,
/// each as its own group, so a default name that is taken gets `-PID`.
fn claim_group(args: &RunArgs, cmd: &OsStr) -> Result<Claim, Failure> {
    let base = Path::new(cmd).file_name().unwrap_or(cmd).to_string_lossy();
    let pid = std::process::id();
    let (env, mode) = match (&args.env, args.rm, args.no_isolation) {
        (Some(env), _, _) => (Some(env.clone()), "isolated"),
        // The name envs::open_for_run gives a throwaway env.
        (None, true, _) => (Some(format!("rm-{pid}")), "throwaway"),
        (None, false, true) => (None, "no-isolation"),
        (None, false, false) => (Some(base.to_string()), "isolated"),
    };
    if let Some(env) = &env {
        // The env's own error, before a group named after it is refused.
        isotrace_idb::validate_name(env).map_err(|e| (EXIT_USAGE, e.to_string()))?;
    }
    let group = match (&args.group, mode, &env) {
        (Some(g), _, _) => g.clone(),
        (None, "isolated", Some(env)) => env.clone(),
        _ => format!("{base}-{pid}"),
    };
    let home = env
        .as_ref()
        .and_then(|_| crate::envs::home().ok())
        .map(|h| isotrace::api::rundir::canonical(&h).display().to_string());
    let mut info = GroupInfo {
        group,
        env,
        home,
        mode: mode.into(),
    };
    let claimed = match Claim::new(info.clone()) {
        Err(ClaimError::Running { .. }) if args.group.is_none() => {
            info.group = format!("{}-{pid}", info.group);
            Claim::new(info)
        }
        other => other,
    };
    claimed.map_err(|e| (EXIT_USAGE, e.to_string()))
}
