//! Issue #3, copy-on-write files: what a program writes, modifies, deletes,
//! renames or links inside an environment lands in the env's private layer.
//! The env sees the merged view; the host tree stays byte-for-byte as it was
//! (content, mode, owner, link count, mtime and ctime of every entry).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use common::{host_snapshot, write_file, Iso};

/// A small host tree: a file, a nested directory, a relative symlink.
fn populate(iso: &Iso) {
    let h = iso.host();
    write_file(&h, "a.txt", "one\n");
    write_file(&h, "keep.txt", "keep\n");
    write_file(&h, "tree/x", "x\n");
    write_file(&h, "tree/sub/y", "y\n");
    write_file(&h, "tree/sub/deeper/z", "z\n");
    symlink("x", h.join("tree/link")).unwrap();
}

#[test]
fn new_file_is_private_and_persists() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let new = iso.hp("tree/sub/new.txt");
    let run = iso.sh_ok("e", &format!("echo fresh > {new} && cat {new}"));
    assert_eq!(run.stdout_str(), "fresh\n");
    host.assert_unchanged();
    // A later run in the same env still sees it; the host never does.
    let again = iso.sh_ok("e", &format!("cat {new}"));
    assert_eq!(again.stdout_str(), "fresh\n");
    assert!(
        iso.upper("e").join(new.trim_start_matches('/')).is_file(),
        "the new file should be in the env's private layer"
    );
    host.assert_unchanged();
}

#[test]
fn appending_to_a_host_file_changes_only_the_env_copy() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let a = iso.hp("a.txt");
    let run = iso.sh_ok("e", &format!("echo two >> {a} && cat {a}"));
    assert_eq!(run.stdout_str(), "one\ntwo\n");
    let again = iso.sh_ok("e", &format!("cat {a}"));
    assert_eq!(again.stdout_str(), "one\ntwo\n");
    assert_eq!(fs::read_to_string(&a).unwrap(), "one\n");
    host.assert_unchanged();
}

#[test]
fn rm_of_a_host_file_leaves_it_on_the_host() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let a = iso.hp("a.txt");
    iso.sh_ok("e", &format!("rm {a} && test ! -e {a}"));
    let run = iso.sh("e", &format!("cat {a}"));
    assert_ne!(
        run.status,
        common::Status::Exited(0),
        "a deleted file must stay deleted in the env\n{}",
        run.describe()
    );
    let ls = iso.sh_ok("e", &format!("ls -a {}", iso.hp("")));
    assert_eq!(ls.stdout_str(), ".\n..\nkeep.txt\ntree\n");
    // The deletion is recorded as an overlay-style whiteout.
    let wh = iso
        .upper("e")
        .join(iso.hp(".wh.a.txt").trim_start_matches('/'));
    assert!(wh.exists(), "expected a whiteout at {}", wh.display());
    host.assert_unchanged();
}

#[test]
fn rm_rf_of_a_host_tree_hides_it_in_the_env_only() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let tree = iso.hp("tree");
    iso.sh_ok("e", &format!("rm -rf {tree} && test ! -e {tree}"));
    let ls = iso.sh("e", &format!("ls {tree}"));
    assert_ne!(ls.status, common::Status::Exited(0), "{}", ls.describe());
    let deep = iso.sh("e", &format!("cat {tree}/sub/deeper/z"));
    assert_ne!(
        deep.status,
        common::Status::Exited(0),
        "{}",
        deep.describe()
    );
    // A directory re-created at the same name is empty: the host's old
    // entries must not shine through (overlayfs's opaque directory).
    let fresh = iso.sh_ok(
        "e",
        &format!("mkdir {tree} && ls -A {tree} && echo end && test ! -e {tree}/sub/y"),
    );
    assert_eq!(fresh.stdout_str(), "end\n");
    host.assert_unchanged();
}

