//! Fail closed: system calls that would let a tracee act outside the
//! supervisor's view get ENOSYS, and the tracee cannot attack the
//! supervisor itself.
//!
//! Several guests here only ever run under isotrace: natively their parent
//! would be this test process.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest, isotrace, pids_with_cmdline, unique_token, Case, Mode};

#[test]
fn io_uring_setup_is_enosys() {
    let traced = Case::new(guest("io_uring")).run(Mode::Traced);
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "io_uring_setup: ret=-1 errno=ENOSYS\n",
        "{}",
        traced.describe()
    );
}

/// On kernels without CONFIG_X86_X32_ABI (like Debian's) the native result is
/// ENOSYS as well; the point is that isotrace never lets them through.
#[test]
fn x32_syscalls_are_enosys() {
    let traced = Case::new(guest("x32")).run(Mode::Traced);
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "x32 getpid: ret=-1 errno=ENOSYS\n\
         x32 openat: ret=-1 errno=ENOSYS\n\
         x32 write: ret=-1 errno=ENOSYS\n\
         x32 execve(520): ret=-1 errno=ENOSYS\n",
        "{}",
        traced.describe()
    );
}

/// int $0x80 from a 64-bit process enters the i386 table (getpid is 20
/// there). Natively it works when CONFIG_IA32_EMULATION is on; under
/// isotrace it must get -ENOSYS.
#[test]
fn int80_syscalls_are_enosys() {
    let native = Case::new(guest("int80")).run(Mode::Native);
    eprintln!(
        "native int $0x80 result (for reference):\n{}",
        native.stdout_str()
    );
    let traced = Case::new(guest("int80")).run(Mode::Traced);
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "int80 getpid: -38\nint80 write: -38\n",
        "{}",
        traced.describe()
    );
}

#[test]
fn unknown_syscall_numbers_are_enosys() {
    let (_, traced) = Case::new(guest("bad_sysno")).check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "syscall(1000): ret=-1 errno=ENOSYS\n\
         syscall(548): ret=-1 errno=ENOSYS\n\
         syscall(4095): ret=-1 errno=ENOSYS\n\
         syscall(1073741823): ret=-1 errno=ENOSYS\n\
         syscall(-2): ret=-1 errno=ENOSYS\n\
         getpid still works: 1\n"
    );
}

#[test]
fn tracee_cannot_ptrace_or_write_the_supervisor() {
    let traced = Case::new(guest("attack_parent")).run(Mode::Traced);
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "ptrace(PTRACE_SEIZE, supervisor): ret=-1 errno=EPERM\n\
         ptrace(PTRACE_ATTACH, supervisor): ret=-1 errno=EPERM\n\
         process_vm_writev(supervisor): ret=-1 errno=EPERM\n\
         process_vm_readv(supervisor): ret=-1 errno=EPERM\n",
        "{}",
        traced.describe()
    );
}

/// SIGKILLs whatever still carries `token` when dropped, so a failing test
/// does not leave processes behind.
struct KillMarked<'a>(&'a str);

impl Drop for KillMarked<'_> {
    fn drop(&mut self) {
        for pid in pids_with_cmdline(self.0) {
            // SAFETY: plain kill(2) of a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Runs `isotrace --no-isolation -- ARGV` (whose guest kills the
/// supervisor), expects isotrace to die of SIGKILL, then expects every
/// process carrying `token` to be gone within a few seconds.
fn supervisor_killed_by_tracee(argv: &[&str], token: &str) {
    let _cleanup = KillMarked(token);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(isotrace())
        .arg("--no-isolation")
        .arg("--")
        .args(argv)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn isotrace");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isotrace still running 60 s after its tracee was to kill it");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        (status.code(), status.signal()),
        (None, Some(libc::SIGKILL)),
        "isotrace should have been SIGKILLed by its tracee; output: {}",
        fs::read_to_string(&out).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = pids_with_cmdline(token);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes still alive 10 s after the supervisor died: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_supervisor_kills_all_tracees() {
    let token = unique_token("marker");
    let guest = guest("kill_supervisor");
    supervisor_killed_by_tracee(&[guest.to_str().unwrap(), &token], &token);
}

#[test]
fn shell_kill_9_ppid_kills_all_tracees() {
    let token = unique_token("sh-marker");
    // exec -a gives both sleeps the token as argv[0], so the scan sees them.
    let script = format!(
        "(exec -a {token} sleep 300) </dev/null >/dev/null 2>&1 & kill -9 $PPID; exec -a {token} sleep 300"
    );
    supervisor_killed_by_tracee(
        &["/bin/bash", "--norc", "--noprofile", "-c", &script],
        &token,
    );
}
