//! Everyday coreutils, natively and under isotrace: same output, same
//! status, same files.

mod common;

use std::path::Path;

use common::{assert_same_tree, write_file, Case};

/// Pseudo-random lines from a fixed-seed LCG, so both runs sort the same
/// input.
pub fn random_lines(n: usize) -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = String::with_capacity(n * 24);
    for i in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(&format!("{:016x} {} line{}\n", x, (x >> 40) % 1000, i));
    }
    out
}

#[test]
fn ls_recursive_usr_share_doc() {
    let (_, traced) = Case::new("/bin/ls")
        .args(["-laR", "/usr/share/doc"])
        .check();
    traced.assert_exit(0);
    assert!(traced.stdout.len() > 1000, "{}", traced.describe());
}

#[test]
fn ls_recursive_piped_to_sha256sum() {
    let (_, traced) = Case::sh("ls -laR /usr/share/doc | sha256sum").check();
    traced.assert_exit(0);
    assert_eq!(traced.stdout.len(), 64 + 4, "{}", traced.describe());
}

#[test]
fn sort_generated_file() {
    let (_, traced) = Case::sh(
        "sort -S 1M -T . --parallel=2 input.txt > sorted.txt && \
         sort -c sorted.txt && sort -n -k2,2 -s input.txt | sha256sum && wc -l sorted.txt",
    )
    .setup(|dir: &Path| write_file(dir, "input.txt", random_lines(100_000)))
    .compare_files()
    .check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().ends_with("100000 sorted.txt\n"));
}

#[test]
fn find_usr_include() {
    let (_, traced) = Case::sh("find /usr/include -type f | sort").check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().contains("/usr/include/stdio.h\n"));
}

/// A tree with subdirectories, symlinks, hard links, odd modes and an
/// empty file.
fn make_source_tree(dir: &Path) {
    let src = dir.join("src");
    for i in 0..20 {
        write_file(
            &src,
            &format!("d{}/sub/f{i}.txt", i % 4),
            format!("file {i}\n").repeat(i * 50),
        );
    }
    write_file(&src, "empty", "");
    write_file(&src, "exec.sh", "#!/bin/sh\necho hi\n");
    common::chmod(&src.join("exec.sh"), 0o755);
    write_file(&src, "private", "secret\n");
    common::chmod(&src.join("private"), 0o600);
    std::os::unix::fs::symlink("d1/sub/f1.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", src.join("dangling")).unwrap();
    std::fs::hard_link(src.join("empty"), src.join("hardlink")).unwrap();
}

#[test]
fn cp_archive_tree() {
    let (_, traced) =
        Case::sh("cp -a src dst && cp -a /usr/include/linux linux && find dst | sort")
            .setup(make_source_tree)
            .compare_files()
            .check();
    traced.assert_exit(0);
    assert_same_tree(&traced.dir.join("src"), &traced.dir.join("dst"));
    assert_same_tree(Path::new("/usr/include/linux"), &traced.dir.join("linux"));
}

#[test]
fn tar_round_trip() {
    let (_, traced) = Case::sh(
        // src is regenerated for each run, so pin its timestamps and order.
        "tar --sort=name --mtime=@0 -cf a.tar src && tar -czf inc.tar.gz -C /usr/include linux && \
         mkdir x && tar -xf a.tar -C x && tar -xzf inc.tar.gz -C x && \
         tar -tvf a.tar | sort && tar -tzf inc.tar.gz | wc -l",
    )
    .setup(make_source_tree)
    .compare_files()
    .check();
    traced.assert_exit(0);
    assert_same_tree(&traced.dir.join("src"), &traced.dir.join("x/src"));
    assert_same_tree(Path::new("/usr/include/linux"), &traced.dir.join("x/linux"));
}

/// Large stdin and stdout pass through the supervisor untouched.
#[test]
fn large_stdin_and_stdout() {
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    let (_, traced) =
        Case::sh("tee copy.bin | sha256sum; wc -c < copy.bin; cat copy.bin copy.bin | wc -c")
            .stdin(data)
            .compare_files()
            .check();
    traced.assert_exit(0);
    assert!(traced.stdout_str().ends_with("8000000\n16000000\n"));
}
