//! Issue #3 with real programs: sqlite3, git, python3, make install, and the
//! translate-back of cwd and /proc/self/exe. Each runs inside an env and
//! ends by checking that the host is untouched.

mod common;

use std::path::Path;

use common::{
    assert_absent_on_host, have_program, host_entry, host_snapshot, is_root, unique_token,
    write_file, Iso, PYTHON,
};

/// A fresh name for a host directory the tests may only create in an env.
fn unique_name(tag: &str) -> String {
    unique_token(tag)
}

#[test]
fn sqlite3_creates_and_updates_a_database_under_var() {
    if !have_program("sqlite3") {
        eprintln!("skipped: sqlite3 is not installed");
        return;
    }
    let iso = Iso::new();
    // /var itself when we may write there (as a package would), else
    // /var/tmp: either way a directory that does not exist on the host.
    let base = if is_root() { "/var" } else { "/var/tmp" };
    let dir = format!("{base}/{}", unique_name("sqlite"));
    iso.litter(&dir);
    let var = host_entry(Path::new(base));
    let db = format!("{dir}/db");
    iso.sh_ok(
        "e",
        &format!(
            "mkdir -p {dir} && sqlite3 {db} \
             'create table t(k integer primary key, v text); \
              insert into t(v) values (\"one\"), (\"two\"), (\"three\");'"
        ),
    );
    // A second process in the same env updates it (journal, locks, fsync
    // and rename all go through the private layer).
    iso.sh_ok(
        "e",
        &format!(
            "sqlite3 {db} 'begin; update t set v = \"TWO\" where k = 2; \
             delete from t where k = 3; insert into t(v) values (\"four\"); commit;'"
        ),
    );
    let q = iso.sh_ok(
        "e",
        &format!("sqlite3 {db} 'select k, v from t order by k; pragma integrity_check;'"),
    );
    assert_eq!(q.stdout_str(), "1|one\n2|TWO\n3|four\nok\n");
    assert_absent_on_host(&dir);
    assert_eq!(
        host_entry(Path::new(base)),
        var,
        "{base} changed on the host"
    );
}

#[test]
fn git_init_commit_log_in_a_host_directory() {
    if !have_program("git") {
        eprintln!("skipped: git is not installed");
        return;
    }
    let iso = Iso::new();
    write_file(&iso.host(), "repo/README", "hello\n");
    write_file(
        &iso.host(),
        "repo/src/main.c",
        "int main(void){return 0;}\n",
    );
    let host = host_snapshot(&iso.host());
    let repo = iso.hp("repo");
    let git = "git -c user.name=iso -c user.email=iso@example.invalid \
               -c init.defaultBranch=main -c core.fsync=all";
    let env = "GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_DATE='2001-02-03T04:05:06Z' \
               GIT_COMMITTER_DATE='2001-02-03T04:05:06Z'";
    iso.sh_ok(
        "e",
        &format!(
            "cd {repo} && export {env} && {git} init -q && {git} add . && \
             {git} commit -qm first && echo more >> README && \
             {git} commit -qam second"
        ),
    );
    let log = iso.sh_ok(
        "e",
        &format!(
            "cd {repo} && export {env} && {git} log --format=%s && {git} status --short && \
             {git} show HEAD:README && {git} fsck --no-progress 2>&1"
        ),
    );
    assert_eq!(log.stdout_str(), "second\nfirst\nhello\nmore\n");
    assert_absent_on_host(format!("{repo}/.git"));
    host.assert_unchanged();
}

#[test]
fn python_writes_files_and_getcwd_shows_the_public_name() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    let private = iso.hp("made-in-env/sub");
    let script = format!(
        "import os\n\
         os.makedirs({private:?})\n\
         os.chdir({private:?})\n\
         with open('data.txt', 'w') as f:\n    f.write('hello')\n\
         print(os.getcwd())\n\
         print(os.path.realpath('data.txt'))\n\
         print(os.path.abspath('.'))\n\
         print(sorted(os.listdir('.')))\n\
         print(open({:?}).read())\n",
        format!("{private}/data.txt")
    );
    let run = iso.isotrace(["--env", "e", "--", PYTHON, "-c", &script]);
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("{private}\n{private}/data.txt\n{private}\n['data.txt']\nhello\n")
    );
    assert_absent_on_host(iso.hp("made-in-env"));
    host.assert_unchanged();
}

