//! Issue #3, lazy listings (tracer/src/listings.rs): a group that has not
//! changed its environment nor opened one of its directories lists through
//! the kernel, with getdents64 untrapped; the first change, or the first
//! open of a directory of the environment, gives every process and thread
//! of the group a filter that traps it, so listings are merged from then
//! on, also through directory fds opened before. The kernel is the oracle
//! (the same listing natively), and `--trace-file` shows which listings
//! reached the supervisor.

mod common;

use common::{host_snapshot, path_str, write_file, Iso, Status};
use std::fs;

/// getdents64 calls the supervisor saw in a `--trace-file`.
fn trapped_listings(trace: &std::path::Path) -> usize {
    fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("getdents64("))
        .count()
}

/// `isotrace --trace-file T --env e -- CMD...`, which must exit 0: the run
/// and how many listings reached the supervisor.
fn traced(iso: &Iso, cmd: &[&str]) -> (common::Run, usize) {
    let trace = iso.root().join(common::unique_token("lazy.trace"));
    let mut argv = vec!["--trace-file", path_str(&trace), "--env", "e", "--"];
    argv.extend_from_slice(cmd);
    let run = iso.isotrace(&argv);
    assert_eq!(run.status, Status::Exited(0), "{}", run.describe());
    let n = trapped_listings(&trace);
    (run, n)
}

fn tree_world(iso: &Iso) -> String {
    for f in ["t/a/1", "t/a/2", "t/b/c/3", "t/b/4", "t/5"] {
        write_file(&iso.host(), f, "host\n");
    }
    iso.hp("t")
}

#[test]
fn a_group_that_only_reads_lists_through_the_kernel_as_natively() {
    let iso = Iso::new();
    let t = tree_world(&iso);
    let host = host_snapshot(&iso.host());
    let script = format!("find {t} | sort; ls -la {t}/b | awk '{{print $1, $NF}}'");
    let native = iso.native_sh(&script);
    assert_eq!(native.status, Status::Exited(0), "{}", native.describe());
    let same = || {
        let (run, n) = traced(&iso, &["/bin/sh", "-c", &script]);
        assert_eq!(run.stdout_str(), native.stdout_str());
        (n, run.describe())
    };
    let (n, why) = same();
    assert_eq!(n, 0, "{why}");

    // isolation.lazy_listings = false: every listing is trapped, and the
    // same.
    let set = [
        "config",
        "set",
        "isolation.lazy_listings",
        "false",
        "--env",
        "e",
    ];
    assert_eq!(iso.isotrace(set).status, Status::Exited(0));
    let (n, why) = same();
    assert!(n >= 8, "{why}");
    host.assert_unchanged();
}

/// Directory fds opened before the group's first change: by the main
/// thread, by a second thread, and by a child process forked before the
/// change, which makes no trapped call between the change and its
/// listing (a rewind and raw getdents64 calls: os.listdir would fstat).
/// After the change each of them lists the merged directory (a listing
/// from the start after the change must show it, as on an overlay mount).
const BEFORE_AND_AFTER: &str = r#"
import ctypes, os, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
SYS_getdents64 = int(sys.argv[2])

