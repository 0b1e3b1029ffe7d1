//! Randomized properties with a fixed seed (reproducible; no proptest
//! dependency): translation round-trips, and no resolution ever hands the
//! kernel a real path inside the store other than this environment's upper.

use super::fake::{view, FakeFs, HOME, UPPER};
use crate::path::{bytes, components, within};
use crate::{public_of, resolve, resolve_cached, Cache, Rules, View};
use std::path::{Path, PathBuf};

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const NAMES: [&str; 8] = ["a", "b", "c", "store", "envs", "e", "upper", "dev"];
const WALK: [&str; 10] = [
    "a", "b", "c", "store", "envs", "e", "upper", "dev", "..", ".",
];

fn normalized(rng: &mut Rng, alphabet: &[&str], max: usize) -> String {
    let n = rng.below(max + 1);
    let mut s = String::new();
    for _ in 0..n {
        s.push('/');
        s.push_str(rng.pick(alphabet));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn is_normalized(p: &Path) -> bool {
    let b = bytes(p);
    b.first() == Some(&b'/')
        && (b == b"/" || !b.ends_with(b"/"))
        && !b.windows(2).any(|w| w == b"//")
        && components(b).all(|c| c != b"." && c != b"..")
}

#[test]
fn public_of_inverts_real_of() {
    let mut rng = Rng(0x1507_7ACE);
    let v = view();
    for _ in 0..5000 {
        let p = PathBuf::from(normalized(&mut rng, &NAMES, 6));
        assert_eq!(public_of(&v, &v.real_of(&p)), Some(p.clone()), "{p:?}");
    }
    assert_eq!(public_of(&v, Path::new("/store/envs/other/upper/x")), None);
    assert_eq!(public_of(&v, Path::new("/store/envs/e/work/#1")), None);
    assert_eq!(public_of(&v, Path::new(UPPER)), Some(PathBuf::from("/")));
}

fn random_tree(rng: &mut Rng) -> FakeFs {
    let targets = [
        "/store/envs/e/upper/a",
        "/store",
        "../../..",
        "..",
        "/a/b",
        "a",
        "b/c",
        "/",
        "/dev",
        "../store/envs/e/upper",
    ];
    let mut fs = FakeFs::new();
    fs.file("/store/envs/e/upper/a/secret")
        .file("/store/envs/other/upper/b");
    for _ in 0..rng.below(25) {
        let upper = rng.below(2) == 0;
        let p = normalized(rng, &NAMES[..3], 3);
        if p == "/" {
            continue;
        }
        let p = if upper { format!("{UPPER}{p}") } else { p };
        match rng.below(4) {
            0 => fs.dir(&p),
            1 => fs.file(&p),
            2 => fs.symlink(&p, rng.pick(&targets)),
            _ => fs.file(&format!("{}/.wh.{}", parent_of(&p), rng.pick(&NAMES[..3]))),
        };
    }
    fs
}

fn parent_of(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// Check one resolution; returns whether it succeeded.
fn check(v: &View, fs: &FakeFs, base: &Path, path: &str, follow: bool) -> bool {
    let Ok(r) = resolve(v, fs, base, path.as_bytes(), follow) else {
        return false;
    };
    let ctx = format!("{path:?} from {base:?} -> {r:?}");
    assert!(is_normalized(&r.public), "{ctx}");
    assert!(!within(&r.public, Path::new(HOME)), "{ctx}");
    if within(&r.real, Path::new(HOME)) {
        assert!(within(&r.real, Path::new(UPPER)), "{ctx}");
    }
    assert_eq!(public_of(v, &r.real).as_ref(), Some(&r.public), "{ctx}");
    if r.loc.is_some() {
        let again = resolve(v, fs, Path::new("/"), bytes(&r.public), follow).unwrap();
        assert_eq!(
            (&again.public, again.loc, &again.real),
            (&r.public, r.loc, &r.real),
            "{ctx}"
        );
    }
    true
}

#[test]
fn resolution_never_escapes_the_view() {
    let mut rng = Rng(0xDEC0_DE15);
    let mut rules = Rules::empty();
    rules.add_exception(Path::new("/dev"), None).unwrap();
    let v = super::fake::view_with(rules);
    let (mut ok, mut total) = (0, 0);
    for _ in 0..400 {
        let fs = random_tree(&mut rng);
        let mut cache = Cache::new();
        for _ in 0..40 {
            let mut path = normalized(&mut rng, &WALK, 7);
            if rng.below(3) == 0 {
                path.remove(0);
                if path.is_empty() {
                    path.push('.');
                }
            }
            if rng.below(5) == 0 {
                path.push('/');
            }
            let base = Path::new(["/", "/a", "/a/b"][rng.below(3)]);
            let follow = rng.below(2) == 0;
            ok += usize::from(check(&v, &fs, base, &path, follow));
            let cached = resolve_cached(&v, &fs, &mut cache, base, path.as_bytes(), follow);
            assert_eq!(
                cached,
                resolve(&v, &fs, base, path.as_bytes(), follow),
                "{path}"
            );
            total += 1;
        }
    }
    // The generator must exercise successful walks, not only failures.
    eprintln!("{ok} of {total} resolved");
    assert!(ok * 4 > total, "{ok} of {total} resolved");
}
