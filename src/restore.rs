//! `isotrace restore IMAGE` (issue #5). A group checkpoint (an image with
//! the supervisor's state) comes back under a supervisor, in its
//! environment, as a group (`restore_group`). A snapshot of a process that
//! ran outside isotrace, or `--native`, comes back without one. Without
//! --detach isotrace waits for the group and exits with its root's status,
//! like `run`; with --detach it prints what runs and exits at once.

use crate::cli::RestoreArgs;
use crate::restore_group::{self, EXIT_FAILED};
use isotrace_checkpoint::{restore, Image};
use isotrace_tracer::sys::{fork_single_threaded, Forked};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::io::{Read, Write};

pub fn main(args: RestoreArgs) -> i32 {
    // The pages sections are checked as the restore reads them into place,
    // before anything restored runs (Image::open_for_restore).
    let image = match Image::open_for_restore(&args.image) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "isotrace: {}: {e}; nothing was restored",
                args.image.display()
            );
            return EXIT_FAILED;
        }
    };
    let state = match isotrace::api::state::read(&image) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("isotrace: {e}; nothing was restored");
            return EXIT_FAILED;
        }
    };
    let supervised =
        !args.native && (state.is_some() || args.env.is_some() || args.group.is_some());
    if !supervised {
        return native(&args, &image);
    }
    if args.detach {
        return detached(&args, &image, state);
    }
    if let Some(dir) = &args.control {
        return controlled(&args, &image, state, dir);
    }
    let mut ready = |line: &str, _: &str| eprintln!("isotrace: {line}");
    let mut hooks = restore_group::Hooks {
        hold: &mut |_| Ok(()),
        ready: &mut ready,
        post_copied: None,
    };
    match restore_group::run(&args, &image, state, &mut hooks) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("isotrace: {msg}");
            code
        }
    }
}

/// `--detach` under a supervisor: the supervisor is a forked child in a
/// session of its own; this process waits until the group runs (or the
/// restore failed), says which, and exits.
fn detached(
    args: &RestoreArgs,
    image: &Image,
    state: Option<isotrace::api::state::SupervisorState>,
) -> i32 {
    let (mut rd, wr) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("isotrace: pipe: {e}");
            return EXIT_FAILED;
        }
    };
    match fork_single_threaded() {
        Err(e) => {
            eprintln!("isotrace: cannot detach: {e}");
            EXIT_FAILED
        }
        Ok(Forked::Child) => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let mut wr = Some(wr);
            let mut ready = |line: &str, _: &str| {
                if let Some(mut w) = wr.take() {
                    let _ = writeln!(w, "ok {line} (supervisor pid {})", std::process::id());
                    // A daemon lets go of the caller's stdio (the restored
                    // processes have their own copies by now), so that
                    // whoever reads it sees EOF when `restore` exits.
                    to_dev_null();
                }
            };
            let mut hooks = restore_group::Hooks {
                hold: &mut |_| Ok(()),
                ready: &mut ready,
                post_copied: None,
            };
            let code = match restore_group::run(args, image, state, &mut hooks) {
                Ok(code) => code,
                Err((code, msg)) => {
                    if let Some(mut w) = wr.take() {
                        let _ = writeln!(w, "{code} {msg}");
                    }
                    code
                }
            };
            std::process::exit(code)
        }
        Ok(Forked::Parent(child)) => {
            drop(wr);
            let mut answer = String::new();
            let _ = rd.read_to_string(&mut answer);
            match answer.split_once(' ') {
                Some(("ok", line)) => {
                    eprintln!("isotrace: {}", line.trim_end());
                    0
                }
                Some((code, msg)) => {
                    eprintln!("isotrace: {}", msg.trim_end());
                    code.parse().unwrap_or(EXIT_FAILED)
                }
                None => {
                    eprintln!("isotrace: the restoring supervisor (pid {child}) died before the group ran");
                    EXIT_FAILED
                }
            }
        }
    }
}

