//! Issue #3, the read-only host: a root supervisor runs the program in a
//! mount namespace of its own where every host mount is read-only except
//! the env's directory and the exceptions, and no longer traps fd-based
//! metadata calls (README, "The read-only host"). Through an fd opened
//! read-only on a host file they fail with EROFS in the kernel and the host
//! is untouched; on the env's own files they work; `tar -x` gives the same
//! tree as natively; `isolation.read_only_host = false` brings back the
//! copy-up of the traps mode; nothing of the namespace reaches the host.

mod common;

use common::{have_program, is_root, Iso, Run, Status};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const PY: &str = "/usr/bin/python3";

fn ok(run: Run) -> Run {
    assert_eq!(run.status, Status::Exited(0), "{}", run.describe());
    run
}

/// Everything of a file a metadata change could touch: bytes, mode, owner,
/// times (ctime moves with any change, xattrs and inode flags included).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn snapshot(path: &Path) -> Snapshot {
    let m = fs::symlink_metadata(path).unwrap();
    Snapshot {
        bytes: fs::read(path).unwrap(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

/// A Python script that tries each fd-based change through an fd opened
/// read-only on `path` and prints `NAME ERRNO` (0 for success), one a line.
fn fd_changes(path: &str) -> String {
    format!(
        "import os, fcntl, struct\n\
         def attempt(name, f):\n\
         \x20   fd = os.open({path:?}, os.O_RDONLY)\n\
         \x20   try:\n\
         \x20       f(fd); print(name, 0)\n\
         \x20   except OSError as e:\n\
         \x20       print(name, e.errno)\n\
         \x20   os.close(fd)\n\
         attempt('fchmod', lambda fd: os.fchmod(fd, 0o600))\n\
         attempt('fchown', lambda fd: os.fchown(fd, 1, 1))\n\
         attempt('futimens', lambda fd: os.utime(fd, (1, 1)))\n\
         attempt('fsetxattr', lambda fd: os.setxattr(fd, 'user.k', b'v'))\n\
         def setflags(fd):\n\
         \x20   old = struct.unpack('l', fcntl.ioctl(fd, 0x80086601, struct.pack('l', 0)))[0]\n\
         \x20   fcntl.ioctl(fd, 0x40086602, struct.pack('l', old | 0x40))\n\
         attempt('setflags', setflags)\n"
    )
}

const EROFS_ALL: &str = "fchmod 30\nfchown 30\nfutimens 30\nfsetxattr 30\nsetflags 30\n";

/// fchmod, fchown, futimens, fsetxattr and FS_IOC_SETFLAGS (chattr +d
/// in the script, then chattr +i itself) through a read-only fd of a host file fail with EROFS; the host file is
/// byte for byte and stat for stat what it was, and the env has no copy.
#[test]
fn host_file_fds_cannot_change_the_host() {
    if !is_root() {
        return;
    }
    let iso = Iso::new();
    let host = iso.host().join("h");
    fs::write(&host, "host\n").unwrap();
    let before = snapshot(&host);
    let run = ok(iso.isotrace([
        "--env",
        "E",
        "--stats",
        "--",
        PY,
        "-c",
        &fd_changes(&iso.hp("h")),
    ]));
    assert_eq!(run.stdout_str(), EROFS_ALL, "{}", run.describe());
    assert!(
        run.stderr_str().contains("isotrace: host: read-only"),
        "{}",
        run.describe()
    );
    assert_eq!(snapshot(&host), before, "the host file changed");
    if have_program("lsattr") {
        let flags = std::process::Command::new("lsattr")
            .arg(&host)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&flags.stdout).into_owned();
        assert!(
            !text.split(' ').next().unwrap_or("").contains('i'),
            "{text}"
        );
    }
    let copy = iso.upper("E").join(iso.hp("h").trim_start_matches('/'));
    assert!(!copy.exists(), "a copy appeared at {}", copy.display());
    // chattr itself, as a program would run it.
    if have_program("chattr") {
        let run = iso.sh("E", &format!("chattr +i {}", iso.hp("h")));
        assert_ne!(run.status, Status::Exited(0), "{}", run.describe());
        assert_eq!(snapshot(&host), before, "chattr changed the host file");
    }
}

/// The env's own files (created, or copied up by a write) take every
/// fd-based change, through read-only fds too.
#[test]
fn private_file_fds_take_every_change() {
    if !is_root() {
        return;
    }
    let iso = Iso::new();
    fs::write(iso.host().join("old"), "host\n").unwrap();
    let before = snapshot(&iso.host().join("old"));
    let script = format!(
        "echo new > {new}; echo more >> {old}\n{py} -c \"$1\" && {py} -c \"$2\"",
        new = iso.hp("new"),
        old = iso.hp("old"),
        py = PY,
    );
    let run = ok(iso.isotrace([
        "--env",
        "E",
        "--",
        "/bin/sh",
        "-c",
        &script,
        "sh",
        &fd_changes(&iso.hp("new")),
        &fd_changes(&iso.hp("old")),
    ]));
    let lines: Vec<String> = run.stdout_str().lines().map(str::to_owned).collect();
    for line in &lines {
        // FS_IOC_SETFLAGS needs a filesystem with inode flags; the store
        // may be on one without (EOPNOTSUPP, ENOTTY): never EROFS.
        let (name, errno) = line.split_once(' ').unwrap();
        if name == "setflags" {
            assert_ne!(errno, "30", "{}", run.describe());
        } else {
            assert_eq!(errno, "0", "{line}\n{}", run.describe());
        }
    }
    assert_eq!(lines.len(), 10, "{}", run.describe());
    assert_eq!(snapshot(&iso.host().join("old")), before);
    let copy = iso.upper("E").join(iso.hp("old").trim_start_matches('/'));
    let m = fs::metadata(&copy).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o600, 1, 1, 1)
    );
}