#[test]
fn mv_of_a_host_directory_moves_everything_in_the_env() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (tree, moved) = (iso.hp("tree"), iso.hp("moved"));
    iso.sh_ok("e", &format!("mv {tree} {moved}"));
    let run = iso.sh_ok(
        "e",
        &format!(
            "cd {moved} && find . | sort && cat sub/deeper/z link && \
             test ! -e {tree} && echo old-gone"
        ),
    );
    assert_eq!(
        run.stdout_str(),
        ".\n./link\n./sub\n./sub/deeper\n./sub/deeper/z\n./sub/y\n./x\nz\nx\nold-gone\n"
    );
    // The moved tree is a normal, writable part of the env.
    let edit = iso.sh_ok(
        "e",
        &format!(
            "echo y2 >> {moved}/sub/y && cat {moved}/sub/y && ls {}",
            iso.hp("")
        ),
    );
    assert_eq!(edit.stdout_str(), "y\ny2\na.txt\nkeep.txt\nmoved\n");
    host.assert_unchanged();
}

#[test]
fn mv_of_host_files_renames_and_replaces_in_the_env_only() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (a, a2, keep, x) = (
        iso.hp("a.txt"),
        iso.hp("a2.txt"),
        iso.hp("keep.txt"),
        iso.hp("tree/x"),
    );
    // A plain rename, then a write through the new name, then a rename
    // over an existing host file.
    let run = iso.sh_ok(
        "e",
        &format!(
            "mv {a} {a2} && echo two >> {a2} && mv -f {keep} {x} && \
             cat {a2} {x} && test ! -e {a} && test ! -e {keep} && echo gone"
        ),
    );
    assert_eq!(run.stdout_str(), "one\ntwo\nkeep\ngone\n");
    host.assert_unchanged();
}

#[test]
fn ls_of_a_merged_directory_is_the_exact_union() {
    let iso = Iso::new();
    let h = iso.host();
    for n in ["h1", "h2", "h3"] {
        write_file(&h, &format!("m/{n}"), n);
    }
    let host = host_snapshot(&h);
    let m = iso.hp("m");
    iso.sh_ok(
        "e",
        &format!("touch {m}/e1 {m}/e2 && echo new > {m}/h1 && rm {m}/h2"),
    );
    let ls = iso.sh_ok("e", &format!("ls -a {m}"));
    assert_eq!(ls.stdout_str(), ".\n..\ne1\ne2\nh1\nh3\n");
    host.assert_unchanged();
}

/// Large enough that getdents64 needs many calls for one listing: the merge
/// must be stable across calls (no duplicates, nothing skipped).
#[test]
fn large_merged_directory_listing_has_no_duplicates_or_gaps() {
    let iso = Iso::new();
    let h = iso.host();
    let pad = "p".repeat(60);
    for i in 0..1500 {
        write_file(&h, &format!("big/host-{i:04}-{pad}"), "");
    }
    let host = host_snapshot(&h);
    let big = iso.hp("big");
    // `rm host-*[0369]-PAD` removes the host names whose index ends in 0, 3,
    // 6 or 9; then 400 env-only names are created.
    let script = format!(
        "cd {big} && rm -f host-*[0369]-{pad} && \
         i=0; while [ $i -lt 400 ]; do : > $(printf env-%04d-{pad} $i); i=$((i+1)); done; \
         ls -f -a"
    );
    let expected: BTreeSet<String> = (0..1500)
        .filter(|i| !matches!(i % 10, 0 | 3 | 6 | 9))
        .map(|i| format!("host-{i:04}-{pad}"))
        .chain((0..400).map(|i| format!("env-{i:04}-{pad}")))
        .chain([".".to_owned(), "..".to_owned()])
        .collect();
    let run = iso.sh_ok("e", &script);
    let got: Vec<String> = run.stdout_str().lines().map(str::to_owned).collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        got.len(),
        unique.len(),
        "the merged listing repeats {} entries",
        got.len() - unique.len()
    );
    let missing: Vec<_> = expected.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "merged listing differs: {} entries, expected {}; missing e.g. {missing:?}; extra e.g. {extra:?}",
        unique.len(),
        expected.len()
    );
    // Python's os.listdir (its own getdents64 buffer size) agrees.
    let py = iso.isotrace([
        "--env",
        "e",
        "--",
        common::PYTHON,
        "-c",
        &format!("import os; print(len(os.listdir({big:?})), len(set(os.listdir({big:?}))))"),
    ]);
    py.assert_exit(0);
    let n = expected.len() - 2;
    assert_eq!(py.stdout_str(), format!("{n} {n}\n"), "{}", py.describe());
    host.assert_unchanged();
}

