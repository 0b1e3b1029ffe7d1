//! Interactive job control in a pseudo-terminal: bash stops a foreground
//! job on Ctrl-Z, resumes it with `fg`, interrupts it with Ctrl-C. Under
//! ptrace the supervisor must let terminal-generated signals and group-stops
//! reach bash's waitpid exactly as natively.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{isotrace, proc_state, wait_until, Mode};

const STEP: Duration = Duration::from_secs(60);
const PROMPT: &str = "__isotrace_prompt__> ";

/// A program running as the session leader of a fresh pseudo-terminal.
struct Pty {
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    child: Child,
    seen: usize,
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; null name and termios are allowed.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh fds that we now own.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

impl Pty {
    fn spawn(argv: &[&str]) -> Pty {
        let (master, slave) = open_pty();
        let home = std::env::temp_dir();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("TERM", "dumb")
            .env("LC_ALL", "C")
            .env("HOME", &home)
            .env("PS1", PROMPT)
            .current_dir(&home)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn in pty");
        drop(cmd); // closes our copies of the slave
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave fd is closed: the session is over.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            output,
            child,
            seen: 0,
        }
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn send(&mut self, bytes: &str) {
        self.master.write_all(bytes.as_bytes()).unwrap();
    }

    /// Waits for `pattern` to appear after everything matched so far.
    fn expect(&mut self, pattern: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            {
                let out = self.output.lock().unwrap();
                if let Some(pos) = out[self.seen..]
                    .windows(pattern.len())
                    .position(|w| w == pattern.as_bytes())
                {
                    self.seen += pos + pattern.len();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {pattern:?}; transcript:\n{}",
                self.transcript()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The terminal's foreground process group (TIOCGPGRP on the master
    /// reports the slave's, tty_ioctl(4)).
    fn foreground(&self) -> i32 {
        // SAFETY: tcgetpgrp on an fd we own.
        unsafe { libc::tcgetpgrp(self.master.as_raw_fd()) }
    }

    /// Waits until the foreground job is `sleep` (exec'd, not just forked)
    /// and returns its pid.
    fn wait_foreground_sleep(&self) -> i32 {
        let mut pid = 0;
        wait_until("sleep to be the foreground job", STEP, || {
            pid = self.foreground();
            pid > 0
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim() == "sleep")
                    .unwrap_or(false)
        });
        pid
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the session did not end; transcript:\n{}",
                self.transcript()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // Everything in the pty's session (bash and its jobs), then the
        // leader itself.
        let sid = self.child.id() as i32;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                // SAFETY: getsid/kill have no memory-safety preconditions.
                unsafe {
                    if libc::getsid(pid) == sid {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interactive_session(mode: Mode) {
    let mut argv = vec![];
    if mode == Mode::Traced {
        argv.extend([isotrace().to_str().unwrap(), "--no-isolation", "--"]);
    }
    argv.extend(["/bin/bash", "--norc", "--noprofile", "-i"]);
    let mut pty = Pty::spawn(&argv);
    pty.expect(PROMPT);

    pty.send("sleep 30\r");
    let job = pty.wait_foreground_sleep();
    pty.send("\x1a"); // Ctrl-Z: SIGTSTP to the foreground group
    pty.expect("Stopped");
    pty.expect(PROMPT);
    assert!(
        matches!(proc_state(job), Some('T') | Some('t')),
        "job {job} should be stopped, state {:?}",
        proc_state(job)
    );

    pty.send("fg\r");
    assert_eq!(pty.wait_foreground_sleep(), job, "fg resumed another job");
    pty.send("\x03"); // Ctrl-C: SIGINT to the foreground group
    pty.expect(PROMPT);
    wait_until("the interrupted job to be reaped", STEP, || {
        proc_state(job).is_none()
    });

    pty.send("echo done-$((6*7))\r");
    pty.expect("done-42");
    pty.expect(PROMPT);
    pty.send("exit\r");
    let status = pty.wait_exit();
    let transcript = pty.transcript();
    eprintln!("{mode} transcript:\n{transcript}");
    assert!(
        !transcript.contains("There are stopped jobs"),
        "{mode}: transcript:\n{transcript}"
    );
    assert_eq!(status.code(), Some(0), "{mode}: transcript:\n{transcript}");
}

/// Validates the pty driver itself against plain bash.
#[test]
fn interactive_bash_native() {
    interactive_session(Mode::Native);
}

#[test]
fn interactive_bash_traced() {
    interactive_session(Mode::Traced);
}
