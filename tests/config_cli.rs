//! Issue #4, settings and rules: `isotrace config show|set|unset` and
//! `isotrace rules list|add|rm`, each test with a fresh HOME,
//! XDG_CONFIG_HOME, ISOTRACE_HOME and system file
//! (`$ISOTRACE_SYSTEM_CONFIG`, so /etc is never read or written).

mod common;

use common::{assert_absent_on_host, Iso, Run, Status};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// One test's world: the isolation fixture plus its config locations.
struct World {
    iso: Iso,
}

impl World {
    fn new() -> World {
        let iso = Iso::new();
        fs::create_dir(iso.root().join("xdg")).unwrap();
        World { iso }
    }

    fn system(&self) -> PathBuf {
        self.iso.root().join("system.toml")
    }

    fn user(&self) -> PathBuf {
        self.iso.root().join("xdg/isotrace/config.toml")
    }

    fn write_user(&self, text: &str) {
        fs::create_dir_all(self.user().parent().unwrap()).unwrap();
        fs::write(self.user(), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.iso.command(args);
        cmd.env("XDG_CONFIG_HOME", self.iso.root().join("xdg"))
            .env("ISOTRACE_SYSTEM_CONFIG", self.system());
        self.iso.execute(cmd)
    }

    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        run.assert_exit(0);
        run.stdout_str()
    }

    /// `config show ARGS --json` as a map.
    fn shown(&self, args: &[&str]) -> Value {
        let mut all = vec!["config", "show", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("config show --json prints JSON")
    }
}

/// An isotrace error: exit 125, one line on stderr containing each needle.
fn assert_usage_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.status, Status::Exited(125), "{}", run.describe());
    let err = run.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
    for n in needles {
        assert!(err.contains(n), "error should name {n:?}: {err:?}");
    }
}

/// The `config show` line of `key`: (value, source).
fn line_of(text: &str, key: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in\n{text}"));
    let (left, source) = line.split_once("    # ").expect("key = value    # source");
    let value = left.split_once(" = ").unwrap().1.trim_end();
    (value.to_string(), source.to_string())
}

#[test]
fn defaults_have_source_default() {
    let w = World::new();
    let text = w.ok(&["config", "show"]);
    let keys = [
        ("isolation.exceptions", "[]"),
        ("isolation.read_only_host", "true"),
        ("isolation.lazy_listings", "true"),
        ("libraries.policy", "\"env\""),
        ("fonts.policy", "\"env\""),
        ("trace.default", "false"),
        ("checkpoint.every", "\"none\""),
    ];
    assert_eq!(text.lines().count(), keys.len(), "{text}");
    for (key, value) in keys {
        assert_eq!(line_of(&text, key), (value.into(), "default".into()));
    }
    let json = w.shown(&[]);
    for (key, _) in keys {
        assert_eq!(json[key]["source"], "default", "{json:#}");
        assert!(json[key].get("origin").is_none());
    }
    assert_eq!(json["libraries.policy"]["value"], "env");
    assert_eq!(json["checkpoint.every"]["value"], Value::Null);
}

#[test]
fn system_then_user_file() {
    let w = World::new();
    fs::write(
        w.system(),
        "[fonts]\npolicy = \"global\"\n[trace]\ndefault = true\n",
    )
    .unwrap();
    w.write_user("[trace]\ndefault = false\n[checkpoint]\nevery = \"30s\"\n");
    let text = w.ok(&["config", "show"]);
    let system = format!("system {}", w.system().display());
    let user = format!("user {}", w.user().display());
    assert_eq!(
        line_of(&text, "fonts.policy"),
        ("\"global\"".into(), system)
    );
    assert_eq!(
        line_of(&text, "trace.default"),
        ("false".into(), user.clone())
    );
    assert_eq!(line_of(&text, "checkpoint.every"), ("\"30s\"".into(), user));
    assert_eq!(line_of(&text, "libraries.policy").1, "default");
    let json = w.shown(&[]);
    assert_eq!(json["checkpoint.every"]["source"], "user");
    assert_eq!(
        json["checkpoint.every"]["origin"],
        w.user().to_str().unwrap()
    );
}

#[test]
fn user_file_defaults_to_home_config() {
    let w = World::new();
    let home_cfg = w.iso.root().join("user/.config/isotrace/config.toml");
    fs::create_dir_all(home_cfg.parent().unwrap()).unwrap();
    fs::write(&home_cfg, "[libraries]\npolicy = \"global\"\n").unwrap();
    let mut cmd = w.iso.command(["config", "show"]);
    cmd.env("ISOTRACE_SYSTEM_CONFIG", w.system());
    let run = w.iso.execute(cmd);
    run.assert_exit(0);
    let source = format!("user {}", home_cfg.display());
    let want = ("\"global\"".to_string(), source);
    assert_eq!(line_of(&run.stdout_str(), "libraries.policy"), want);
}