#[test]
fn chmod_of_a_host_file_changes_only_the_env_copy() {
    let iso = Iso::new();
    populate(&iso);
    fs::set_permissions(iso.host().join("a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(iso.host().join("tree"), fs::Permissions::from_mode(0o755)).unwrap();
    let host = host_snapshot(&iso.host());
    let (a, tree) = (iso.hp("a.txt"), iso.hp("tree"));
    iso.sh_ok("e", &format!("chmod 600 {a} && chmod 700 {tree}"));
    let run = iso.sh_ok("e", &format!("stat -c %a {a} {tree} && cat {a}"));
    assert_eq!(run.stdout_str(), "600\n700\none\n");
    host.assert_unchanged();
}

#[test]
fn symlink_created_in_the_env_points_to_a_host_file() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (a, abs, rel) = (iso.hp("a.txt"), iso.hp("abs-link"), iso.hp("rel-link"));
    iso.sh_ok("e", &format!("ln -s {a} {abs} && ln -s a.txt {rel}"));
    let run = iso.sh_ok(
        "e",
        &format!("readlink {abs} {rel} && cat {abs} {rel} && test -L {abs} && echo ok"),
    );
    assert_eq!(run.stdout_str(), format!("{a}\na.txt\none\none\nok\n"));
    host.assert_unchanged();
}

#[test]
fn hard_link_to_a_host_file_shares_the_env_copy() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (a, hard) = (iso.hp("a.txt"), iso.hp("hard"));
    iso.sh_ok("e", &format!("ln {a} {hard}"));
    // Both names are one inode in the env: a write through one shows
    // through the other, and the link count is 2.
    let run = iso.sh_ok(
        "e",
        &format!(
            "cat {hard} && echo two >> {hard} && cat {a} && stat -c %h {a} {hard} && \
             test {a} -ef {hard} && echo same"
        ),
    );
    assert_eq!(run.stdout_str(), "one\none\ntwo\n2\n2\nsame\n");
    host.assert_unchanged();
}

#[test]
fn touch_d_sets_the_env_mtime_only() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (a, n) = (iso.hp("a.txt"), iso.hp("new"));
    iso.sh_ok("e", &format!("touch -d '2001-02-03 04:05:06' {a} {n}"));
    let run = iso.sh_ok("e", &format!("stat -c %Y {a} {n} && cat {a}"));
    assert_eq!(run.stdout_str(), "981173106\n981173106\none\n");
    host.assert_unchanged();
}

#[test]
fn two_envs_writing_one_path_see_only_their_own_content() {
    let iso = Iso::new();
    populate(&iso);
    let host = host_snapshot(&iso.host());
    let (p, a) = (iso.hp("tree/same"), iso.hp("a.txt"));
    iso.sh_ok("A", &format!("echo from-A > {p}"));
    iso.sh_ok("B", &format!("echo from-B > {p} && rm {a}"));
    assert_eq!(iso.sh_ok("A", &format!("cat {p}")).stdout_str(), "from-A\n");
    assert_eq!(iso.sh_ok("B", &format!("cat {p}")).stdout_str(), "from-B\n");
    // B's deletion of a host file is B's alone.
    assert_eq!(
        iso.sh_ok("A", &format!("cat {a} {p}")).stdout_str(),
        "one\nfrom-A\n"
    );
    let b = iso.sh("B", &format!("cat {a}"));
    assert_ne!(b.status, common::Status::Exited(0), "{}", b.describe());
    host.assert_unchanged();
}

