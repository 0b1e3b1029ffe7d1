//! `isotrace restore IMAGE` (issue #5): the CLI glue over
//! `isotrace_checkpoint::restore`. The restored process runs natively (not
//! under the supervisor) with a new pid. Without --detach isotrace waits
//! for it and exits with its status, like `run`; with --detach it prints
//! the pid and exits at once, leaving it in a session of its own.

use crate::cli::RestoreArgs;
use isotrace_checkpoint::{restore, Image};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Exit status of a restore that failed.
const EXIT_FAILED: i32 = 1;

pub fn main(args: RestoreArgs) -> i32 {
    if let Some(env) = &args.env {
        eprintln!(
            "isotrace: restore --env {env}: restoring into an environment (under isolation) is not supported yet (issue #5); restore without --env runs the process natively"
        );
        return crate::EXIT_USAGE;
    }
    let image = match Image::open(&args.image) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "isotrace: {}: {e}; nothing was restored",
                args.image.display()
            );
            return EXIT_FAILED;
        }
    };
    let restored = match restore::restore(
        &image,
        &restore::Options {
            new_session: args.detach,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "isotrace: {}: {e}; nothing was restored",
                args.image.display()
            );
            return EXIT_FAILED;
        }
    };
    for note in &restored.notes {
        eprintln!("isotrace: note: {note}");
    }
    if let Err(e) = restore::release(restored.pid) {
        eprintln!("isotrace: releasing the restored process: {e}");
        return EXIT_FAILED;
    }
    let group = args
        .group
        .as_deref()
        .map(|g| format!(" (group {g})"))
        .unwrap_or_default();
    eprintln!(
        "isotrace: restored pid {} from {} as pid {}{group}",
        restored.old_pid,
        args.image.display(),
        restored.pid
    );
    if args.detach {
        return 0;
    }
    wait(restored.pid)
}

/// Waits for the restored process and maps its end to our exit status.
fn wait(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("isotrace: waiting for pid {pid}: {e}");
                return EXIT_FAILED;
            }
        }
    }
}