#[test]
fn env_and_app_overrides_win() {
    let w = World::new();
    fs::write(w.system(), "[fonts]\npolicy = \"global\"\n").unwrap();
    w.write_user("[fonts]\npolicy = \"env\"\n[libraries]\npolicy = \"env\"\n");
    w.ok(&["config", "set", "fonts.policy", "global", "--env", "e"]);
    w.ok(&["config", "set", "libraries.policy", "global", "--env", "e"]);
    w.ok(&["config", "set", "fonts.policy", "env", "--app", "python3"]);
    let record = w.iso.home().join("settings/env/e.json");
    let rec: Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["values"]["fonts.policy"], "global");
    assert!(w.iso.home().join("settings/app/python3.json").is_file());

    let text = w.ok(&["config", "show"]);
    assert!(line_of(&text, "fonts.policy").1.starts_with("user "));
    let text = w.ok(&["config", "show", "--env", "e"]);
    assert_eq!(
        line_of(&text, "fonts.policy"),
        ("\"global\"".into(), "env e".into())
    );
    assert_eq!(line_of(&text, "libraries.policy").1, "env e");
    let text = w.ok(&["config", "show", "--env", "e", "--app", "python3"]);
    assert_eq!(
        line_of(&text, "fonts.policy"),
        ("\"env\"".into(), "app python3".into())
    );
    assert_eq!(line_of(&text, "libraries.policy").1, "env e");
    let json = w.shown(&["--env", "e", "--app", "python3"]);
    assert_eq!(json["fonts.policy"]["source"], "app");
    assert_eq!(json["fonts.policy"]["origin"], "python3");
    assert_eq!(json["libraries.policy"]["source"], "env");
    // Another env does not see e's overrides.
    let text = w.ok(&["config", "show", "--env", "other"]);
    assert!(line_of(&text, "libraries.policy").1.starts_with("user "));
    // unset lets the next source down show through.
    w.ok(&["config", "unset", "fonts.policy", "--app", "python3"]);
    let text = w.ok(&["config", "show", "--env", "e", "--app", "python3"]);
    assert_eq!(line_of(&text, "fonts.policy").1, "env e");
    assert!(!w.iso.home().join("settings/app/python3.json").exists());
}

#[test]
fn malformed_toml_names_file_and_line() {
    let w = World::new();
    w.write_user("[fonts]\npolicy = \"env\"\n\n[trace]\ndefault = maybe\n");
    let run = w.run(&["config", "show"]);
    let place = format!("{}:5:", w.user().display());
    assert_usage_error(&run, &[&place, "trace.default"]);
    // A broken file stops runs' configuration too, and `config set` does
    // not overwrite it.
    let run = w.run(&["config", "set", "fonts.policy", "global"]);
    assert_usage_error(&run, &[&place]);
    assert!(fs::read_to_string(w.user()).unwrap().contains("maybe"));

    fs::write(w.system(), "[libraries]\npolicy = [\"env\"\n").unwrap();
    let run = w.run(&["config", "show"]);
    assert_usage_error(&run, &[&w.system().display().to_string()]);
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let w = World::new();
    w.write_user("[fonts]\npolicy = \"env\"\npolcy = \"global\"\n");
    let place = format!("{}:3:", w.user().display());
    assert_usage_error(
        &w.run(&["config", "show"]),
        &[&place, "fonts.polcy", "unknown key"],
    );
    w.write_user("colour = \"red\"\n");
    assert_usage_error(&w.run(&["config", "show"]), &["colour", "unknown key"]);
    w.write_user("[checkpoint]\nevery = \"soon\"\n");
    let place = format!("{}:2:", w.user().display());
    assert_usage_error(
        &w.run(&["config", "show"]),
        &[&place, "checkpoint.every", "soon"],
    );
    fs::remove_file(w.user()).unwrap();

    let run = w.run(&["config", "set", "fonts.polcy", "env"]);
    assert_usage_error(&run, &["fonts.polcy", "unknown key"]);
    let run = w.run(&["config", "set", "fonts.policy", "both"]);
    assert_usage_error(&run, &["fonts.policy", "both"]);
    let run = w.run(&["config", "set", "trace.default", "yes", "--env", "e"]);
    assert_usage_error(&run, &["trace.default", "yes"]);
    let run = w.run(&["config", "set", "isolation.exceptions", "relative/path"]);
    assert_usage_error(&run, &["isolation.exceptions", "relative/path"]);
    let run = w.run(&["config", "set", "fonts.policy", "env", "--env", "../x"]);
    assert_usage_error(&run, &["../x"]);
    assert!(!w.user().exists(), "nothing written on error");
}

