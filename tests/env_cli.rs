//! Issue #4, environment lifecycle: `isotrace env create|list|show|copy|rm|
//! export|import|diff`, each with a fresh `ISOTRACE_HOME`, and the
//! installation-free deployment path (export from one store, import into
//! another, run there).

mod common;

use common::{assert_absent_on_host, unique_token, write_file, Iso, Run, Status};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn ok(run: Run) -> Run {
    run.assert_exit(0);
    run
}

fn json(run: &Run) -> Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", run.describe()))
}

fn names(iso: &Iso) -> Vec<String> {
    let run = ok(iso.isotrace(["env", "list"]));
    run.stdout_str().lines().map(str::to_owned).collect()
}

/// Everything under `$ISOTRACE_HOME/envs`, dot-named staging dirs included.
fn store_entries(iso: &Iso) -> Vec<String> {
    fs::read_dir(iso.home().join("envs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An isotrace error: `code`, one line on stderr containing `needle`.
fn assert_error(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.status, Status::Exited(code), "{}", run.describe());
    let err = run.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
    assert!(
        err.contains(needle),
        "error should name {needle:?}: {err:?}"
    );
}

#[test]
fn create_list_show_rm() {
    let iso = Iso::new();
    assert!(names(&iso).is_empty());
    ok(iso.isotrace(["env", "create", "b"]));
    ok(iso.isotrace(["env", "create", "a"]));
    assert_eq!(names(&iso), ["a", "b"]);
    let list = json(&ok(iso.isotrace(["env", "list", "--json"])));
    let listed: Vec<&str> = list["envs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["a", "b"]);
    assert_error(
        &iso.isotrace(["env", "create", "a"]),
        125,
        "a already exists",
    );

    let show = ok(iso.isotrace(["env", "show", "a"])).stdout_str();
    for line in [
        "name: a",
        "base: /",
        "size: 0 bytes",
        "files: 0",
        "groups: none running",
    ] {
        assert!(show.contains(line), "{line:?} in {show}");
    }
    assert!(
        show.contains("rules: global exceptions /proc /sys /dev"),
        "{show}"
    );
    let show = json(&ok(iso.isotrace(["env", "show", "a", "--json"])));
    assert_eq!(show["name"], "a");
    assert_eq!(show["base"], "/");
    assert_eq!(show["size_bytes"], 0);
    assert_eq!(show["groups"], Value::Array(vec![]));
    assert_eq!(show["rules"]["exceptions"][0]["prefix"], "/proc");

    ok(iso.isotrace(["env", "rm", "a"]));
    assert_eq!(names(&iso), ["b"]);
    ok(iso.isotrace(["env", "rm", "--force", "b"]));
    assert!(names(&iso).is_empty());
    assert!(store_entries(&iso).is_empty(), "{:?}", store_entries(&iso));
}

#[test]
fn unknown_and_bad_names_are_usage_errors() {
    let iso = Iso::new();
    let out = iso.root().join("x.tar");
    let out = out.to_str().unwrap();
    for args in [
        vec!["env", "show", "X"],
        vec!["env", "show", "X", "--json"],
        vec!["env", "diff", "X"],
        vec!["env", "rm", "X"],
        vec!["env", "copy", "X", "Y"],
        vec!["env", "create", "Y", "--from", "X"],
        vec!["env", "export", "X", "-o", out],
    ] {
        let run = iso.isotrace(&args);
        assert_error(&run, 125, "no such environment: X");
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.describe());
    }
    for bad in ["../x", "a/b", "..", ".hidden"] {
        assert_error(&iso.isotrace(["env", "create", bad]), 125, bad);
    }
    assert_absent_on_host(iso.root().join("x.tar"));
    assert!(store_entries(&iso).is_empty(), "{:?}", store_entries(&iso));
}

/// The end-to-end story of the issue: a program changes env A; diff
/// reports it; a copy and an import into another store see the same files,
/// with the host untouched throughout.
#[test]
fn diff_copy_export_import() {
    let iso = Iso::new();
    let host = iso.host();
    write_file(&host, "del", "doomed\n");
    write_file(&host, "mod", "orig\n");
    let tmp = format!("/tmp/{}", unique_token("envcli"));
    iso.litter(&tmp);
    let (del, modf, f) = (iso.hp("del"), iso.hp("mod"), format!("{tmp}/f"));
    iso.sh_ok(
        "A",
        &format!("mkdir {tmp} && echo content > {f} && rm {del} && echo more >> {modf}"),
    );
    assert_absent_on_host(&tmp);
    assert_eq!(fs::read_to_string(host.join("del")).unwrap(), "doomed\n");
    assert_eq!(fs::read_to_string(host.join("mod")).unwrap(), "orig\n");

    let diff = ok(iso.isotrace(["env", "diff", "A"])).stdout_str();
    let got: BTreeSet<&str> = diff.lines().collect();
    let want: BTreeSet<String> = [
        format!("A {tmp}"),
        format!("A {f}"),
        format!("D {del}"),
        format!("M {modf}"),
    ]
    .into();
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(got, want, "env diff A:\n{diff}");
    assert_eq!(diff.lines().count(), 4, "{diff}");
    let dj = json(&ok(iso.isotrace(["env", "diff", "A", "--json"])));
    let changes = dj["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 4, "{dj}");
    assert!(changes.contains(&serde_json::json!({"status": "A", "path": f, "kind": "file"})));
    assert!(changes.contains(&serde_json::json!({"status": "D", "path": del, "kind": "file"})));

    ok(iso.isotrace(["env", "copy", "A", "B"]));
    let cat = ok(iso.isotrace(["--env", "B", "--", "cat", &f, &modf]));
    assert_eq!(cat.stdout_str(), "content\norig\nmore\n");
    ok(iso.isotrace(["env", "create", "B2", "--from", "A"]));
    iso.sh_ok("B2", &format!("test ! -e {del}"));
    // The copy is independent of its source.
    iso.sh_ok("B", &format!("echo b-only > {f}"));
    let cat = ok(iso.isotrace(["--env", "A", "--", "cat", &f]));
    assert_eq!(cat.stdout_str(), "content\n");

    let tar = iso.root().join("a.tar");
    ok(iso.isotrace(["env", "export", "A", "-o", tar.to_str().unwrap()]));
    let other = Iso::new();
    ok(other.isotrace(["env", "import", tar.to_str().unwrap(), "--name", "C"]));
    assert_eq!(names(&other), ["C"]);
    let cat = ok(other.isotrace(["--env", "C", "--", "cat", &f, &modf]));
    assert_eq!(cat.stdout_str(), "content\norig\nmore\n");
    other.sh_ok("C", &format!("test ! -e {del} && test -e {modf}"));
    assert_eq!(fs::read_to_string(host.join("del")).unwrap(), "doomed\n");
    assert_absent_on_host(&tmp);
    // Imported under its exported name by default.
    ok(other.isotrace(["env", "import", tar.to_str().unwrap()]));
    assert_eq!(names(&other), ["A", "C"]);
    assert_error(
        &other.isotrace(["env", "import", tar.to_str().unwrap()]),
        125,
        "A already exists",
    );
}

/// A minimal manifest for hand-made archives.
fn manifest(entries: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "isotrace-env", "version": 1,
        "env": {"version": 1, "name": "evil", "created": 0, "base": "/"},
        "rules": {"version": 1, "exceptions": []},
        "entries": entries,
    }))
    .unwrap()
}

