//! Issue #4, the CI sandbox wrapper around a real build:
//! `isotrace run --rm --report R.json -- make -C SRC check` compiles and
//! tests a small C project in a throwaway env. The status passes through,
//! the report names what was compiled, written and run, and nothing is
//! left on the host: not the build's outputs, not the env.

mod common;

use common::{have_program, host_snapshot, path_str, write_file, Iso, Run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// A C project with a library part, a header, a program and a `check`
/// target that runs the program and compares its output with `expected`.
fn write_project(dir: &Path, expected: &str) {
    write_file(dir, "calc.h", "int add(int a, int b);\n");
    write_file(
        dir,
        "calc.c",
        "#include \"calc.h\"\nint add(int a, int b) { return a + b; }\n",
    );
    write_file(
        dir,
        "main.c",
        "#include <stdio.h>\n#include <stdlib.h>\n#include \"calc.h\"\n\
         int main(int argc, char **argv) {\n\
           if (argc != 3) return 2;\n\
           printf(\"%d\\n\", add(atoi(argv[1]), atoi(argv[2])));\n\
           return 0;\n\
         }\n",
    );
    write_file(dir, "expected.txt", expected);
    write_file(
        dir,
        "Makefile",
        "CFLAGS = -O2 -Wall\n\
         calc: main.o calc.o\n\
         \t$(CC) -o $@ main.o calc.o\n\
         %.o: %.c calc.h\n\
         \t$(CC) $(CFLAGS) -c -o $@ $<\n\
         check: calc\n\
         \t./calc 2 3 > check.out\n\
         \tcmp check.out expected.txt\n\
         \t@echo PASS\n\
         .PHONY: check\n",
    );
}

/// Runs the wrapper; returns the run and the parsed report.
fn wrap(iso: &Iso, project: &Path, report: &Path) -> (Run, Value) {
    let run = iso.isotrace([
        "run",
        "--rm",
        "--report",
        path_str(report),
        "--",
        "make",
        "-C",
        path_str(project),
        "check",
    ]);
    let text = fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("no report ({e})\n{}", run.describe()));
    (run, serde_json::from_str(&text).unwrap())
}

/// The paths the report lists with access `how`.
fn with(report: &Value, how: &str) -> BTreeSet<String> {
    report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter(|p| p.get(how).is_some())
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_host_clean(iso: &Iso, host: &common::HostSnapshot) {
    host.assert_unchanged();
    let envs: Vec<_> = fs::read_dir(iso.home().join("envs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(envs.is_empty(), "--rm left {envs:?} in the store");
}

#[test]
fn rm_report_around_make_check_lists_the_build_and_leaves_no_trace() {
    if !have_program("make") || !have_program("cc") {
        eprintln!("skipped: make and cc are needed");
        return;
    }
    let iso = Iso::new();
    let project = iso.host().join("calc");
    write_project(&project, "5\n");
    let host = host_snapshot(&iso.host());
    let report = iso.root().join("report.json");

    let (run, r) = wrap(&iso, &project, &report);
    run.assert_exit(0);
    assert!(run.stdout_str().contains("PASS\n"), "{}", run.describe());
    assert_eq!(r["exit_status"], 0);
    let p = |f: &str| path_str(&project.join(f)).to_owned();
    let created = with(&r, "created");
    for f in ["main.o", "calc.o", "calc", "check.out"] {
        assert!(created.contains(&p(f)), "{f} not created: {created:?}");
    }
    let read = with(&r, "read");
    for f in ["main.c", "calc.c", "calc.h", "Makefile", "expected.txt"] {
        assert!(read.contains(&p(f)), "{f} not read: {read:?}");
    }
    let executed = with(&r, "executed");
    assert!(executed.contains(&p("calc")), "{executed:?}");
    assert!(
        executed.iter().any(|e| e.ends_with("/make")),
        "{executed:?}"
    );
    // The compiler proper and the assembler ran for each source file.
    for tool in ["/cc1", "/as"] {
        assert!(
            executed.iter().any(|e| e.ends_with(tool)),
            "{tool}: {executed:?}"
        );
    }
    assert_host_clean(&iso, &host);
}

#[test]
fn rm_report_around_a_failing_make_check_passes_the_status_through() {
    if !have_program("make") || !have_program("cc") {
        eprintln!("skipped: make and cc are needed");
        return;
    }
    let iso = Iso::new();
    let project = iso.host().join("calc");
    write_project(&project, "6\n");
    let host = host_snapshot(&iso.host());
    let report = iso.root().join("report.json");

    let (run, r) = wrap(&iso, &project, &report);
    // make exits 2 when a recipe fails (make(1), EXIT STATUS).
    run.assert_exit(2);
    assert!(!run.stdout_str().contains("PASS"), "{}", run.describe());
    assert_eq!(r["exit_status"], 2);
    let written = with(&r, "created");
    assert!(written.contains(path_str(&project.join("check.out"))));
    assert_host_clean(&iso, &host);
}
