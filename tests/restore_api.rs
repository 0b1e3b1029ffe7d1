//! Issue #5, the restore library API a supervisor builds on
//! (`isotrace_checkpoint::restore`): every task handed over stopped under
//! the calling thread's ptrace with its image tid, `map_path`, the seccomp
//! filter installed last, a refused pid, and an image whose root is pid 1.
//! Images come from `isotrace checkpoint GROUP` of real programs.

mod common;
mod restore_world;

use common::{guest, path_str, wait_until};
use restore_world::{checkpointed_threads, ids, lines, read, status_field, wait_exit, World, WAIT};
use std::fs;
use std::time::Duration;

/// The library API the supervisor builds on: every task comes back
/// stopped under this thread's ptrace, with its image tid; files the
/// restore opens for the tasks go through `map_path`.
#[test]
fn handoff_api_stops_every_task_and_maps_paths() {
    use isotrace_checkpoint::restore::{self, Options};
    let w = World::new(false);
    let img = checkpointed_threads(&w);
    let (orig, mapped) = (w.orig(), w.dir().join("mapped"));
    fs::create_dir(&mapped).unwrap();
    for f in ["out.1", "out.2", "out.3"] {
        fs::copy(orig.join(f), mapped.join(f)).unwrap();
    }
    let before = read(&orig.join("out.1"));
    let (from, to) = (path_str(&orig).to_owned(), path_str(&mapped).to_owned());
    let opts = Options {
        same_pids: true,
        map_path: Some(Box::new(move |p: &str| p.replacen(&from, &to, 1))),
        ..Default::default()
    };
    let image = isotrace_checkpoint::Image::open(&img).unwrap();
    let restored = restore::restore(&image, &opts).unwrap();
    assert_eq!(restored.tasks.len(), 6, "{:?}", restored.tasks);
    let me = nix::unistd::gettid().as_raw().to_string();
    for t in &restored.tasks {
        assert_eq!(common::proc_state(t.tid), Some('t'), "task {t:?}");
        assert_eq!(status_field(t.tid, "TracerPid"), me);
        let nstid = status_field(t.tid, "NSpid");
        assert!(nstid.ends_with(&format!("\t{}", t.old_tid)), "{nstid}");
    }
    restore::release_all(&restored).unwrap();
    assert_eq!(wait_exit(restored.waitable()), 0);
    let native = w.dir().join("native");
    for f in ["out.1", "out.2", "out.3"] {
        assert_eq!(read(&mapped.join(f)), read(&native.join(f)), "{f}");
    }
    assert_eq!(
        read(&orig.join("out.1")),
        before,
        "the unmapped file changed"
    );
}

/// `seccomp_filter` is installed in every thread, after everything else:
/// the restored tasks run with NoNewPrivs and the filter, which here
/// fails openat with EACCES, so the guest's last open fails (exit 3).
#[test]
fn handoff_api_installs_the_seccomp_filter_last() {
    use isotrace_checkpoint::restore::{self, Options};
    let w = World::new(false);
    let img = checkpointed_threads(&w);
    let opts = Options {
        seccomp_filter: Some(deny_openat()),
        ..Default::default()
    };
    let image = isotrace_checkpoint::Image::open(&img).unwrap();
    let restored = restore::restore(&image, &opts).unwrap();
    for t in &restored.tasks {
        assert_eq!(status_field(t.tid, "Seccomp"), "2", "task {t:?}");
        assert_eq!(status_field(t.tid, "NoNewPrivs"), "1", "task {t:?}");
    }
    restore::release_all(&restored).unwrap();
    assert_eq!(wait_exit(restored.waitable()), 3);
    assert!(!w.orig().join("out.main").exists());
    let native = w.dir().join("native");
    assert_eq!(read(&w.orig().join("out.1")), read(&native.join("out.1")));
}

/// A classic BPF seccomp program: x86_64 openat fails with EACCES,
/// everything else is allowed (seccomp(2), struct seccomp_data).
fn deny_openat() -> Vec<libc::sock_filter> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        op(LD_ABS, 0, 0, 4),
        op(JEQ, 0, 3, AUDIT_ARCH_X86_64),
        op(LD_ABS, 0, 0, 0),
        op(JEQ, 0, 1, libc::SYS_openat as u32),
        op(RET, 0, 0, 0x0005_0000 | libc::EACCES as u32),
        op(RET, 0, 0, 0x7fff_0000),
    ]
}