/// (name, type, link target, data) of one hand-made tar entry.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// A tar whose entries' names are written raw into the header (the tar
/// crate's own set_path refuses `..`, as it should).
fn raw_tar(path: &Path, entries: &[RawEntry]) {
    let mut b = tar::Builder::new(Vec::new());
    let m = manifest(entries.len() as u64);
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "isotrace-env.json", m.as_slice())
        .unwrap();
    for (name, ty, link, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(*ty);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn assert_import_refused(iso: &Iso, tar: &Path, needle: &str) {
    let run = iso.isotrace(["env", "import", tar.to_str().unwrap(), "--name", "N"]);
    assert_eq!(run.status, Status::Exited(1), "{}", run.describe());
    let err = run.stderr_str();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains(tar.to_str().unwrap()), "names the file: {err}");
    assert!(err.contains(needle), "{needle:?} in {err}");
    assert!(store_entries(iso).is_empty(), "{:?}", store_entries(iso));
}

#[test]
fn truncated_or_corrupt_archives_create_nothing() {
    let iso = Iso::new();
    let big: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    write_file(&iso.host(), "big", &big);
    iso.sh_ok("A", &format!("echo x >> {}; touch a b c", iso.hp("big")));
    let tar = iso.root().join("a.tar");
    ok(iso.isotrace(["env", "export", "A", "-o", tar.to_str().unwrap()]));
    let bytes = fs::read(&tar).unwrap();
    let other = Iso::new();
    let cut = other.root().join("cut.tar");
    // Mid-data, mid-header, and at an entry boundary (a well-formed but
    // shorter tar: only the manifest's count reveals it).
    for len in [bytes.len() / 2, 512 * 3 + 100, 512 * 3] {
        fs::write(&cut, &bytes[..len]).unwrap();
        assert_import_refused(&other, &cut, "truncated");
    }
    let junk = other.root().join("junk.tar");
    fs::write(&junk, b"this is not a tar file at all".repeat(40)).unwrap();
    assert_import_refused(&other, &junk, "not an isotrace env archive");
    let mut flipped = bytes.clone();
    flipped[512 * 2 + 10] ^= 0xff;
    fs::write(&cut, &flipped).unwrap();
    assert_import_refused(&other, &cut, "corrupt");
}

