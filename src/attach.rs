//! `isotrace attach PID` (#2): the tracer's attach mode behind the CLI. The
//! process becomes an application group of mode `attached` (trace only,
//! no environment) with its control API, so `ps`, `checkpoint` and the
//! access report work as for a group `run` started.

use crate::cli::AttachArgs;
use crate::run::{Failure, SuperviseOpts};
use crate::trace::TracePolicy;
use crate::EXIT_USAGE;
use isotrace::api::server::{Claim, GroupInfo};
use isotrace::api::state::{SupervisorState, VERSION};
use isotrace_tracer::filter::{self, FilterConfig};
use isotrace_tracer::scratch::SCRATCH_END;
use isotrace_tracer::{Outcome, Supervisor};

pub fn main(args: AttachArgs) -> i32 {
    match attach(&args) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("isotrace: {msg}");
            code
        }
    }
}

fn attach(args: &AttachArgs) -> Result<i32, Failure> {
    let pid = args.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| (EXIT_USAGE, format!("attach {pid}: no such process")))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    if field("Tgid:").as_deref() != Some(&pid.to_string()) {
        return Err((
            EXIT_USAGE,
            format!(
                "attach {pid}: that is a thread; give its process id ({})",
                field("Tgid:").unwrap_or_default()
            ),
        ));
    }
    match field("TracerPid:").as_deref() {
        Some("0") | None => {}
        Some(tracer) => {
            return Err((
                EXIT_USAGE,
                format!("attach {pid}: it is already traced by pid {tracer}"),
            ))
        }
    }
    if field("Seccomp:").as_deref() == Some("1") {
        return Err((
            EXIT_USAGE,
            format!("attach {pid}: it runs in seccomp strict mode, where no filter can be added"),
        ));
    }
    // CAP_SYS_ADMIN (bit 21) lets seccomp(2) go without no_new_privs.
    let cap_sys_admin = field("CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0);
    let command = vec![cmdline(pid)];
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("attach-{pid}"));
    let info = GroupInfo {
        group: group.clone(),
        env: None,
        home: None,
        mode: "attached".into(),
    };
    let mut claim = Claim::new(info).map_err(|e| (EXIT_USAGE, e.to_string()))?;
    claim.set_checkpoint_root(crate::envs::home().ok().map(|h| h.join("checkpoints")));
    let mut trace = TracePolicy::new(args.out.trace, args.out.trace_file.as_deref())
        .map_err(|e| (EXIT_USAGE, format!("--trace-file: {e}")))?;
    if args.out.report.is_some() {
        trace.report = Some(crate::report::Report::new());
    }
    let filter = filter::build(
        isotrace_arch::native::TABLE,
        &FilterConfig {
            scratch_end: SCRATCH_END,
            mode: isotrace_arch::Mode::Native,
            lazy_listings: false,
        },
    );
    let sup = Supervisor::attach(pid, &filter, !cap_sys_admin, &mut trace)
        .map_err(|e| (EXIT_USAGE, format!("attach {pid}: {e}")))?;
    eprintln!("isotrace: attached to pid {pid} (group {group})");
    let opts = SuperviseOpts {
        stats: args.out.stats,
        every: None,
        state: SupervisorState {
            version: VERSION,
            group,
            mode: "attached".into(),
            ..Default::default()
        },
        migrate_on_signal: None,
    };
    let outcome = crate::run::drive(sup, &opts, &mut claim);
    trace.finish();
    let code = match outcome? {
        Outcome::Exited(how) => how.shell_status(),
        Outcome::NotStarted(_) => 1,
    };
    if let (Some(file), Some(report)) = (&args.out.report, trace.report.take()) {
        report
            .write(file, &command, None, code)
            .map_err(|e| (EXIT_USAGE, format!("--report {}: {e}", file.display())))?;
    }
    Ok(code)
}

/// What the process was started as, for the report.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| format!("pid {pid}"))
}
