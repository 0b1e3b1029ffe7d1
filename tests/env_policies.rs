//! Issue #4, the shared-library and font policies, end to end with real
//! installers' steps (`install`, `fc-cache`) and the kernel's and
//! fontconfig's own view as the oracle (`fc-list`, the dynamic loader).
//!
//! `libraries.policy` and `fonts.policy` are set by the admin before the
//! install (`isotrace config set KEY VALUE --env NAME`). Under `env` (the
//! default) what the app installs stays in the env; under `global` it lands
//! in the host's library or font directories, for every env and the host.
//! The global-policy tests write to the host and put it back (see
//! [`HostRestore`]); they need root.

mod common;

use common::{
    assert_absent_on_host, execute, have_program, host_snapshot, is_root, path_str, unique_token,
    write_file, Iso, Status, ISO_TIMEOUT,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

/// The font tests share the host's font directories and fontconfig cache:
/// one at a time, so that one's host check does not see the other's font.
static FONTS: Mutex<()> = Mutex::new(());

/// fontconfig's system font directory that installers use for local fonts.
const LOCAL_FONTS: &str = "/usr/local/share/fonts";
const FONT_CACHE: &str = "/var/cache/fontconfig";

/// The first TrueType or OpenType font under /usr/share/fonts.
fn host_font() -> Option<PathBuf> {
    fn find(dir: &Path) -> Option<PathBuf> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries.iter().find_map(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if p.is_dir() {
                find(p)
            } else if ["ttf", "otf"].contains(&ext) {
                Some(p.clone())
            } else {
                None
            }
        })
    }
    find(Path::new("/usr/share/fonts"))
}

/// Host paths a global-policy test creates, and the directories whose
/// listing and mtime it changes: put back as they were when dropped (also
/// on a failed assertion), so the host's fontconfig caches stay valid
/// (fontconfig checks a directory's cache against its mtime). The files
/// of the `saved` directories are put back too (fc-cache rewrites the
/// cache of a font directory whose mtime changed).
struct HostRestore {
    dirs: Vec<(PathBuf, BTreeSet<PathBuf>, SystemTime)>,
    files: Vec<(PathBuf, Vec<u8>, SystemTime)>,
}

fn mtime(p: &Path) -> SystemTime {
    fs::symlink_metadata(p).and_then(|m| m.modified()).unwrap()
}

impl HostRestore {
    fn new(dirs: &[&str], saved: &[&str]) -> HostRestore {
        let dirs = dirs
            .iter()
            .map(|d| {
                let d = PathBuf::from(d);
                (d.clone(), listing(&d), mtime(&d))
            })
            .collect();
        let files = saved
            .iter()
            .flat_map(|d| listing(Path::new(d)))
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
            .map(|p| (p.clone(), fs::read(&p).unwrap(), mtime(&p)))
            .collect();
        HostRestore { dirs, files }
    }

    /// Entries of the watched directory `dir` that were not there before.
    fn added(&self, dir: &str) -> Vec<PathBuf> {
        let (d, before, _) = self
            .dirs
            .iter()
            .find(|(d, ..)| d == Path::new(dir))
            .unwrap();
        listing(d).difference(before).cloned().collect()
    }
}

fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect()
}

fn set_mtime(p: &Path, t: SystemTime) {
    if let Ok(f) = fs::File::open(p) {
        let _ = f.set_modified(t);
    }
}

impl Drop for HostRestore {
    fn drop(&mut self) {
        for (dir, before, _) in &self.dirs {
            for p in listing(dir).difference(before) {
                eprintln!("removing {} from the host", p.display());
                let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
            }
        }
        for (p, data, t) in &self.files {
            if fs::read(p).ok().as_ref() != Some(data) {
                eprintln!("restoring {} on the host", p.display());
                let _ = fs::write(p, data);
            }
            set_mtime(p, *t);
        }
        for (dir, _, t) in &self.dirs {
            set_mtime(dir, *t);
        }
    }
}

/// `fc-list` natively, with the same environment as the isotrace runs.
fn host_fc_list(iso: &Iso) -> String {
    let run = iso.native_sh("fc-list");
    run.assert_exit(0);
    run.stdout_str()
}

/// `fc-list` in env `env`.
fn env_fc_list(iso: &Iso, env: &str) -> String {
    let run = iso.isotrace(["--env", env, "--", "fc-list"]);
    run.assert_exit(0);
    run.stdout_str()
}

