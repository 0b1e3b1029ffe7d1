//! Signal delivery, default actions, stop/continue and wait semantics must
//! look the same to the tracee and its parent as they do natively.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{guest, wait_for_file, wait_for_pid, Case};

const SYNC: Duration = Duration::from_secs(60);

fn send(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) to a pid the guest published.
    let ret = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        ret,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn segfault_exits_139() {
    let (native, traced) = Case::new(guest("segv")).check();
    assert_eq!(native.status.shell_code(), 139);
    traced.assert_exit(139);
    assert_eq!(traced.stdout_str(), "about to crash\n");
}

#[test]
fn shell_killing_itself_with_sigterm_exits_143() {
    let (_, traced) = Case::sh("kill -TERM $$; echo not reached").check();
    traced.assert_exit(143);
    assert_eq!(traced.stdout_str(), "");
}

/// SIGTERM sent from outside (to the tracee's real pid) reaches the handler,
/// which exits 7.
#[test]
fn sigterm_from_outside_runs_handler() {
    let (_, traced) = Case::new(guest("sigterm_exit7"))
        .during(|dir: &Path, _| {
            let pid = wait_for_pid(&dir.join("pid"), SYNC);
            send(pid, libc::SIGTERM);
        })
        .check();
    traced.assert_exit(7);
    assert_eq!(traced.stdout_str(), "got SIGTERM\n");
}

/// SIGSTOP and SIGCONT sent from outside to a traced child: its parent sees
/// the stop and the continue through waitpid(WUNTRACED/WCONTINUED), and the
/// child then completes normally. Under ptrace, the supervisor must turn the
/// signal-delivery-stop into a real group-stop (ptrace(2), "Group-stop").
#[test]
fn stop_and_continue_from_outside() {
    let (_, traced) = Case::new(guest("stop_cont"))
        .during(|dir: &Path, _| {
            let child = wait_for_pid(&dir.join("child.pid"), SYNC);
            send(child, libc::SIGSTOP);
            wait_for_file(&dir.join("stopped"), SYNC);
            send(child, libc::SIGCONT);
        })
        .check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "child stopped by signal 19\nchild continued\nchild exited 0\n"
    );
}

#[test]
fn sigchld_and_wait_statuses() {
    let (_, traced) = Case::new(guest("sigchld_wait")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "waitid WNOWAIT: pid matches=1 code=1 status=0\n\
         child 0: exited 0\n\
         child 1: exited 10\n\
         child 2: exited 20\n\
         child 3: exited 30\n\
         child 4: exited 40\n\
         child 5: killed by signal 9\n\
         child 6: killed by signal 11\n\
         child 7: killed by signal 6\n\
         further wait: -1\n\
         got SIGCHLD: yes\n"
    );
}

#[test]
fn sigaltstack_handlers() {
    let (_, traced) = Case::new(guest("sigaltstack")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "SIGUSR1 handler ran on altstack: 1\n\
         altstack still set after handler: 1\n\
         stack overflow caught on altstack\n"
    );
}

#[test]
fn exit_codes_pass_through() {
    for code in [0, 1, 2, 42, 126, 127, 128, 255] {
        let (_, traced) = Case::sh(&format!("exit {code}")).check();
        traced.assert_exit(code);
    }
}

/// Death by signal S is reported as 128+S, whatever the signal.
#[test]
fn death_by_signal_is_128_plus_signal() {
    for (sig, name) in [
        (libc::SIGKILL, "KILL"),
        (libc::SIGABRT, "ABRT"),
        (libc::SIGPIPE, "PIPE"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
    ] {
        // ulimit -c 0: no core file for SIGABRT.
        let (_, traced) = Case::sh(&format!("ulimit -c 0; kill -{name} $$")).check();
        traced.assert_exit(128 + sig);
    }
}

/// The tracee starts with the signal dispositions and mask it would have
/// natively (ignored signals and the blocked mask survive execve(2)).
#[test]
fn initial_signal_state_is_inherited_unchanged() {
    let (_, traced) = Case::new(guest("sigstate")).check();
    traced.assert_exit(0);
    // The harness starts programs with default dispositions.
    assert_eq!(traced.stdout_str(), "done\n");
}

/// Blocking syscalls interrupted by handlers: restarted under SA_RESTART
/// (the supervisor sees -ERESTARTSYS at syscall exit and must leave it to the
/// kernel), EINTR otherwise, and never restarted for nanosleep/pause.
#[test]
fn interrupted_syscalls_restart_or_eintr() {
    let (_, traced) = Case::new(guest("eintr")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "read with SA_RESTART: ret=1 errno=none interrupted>=50: 1\n\
         read without SA_RESTART: ret=-1 errno=EINTR\n\
         nanosleep with SA_RESTART: ret=-1 errno=EINTR remaining>20s: 1\n\
         pause: ret=-1 errno=EINTR\n\
         sigsuspend: ret=-1 errno=EINTR handler ran: 1\n"
    );
}