#[test]
fn pwd_and_friends_show_the_public_path_in_a_private_directory() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    let private = iso.hp("p1/p2");
    let run = iso.isotrace([
        "--env",
        "e",
        "--",
        "/bin/bash",
        "--norc",
        "--noprofile",
        "-c",
        &format!(
            "mkdir -p {private} && cd {private} && pwd && pwd -P && /bin/pwd && \
             readlink /proc/self/cwd && realpath . && cd .. && realpath p2"
        ),
    ]);
    run.assert_exit(0);
    let want = format!("{private}\n").repeat(6);
    assert_eq!(run.stdout_str(), want, "{}", run.describe());
    let home = iso.home();
    assert!(
        !run.stdout_str().contains(common::path_str(&home)),
        "a private name leaked: {}",
        run.stdout_str()
    );
    assert_absent_on_host(iso.hp("p1"));
    host.assert_unchanged();
}

#[test]
fn proc_self_exe_of_a_binary_installed_in_the_env_is_public() {
    let iso = Iso::new();
    let name = unique_name("rl");
    let bin = format!("/usr/local/bin/{name}");
    iso.litter(&bin);
    let before = host_snapshot(Path::new("/usr/local/bin"));
    let run = iso.sh(
        "e",
        &format!("cp /bin/readlink {bin} && {bin} /proc/self/exe && {name} /proc/self/exe"),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("{bin}\n{bin}\n"),
        "{}",
        run.describe()
    );
    assert_absent_on_host(&bin);
    before.assert_unchanged();
}

/// A tiny C library plus a program using it, with a conventional Makefile.
fn write_make_project(dir: &Path, lib: &str, prog: &str) {
    write_file(dir, &format!("{lib}.h"), "int isomk_answer(void);\n");
    write_file(
        dir,
        &format!("{lib}.c"),
        format!("#include \"{lib}.h\"\nint isomk_answer(void) {{ return 42; }}\n"),
    );
    write_file(
        dir,
        "main.c",
        format!(
            "#include <stdio.h>\n#include <{lib}.h>\n\
             int main(void) {{ printf(\"answer %d\\n\", isomk_answer()); return 0; }}\n"
        ),
    );
    write_file(
        dir,
        "Makefile",
        format!(
            "PREFIX ?= /usr/local\n\
             all: lib{lib}.so {prog}\n\
             lib{lib}.so: {lib}.c {lib}.h\n\
             \tcc -shared -fPIC -Wl,-soname,lib{lib}.so -o $@ {lib}.c\n\
             {prog}: main.c lib{lib}.so\n\
             \tcc -I. -o $@ main.c -L. -l{lib} -Wl,-rpath,$(PREFIX)/lib\n\
             install: all\n\
             \tinstall -d $(PREFIX)/lib $(PREFIX)/include $(PREFIX)/bin\n\
             \tinstall -m 644 lib{lib}.so $(PREFIX)/lib/\n\
             \tinstall -m 644 {lib}.h $(PREFIX)/include/\n\
             \tinstall -m 755 {prog} $(PREFIX)/bin/\n"
        ),
    );
}

#[test]
fn make_install_into_usr_local_stays_in_the_env() {
    let iso = Iso::new();
    let tag = unique_name("mk").replace('-', "_");
    let (lib, prog) = (format!("isomk{tag}"), format!("isomk-prog-{tag}"));
    let installed = [
        format!("/usr/local/bin/{prog}"),
        format!("/usr/local/include/{lib}.h"),
        format!("/usr/local/lib/lib{lib}.so"),
    ];
    for p in &installed {
        iso.litter(p);
    }
    write_make_project(&iso.host().join("proj"), &lib, &prog);
    let host = host_snapshot(&iso.host());
    let run = iso.sh(
        "e",
        &format!(
            "cd {} && make -s && make -s install PREFIX=/usr/local && cd / && {prog} && \
             ls {}",
            iso.hp("proj"),
            installed.join(" ")
        ),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("answer 42\n{}\n", installed.join("\n")),
        "{}",
        run.describe()
    );
    for p in &installed {
        assert_absent_on_host(p);
    }
    host.assert_unchanged();
}