/// The trade README documents: with `isolation.read_only_host = false`
/// (the traps mode) the same changes land on the env's copy, as before.
#[test]
fn traps_mode_copies_up_instead() {
    if !is_root() {
        return;
    }
    let iso = Iso::new();
    ok(iso.isotrace([
        "config",
        "set",
        "isolation.read_only_host",
        "false",
        "--env",
        "E",
    ]));
    let host = iso.host().join("h");
    fs::write(&host, "host\n").unwrap();
    let before = snapshot(&host);
    let py = format!(
        "import os\n\
         fd = os.open({h:?}, os.O_RDONLY)\n\
         os.fchmod(fd, 0o600)\n\
         os.utime(fd, (1, 1))\n\
         print(oct(os.stat({h:?}).st_mode & 0o7777))\n",
        h = iso.hp("h")
    );
    let run = ok(iso.isotrace(["--env", "E", "--stats", "--", PY, "-c", &py]));
    assert_eq!(run.stdout_str(), "0o600\n");
    assert!(
        run.stderr_str()
            .contains("host: writable, fd calls trapped (isolation.read_only_host = false)"),
        "{}",
        run.describe()
    );
    assert_eq!(snapshot(&host), before);
    let copy = iso.upper("E").join(iso.hp("h").trim_start_matches('/'));
    assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o7777, 0o600);
}

/// A read-only fd the program inherits was opened in the supervisor's
/// namespace, on a writable mount: such a run keeps the traps, and the
/// change lands on the copy.
#[test]
fn an_inherited_read_only_host_fd_keeps_the_traps() {
    if !is_root() {
        return;
    }
    let iso = Iso::new();
    let host = iso.host().join("h");
    fs::write(&host, "host\n").unwrap();
    let before = snapshot(&host);
    let base = iso.command([
        "--env",
        "E",
        "--stats",
        "--",
        PY,
        "-c",
        "import os\nos.fchmod(3, 0o600)\nprint('ok')\n",
    ]);
    // The harness sets stdin to /dev/null: a shell opens the file as fd 3
    // and execs isotrace with it.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(base.get_current_dir().unwrap())
        .env("HOSTFILE", &host)
        .args(["-c", "exec \"$0\" \"$@\" 3<\"$HOSTFILE\""])
        .arg(base.get_program())
        .args(base.get_args());
    let run = ok(iso.execute(cmd));
    assert_eq!(run.stdout_str(), "ok\n");
    assert!(
        run.stderr_str()
            .contains("host: writable, fd calls trapped (inherited fd 3"),
        "{}",
        run.describe()
    );
    assert_eq!(snapshot(&host), before);
}

/// name -> (kind and mode, uid, gid, mtime, content or link target).
type Listing = BTreeMap<PathBuf, (u32, u32, u32, i64, Vec<u8>)>;

fn listing(root: &Path) -> Listing {
    let mut out = Listing::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let path = root.join(&rel);
            let m = fs::symlink_metadata(&path).unwrap();
            let body = if m.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                fs::read(&path).unwrap()
            } else {
                todo.push(rel.clone());
                Vec::new()
            };
            out.insert(rel, (m.mode(), m.uid(), m.gid(), m.mtime(), body));
        }
    }
    out
}

