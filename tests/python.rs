//! CPython: many threads doing file I/O, and a multiprocessing pool
//! (fork, pipes, semaphores in /dev/shm).

mod common;

use common::{Case, PYTHON, PYTHON_THREADS};

const POOL_SCRIPT: &str = r#"
import hashlib, multiprocessing, os

def work(i):
    h = hashlib.sha256()
    for k in range(2000):
        h.update(f"{i}:{k}".encode())
    with open(f"p{i:03d}.txt", "w") as f:
        f.write(h.hexdigest() + "\n")
    return i, h.hexdigest()[:16], os.getpid()

if __name__ == "__main__":
    with multiprocessing.Pool(4) as pool:
        results = pool.map(work, range(100))
    for i, digest, pid in results:
        print(i, digest, pid != os.getpid())
"#;

#[test]
fn python_threads_file_io() {
    let (_, traced) = Case::new(PYTHON)
        .args(["-c", PYTHON_THREADS])
        .compare_files()
        .check();
    traced.assert_exit(0);
    let out = traced.stdout_str();
    assert!(out.starts_with("files 64\ndigest "), "{out}");
}

#[test]
fn python_multiprocessing_pool() {
    let (_, traced) = Case::new(PYTHON)
        .args(["-c", POOL_SCRIPT])
        .compare_files()
        .check();
    traced.assert_exit(0);
    let out = traced.stdout_str();
    assert_eq!(out.lines().count(), 100, "{out}");
    assert!(out.lines().all(|l| l.ends_with(" True")), "{out}");
}
