//! The rewrite path of the mechanism, proved with a test policy that
//! redirects one path to another file and refuses a second one, while a
//! sibling thread keeps changing the path buffer under the tracee's feet.

use isotrace_tracer::filter::{self, FilterConfig};
use isotrace_tracer::scratch::SCRATCH_END;
use isotrace_tracer::{
    Action, Call, ExitKind, Outcome, Policy, SpawnSpec, Supervisor, TraceeView, Verdict,
};
use nix::errno::Errno;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Redirect {
    from: Vec<u8>,
    to: Vec<u8>,
    refuse: Vec<u8>,
    redirected: u64,
}

impl Policy for Redirect {
    fn on_entry(&mut self, call: &Call, _view: &mut dyn TraceeView) -> Verdict {
        for p in &call.paths {
            let Ok(path) = &p.path else { continue };
            if *path == self.refuse {
                return Verdict::deny(Errno::EACCES);
            }
            if *path == self.from {
                self.redirected += 1;
                return Verdict {
                    action: Action::Rewrite {
                        paths: vec![(p.idx, self.to.clone())],
                        args: vec![],
                    },
                    exit_stop: false,
                };
            }
        }
        Verdict::CONTINUE
    }
}

fn compile(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let st = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(st.success(), "compiling {name}");
    out
}

fn c(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref().to_vec()).unwrap()
}

#[test]
fn rewritten_path_cannot_be_swapped_by_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let guest = compile(dir.path(), "path_race");
    let public = dir.path().join("public");
    let private = dir.path().join("private");
    let secret = dir.path().join("secret");
    std::fs::write(&public, "public").unwrap();
    std::fs::write(&private, "private").unwrap();
    std::fs::write(&secret, "secret").unwrap();
    let out = dir.path().join("out");
    let spec = SpawnSpec {
        program: c("/bin/sh"),
        argv: vec![
            c("sh"),
            c("-c"),
            c(format!("exec \"$0\" \"$@\" > {}", out.display())),
            c(guest.as_os_str().as_encoded_bytes()),
            c(public.as_os_str().as_encoded_bytes()),
            c(secret.as_os_str().as_encoded_bytes()),
            c("20000"),
        ],
        envp: vec![c("PATH=/usr/bin:/bin")],
        filter: filter::build(
            isotrace_arch::native::TABLE,
            &FilterConfig {
                scratch_end: SCRATCH_END,
                mode: isotrace_arch::Mode::Native,
                lazy_listings: false,
            },
        ),
        no_new_privs: true,
        lazy_listings: false,
        read_only_host: None,
    };
    let mut policy = Redirect {
        from: public.as_os_str().as_encoded_bytes().to_vec(),
        to: private.as_os_str().as_encoded_bytes().to_vec(),
        refuse: secret.as_os_str().as_encoded_bytes().to_vec(),
        redirected: 0,
    };
    let mut sup = Supervisor::spawn(&spec, &mut policy).expect("spawn");
    let outcome = sup.run().expect("run");
    drop(sup);
    assert_eq!(outcome, Outcome::Exited(ExitKind::Code(0)));
    assert!(policy.redirected > 0);
    let report = std::fs::read_to_string(&out).unwrap();
    let field = |k: &str| -> i64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {report:?}"))
    };
    assert_eq!(
        field("secret"),
        0,
        "a swapped path reached the kernel: {report}"
    );
    assert!(
        field("private") > 0,
        "no redirected open succeeded: {report}"
    );
    assert_eq!(field("munmap_errno"), libc::EPERM as i64, "{report}");
    assert_eq!(field("mprotect_errno"), libc::EPERM as i64, "{report}");
}