/// What a font package's installer does: copy the font into a new
/// directory of the local font tree and refresh fontconfig's cache for it.
fn install_font(iso: &Iso, env: &str, font: &Path, dir: &str, file: &str) {
    iso.sh_ok(
        env,
        &format!(
            "mkdir -p {dir} && cp {} {file} && chmod 644 {file} && fc-cache {dir}",
            path_str(font)
        ),
    );
}

fn font_setup() -> Option<PathBuf> {
    if !have_program("fc-list") || !have_program("fc-cache") {
        eprintln!("skipped: fontconfig (fc-list, fc-cache) is not installed");
        return None;
    }
    let font = host_font();
    if font.is_none() {
        eprintln!("skipped: no .ttf or .otf font under /usr/share/fonts");
    }
    font
}

#[test]
fn font_policy_env_lists_the_font_in_the_env_only() {
    let Some(font) = font_setup() else { return };
    let _one = FONTS.lock().unwrap_or_else(|e| e.into_inner());
    let iso = Iso::new();
    let token = unique_token("font");
    let dir = format!("{LOCAL_FONTS}/{token}");
    let file = format!("{dir}/{token}.ttf");
    iso.litter(&dir);
    // fc-list run natively refreshes stale caches of the host: let it do
    // so before the snapshot, not during the test.
    host_fc_list(&iso);
    let cache = host_snapshot(Path::new(FONT_CACHE));
    let fonts = host_snapshot(Path::new(LOCAL_FONTS));

    install_font(&iso, "F", &font, &dir, &file);
    let listed = format!("{file}: ");
    let inside = env_fc_list(&iso, "F");
    assert!(inside.contains(&listed), "fc-list in env F:\n{inside}");
    // The env's fc-list still lists the host's own fonts.
    let host = host_fc_list(&iso);
    let first = host.lines().next().expect("the host has fonts");
    assert!(
        inside.contains(first),
        "{first:?} missing in env F:\n{inside}"
    );
    assert!(!host.contains(&token), "host fc-list:\n{host}");
    assert!(!env_fc_list(&iso, "other").contains(&token));
    assert_absent_on_host(&dir);
    cache.assert_unchanged();
    fonts.assert_unchanged();
    let diff = iso.isotrace(["env", "diff", "F"]);
    assert!(
        diff.stdout_str().contains(&format!("A {file}\n")),
        "{}",
        diff.describe()
    );
}

#[test]
fn font_policy_global_puts_the_font_in_the_global_dirs() {
    let Some(font) = font_setup() else { return };
    if !is_root() {
        eprintln!("skipped: installing into {LOCAL_FONTS} needs root");
        return;
    }
    let _one = FONTS.lock().unwrap_or_else(|e| e.into_inner());
    let restore = HostRestore::new(&[LOCAL_FONTS, FONT_CACHE], &[FONT_CACHE]);
    let iso = Iso::new();
    let token = unique_token("font");
    let dir = format!("{LOCAL_FONTS}/{token}");
    let file = format!("{dir}/{token}.ttf");
    // The admin's choice comes before the install.
    iso.isotrace(["config", "set", "fonts.policy", "global", "--env", "G"])
        .assert_exit(0);

    let show = iso.isotrace(["env", "show", "G"]);
    assert_eq!(show.status, Status::Exited(125), "G does not exist yet");
    install_font(&iso, "G", &font, &dir, &file);
    assert_eq!(fs::read(&file).unwrap(), fs::read(&font).unwrap());
    let show = iso.isotrace(["env", "show", "G"]).stdout_str();
    assert!(
        show.contains("policies: libraries env, fonts global\n"),
        "{show}"
    );
    assert!(show.contains(&format!(" {LOCAL_FONTS} ")), "{show}");
    // fc-cache in the env refreshed the host's own cache directory.
    let caches = restore.added(FONT_CACHE);
    assert!(
        caches.iter().any(|p| path_str(p).contains(".cache-")),
        "no new cache file in {FONT_CACHE}: {caches:?}"
    );
    let listed = format!("{file}: ");
    for (who, list) in [
        ("env G", env_fc_list(&iso, "G")),
        ("the host", host_fc_list(&iso)),
        ("env other", env_fc_list(&iso, "other")),
    ] {
        assert!(list.contains(&listed), "fc-list in {who}:\n{list}");
    }
    let upper = iso.upper("G").join(dir.trim_start_matches('/'));
    assert!(!upper.exists(), "{} is in env G's layer", upper.display());
    let diff = iso.isotrace(["env", "diff", "G"]);
    assert!(!diff.stdout_str().contains(&token), "{}", diff.describe());
}