/// `--control DIR` (a migration's receiver, `migrate/start.rs`): the
/// restore runs in a session of its own and speaks through two FIFOs the
/// receiver made in DIR. It writes `ready PID,PID...` to `DIR/ready` once
/// the copy is rebuilt and stopped, waits for `go` on `DIR/go` (anything
/// else, or nothing within [`CONTROL_WAIT`], and the copy is killed), then
/// writes `running` once the supervisor has let it run, and supervises it
/// until it exits.
fn controlled(
    args: &RestoreArgs,
    image: &Image,
    state: Option<isotrace::api::state::SupervisorState>,
    dir: &std::path::Path,
) -> i32 {
    let _ = nix::unistd::setsid();
    let say = |line: &str| say_to(&dir.join("ready"), line);
    let mut hold = |pids: &[i32]| -> Result<(), String> {
        let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        // Open for reading before saying ready: the receiver's non-blocking
        // open for writing fails with ENXIO while no reader has it open
        // (fifo(7)), and it answers as soon as it reads `ready`.
        let go = dir.join("go");
        let go_fifo = open_fifo(&go)?;
        say(&format!("ready {}", list.join(",")))?;
        match read_line_from(go_fifo, &go, CONTROL_WAIT)?.as_str() {
            "go" => Ok(()),
            other => Err(format!("the receiver did not say go ({other:?})")),
        }
    };
    let mut ready = |_: &str, fill: &str| {
        let _ = say(format!("running {fill}").trim_end());
    };
    // From the post-copy thread, once every page is in: `say` opens the
    // FIFO anew, so it may run there.
    let fifo = dir.join("ready");
    let post_copied: isotrace_checkpoint::restore::lazy::Done = Box::new(move |outcome| {
        let line = match outcome {
            Ok(stats) => format!(
                "post-copied {}",
                serde_json::to_string(&stats).unwrap_or_default()
            ),
            Err(why) => format!("post-copy-failed {why}"),
        };
        let _ = say_to(&fifo, &line);
    });
    let mut hooks = restore_group::Hooks {
        hold: &mut hold,
        ready: &mut ready,
        post_copied: Some(post_copied),
    };
    match restore_group::run(args, image, state, &mut hooks) {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = say(&format!("failed {msg}"));
            code
        }
    }
}

/// Writes one line to the FIFO at `path`. Non-blocking: with no reader
/// left (the receiver died) the open fails with ENXIO (fifo(7)) instead
/// of hanging.
fn say_to(path: &std::path::Path, line: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{line}").map_err(|e| format!("{}: {e}", path.display()))
}

/// How long a controlled restore waits for the receiver's word.
const CONTROL_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Opens the FIFO at `path` for reading without blocking.
fn open_fifo(path: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// One line from the opened FIFO `f` (at `path`), waiting at most `within`.
fn read_line_from(
    mut f: std::fs::File,
    path: &std::path::Path,
    within: std::time::Duration,
) -> Result<String, String> {
    let deadline = std::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match f.read(&mut buf) {
            Ok(n) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = got.iter().position(|&b| b == b'\n') {
                    return Ok(String::from_utf8_lossy(&got[..end]).into_owned());
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("no word on {} within {within:?}", path.display()));
        }
        wait_readable(&f, std::time::Duration::from_millis(50));
    }
}

/// Sleeps until the non-blocking FIFO `f` has data, or at most `max`: the
/// word arrives at once, not at the next tick of a polling loop (each hop
/// of a migration's Ready/Go/Running is in its downtime). A FIFO whose
/// writer has closed polls as POLLHUP for ever (pipe(7)); that is waited
/// out with a short sleep instead of spinning.
pub fn wait_readable(f: &std::fs::File, max: std::time::Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(max.as_millis()).unwrap_or(u16::MAX);
    let hung_up = match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP) && !r.contains(PollFlags::POLLIN)),
        Ok(_) => false,
        Err(_) => true,
    };
    if hung_up {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn to_dev_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// The restore without a supervisor: the process runs natively.
fn native(args: &RestoreArgs, image: &Image) -> i32 {
    let restored = match restore::restore(
        image,
        &restore::Options {
            new_session: args.detach,
            same_pids: !args.new_pids,
            ..Default::default()
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
    if let Err(e) = restore::tcp::unlock(image) {
        eprintln!("isotrace: note: {e}");
    }
    if let Err(e) = restore::release_all(&restored) {
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
    wait(restored.waitable())
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