#[test]
fn hostile_archives_are_refused() {
    let iso = Iso::new();
    let tar = iso.root().join("evil.tar");
    let outside = format!("/tmp/{}", unique_token("evil"));
    iso.litter(&outside);
    use tar::EntryType::{Link, Regular, Symlink};
    let cases: Vec<(Vec<RawEntry>, &str)> = vec![
        (vec![(b"../evil", Regular, b"", b"x")], "`..`"),
        (vec![(b"a/../../evil", Regular, b"", b"x")], "`..`"),
        (vec![(b"/abs", Regular, b"", b"x")], "absolute"),
        (vec![(b"hl", Link, b"/etc/passwd", b"")], "hard link"),
        (vec![(b"hl", Link, b"../x", b"")], "hard link"),
        (vec![(b"d/s", Symlink, b"../../x", b"")], "symlink leaves"),
        (
            vec![
                (b"lnk", Symlink, outside.as_bytes(), b""),
                (b"lnk/evil", Regular, b"", b"x"),
            ],
            "below a symlink",
        ),
    ];
    for (entries, needle) in &cases {
        raw_tar(&tar, entries);
        assert_import_refused(&iso, &tar, needle);
    }
    assert_absent_on_host(&outside);
    assert_absent_on_host(iso.home().join("evil"));
    assert_absent_on_host(iso.home().join("envs/evil"));
    // An absolute symlink target is the environment's own business (it is
    // resolved in the merged view), so it is accepted.
    raw_tar(&tar, &[(b"lnk", Symlink, b"/etc/hostname", b"")]);
    ok(iso.isotrace(["env", "import", tar.to_str().unwrap(), "--name", "N"]));
}

/// `config show --env NAME --json`: key to (value, source kind, origin).
fn env_setting(iso: &Iso, env: &str, key: &str) -> (Value, String, String) {
    let shown = json(&ok(iso.isotrace(["config", "show", "--env", env, "--json"])));
    let k = &shown[key];
    (
        k["value"].clone(),
        k["source"].as_str().unwrap_or_default().to_owned(),
        k["origin"].as_str().unwrap_or_default().to_owned(),
    )
}