/// `tar -x` in the env (no fd trap left) gives what native tar gives:
/// names, modes, owners, mtimes, contents, symlinks.
#[test]
fn tar_extracts_the_same_tree() {
    if !is_root() || !have_program("tar") {
        return;
    }
    let iso = Iso::new();
    let src = iso.root().join("src");
    let setup = format!(
        "set -e; mkdir -p {s}/d/sub {s}/e; cd {s}\n\
         echo a > d/a; echo b > d/sub/b; printf 'x%.0s' $(seq 1 5000) > e/big\n\
         ln -s ../d/a e/link; ln d/a d/hard\n\
         chmod 0751 d/sub; chmod 0604 d/a; chmod 4755 e/big\n\
         chown 12:34 d/a; chown -h 5:6 e/link; chown 7:8 d/sub\n\
         touch -d @1000000 d/a d/sub/b; touch -h -d @2000000 e/link; touch -d @3000000 d/sub d e\n\
         tar -cf {t} -C {s} d e",
        s = src.display(),
        t = iso.root().join("t.tar").display()
    );
    ok(iso.native_sh(&setup));
    let native = iso.root().join("native");
    fs::create_dir(&native).unwrap();
    let tar = iso.root().join("t.tar");
    ok(iso.native_sh(&format!(
        "tar -xf {} -C {}",
        tar.display(),
        native.display()
    )));
    fs::create_dir(iso.host().join("x")).unwrap();
    let run = ok(iso.isotrace([
        "--env",
        "E",
        "--stats",
        "--",
        "tar",
        "-xf",
        tar.to_str().unwrap(),
        "-C",
        &iso.hp("x"),
    ]));
    assert!(run.stderr_str().contains("isotrace: host: read-only"));
    assert!(
        fs::read_dir(iso.host().join("x")).unwrap().next().is_none(),
        "tar wrote to the host"
    );
    let in_env = iso.upper("E").join(iso.hp("x").trim_start_matches('/'));
    assert_eq!(listing(&in_env), listing(&native));
}

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Nothing of the namespace reaches the host: no new mount appears there
/// and / stays writable while the program runs; the program's own mount,
/// and its way back to the host's namespace (setns), are refused.
#[test]
fn mounts_stay_in_the_program() {
    if !is_root() {
        return;
    }
    let iso = Iso::new();
    let before = mountinfo();
    // Under the /dev exception, so that both sides see it.
    let flag = PathBuf::from(format!("/dev/shm/{}", common::unique_token("rohost")));
    iso.litter(&flag);
    let script = format!(
        "mkdir -p {m}\n\
         mount -t tmpfs none {m} 2>/dev/null && echo mounted\n\
         python3 -c 'import os, ctypes; fd = os.open(\"/proc/{host}/ns/mnt\", os.O_RDONLY); l = ctypes.CDLL(None, use_errno=True); print(\"joined\" if l.setns(fd, 0) == 0 else \"setns %d\" % ctypes.get_errno())'\n\
         unshare -m sh -c 'mount -t tmpfs none {m}' 2>/dev/null && echo unshared-mount\n\
         touch {flag}; while [ -e {flag} ]; do sleep 0.05; done; echo done",
        m = iso.hp("m"),
        flag = flag.display(),
        host = std::process::id()
    );
    let child = {
        let mut cmd = iso.command(["--env", "E", "--", "/bin/sh", "-c", &script]);
        cmd.stdout(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    common::wait_until(
        "the program to start",
        std::time::Duration::from_secs(60),
        || flag.exists(),
    );
    let during = mountinfo();
    fs::remove_file(&flag).unwrap();
    let out = child.wait_with_output().unwrap();
    // setns(2) into the host's mount namespace: EPERM (the way back to
    // writable mounts).
    assert_eq!(String::from_utf8_lossy(&out.stdout), "setns 1\ndone\n");
    // Other programs on the machine may mount meanwhile: only mounts of
    // this test's tree would be ours.
    let root = iso.root().to_string_lossy().into_owned();
    let new: Vec<&str> = during
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .filter(|l| l.contains(&root))
        .collect();
    assert!(new.is_empty(), "the host got mounts: {new:?}");
    let root_opts = before
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(5))
        .unwrap()
        .to_string();
    assert!(root_opts.split(',').any(|o| o == "rw"), "{root_opts}");
}

/// access(W_OK) of a host file answers as the host's permissions say (as
/// in the traps mode, where a write goes to a copy), not EROFS: dpkg and
/// pip ask before they write. A process that dropped to nobody gets what
/// nobody gets natively.
#[test]
fn write_access_checks_answer_as_the_host_permissions_say() {
    if !is_root() || !have_program("setpriv") {
        return;
    }
    let iso = Iso::new();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(iso.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(iso.host(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(iso.host().join("h"), "host\n").unwrap();
    let check = format!(
        "test -w {h} && echo w; test -r {h} && echo r",
        h = iso.hp("h")
    );
    let prefix: Vec<String> = common::setpriv_prefix()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = format!(
        "{check}; {} /bin/sh -c '{check}'; python3 -c 'import os; print(os.access(\"{h}\", os.W_OK))'",
        prefix.join(" "),
        h = iso.hp("h")
    );
    let native = iso.native_sh(&script);
    let run = iso.isotrace(["--env", "E", "--stats", "--", "/bin/sh", "-c", &script]);
    assert!(run.stderr_str().contains("isotrace: host: read-only"));
    assert_eq!(run.stdout_str(), native.stdout_str(), "{}", run.describe());
    assert_eq!(native.stdout_str(), "w\nr\nr\nTrue\n");
}
