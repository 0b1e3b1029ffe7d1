//! Resolution cost, printed rather than asserted (timings are noisy):
//! `cargo test --release -- --ignored --nocapture lookup_cost`.
//! Compares 10 and 100,000 files in the private layer, cached and not.

use crate::{resolve, resolve_cached, Cache, RealFs, Rules, Store};
use std::path::Path;
use std::time::Instant;

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

#[test]
#[ignore]
fn lookup_cost() {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let env = store.create("e").unwrap();
    let view = store.view(&env, Rules::default()).unwrap();
    let lib = view.upper_path(Path::new("/usr/lib"));
    std::fs::create_dir_all(&lib).unwrap();
    let mut have = 0;
    for files in [10, 100_000] {
        for i in have..files {
            std::fs::write(lib.join(format!("f{i}")), b"").unwrap();
        }
        have = files;
        for path in ["/usr/lib/f7", "/etc/passwd", "/usr/include/stdio.h"] {
            let p = path.as_bytes();
            let root = Path::new("/");
            let plain = per_call(20_000, || {
                let _ = resolve(&view, &RealFs, root, p, true);
            });
            let mut cache = Cache::new();
            let cached = per_call(200_000, || {
                let _ = resolve_cached(&view, &RealFs, &mut cache, root, p, true);
            });
            println!("{files:>6} files in upper  {path:<22} uncached {plain:>7.0} ns  cached {cached:>5.0} ns");
        }
    }
}