/// openat2(2) with its RESOLVE_* flags gives, case by case, the result it
/// gives natively (ELOOP through symlinks, EXDEV out of the directory,
/// EINVAL/E2BIG for a bad open_how), while what it creates lands in the
/// env only.
#[test]
fn openat2_and_its_resolve_flags_behave_as_natively() {
    let iso = Iso::new();
    let guest = common::guest("iso_openat2");
    fs::create_dir(iso.host().join("native")).unwrap();
    fs::create_dir(iso.host().join("isolated")).unwrap();
    let native = iso.native_sh(&format!("{} {}", guest.display(), iso.hp("native")));
    assert!(
        native.stdout_str().lines().count() >= 19,
        "{}",
        native.describe()
    );
    let host = host_snapshot(&iso.host());
    let traced = iso.sh_ok("e", &format!("{} {}", guest.display(), iso.hp("isolated")));
    assert_eq!(
        traced.stdout_str(),
        native.stdout_str(),
        "{}",
        traced.describe()
    );
    host.assert_unchanged();
    assert!(iso
        .upper("e")
        .join(iso.hp("isolated/sub/new").trim_start_matches('/'))
        .exists());
}

/// renameat2(RENAME_EXCHANGE) between host files and directories swaps
/// them in the env exactly as natively (contents, entries, errors), and
/// the host keeps its own.
#[test]
fn rename_exchange_swaps_in_the_env_as_natively() {
    let iso = Iso::new();
    let guest = common::guest("iso_exchange");
    for side in ["native", "isolated"] {
        let dir = iso.host().join(side);
        fs::create_dir_all(dir.join("d1")).unwrap();
        fs::create_dir_all(dir.join("d2")).unwrap();
        write_file(&dir, "a", "A");
        write_file(&dir, "d1/x", "X");
        write_file(&dir, "d2/y", "Y");
    }
    let native = iso.native_sh(&format!("{} {}", guest.display(), iso.hp("native")));
    assert!(
        native.stdout_str().contains("file-dir ok"),
        "{}",
        native.describe()
    );
    same_in_env(
        &iso,
        &native,
        &format!("{} {}", guest.display(), iso.hp("isolated")),
    );
}

/// Runs `script` in env "e": it must print what `native` printed, and
/// leave the host as it was.
fn same_in_env(iso: &Iso, native: &common::Run, script: &str) {
    let host = host_snapshot(&iso.host());
    let traced = iso.sh_ok("e", script);
    assert_eq!(
        traced.stdout_str(),
        native.stdout_str(),
        "{}",
        traced.describe()
    );
    host.assert_unchanged();
}

/// A name the host creates while a group runs is seen at once, as through
/// an overlay mount: the supervisor does not remember "missing" answers.
/// The script probes the name (missing), says so in its private layer, and
/// polls until the host's file appears.
#[test]
fn a_file_the_host_creates_mid_run_is_seen() {
    let iso = Iso::new();
    populate(&iso);
    let late = iso.hp("tree/sub/late.txt");
    let probed = iso.hp("probed");
    let script = format!(
        "[ -e {late} ] && exit 3; : > {probed}; i=0; \
         while [ ! -e {late} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 4; sleep 0.05; done; cat {late}"
    );
    let mut cmd = iso.command(["--env", "e", "--", "/bin/sh", "-c", &script]);
    cmd.stdout(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let private = iso.upper("e").join(probed.trim_start_matches('/'));
    common::wait_until("the group to probe the name", common::ISO_TIMEOUT, || {
        private.exists()
    });
    write_file(&iso.host(), "tree/sub/late.txt", "late\n");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
}

/// A host file the group has seen, deleted on the host meanwhile, can be
/// created again in the environment: the write's copy-up finds its source
/// gone and the supervisor looks the name up afresh instead of failing.
#[test]
fn a_file_the_host_deletes_mid_run_can_be_created_again() {
    let iso = Iso::new();
    populate(&iso);
    let a = iso.hp("a.txt");
    let seen = iso.hp("seen");
    let script = format!(
        "cat {a} > /dev/null && : > {seen}; i=0; \
         while [ -e {a} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 4; sleep 0.05; done; \
         echo again > {a} && cat {a}"
    );
    let mut cmd = iso.command(["--env", "e", "--", "/bin/sh", "-c", &script]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let private = iso.upper("e").join(seen.trim_start_matches('/'));
    common::wait_until("the group to read the file", common::ISO_TIMEOUT, || {
        private.exists()
    });
    fs::remove_file(&a).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "again\n");
    assert!(
        !std::path::Path::new(&a).exists(),
        "the host got the file back"
    );
}

/// A datagram sent with sendto(2) to a unix socket path bound in the
/// environment reaches it: the destination is rewritten like connect's
/// (the socket file is in the private layer, the host never sees it).
#[test]
fn sendto_a_unix_datagram_socket_bound_in_the_env() {
    if !common::have_program("python3") {
        eprintln!("python3 is not installed: skipping");
        return;
    }
    let iso = Iso::new();
    populate(&iso);
    let sock = iso.hp("tree/dgram.sock");
    let py = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind('{sock}')\n\
         c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         c.sendto(b'ping', '{sock}')\n\
         print(s.recv(16).decode())\n"
    );
    let run = iso.isotrace(["--env", "e", "--", "python3", "-c", &py]);
    assert_eq!(run.status, common::Status::Exited(0), "{}", run.describe());
    assert_eq!(run.stdout_str(), "ping\n");
    assert!(
        !std::path::Path::new(&sock).exists(),
        "the socket is on the host"
    );
}