/// An env's own settings travel with it: export carries them, import
/// restores them under the new name; a setting the importing admin made
/// for that name first is kept; settings this version cannot apply refuse
/// the archive.
#[test]
fn export_carries_the_env_settings_and_import_restores_them() {
    let iso = Iso::new();
    ok(iso.isotrace(["env", "create", "A"]));
    ok(iso.isotrace(["config", "set", "fonts.policy", "global", "--env", "A"]));
    ok(iso.isotrace(["config", "set", "checkpoint.every", "90s", "--env", "A"]));
    let tar = iso.root().join("a.tar");
    let tar = tar.to_str().unwrap();
    ok(iso.isotrace(["env", "export", "A", "-o", tar]));
    // A copy in the same store gets them too.
    ok(iso.isotrace(["env", "copy", "A", "A2"]));
    let copied = env_setting(&iso, "A2", "fonts.policy");
    assert_eq!(copied, ("global".into(), "env".into(), "A2".into()));

    let other = Iso::new();
    ok(other.isotrace(["env", "import", tar, "--name", "B"]));
    let policy = env_setting(&other, "B", "fonts.policy");
    assert_eq!(policy, ("global".into(), "env".into(), "B".into()));
    let every = env_setting(&other, "B", "checkpoint.every");
    assert_eq!(every, ("90s".into(), "env".into(), "B".into()));
    // Nothing leaks to other names or to the exporting store's others.
    let (_, source, _) = env_setting(&other, "A", "fonts.policy");
    assert_eq!(source, "default");

    ok(other.isotrace(["config", "set", "checkpoint.every", "5m", "--env", "D"]));
    let run = ok(other.isotrace(["env", "import", tar, "--name", "D"]));
    assert!(
        run.stderr_str()
            .contains("keeping this store's checkpoint.every"),
        "{}",
        run.describe()
    );
    assert_eq!(env_setting(&other, "D", "checkpoint.every").0, "5m");
    assert_eq!(env_setting(&other, "D", "fonts.policy").0, "global");

    // A hand-made archive carrying a key this version does not know.
    let bad = other.root().join("bad.tar");
    let mut m: Value = serde_json::from_slice(&manifest(0)).unwrap();
    m["settings"] = serde_json::json!({"fonts.policy": "global", "gpu.policy": "on"});
    let m = serde_json::to_vec(&m).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "isotrace-env.json", m.as_slice())
        .unwrap();
    fs::write(&bad, b.into_inner().unwrap()).unwrap();
    let run = other.isotrace(["env", "import", bad.to_str().unwrap(), "--name", "E"]);
    assert_error(&run, 1, "gpu.policy: unknown key");
    assert_eq!(names(&other), ["B", "D"]);
    assert_eq!(env_setting(&other, "E", "fonts.policy").1, "default");
}

/// `sh -c` a command line under a pseudo-terminal (script(1)): what the
/// terminal showed, stdout and stderr together.
fn on_a_terminal(iso: &Iso, line: &str) -> String {
    let home = iso.home();
    let cmd = format!(
        "ISOTRACE_HOME={} TERM=xterm script -qec '{line}' /dev/null",
        home.to_str().unwrap()
    );
    let run = iso.native_sh(&cmd);
    run.assert_exit(0);
    run.stdout_str()
}

/// Export, import and copy draw a progress bar when stderr is a terminal,
/// and print no redraw sequences into a pipe or a log.
#[test]
fn progress_bars_only_on_a_terminal() {
    if !common::have_program("script") {
        eprintln!("skipped: script(1) (util-linux) is not installed");
        return;
    }
    let iso = Iso::new();
    ok(iso.isotrace(["env", "create", "A"]));
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    fs::write(iso.upper("A").join("big"), block.repeat(8)).unwrap();
    let bin = common::isotrace().to_str().unwrap().to_owned();
    let (t1, t2) = (iso.root().join("t1.tar"), iso.root().join("t2.tar"));
    let (t1, t2) = (t1.to_str().unwrap(), t2.to_str().unwrap());
    let cases = [
        (format!("{bin} env export A -o {t1}"), "exporting env A"),
        (format!("{bin} env import {t1} --name I"), "importing "),
        (format!("{bin} env copy A C"), "copying env A to C"),
    ];
    for (line, label) in &cases {
        let shown = on_a_terminal(&iso, line);
        assert!(shown.contains(label), "{label:?} not drawn:\n{shown:?}");
        assert!(shown.contains("MiB"), "no byte count drawn:\n{shown:?}");
        assert!(shown.contains("\x1b[2K"), "no redraw:\n{shown:?}");
    }
    assert_eq!(names(&iso), ["A", "C", "I"]);
    let piped = ok(iso.isotrace(["env", "export", "A", "-o", t2]));
    assert_eq!(
        piped.stderr_str(),
        format!("isotrace: exported env A (1 entries) to {t2}\n")
    );
    let piped = ok(iso.isotrace(["env", "copy", "A", "D"]));
    assert_eq!(piped.stderr_str(), "");
}