/// A pid the image needs that is taken in the new namespace (here: a
/// child renumbered to 1, which is our init's) is refused with the pid,
/// and nothing of the restore is left running.
#[test]
fn a_taken_pid_is_refused_clearly() {
    use isotrace_checkpoint::restore::{self, Options};
    let w = World::new(false);
    let exe = guest("rst_tree");
    let orig = w.orig();
    let mut group = w.start(&[path_str(&exe), path_str(&orig), "60"]);
    wait_until("10 numbers", WAIT, || lines(&orig.join("out")) >= 10);
    let img = w.checkpoint(&mut group);
    let mut image = isotrace_checkpoint::Image::open(&img).unwrap();
    let root = image.tree.root;
    let child = image
        .tree
        .processes
        .iter_mut()
        .find(|p| p.pid != root)
        .expect("the child is in the image");
    child.pid = 1;
    child.threads[0].tid = 1;
    let opts = Options {
        same_pids: true,
        ..Default::default()
    };
    let err = restore::restore(&image, &opts).unwrap_err().to_string();
    assert!(err.contains("pid 1 is taken"), "{err}");
    let out = lines(&orig.join("out"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&orig.join("out")), out, "something ran");
}

/// An image whose root is pid 1 (a container's init, say) is restored as
/// pid 1 of the new namespace itself, without an init of ours: the
/// restorer waits for it directly. The guest sees its pid change (its
/// image pid is renumbered here) while every thread keeps its tid.
#[test]
fn a_root_with_pid_1_becomes_the_namespace_init() {
    use isotrace_checkpoint::restore::{self, Options};
    let w = World::new(false);
    let img = checkpointed_threads(&w);
    let mut image = isotrace_checkpoint::Image::open(&img).unwrap();
    let root = image.tree.root;
    image.tree.root = 1;
    let proc = &mut image.tree.processes[0];
    assert_eq!(proc.pid, root);
    proc.pid = 1;
    proc.threads.iter_mut().find(|t| t.tid == root).unwrap().tid = 1;
    let opts = Options {
        same_pids: true,
        ..Default::default()
    };
    let restored = restore::restore(&image, &opts).unwrap();
    assert_eq!(restored.init, None);
    assert_eq!(restored.waitable(), restored.pid);
    assert_eq!(
        status_field(restored.pid, "NSpid").split('\t').next_back(),
        Some("1")
    );
    restore::release_all(&restored).unwrap();
    assert_eq!(wait_exit(restored.waitable()), 0);
    let native = w.dir().join("native");
    for f in ["out.1", "out.2", "out.3", "out.main"] {
        assert_eq!(read(&w.orig().join(f)), read(&native.join(f)), "{f}");
    }
    let rows = ids(&w.orig().join("ids"), true, &["pid"]);
    assert_eq!(rows.len(), 5, "five tids kept");
}

/// A root restorer gives the restored tasks the image's credentials: a
/// program checkpointed while running as nobody runs as nobody again
/// (every uid and gid, no supplementary groups, no capabilities), not as
/// root.
#[test]
fn a_root_restorer_gives_back_the_image_credentials() {
    use isotrace_checkpoint::restore::{self, Options};
    if !common::is_root() || !common::have_program("setpriv") {
        eprintln!("skipping: needs root (to become nobody) and setpriv");
        return;
    }
    let w = World::new(true);
    let img = checkpointed_threads(&w);
    let opts = Options {
        same_pids: true,
        ..Default::default()
    };
    let image = isotrace_checkpoint::Image::open(&img).unwrap();
    let restored = restore::restore(&image, &opts).unwrap();
    let nobody = format!("{0}\t{0}\t{0}\t{0}", common::NOBODY);
    for t in &restored.tasks {
        assert_eq!(status_field(t.tid, "Uid"), nobody, "task {t:?}");
        assert_eq!(status_field(t.tid, "Gid"), nobody, "task {t:?}");
        assert_eq!(status_field(t.tid, "Groups"), "", "task {t:?}");
        assert_eq!(status_field(t.tid, "CapEff"), "0000000000000000");
    }
    restore::release_all(&restored).unwrap();
    assert_eq!(wait_exit(restored.waitable()), 0);
    let native = w.dir().join("native");
    assert_eq!(
        read(&w.orig().join("out.main")),
        read(&native.join("out.main"))
    );
}