def raw_listing(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    buf = ctypes.create_string_buffer(65536)
    names = []
    while True:
        n = libc.syscall(SYS_getdents64, fd, buf, len(buf))
        if n < 0:
            raise OSError(ctypes.get_errno(), "getdents64")
        if n == 0:
            break
        at = 0
        while at < n:
            reclen = struct.unpack_from("H", buf.raw, at + 16)[0]
            name = buf.raw[at + 19:at + reclen].split(b"\0", 1)[0].decode()
            if name not in (".", ".."):
                names.append(name)
            at += reclen
    return sorted(names)

d = sys.argv[1]
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
assert sorted(os.listdir(fd)) == ["h1", "h2"], os.listdir(fd)
got = {}
opened, changed = threading.Event(), threading.Event()
def lister():
    tfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    opened.set()
    changed.wait()
    got["thread"] = sorted(os.listdir(tfd))
t = threading.Thread(target=lister)
t.start()
opened.wait()
go_r, go_w = os.pipe()
out_r, out_w = os.pipe()
child = os.fork()
if child == 0:
    os.read(go_r, 1)
    os.write(out_w, " ".join(raw_listing(fd)).encode())
    os._exit(0)
# The change: a create in the listed host directory (a copy-up of it).
open(os.path.join(d, "new"), "w").close()
os.unlink(os.path.join(d, "h1"))
changed.set()
t.join()
got["main"] = sorted(os.listdir(fd))
os.write(go_w, b"x")
got["child"] = os.read(out_r, 4096).decode().split()
os.waitpid(child, 0)
for who in ("main", "thread", "child"):
    assert got[who] == ["h2", "new"], (who, got)
print("ok")
"#;

#[test]
fn the_first_change_traps_the_listings_of_every_process_and_thread() {
    let iso = Iso::new();
    for f in ["d/h1", "d/h2"] {
        write_file(&iso.host(), f, "host\n");
    }
    write_file(&iso.host(), "before_after.py", BEFORE_AND_AFTER);
    let host = host_snapshot(&iso.host());
    let script = iso.hp("before_after.py");
    let gd = libc::SYS_getdents64.to_string();
    let (run, n) = traced(&iso, &["python3", &script, &iso.hp("d"), &gd]);
    assert_eq!(run.stdout_str(), "ok\n", "{}", run.describe());
    assert!(n > 0, "{}", run.describe());
    host.assert_unchanged();
}

/// A read-only run in an environment that already has directories of its
/// own: opening one traps the listings (the kernel's listing of the private
/// directory alone would miss the host's entries and show a removed one).
#[test]
fn opening_a_directory_of_the_environment_traps_the_listings() {
    let iso = Iso::new();
    for f in ["m/h1", "m/h2"] {
        write_file(&iso.host(), f, "host\n");
    }
    let m = iso.hp("m");
    iso.sh_ok("e", &format!("touch {m}/mine && rm {m}/h1"));
    let host = host_snapshot(&iso.host());
    let (run, n) = traced(&iso, &["ls", &m]);
    assert_eq!(run.stdout_str(), "h2\nmine\n", "{}", run.describe());
    assert!(n > 0, "{}", run.describe());
    host.assert_unchanged();
}

/// As root, a process of the group that gave up its privileges (setpriv to
/// nobody: no CAP_SYS_ADMIN, and a root-started group has no
/// no_new_privs) still gets the listing filter after the group's first
/// change (listings.rs sets no_new_privs first).
#[test]
fn a_process_without_privileges_gets_the_listing_filter() {
    if !common::is_root() || !common::have_program("setpriv") {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let iso = Iso::new();
    let d = iso.host().join("pub");
    for f in ["pub/h1", "pub/h2"] {
        write_file(&iso.host(), f, "host\n");
    }
    common::chmod(&iso.host(), 0o755);
    common::chmod(iso.root(), 0o755);
    common::chmod(&d, 0o777);
    let dp = path_str(&d).to_owned();
    // The unprivileged shell lists, then creates (the group's first
    // change, which switches every process), then lists again.
    let inner = format!("ls {dp}; touch {dp}/new; ls {dp}");
    let mut argv: Vec<String> = vec!["--env".into(), "e".into(), "--".into()];
    argv.extend(
        common::setpriv_prefix()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    argv.extend(["/bin/sh".into(), "-c".into(), inner]);
    let host = host_snapshot(&iso.host());
    let run = iso.isotrace(&argv);
    assert_eq!(run.status, Status::Exited(0), "{}", run.describe());
    assert_eq!(
        run.stdout_str(),
        "h1\nh2\nh1\nh2\nnew\n",
        "{}",
        run.describe()
    );
    host.assert_unchanged();
    assert!(!d.join("new").exists());
}