#[test]
fn shebang_script_created_in_the_env_runs_with_its_public_name() {
    let iso = Iso::new();
    let name = unique_name("sh");
    let interp = format!("/usr/local/bin/{name}");
    iso.litter(&interp);
    let host = host_snapshot(&iso.host());
    let (script, script2) = (iso.hp("hello.sh"), iso.hp("hello2.sh"));
    // One script with the host's /bin/sh, one whose interpreter exists only
    // in the env.
    iso.sh_ok(
        "e",
        &format!(
            "cp /bin/dash {interp} && \
             printf '#!/bin/sh\\necho \"ran $0 $1\"\\n' > {script} && \
             printf '#!{interp}\\necho \"ran2 $0 $1\"\\n' > {script2} && \
             chmod +x {script} {script2}"
        ),
    );
    let run = iso.sh(
        "e",
        &format!("{script} arg && {script2} arg2 && cd .. && host/hello.sh x"),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("ran {script} arg\nran2 {script2} arg2\nran host/hello.sh x\n"),
        "{}",
        run.describe()
    );
    assert_absent_on_host(&interp);
    host.assert_unchanged();
}

#[test]
fn proc_self_fd_links_show_public_names() {
    let iso = Iso::new();
    write_file(&iso.host(), "hostfile", "h\n");
    let host = host_snapshot(&iso.host());
    let (newf, hostf, dir) = (iso.hp("d/new"), iso.hp("hostfile"), iso.hp("d"));
    // A private file, a host file copied up by opening it for append, and a
    // private directory.
    let run = iso.sh(
        "e",
        &format!(
            "mkdir {dir} && exec 3>{newf} 4>>{hostf} 5<{dir} && \
             readlink /proc/self/fd/3 /proc/self/fd/4 /proc/$$/fd/5"
        ),
    );
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("{newf}\n{hostf}\n{dir}\n"),
        "{}",
        run.describe()
    );
    host.assert_unchanged();
}

#[test]
fn unix_socket_bound_in_the_env_is_private_and_shows_its_public_name() {
    let iso = Iso::new();
    let host = host_snapshot(&iso.host());
    let sock = iso.hp("sock");
    let script = format!(
        "import os, socket\n\
         p = {sock:?}\n\
         s = socket.socket(socket.AF_UNIX); s.bind(p); s.listen(1)\n\
         c = socket.socket(socket.AF_UNIX); c.connect(p)\n\
         a, _ = s.accept(); c.sendall(b'ping')\n\
         print(a.recv(4).decode(), os.path.exists(p))\n\
         print(s.getsockname())\n\
         print(c.getpeername())\n"
    );
    let run = iso.isotrace(["--env", "e", "--", PYTHON, "-c", &script]);
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("ping True\n{sock}\n{sock}\n"),
        "{}",
        run.describe()
    );
    assert_absent_on_host(&sock);
    host.assert_unchanged();
}

#[test]
fn programs_use_the_dynamic_loader_installed_in_the_env() {
    // An environment that upgraded its libc also replaced the loader named
    // by PT_INTERP; programs there must run with that loader, not the
    // host's. Here the env's loader is a copy, so the program still works,
    // and the trace shows that the env's copy was exec'd.
    let iso = Iso::new();
    let loader = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap();
    let loader = loader.to_str().unwrap();
    iso.sh_ok(
        "e",
        &format!("cp {loader} {loader}.new && mv {loader}.new {loader}"),
    );
    let trace = iso.root().join("trace.txt");
    let run = iso.isotrace([
        "--env",
        "e",
        "--trace-file",
        trace.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "/bin/echo via-env-loader; readlink /proc/self/exe",
    ]);
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("via-env-loader\n{loader}\n"),
        "{}",
        run.describe()
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(
        text.lines().any(|l| l.contains("execve(\"/bin/echo\" =>")
            && l.contains("/upper")
            && l.contains("ld-linux")),
        "no exec through the env's loader in:\n{text}"
    );
    // The host's loader is untouched.
    assert!(!Path::new(&format!("{loader}.new")).exists());
}

