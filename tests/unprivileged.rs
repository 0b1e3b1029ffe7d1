//! The same workloads as an ordinary user. When the tests run as root, each
//! case runs as nobody (65534) through setpriv(1), natively and under
//! isotrace; otherwise they run as the current user.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    guest, have_program, is_root, wait_for_file, wait_for_pid, write_file, Case, NOBODY, PYTHON,
    PYTHON_THREADS,
};

/// setpriv is needed only when we must drop root.
fn can_run() -> bool {
    if is_root() && !have_program("setpriv") {
        eprintln!("skipping: running as root and setpriv (util-linux) is missing");
        return false;
    }
    true
}

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
fn runs_as_the_unprivileged_user() {
    if !can_run() {
        return;
    }
    let (_, traced) = Case::sh("id -u; id -g; id -G; touch mine; stat -c %u mine")
        .unprivileged()
        .check();
    traced.assert_exit(0);
    if is_root() {
        assert_eq!(
            traced.stdout_str(),
            format!("{NOBODY}\n{NOBODY}\n{NOBODY}\n{NOBODY}\n")
        );
    }
}

#[test]
fn coreutils_unprivileged() {
    if !can_run() {
        return;
    }
    let (_, traced) = Case::sh(
        "ls -laR /usr/share/doc | sha256sum && find /usr/include -type f | sort | sha256sum && \
         sort -S 1M -T . input.txt > sorted.txt && cp -a /usr/include/linux linux && \
         tar -cf linux.tar linux && wc -l sorted.txt",
    )
    .setup(|dir: &Path| {
        let lines: String = (0..50_000u64)
            .map(|i| format!("{}\n", i.wrapping_mul(2_654_435_761) % 100_003))
            .collect();
        write_file(dir, "input.txt", lines);
    })
    .unprivileged()
    .compare_files()
    .check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().ends_with("50000 sorted.txt\n"));
}

#[test]
fn python_threads_unprivileged() {
    if !can_run() {
        return;
    }
    let (_, traced) = Case::new(PYTHON)
        .args(["-c", PYTHON_THREADS])
        .unprivileged()
        .compare_files()
        .check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().starts_with("files 64\ndigest "));
}

#[test]
fn segfault_unprivileged() {
    if !can_run() {
        return;
    }
    let (_, traced) = Case::new(guest("segv")).unprivileged().check();
    traced.assert_exit(139);
}

#[test]
fn signals_from_outside_unprivileged() {
    if !can_run() {
        return;
    }
    let sync = Duration::from_secs(60);
    let (_, traced) = Case::new(guest("stop_cont"))
        .unprivileged()
        .during(move |dir: &Path, _| {
            let child = wait_for_pid(&dir.join("child.pid"), sync);
            send(child, libc::SIGSTOP);
            wait_for_file(&dir.join("stopped"), sync);
            send(child, libc::SIGCONT);
        })
        .check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "child stopped by signal 19\nchild continued\nchild exited 0\n"
    );

    let (_, traced) = Case::new(guest("sigterm_exit7"))
        .unprivileged()
        .during(move |dir: &Path, _| send(wait_for_pid(&dir.join("pid"), sync), libc::SIGTERM))
        .check();
    traced.assert_exit(7);
}

#[test]
fn many_processes_unprivileged() {
    if !can_run() {
        return;
    }
    let (_, traced) = Case::new(guest("many_procs"))
        .arg("200")
        .unprivileged()
        .check();
    traced.assert_exit(0);
}

#[test]
fn isolation_works_for_an_unprivileged_user() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = dir.join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
    write_file(&host, "existing", "host\n");
    let h = host.to_str().unwrap();
    // The first ls lists through the kernel (lazy listings); the create
    // then traps every listing (tracer listings.rs), so the second is
    // merged.
    let script =
        format!("ls {h} && echo hi > {h}/new && cat {h}/new && rm {h}/existing && ls {h} && id -u");
    let mut argv: Vec<String> = Vec::new();
    if is_root() {
        argv.extend(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ]
            .map(String::from),
        );
    }
    argv.push(common::isotrace().to_str().unwrap().to_string());
    argv.extend(["--env", "u", "--", "/bin/sh", "-c", &script].map(String::from));
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("ISOTRACE_HOME", dir.join("store"))
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = if is_root() {
        NOBODY.to_string()
    } else {
        current_uid()
    };
    assert_eq!(stdout, format!("existing\nhi\nnew\n{uid}\n"));
    // The host kept its file and never saw the new one.
    assert_eq!(
        std::fs::read_to_string(host.join("existing")).unwrap(),
        "host\n"
    );
    assert!(!host.join("new").exists());
}

fn current_uid() -> String {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }.to_string()
}