/// /proc/self/maps and smaps name a program copied into the environment by
/// its public path, never by its path in the store, as /proc/self/exe
/// does; the translated copy served for them leaves nothing behind.
#[test]
fn proc_maps_show_public_paths() {
    let iso = Iso::new();
    populate(&iso);
    let cat = iso.hp("tree/mycat");
    let run = iso.sh_ok(
        "e",
        &format!("cp /bin/cat {cat} && {cat} /proc/self/maps && {cat} /proc/self/smaps"),
    );
    let out = run.stdout_str();
    let store = iso.home();
    assert!(out.contains(&format!(" {cat}\n")), "{out}");
    assert!(!out.contains(store.to_str().unwrap()), "{out}");
    assert_eq!(out.matches(&format!(" {cat}\n")).count() % 2, 0, "{out}");
    let work = iso.home().join("envs/e/work");
    let left: Vec<_> = fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".procmaps")),
        "{left:?}"
    );
}

/// Unmounts its path when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The test's store (`ISOTRACE_HOME`) on a tmpfs of `size`, until the
/// guard is dropped; None (said on stderr) where it cannot be mounted.
fn tmpfs_store(iso: &Iso, size: &str) -> Option<Unmount> {
    let store = iso.home();
    fs::create_dir_all(&store).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&store)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here");
        return None;
    }
    Some(Unmount(store))
}

/// A full disk during copy-up (the store on a 2 MiB tmpfs, a 4 MiB host
/// file appended to): the program's open fails with ENOSPC, nothing
/// half-copied is left in the layer or in work/, the host file is as it
/// was, and a small write afterwards still works.
#[test]
fn a_full_disk_during_copy_up_gives_enospc_and_leaves_nothing() {
    if !common::is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let iso = Iso::new();
    populate(&iso);
    let store = iso.home();
    let Some(_unmount) = tmpfs_store(&iso, "2m") else {
        return;
    };
    write_file(&iso.host(), "big", vec![7u8; 4 << 20]);
    let big = iso.hp("big");
    let host = host_snapshot(&iso.host());
    let run = iso.sh("e", &format!("echo more >> {big}"));
    assert_ne!(run.status, common::Status::Exited(0), "{}", run.describe());
    assert!(
        run.stderr_str().contains("No space left on device"),
        "{}",
        run.describe()
    );
    host.assert_unchanged();
    assert!(
        !iso.upper("e").join(big.trim_start_matches('/')).exists(),
        "a partial copy is in the layer"
    );
    let work = store.join("envs/e/work");
    let left: Vec<_> = fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in work/: {left:?}");
    let small = iso.hp("tree/small.txt");
    let ok = iso.sh_ok("e", &format!("echo fine > {small} && cat {small}"));
    assert_eq!(ok.stdout_str(), "fine\n");
}