/// A program that serves its own userfaultfd, from a thread that makes a
/// trapped call before it fills the page the main thread's path sits in.
/// The supervisor reads paths through /proc/PID/mem, which cannot wait for
/// a userfaultfd; waiting with process_vm_readv instead (as it does while
/// a post-copy restore of its own fills pages) would block the supervisor
/// until that handler runs, and the handler waits in a stop for the
/// supervisor: the whole group hung in state D. The run must end; the open
/// then fails with EFAULT where natively it succeeds (README, Limitations).
#[test]
fn a_program_serving_its_own_userfaultfd_does_not_hang_its_supervisor() {
    let exe = common::guest("uffd_self");
    let native = std::process::Command::new(&exe).output().unwrap();
    if native.status.code() == Some(2) {
        eprintln!("skipped: no userfaultfd here");
        return;
    }
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "fault 1\nopen ok\n"
    );
    let iso = Iso::new();
    let run = iso.isotrace(["--stats", "--env", "e", "--", common::path_str(&exe)]);
    assert!(
        run.status == common::Status::Exited(0),
        "{}",
        run.describe()
    );
    assert_eq!(run.stdout_str(), "fault 1\nopen ok\n", "{}", run.describe());
    assert!(
        run.stderr_str().contains(" probes=1 "),
        "{}",
        run.describe()
    );
}

/// The same with a struct argument instead of a path: connect(2)'s
/// sockaddr_un sits in the page the program's own userfaultfd holds. The
/// supervisor's read of it must not wait for the handler (that hung the
/// group), and the call must go on as natively once the tracee has
/// faulted the page in (probe.rs).
#[test]
fn a_struct_argument_in_a_page_the_program_serves_itself_is_read_as_natively() {
    let exe = common::guest("uffd_self");
    let iso = Iso::new();
    let sock = iso.host().join("s.sock");
    let native = std::process::Command::new(&exe)
        .args(["connect", common::path_str(&sock)])
        .output()
        .unwrap();
    if native.status.code() == Some(2) {
        eprintln!("skipped: no userfaultfd here");
        return;
    }
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "fault 1\nconnect ok\n"
    );
    let run = iso.isotrace([
        "--stats",
        "--env",
        "e",
        "--",
        common::path_str(&exe),
        "connect",
        common::path_str(&sock),
    ]);
    assert!(
        run.status == common::Status::Exited(0),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.stdout_str(),
        "fault 1\nconnect ok\n",
        "{}",
        run.describe()
    );
    assert!(
        run.stderr_str().contains(" probes=1 "),
        "{}",
        run.describe()
    );
    assert!(!sock.exists());
}

/// A path the tracee itself cannot read fails with EFAULT, as natively,
/// after the tracee was made to fault the page in (probe.rs) and could
/// not: a page just unmapped, and a page of a userfaultfd that serves only
/// user-mode faults (UFFD_USER_MODE_ONLY), which the kernel's own copy of
/// the path does not wait for.
#[test]
fn a_path_the_tracee_cannot_read_fails_with_efault_as_natively() {
    let exe = common::guest("uffd_self");
    let iso = Iso::new();
    for mode in ["unmapped", "user"] {
        let native = std::process::Command::new(&exe).arg(mode).output().unwrap();
        if native.status.code() == Some(2) {
            eprintln!("{mode}: skipped, no userfaultfd here");
            continue;
        }
        let native = String::from_utf8_lossy(&native.stdout).into_owned();
        assert!(
            native.ends_with("open Bad address\n"),
            "{mode}: native {native:?}"
        );
        let run = iso.isotrace(["--env", "e", "--", common::path_str(&exe), mode]);
        assert!(
            run.status == common::Status::Exited(0),
            "{mode}: {}",
            run.describe()
        );
        assert_eq!(run.stdout_str(), native, "{mode}: {}", run.describe());
    }
}