#[test]
fn config_set_round_trip() {
    let w = World::new();
    w.write_user("[trace]\ndefault = true\n");
    let sets = [
        ("libraries.policy", "global", "\"global\""),
        ("fonts.policy", "global", "\"global\""),
        ("checkpoint.every", "90s", "\"90s\""),
        (
            "isolation.exceptions",
            "/srv/a,/mnt/b",
            "[\"/srv/a\", \"/mnt/b\"]",
        ),
    ];
    for (key, value, _) in sets {
        w.ok(&["config", "set", key, value]);
    }
    let user = format!("user {}", w.user().display());
    let text = w.ok(&["config", "show"]);
    for (key, _, shown) in sets {
        assert_eq!(line_of(&text, key), (shown.to_string(), user.clone()));
    }
    // The key that was there before is kept.
    assert_eq!(
        line_of(&text, "trace.default"),
        ("true".into(), user.clone())
    );
    // The file stays valid TOML of the documented shape.
    let file: toml::Table = fs::read_to_string(w.user()).unwrap().parse().unwrap();
    assert_eq!(file["libraries"]["policy"].as_str(), Some("global"));
    assert_eq!(file["isolation"]["exceptions"][1].as_str(), Some("/mnt/b"));
    w.ok(&["config", "set", "checkpoint.every", "none"]);
    let text = w.ok(&["config", "show"]);
    assert_eq!(
        line_of(&text, "checkpoint.every"),
        ("\"none\"".into(), user)
    );
    w.ok(&["config", "unset", "checkpoint.every"]);
    let text = w.ok(&["config", "show"]);
    assert_eq!(line_of(&text, "checkpoint.every").1, "default");
}

#[test]
fn config_set_creates_the_user_file() {
    let w = World::new();
    assert!(!w.user().exists());
    w.ok(&["config", "set", "trace.default", "true"]);
    assert!(w.user().is_file());
    let json = w.shown(&[]);
    assert_eq!(json["trace.default"]["value"], true);
    assert_eq!(json["trace.default"]["source"], "user");
}

/// The `rules list --json` entry for `path`, if listed.
fn listed(w: &World, path: &Path) -> Option<Value> {
    let out: Value = serde_json::from_str(&w.ok(&["rules", "list", "--json"])).unwrap();
    let items = out["exceptions"].as_array().unwrap().clone();
    items
        .into_iter()
        .find(|e| e["path"] == path.to_str().unwrap())
}

#[test]
fn rules_list_add_rm() {
    let w = World::new();
    for p in ["/proc", "/sys", "/dev"] {
        assert_eq!(listed(&w, Path::new(p)).unwrap()["source"], "builtin");
    }
    let shared = w.iso.root().join("shared");
    let shared_s = shared.to_str().unwrap();
    w.ok(&["rules", "add", shared_s, "--note", "team storage"]);
    let e = listed(&w, &shared).expect("added exception listed");
    assert_eq!(e["source"], "rules");
    assert_eq!(e["note"], "team storage");
    let text = w.ok(&["rules", "list"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(shared_s) && l.ends_with(": team storage")),
        "{text}"
    );
    // Exceptions from the configuration are listed with their source.
    w.ok(&["config", "set", "isolation.exceptions", "/srv/cfg"]);
    assert_eq!(listed(&w, Path::new("/srv/cfg")).unwrap()["source"], "user");
    let run = w.run(&["rules", "rm", "/srv/cfg"]);
    assert_usage_error(&run, &["/srv/cfg", "isolation.exceptions"]);

    w.ok(&["rules", "rm", shared_s]);
    assert!(listed(&w, &shared).is_none());
    assert_usage_error(&w.run(&["rules", "rm", shared_s]), &[shared_s]);
    assert_usage_error(&w.run(&["rules", "rm", "/proc"]), &["/proc", "built in"]);
}

#[test]
fn rules_add_refuses_bad_paths() {
    let w = World::new();
    let inside = w.iso.home().join("envs");
    for bad in ["relative", "/", "/srv/../etc", "/srv/./x", "/srv//x"] {
        assert_usage_error(&w.run(&["rules", "add", bad]), &[bad]);
    }
    let inside_s = inside.to_str().unwrap();
    assert_usage_error(&w.run(&["rules", "add", inside_s]), &[inside_s, "store"]);
    let home_s = w.iso.home().to_str().unwrap().to_string();
    assert_usage_error(&w.run(&["rules", "add", &home_s]), &[&home_s, "store"]);
    assert!(!w.iso.home().join("rules.json").exists(), "nothing saved");
}