/// libTOKEN.so.1 (its soname; `token()` returns TOKEN) and a program
/// linked against it with no rpath, built natively in `dir`.
fn build_library(dir: &Path, name: &str, token: &str) -> (String, String) {
    write_file(
        dir,
        "lib.c",
        format!("const char *token(void) {{ return \"{token}\"; }}\n"),
    );
    write_file(
        dir,
        "prog.c",
        "#include <stdio.h>\nconst char *token(void);\n\
         int main(void) { puts(token()); return 0; }\n",
    );
    let lib = dir.join(name);
    let prog = dir.join("prog");
    let gcc = |args: &[&str]| {
        let mut cmd = Command::new("gcc");
        cmd.args(args);
        let (status, _, err) = execute(&mut cmd, None, ISO_TIMEOUT, None);
        assert_eq!(
            status,
            Status::Exited(0),
            "{}",
            String::from_utf8_lossy(&err)
        );
    };
    let (lib_s, prog_s) = (path_str(&lib), path_str(&prog));
    let c = |f: &str| path_str(&dir.join(f)).to_owned();
    gcc(&[
        "-shared",
        "-fPIC",
        &format!("-Wl,-soname,{name}"),
        "-o",
        lib_s,
        &c("lib.c"),
    ]);
    gcc(&["-o", prog_s, &c("prog.c"), lib_s]);
    (lib_s.to_owned(), prog_s.to_owned())
}

/// The multiarch directory the loader searches by default.
fn multiarch_dir() -> String {
    format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH)
}

#[test]
fn library_policy_env_keeps_an_installed_library_in_the_env() {
    if !is_root() || !have_program("gcc") {
        eprintln!("skipped: needs root (to install into the system library dir) and gcc");
        return;
    }
    let iso = Iso::new();
    let token = unique_token("lib");
    let name = format!("lib{token}.so.1");
    let (lib, prog) = build_library(&iso.host(), &name, &token);
    let target = format!("{}/{name}", multiarch_dir());
    iso.litter(&target);
    let host = host_snapshot(&iso.host());

    iso.sh_ok("L", &format!("install -m 644 {lib} {target}"));
    let run = iso.isotrace(["--env", "L", "--", &prog]);
    run.assert_exit(0);
    assert_eq!(run.stdout_str(), format!("{token}\n"), "{}", run.describe());
    assert_absent_on_host(&target);
    assert_ne!(
        iso.native_sh(&prog).status,
        Status::Exited(0),
        "runs natively"
    );
    assert_ne!(
        iso.isotrace(["--env", "M", "--", &prog]).status,
        Status::Exited(0)
    );
    assert!(iso
        .upper("L")
        .join(target.trim_start_matches('/'))
        .is_file());
    host.assert_unchanged();
}

#[test]
fn library_policy_global_installs_into_the_host_library_dir() {
    if !is_root() || !have_program("gcc") {
        eprintln!("skipped: needs root (to install into the system library dir) and gcc");
        return;
    }
    let libdir = multiarch_dir();
    let restore = HostRestore::new(&[&libdir], &[]);
    let iso = Iso::new();
    let token = unique_token("lib");
    let name = format!("lib{token}.so.1");
    let (lib, prog) = build_library(&iso.host(), &name, &token);
    let target = format!("{libdir}/{name}");
    iso.isotrace(["config", "set", "libraries.policy", "global", "--env", "G"])
        .assert_exit(0);

    iso.sh_ok("G", &format!("install -m 644 {lib} {target}"));
    assert_eq!(restore.added(&libdir), [PathBuf::from(&target)]);
    assert_eq!(fs::read(&target).unwrap(), fs::read(&lib).unwrap());
    let want = format!("{token}\n");
    for (who, run) in [
        ("env G", iso.isotrace(["--env", "G", "--", &prog])),
        ("env M", iso.isotrace(["--env", "M", "--", &prog])),
        ("the host", iso.native_sh(&prog)),
    ] {
        run.assert_exit(0);
        assert_eq!(run.stdout_str(), want, "{who}\n{}", run.describe());
    }
    assert!(!iso.upper("G").join(target.trim_start_matches('/')).exists());
    // Removal goes to the global location too.
    iso.sh_ok("G", &format!("rm {target}"));
    assert_absent_on_host(&target);
}
