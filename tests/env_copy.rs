//! Issue #4, `env copy` cheap and correct: the copy shares the source's
//! files by hard link (on a filesystem without reflinks, like ext4), and a
//! change in either environment first gives that environment its own copy
//! (idb/src/share.rs). Real programs do the changes; what each layer holds
//! afterwards is read from the layers themselves.

mod common;

use common::{unique_token, Iso, Run, Status};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const PY: &str = "/usr/bin/python3";

fn ok(run: Run) -> Run {
    assert_eq!(run.status, Status::Exited(0), "{}", run.describe());
    run
}

/// The mtime the files start with (old, so that a change shows).
const OLD: i64 = 1_000_000_000;

/// An env A whose layer holds `dir/NAME` for each name, each containing
/// "orig NAME\n" with mode 0644 and mtime [`OLD`], and its copy B.
struct Pair {
    iso: Iso,
    dir: String,
}

impl Pair {
    fn new(names: &[&str]) -> Pair {
        let iso = Iso::new();
        let dir = format!("/tmp/{}", unique_token("envcopy"));
        iso.litter(&dir);
        let mut script = format!("mkdir {dir}");
        for n in names {
            script += &format!(" && echo 'orig {n}' > {dir}/{n} && chmod 644 {dir}/{n}");
            script += &format!(" && touch -d @{OLD} {dir}/{n}");
        }
        iso.sh_ok("A", &script);
        ok(iso.isotrace(["env", "copy", "A", "B"]));
        Pair { iso, dir }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// The real file behind `name` in `env`'s layer.
    fn real(&self, env: &str, name: &str) -> PathBuf {
        self.iso
            .upper(env)
            .join(self.path(name).trim_start_matches('/'))
    }

    fn read(&self, env: &str, name: &str) -> String {
        fs::read_to_string(self.real(env, name)).unwrap()
    }

    fn meta(&self, env: &str, name: &str) -> fs::Metadata {
        fs::symlink_metadata(self.real(env, name)).unwrap()
    }

    fn sh(&self, env: &str, script: &str) {
        self.iso.sh_ok(env, script);
    }

    /// A's file is what the copy started with (content, mode, mtime).
    fn assert_a_untouched(&self, name: &str) {
        assert_eq!(self.read("A", name), format!("orig {name}\n"), "A's {name}");
        let m = self.meta("A", name);
        assert_eq!(m.mode() & 0o7777, 0o644, "A's {name} mode");
        assert_eq!(m.mtime(), OLD, "A's {name} mtime");
    }
}

/// Whether the store's filesystem makes reflinks (then nothing is shared
/// by link, and the link assertions do not apply).
fn reflinks(dir: &Path) -> bool {
    let a = dir.join("reflink-probe");
    fs::write(&a, "x").unwrap();
    let ok = std::process::Command::new("cp")
        .args(["--reflink=always"])
        .arg(&a)
        .arg(dir.join("reflink-probe2"))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(dir.join("reflink-probe2"));
    ok
}

const OPS: &[&str] = &[
    "append", "trunc", "chmod", "touch", "xattr", "sed", "py", "fchmod", "fxattr",
];

/// Each change in B, by a real program, lands in B only.
#[test]
fn changes_in_the_copy_stay_in_the_copy() {
    let p = Pair::new(OPS);
    let linked = !reflinks(p.iso.root());
    for n in OPS {
        if linked {
            assert_eq!(
                p.meta("A", n).ino(),
                p.meta("B", n).ino(),
                "{n}: the copy should share the file by hard link"
            );
        }
    }
    let f = |n: &str| p.path(n);
    p.sh("B", &format!("echo more >> {}", f("append")));
    p.sh("B", &format!(": > {}", f("trunc")));
    p.sh("B", &format!("chmod 600 {}", f("chmod")));
    p.sh("B", &format!("touch {}", f("touch")));
    p.sh("B", &format!("sed -i s/orig/sed/ {}", f("sed")));
    let py = format!(
        "import os\n\
         os.setxattr({x:?}, 'user.k', b'v')\n\
         with open({w:?}, 'r+') as fh:\n    fh.seek(0); fh.write('PY')\n\
         fd = os.open({c:?}, os.O_RDONLY)\n\
         os.fchmod(fd, 0o600)\n\
         os.close(fd)\n\
         fd = os.open({fx:?}, os.O_RDONLY)\n\
         os.setxattr(fd, 'user.k', b'w')\n\
         os.close(fd)\n",
        x = f("xattr"),
        w = f("py"),
        c = f("fchmod"),
        fx = f("fxattr"),
    );
    ok(p.iso.isotrace(["--env", "B", "--", PY, "-c", &py]));

    for n in OPS {
        p.assert_a_untouched(n);
        if linked {
            assert_eq!(p.meta("A", n).nlink(), 1, "{n}: A's file is its own now");
        }
    }
    assert!(
        xattr_of(&p.real("A", "xattr")).is_none(),
        "A's file got B's xattr"
    );
    assert_eq!(p.read("B", "append"), "orig append\nmore\n");
    assert_eq!(p.read("B", "trunc"), "");
    assert_eq!(p.meta("B", "chmod").mode() & 0o7777, 0o600);
    assert_ne!(p.meta("B", "touch").mtime(), OLD);
    assert_eq!(p.read("B", "sed"), "sed sed\n");
    assert_eq!(p.read("B", "py"), "PYig py\n");
    assert_eq!(p.meta("B", "fchmod").mode() & 0o7777, 0o600);
    assert_eq!(xattr_of(&p.real("B", "xattr")).as_deref(), Some(&b"v"[..]));
    assert!(
        xattr_of(&p.real("A", "fxattr")).is_none(),
        "A got B's fsetxattr"
    );
    assert_eq!(xattr_of(&p.real("B", "fxattr")).as_deref(), Some(&b"w"[..]));
    // The broken-off copies kept their metadata.
    assert_eq!(p.meta("B", "append").mode() & 0o7777, 0o644);
}

fn xattr_of(path: &Path) -> Option<Vec<u8>> {
    let out = std::process::Command::new(PY)
        .args([
            "-c",
            "import os,sys\ntry: sys.stdout.buffer.write(os.getxattr(sys.argv[1], 'user.k'))\nexcept OSError: sys.exit(3)",
        ])
        .arg(path)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// An fd B opened read-only before B wrote the file under another fd: its
/// fchmod goes to B's (now own) file, never to A's.
#[test]
fn fchmod_through_an_old_read_only_fd() {
    let p = Pair::new(&["f"]);
    let f = p.path("f");
    let py = format!(
        "import os\n\
         fd = os.open({f:?}, os.O_RDONLY)\n\
         with open({f:?}, 'a') as fh: fh.write('b\\n')\n\
         os.fchmod(fd, 0o640)\n"
    );
    ok(p.iso.isotrace(["--env", "B", "--", PY, "-c", &py]));
    p.assert_a_untouched("f");
    assert_eq!(p.read("B", "f"), "orig f\nb\n");
    assert_eq!(p.meta("B", "f").mode() & 0o7777, 0o640);
}

/// Changes in the source after the copy do not reach the copy.
#[test]
fn changes_in_the_source_stay_in_the_source() {
    let p = Pair::new(&["f", "g"]);
    let f = p.path("f");
    p.sh("A", &format!("echo a >> {f} && chmod 700 {}", p.path("g")));
    assert_eq!(p.read("A", "f"), "orig f\na\n");
    assert_eq!(p.read("B", "f"), "orig f\n");
    assert_eq!(p.meta("B", "g").mode() & 0o7777, 0o644);
    assert_eq!(p.meta("A", "g").mode() & 0o7777, 0o700);
    let cat = ok(p.iso.isotrace(["--env", "B", "--", "cat", &f]));
    assert_eq!(cat.stdout_str(), "orig f\n");
}

/// A program's own hard links still share, in a copy too: both before the
/// copy (the copy makes them separate files in B, as always) and after.
#[test]
fn a_programs_own_links_still_share() {
    let p = Pair::new(&["a"]);
    let (a, b) = (p.path("a"), p.path("b"));
    p.sh(
        "B",
        &format!("ln {a} {b} && echo x >> {b} && cat {a} | grep -q x"),
    );
    assert_eq!(p.read("B", "a"), "orig a\nx\n");
    assert_eq!(p.read("B", "b"), "orig a\nx\n");
    assert_eq!(p.meta("B", "a").ino(), p.meta("B", "b").ino());
    assert_eq!(p.read("A", "a"), "orig a\n", "A unchanged by B's link");
    // And once more through the other name, then a copy of B: its links
    // are B's own, so C gets separate files, and B's still share.
    p.sh("B", &format!("echo y >> {a} && grep -q y {b}"));
    ok(p.iso.isotrace(["env", "copy", "B", "C"]));
    p.sh("B", &format!("echo z >> {b} && grep -q z {a}"));
    assert_eq!(p.read("C", "a"), "orig a\nx\ny\n");
}

/// Removing the source leaves the copy whole; export and import of the
/// copy work; `env diff` means the same for both.
#[test]
fn rm_source_diff_export_import() {
    let p = Pair::new(&["f", "g"]);
    let da = ok(p.iso.isotrace(["env", "diff", "A"])).stdout_str();
    let db = ok(p.iso.isotrace(["env", "diff", "B"])).stdout_str();
    assert_eq!(da, db);
    assert!(da.contains(&p.path("f")), "{da}");
    ok(p.iso.isotrace(["env", "rm", "A"]));
    assert_eq!(p.read("B", "f"), "orig f\n");
    p.sh("B", &format!("echo b >> {}", p.path("f")));
    assert_eq!(p.read("B", "f"), "orig f\nb\n");
    let tar = p.iso.root().join("b.tar");
    ok(p.iso
        .isotrace(["env", "export", "B", "-o", tar.to_str().unwrap()]));
    let other = Iso::new();
    ok(other.isotrace(["env", "import", tar.to_str().unwrap(), "--name", "C"]));
    let cat = ok(other.isotrace(["--env", "C", "--", "cat", &p.path("f"), &p.path("g")]));
    assert_eq!(cat.stdout_str(), "orig f\nb\norig g\n");
}

/// While a group runs in the source, a program there may hold an fd open
/// for writing that no break would catch: `env copy` is refused, and
/// `--force` copies every file for real (nothing shared).
#[test]
fn copy_of_a_running_env_is_refused_unless_forced() {
    let p = Pair::new(&["f"]);
    let run = p.iso.root().join("run");
    fs::create_dir(&run).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = p.iso.command(args);
        c.env("XDG_RUNTIME_DIR", &run);
        c
    };
    let child = cmd(&["--env", "A", "--group", "g", "--", "sleep", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let sock = run.join("isotrace/g.sock");
    common::wait_until(
        "the group's socket",
        std::time::Duration::from_secs(30),
        || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
    );
    let refused = p.iso.execute(cmd(&["env", "copy", "A", "C"]));
    assert_eq!(refused.status, Status::Exited(1), "{}", refused.describe());
    let want = format!(
        "env A is in use by group g (supervisor pid {})",
        child.0.id()
    );
    assert!(
        refused.stderr_str().contains(&want),
        "{}",
        refused.describe()
    );
    assert!(!p.iso.home().join("envs/C").exists());
    ok(p.iso.execute(cmd(&["env", "copy", "--force", "A", "C"])));
    let (a, c) = (p.meta("A", "f"), p.meta("C", "f"));
    assert_ne!(a.ino(), c.ino(), "--force shares nothing");
    assert_eq!(p.read("C", "f"), "orig f\n");
    drop(child);
}

/// The same guard for a host file: fsetxattr and fremovexattr through an
/// fd opened read-only change the environment's copy, never the host's.
/// That is the traps mode (`isolation.read_only_host = false`); with a
/// read-only host they fail (tests/isolation_readonly_host.rs).
#[test]
fn fsetxattr_through_a_read_only_fd_on_a_host_file() {
    let iso = Iso::new();
    let set = [
        "config",
        "set",
        "isolation.read_only_host",
        "false",
        "--env",
        "E",
    ];
    ok(iso.isotrace(set));
    let host = iso.host().join("h");
    fs::write(&host, "host\n").unwrap();
    let h = host.to_str().unwrap();
    let py = format!(
        "import os\n\
         fd = os.open({h:?}, os.O_RDONLY)\n\
         os.setxattr(fd, 'user.k', b'env')\n\
         os.setxattr(fd, 'user.gone', b'x')\n\
         os.removexattr(fd, 'user.gone')\n\
         print(os.getxattr({h:?}, 'user.k').decode())\n"
    );
    let run = ok(iso.isotrace(["--env", "E", "--", PY, "-c", &py]));
    assert_eq!(run.stdout_str(), "env\n");
    assert!(xattr_of(&host).is_none(), "the host file got the xattr");
    let copy = iso.upper("E").join(h.trim_start_matches('/'));
    assert_eq!(xattr_of(&copy).as_deref(), Some(&b"env"[..]));
    assert_eq!(fs::read_to_string(&copy).unwrap(), "host\n");
}