/// `rules add DIR` makes DIR public in every environment at once (the next
/// run), while other paths stay private; `rules rm` restores isolation.
#[test]
fn exception_writes_through_to_the_host() {
    let w = World::new();
    let shared = w.iso.root().join("shared");
    fs::create_dir(&shared).unwrap();
    let shared_s = shared.to_str().unwrap();
    let private = w.iso.host().join("private");
    let script = |name: &str| {
        format!(
            "echo x > {shared_s}/{name} && echo y > {} && cat {shared_s}/{name}",
            private.display()
        )
    };
    w.ok(&["rules", "add", shared_s]);
    let run = w.run(&["--env", "e", "--", "/bin/sh", "-c", &script("f")]);
    run.assert_exit(0);
    assert_eq!(run.stdout_str(), "x\n");
    assert_eq!(fs::read_to_string(shared.join("f")).unwrap(), "x\n");
    assert_absent_on_host(&private);
    assert!(w
        .iso
        .upper("e")
        .join(private.strip_prefix("/").unwrap())
        .is_file());
    assert!(!w
        .iso
        .upper("e")
        .join(shared.strip_prefix("/").unwrap())
        .join("f")
        .exists());
    // The atomic-replace idiom inside an exception, to a name that does
    // not exist yet (fontconfig's cache writes): one rename(2) on the host
    // (python's os.rename, which unlike mv has no copy fallback on EXDEV).
    let replace = format!(
        "echo z > {shared_s}/n.NEW && /usr/bin/python3 -c \
         'import os; os.rename(\"{shared_s}/n.NEW\", \"{shared_s}/n\")'"
    );
    let run = w.run(&["--env", "e", "--", "/bin/sh", "-c", &replace]);
    run.assert_exit(0);
    assert_eq!(fs::read_to_string(shared.join("n")).unwrap(), "z\n");
    assert_absent_on_host(shared.join("n.NEW"));

    w.ok(&["rules", "rm", shared_s]);
    let run = w.run(&["--env", "e", "--", "/bin/sh", "-c", &script("g")]);
    run.assert_exit(0);
    assert_eq!(run.stdout_str(), "x\n");
    assert_absent_on_host(shared.join("g"));
    let in_env = w
        .iso
        .upper("e")
        .join(shared.strip_prefix("/").unwrap())
        .join("g");
    assert_eq!(fs::read_to_string(in_env).unwrap(), "x\n");
    assert_absent_on_host(&private);
}

#[test]
fn config_exceptions_apply_to_runs_of_that_env_only() {
    let w = World::new();
    let shared = w.iso.root().join("cfgshared");
    fs::create_dir(&shared).unwrap();
    let shared_s = shared.to_str().unwrap();
    w.ok(&[
        "config",
        "set",
        "isolation.exceptions",
        shared_s,
        "--env",
        "e",
    ]);
    // In env e the configured exception is public: the write reaches the host.
    let run = w.run(&[
        "--env",
        "e",
        "--",
        "/bin/sh",
        "-c",
        &format!("echo e > {shared_s}/f"),
    ]);
    run.assert_exit(0);
    assert_eq!(fs::read_to_string(shared.join("f")).unwrap(), "e\n");
    // In env other it is not: the write stays private.
    let run = w.run(&[
        "--env",
        "other",
        "--",
        "/bin/sh",
        "-c",
        &format!("echo o > {shared_s}/g"),
    ]);
    run.assert_exit(0);
    assert_absent_on_host(shared.join("g"));
}

#[test]
fn trace_default_applies_to_runs_and_app_overrides_win() {
    let w = World::new();
    w.write_user("[trace]\ndefault = true\n");
    let run = w.run(&["--no-isolation", "--", "/bin/cat", "/etc/hostname"]);
    run.assert_exit(0);
    assert!(
        run.stderr_str()
            .contains("openat(AT_FDCWD, \"/etc/hostname\""),
        "trace.default = true traces the run: {}",
        run.describe()
    );
    // An app override turns it back off for that program only.
    w.ok(&["config", "set", "trace.default", "false", "--app", "cat"]);
    let run = w.run(&["--no-isolation", "--", "/bin/cat", "/etc/hostname"]);
    run.assert_exit(0);
    assert!(!run.stderr_str().contains("openat("), "{}", run.describe());
}
