//! Issue #3, merged directory listings (getdents64, src/isolate/dirents.rs)
//! against the supervisor's lookup cache and a freeze: every change the
//! program makes through a trapped call shows in its very next listing,
//! from the same thread and from four threads at once (a host directory
//! listed as the kernel's, then copied up by a create, then merged); and a
//! listing loop frozen and checkpointed again and again, often in the
//! middle of a getdents64 batch, lists on, right, each time, as does the
//! process restored from its image.

mod common;

use common::{host_snapshot, path_str, wait_until, write_file, Iso};
use std::fs;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Creates, renames and removes names (and copies a host directory up by
/// writing into it) between listings, in one thread and in four at once;
/// every listing must be exactly what the program just made.
const CHURN: &str = r#"
import os, sys, threading
w = sys.argv[1]

def ls(d):
    return sorted(os.listdir(d))

def churn(d, rounds, tag):
    base = ls(d)
    for i in range(rounds):
        f = os.path.join(d, f"{tag}f{i}")
        open(f, "w").close()
        got = ls(d)
        assert got == sorted(base + [f"{tag}f{i}"]), (d, i, got)
        os.rename(f, os.path.join(d, f"{tag}g{i}"))
        got = ls(d)
        assert got == sorted(base + [f"{tag}g{i}"]), (d, i, got)
        os.unlink(os.path.join(d, f"{tag}g{i}"))
        assert ls(d) == base, (d, i)

# A host directory nothing of the env is in yet: listed as the kernel's
# listing, then copied up by a create, then merged.
h = os.path.join(w, "hostonly")
assert ls(h) == ["x1", "x2"], ls(h)
open(os.path.join(h, "new"), "w").close()
assert ls(h) == ["new", "x1", "x2"], ls(h)
os.unlink(os.path.join(h, "x1"))
assert ls(h) == ["new", "x2"], ls(h)
os.mkdir(os.path.join(h, "sub"))
assert ls(os.path.join(h, "sub")) == []
os.rename(os.path.join(h, "x2"), os.path.join(h, "sub", "x2"))
assert ls(h) == ["new", "sub"], ls(h)
assert ls(os.path.join(h, "sub")) == ["x2"]

churn(os.path.join(w, "merged"), 40, "")
errors = []
def run(n):
    try:
        churn(os.path.join(w, f"t{n}"), 25, f"t{n}")
    except BaseException as e:
        errors.append(repr(e))
ts = [threading.Thread(target=run, args=(n,)) for n in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert not errors, errors
print("ok", ls(w))
"#;

fn churn_world(iso: &Iso) -> String {
    for f in ["hostonly/x1", "hostonly/x2", "merged/m1", "merged/m2"] {
        write_file(&iso.host(), f, "host\n");
    }
    for n in 0..4 {
        write_file(&iso.host(), &format!("t{n}/keep"), "host\n");
    }
    write_file(&iso.host(), "churn.py", CHURN);
    iso.hp("")
}

#[test]
fn listings_show_every_change_at_once_from_every_thread() {
    let iso = Iso::new();
    let w = churn_world(&iso);
    let host = host_snapshot(&iso.host());
    let script = iso.hp("churn.py");
    let run = iso.isotrace(["--env", "e", "--", "python3", &script, &w]);
    assert!(
        run.status == common::Status::Exited(0),
        "{}",
        run.describe()
    );
    assert!(run.stdout_str().starts_with("ok "), "{}", run.describe());
    host.assert_unchanged();
    // The env's view persists: what the program left is what a later group
    // lists (through the kernel for the directory the env never touched).
    let again = iso.sh_ok(
        "e",
        &format!("ls {w}hostonly {w}hostonly/sub {w}merged {w}t0"),
    );
    assert_eq!(
        again.stdout_str(),
        format!("{w}hostonly:\nnew\nsub\n\n{w}hostonly/sub:\nx2\n\n{w}merged:\nm1\nm2\n\n{w}t0:\nkeep\n")
    );
}

/// A listing loop is frozen and checkpointed again and again; it lists on,
/// right, each time, and its image restores into a process that does too,
/// three times over (a directory's position is restored: without it, a
/// listing frozen between two batches came back with every name twice).
#[test]
fn a_listing_loop_is_checkpointed_and_restored() {
    let iso = Iso::new();
    for f in ["d/h1", "d/h2"] {
        write_file(&iso.host(), f, "host\n");
    }
    let w = iso.hp("");
    // Under the /dev exception: the test reads what the group writes.
    let out = std::path::PathBuf::from(format!(
        "/dev/shm/{}.out",
        common::unique_token("isolisten")
    ));
    iso.litter(&out);
    write_file(
        &iso.host(),
        "lister.py",
        format!(
            r#"
import os
d = "{w}d"
open(os.path.join(d, "mine"), "w").close()
os.unlink(os.path.join(d, "h1"))
want = ["h2", "mine"]
n = 0
while True:
    got = sorted(os.listdir(d))
    if got != want:
        with open("{out}", "a") as f:
            f.write(f"bad {{got}}\n")
        raise SystemExit(3)
    n += 1
    if n % 500 == 0:
        with open("{out}", "a") as f:
            f.write(f"ok {{n}}\n")
"#,
            out = path_str(&out)
        ),
    );
    let run_dir = iso.root().join("run");
    fs::create_dir(&run_dir).unwrap();
    let lines = || -> usize {
        let text = fs::read_to_string(&out).unwrap_or_default();
        assert!(!text.contains("bad"), "a listing went wrong:\n{text}");
        text.lines().count()
    };
    let mut cmd = iso.command([
        "--env",
        "e",
        "--group",
        "lister",
        "--",
        "python3",
        &iso.hp("lister.py"),
    ]);
    cmd.env("XDG_RUNTIME_DIR", &run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sup = Killed(cmd.spawn().expect("spawn isotrace"));
    wait_until("the lister to list", WAIT, || lines() >= 2);
    // `isotrace ARGS` with the group's socket directory; must exit 0.
    let ok = |args: &[&str]| {
        let mut c = iso.command(args);
        c.env("XDG_RUNTIME_DIR", &run_dir);
        let r = iso.execute(c);
        assert!(
            r.status == common::Status::Exited(0),
            "isotrace {args:?}: {}",
            r.describe()
        );
        r
    };
    for i in 0..4 {
        let img = iso.root().join(format!("img{i}"));
        ok(&[
            "checkpoint",
            "lister",
            "-o",
            path_str(&img),
            "--leave-running",
        ]);
        let at = lines();
        wait_until("the lister to list on", WAIT, || lines() >= at + 2);
    }
    // Checkpoint (the group ends) and restore, three times over: the
    // freeze often lands between two getdents64 batches of one listing,
    // whose position the restore must give back.
    let socket = run_dir.join("isotrace/lister.sock");
    let mut restored = None;
    for i in 0..3 {
        let img = iso.root().join(format!("last{i}"));
        ok(&["checkpoint", "lister", "-o", path_str(&img)]);
        if i == 0 {
            let _ = sup.0.wait();
        }
        wait_until("the group to be gone", WAIT, || {
            std::os::unix::net::UnixStream::connect(&socket).is_err()
        });
        let stopped = lines();
        let r = ok(&["restore", path_str(&img), "--detach"]);
        wait_until("the restored lister to list on", WAIT, || {
            lines() >= stopped + 2
        });
        restored = r
            .stderr_str()
            .lines()
            .find_map(|l| l.split(" as pid ").nth(1))
            .and_then(|p| p.split_whitespace().next()?.parse::<i32>().ok());
        assert!(restored.is_some(), "no restored pid:\n{}", r.describe());
    }
    if let Some(pid) = restored {
        // SAFETY: kill(2) of the process this test restored.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    lines();
}

/// A background supervisor, SIGKILLed if the test ends first.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