/// BASE: a process inside BASE/d/sub (its cwd) and holding an fd on
/// BASE/d renames BASE/d twice, then exchanges it with a new directory,
/// and exchanges BASE/e, on which it holds an fd, with another; every
/// name it is then shown, and every relative or fd-relative access, goes
/// to where the directory is now.
const MOVED_CWD: &str = r#"
import ctypes, os, sys
base = sys.argv[1]
rel = lambda p: p.replace(base, "BASE")
os.chdir(base + "/d/sub")
dfd = os.open(base + "/d", os.O_RDONLY | os.O_DIRECTORY)
os.rename(base + "/d", base + "/r")
print("cwd", rel(os.getcwd()), rel(os.readlink("/proc/self/cwd")))
print("fd", rel(os.readlink(f"/proc/self/fd/{dfd}")))
print("ls", sorted(os.listdir(".")), sorted(os.listdir(dfd)))
print("read", open("f").read().strip(), open(f"/proc/self/fd/{dfd}/sub/f").read().strip())
with open("g", "w") as g:
    g.write("G")
fd = os.open("sub/h", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dfd)
os.write(fd, b"H")
os.close(fd)
os.rename(base + "/r", base + "/again")
print("cwd", rel(os.getcwd()), rel(os.readlink("/proc/self/cwd")))
print("fd", rel(os.readlink(f"/proc/self/fd/{dfd}")))
print("tree", sorted(os.listdir(base)), sorted(os.listdir(base + "/again/sub")))
print("stat", os.stat(".").st_mode == os.stat(base + "/again/sub").st_mode)
# renameat2(RENAME_EXCHANGE): of the directory the cwd follows, and of a
# directory an fd holds (never renamed before) with a new one.
libc = ctypes.CDLL(None, use_errno=True)
def exchange(a, b):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
os.mkdir(base + "/other")
exchange(base + "/again", base + "/other")
efd = os.open(base + "/e", os.O_RDONLY | os.O_DIRECTORY)
os.mkdir(base + "/new")
exchange(base + "/e", base + "/new")
print("cwd", rel(os.getcwd()), rel(os.readlink("/proc/self/cwd")))
print("fd", rel(os.readlink(f"/proc/self/fd/{dfd}")), rel(os.readlink(f"/proc/self/fd/{efd}")))
print("ls", sorted(os.listdir(".")), sorted(os.listdir(efd)), sorted(os.listdir(base)))
"#;

/// A cwd and a directory fd inside a host directory the env renames (mv
/// with the shell still in it): as natively, they follow the directory,
/// though the env moved a copy and the host keeps its own.
#[test]
fn a_cwd_inside_a_renamed_host_directory_follows_it() {
    let iso = Iso::new();
    let script = iso.root().join("moved_cwd.py");
    fs::write(&script, MOVED_CWD).unwrap();
    for side in ["native", "isolated"] {
        let dir = iso.host().join(side);
        fs::create_dir_all(dir.join("d/sub")).unwrap();
        write_file(&dir, "d/sub/f", "F");
        write_file(&dir, "e/x", "X");
    }
    let py = |side: &str| format!("python3 {} {}", script.display(), iso.hp(side));
    let native = iso.native_sh(&py("native"));
    assert_eq!(native.status.shell_code(), 0, "{}", native.describe());
    same_in_env(&iso, &native, &py("isolated"));
}

/// With the store on a filesystem of its own, a program reading the mount
/// table in an env (/proc/self/mountinfo, /proc/mounts) does not see that
/// mount; natively it is there.
#[test]
fn the_store_mount_is_not_in_the_envs_mount_table() {
    if !common::is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let iso = Iso::new();
    let store = iso.home();
    let Some(_unmount) = tmpfs_store(&iso, "16m") else {
        return;
    };
    let store_name = store.to_str().unwrap().to_owned();
    let script = "cat /proc/self/mountinfo; echo --; cat /proc/mounts";
    let native = iso.native_sh(script).stdout_str();
    let traced = iso.sh_ok("e", script).stdout_str();
    assert!(native.contains(&store_name), "{native}");
    assert!(!traced.contains(&store_name), "{traced}");
    // The rest is there (an env of root's runs in a mount namespace of its
    // own, with the host read-only: the options differ from native's).
    for table in traced.split("--\n") {
        assert!(
            table.lines().any(|l| l.split(' ').any(|f| f == "/proc")),
            "{table}"
        );
    }
}
