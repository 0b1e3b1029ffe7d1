//! Statically linked programs: no dynamic loader, raw syscalls straight
//! from the binary (busybox, and guests built with gcc -static).

mod common;

use std::path::Path;

use common::{guest_static, write_file, Case};

const BUSYBOX: &str = "/bin/busybox";

fn have_busybox() -> bool {
    if Path::new(BUSYBOX).exists() {
        return true;
    }
    eprintln!("skipping: {BUSYBOX} missing (apt install busybox-static)");
    false
}

#[test]
fn busybox_sh() {
    if !have_busybox() {
        return;
    }
    let (_, traced) = Case::new(BUSYBOX)
        .args([
            "sh",
            "-c",
            "x=$((6*7)); for i in 1 2 3; do echo line $i; done | busybox wc -l; \
             echo $x; (echo sub; exit 3); echo st=$?; busybox seq 1 500 | busybox tail -n 1",
        ])
        .check();
    traced.assert_exit(0);
    assert_eq!(traced.stdout_str(), "3\n42\nsub\nst=3\n500\n");
}

#[test]
fn busybox_ls() {
    if !have_busybox() {
        return;
    }
    let (_, traced) = Case::new(BUSYBOX)
        .args(["ls", "-laR", "/usr/share/doc"])
        .check();
    traced.assert_exit(0);
}

#[test]
fn busybox_sha256sum() {
    if !have_busybox() {
        return;
    }
    let (_, traced) = Case::new(BUSYBOX)
        .args(["sha256sum", "data.bin", "/etc/hostname"])
        .setup(|dir: &Path| {
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
            write_file(dir, "data.bin", data);
        })
        .check();
    traced.assert_exit(0);
    assert_eq!(traced.stdout_str().lines().count(), 2);
}

#[test]
fn static_guest_threads() {
    let (_, traced) = Case::new(guest_static("many_threads")).arg("32").check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().starts_with("threads=32 failed=0 "));
}

#[test]
fn static_guest_vfork_spawn() {
    let (_, traced) = Case::new(guest_static("vfork_spawn")).check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().contains("posix_spawn sh: exited 3\n"));
}

#[test]
fn static_guest_thread_exec() {
    let (_, traced) = Case::new(guest_static("thread_exec")).check();
    traced.assert_exit(0);
    assert!(traced
        .stdout_str()
        .ends_with("new image: pid preserved=1 leader=1\n"));
}
