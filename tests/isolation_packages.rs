//! Issue #3 with real installers: dpkg, the dynamic loader's library
//! lookup (the library-conflict pair) and pip. Everything they install
//! exists only in the env; the host's package databases are untouched.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{
    assert_absent_on_host, execute, have_program, host_entry, host_snapshot, is_root, unique_token,
    write_file, Iso, Status, ISO_TIMEOUT, PYTHON,
};

/// Runs a setup command natively and panics if it fails.
fn native(cmd: &mut Command) -> String {
    let (status, out, err) = execute(cmd, None, ISO_TIMEOUT, None);
    assert_eq!(
        status,
        Status::Exited(0),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// A dpkg package name unique to this run (lowercase, digits, '-').
fn package_name() -> String {
    unique_token("pkg").replace("isotrace-", "isotest-")
}

/// Builds `pkg.deb` in `dir`: /usr/bin/PKG-hello, a doc file, and a
/// postinst that writes /etc/PKG.conf.
fn build_deb(dir: &Path, pkg: &str) -> String {
    let root = dir.join("pkgroot");
    write_file(
        &root,
        &format!("usr/bin/{pkg}-hello"),
        format!("#!/bin/sh\necho hello from {pkg}\n"),
    );
    write_file(
        &root,
        &format!("usr/share/doc/{pkg}/README"),
        "a package built by isotrace's tests\n",
    );
    write_file(
        &root,
        "DEBIAN/control",
        format!(
            "Package: {pkg}\nVersion: 1.0-1\nArchitecture: all\n\
             Maintainer: isotrace tests <iso@example.invalid>\n\
             Description: isotrace isolation test package\n"
        ),
    );
    write_file(
        &root,
        "DEBIAN/postinst",
        format!("#!/bin/sh\nset -e\necho \"configured=$1\" > /etc/{pkg}.conf\n"),
    );
    for (f, mode) in [
        (format!("usr/bin/{pkg}-hello"), 0o755),
        ("DEBIAN/postinst".to_owned(), 0o755),
    ] {
        fs::set_permissions(root.join(f), fs::Permissions::from_mode(mode)).unwrap();
    }
    let deb = dir.join(format!("{pkg}.deb"));
    native(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb),
    );
    common::path_str(&deb).to_owned()
}

/// Removes a package that a bug installed on the host, when dropped.
struct HostPackageGuard(String);

impl Drop for HostPackageGuard {
    fn drop(&mut self) {
        let installed = Command::new("dpkg")
            .args(["-s", &self.0])
            .output()
            .is_ok_and(|o| o.status.success());
        if installed {
            eprintln!("purging {} from the host", self.0);
            let _ = Command::new("dpkg").args(["--purge", &self.0]).status();
        }
    }
}

#[test]
fn dpkg_install_and_remove_stay_in_the_env() {
    if !is_root() {
        eprintln!("skipped: dpkg -i needs root");
        return;
    }
    if !have_program("dpkg-deb") {
        eprintln!("skipped: dpkg-deb is not installed");
        return;
    }
    let iso = Iso::new();
    let pkg = package_name();
    let deb = build_deb(&iso.host(), &pkg);
    let _guard = HostPackageGuard(pkg.clone());
    let files = [
        format!("/usr/bin/{pkg}-hello"),
        format!("/usr/share/doc/{pkg}"),
        format!("/etc/{pkg}.conf"),
        format!("/var/lib/dpkg/info/{pkg}.list"),
    ];
    for f in &files {
        iso.litter(f);
    }
    let status = host_entry(Path::new("/var/lib/dpkg/status"));
    let host = host_snapshot(&iso.host());

    let install = iso.sh("e", &format!("dpkg -i {deb}"));
    install.assert_exit(0);
    let check = iso.sh(
        "e",
        &format!(
            "{pkg}-hello && dpkg -s {pkg} | grep '^Status:' && cat /etc/{pkg}.conf && \
             cat /usr/share/doc/{pkg}/README && dpkg -L {pkg} | grep -c {pkg}-hello"
        ),
    );
    check.assert_exit(0);
    assert_eq!(
        check.stdout_str(),
        format!(
            "hello from {pkg}\nStatus: install ok installed\nconfigured=configure\n\
             a package built by isotrace's tests\n1\n"
        ),
        "{}",
        check.describe()
    );
    for f in &files {
        assert_absent_on_host(f);
    }
    assert_eq!(
        host_entry(Path::new("/var/lib/dpkg/status")),
        status,
        "/var/lib/dpkg/status changed on the host"
    );
    let host_dpkg = Command::new("dpkg").args(["-s", &pkg]).output().unwrap();
    assert!(!host_dpkg.status.success(), "the host's dpkg knows {pkg}");

    let remove = iso.sh(
        "e",
        &format!(
            "dpkg -r {pkg} >/dev/null && test ! -e /usr/bin/{pkg}-hello && \
             test ! -e /usr/share/doc/{pkg}/README && \
             {{ dpkg-query -W -f '${{Status}}\\n' {pkg} 2>/dev/null || echo not-installed; }}"
        ),
    );
    remove.assert_exit(0);
    // Without conffiles dpkg -r forgets the package entirely.
    assert!(
        ["deinstall ok config-files\n", "not-installed\n"].contains(&remove.stdout_str().as_str()),
        "{}",
        remove.describe()
    );
    for f in &files {
        assert_absent_on_host(f);
    }
    assert_eq!(
        host_entry(Path::new("/var/lib/dpkg/status")),
        status,
        "/var/lib/dpkg/status changed on the host"
    );
    host.assert_unchanged();
}

/// libisofoo.so.1 returning `version`, built natively into `dir/vN/`.
fn build_libisofoo(dir: &Path, version: u32) -> String {
    let out = dir.join(format!("v{version}"));
    write_file(
        &out,
        "foo.c",
        format!("int isofoo_version(void) {{ return {version}; }}\n"),
    );
    native(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libisofoo.so.1", "-o"])
            .arg(out.join("libisofoo.so.1"))
            .arg(out.join("foo.c")),
    );
    common::path_str(&out.join("libisofoo.so.1")).to_owned()
}

#[test]
fn library_conflict_pair_each_env_loads_its_own_version() {
    let iso = Iso::new();
    let host_dir = iso.host();
    let v1 = build_libisofoo(&host_dir, 1);
    let v2 = build_libisofoo(&host_dir, 2);
    // The program is linked against the soname with no rpath: the loader
    // finds it through /etc/ld.so.cache, which ldconfig rebuilds in the env.
    write_file(
        &host_dir,
        "prog.c",
        "#include <stdio.h>\nint isofoo_version(void);\n\
         int main(void) { printf(\"%d\\n\", isofoo_version()); return 0; }\n",
    );
    fs::create_dir(host_dir.join("link")).unwrap();
    std::os::unix::fs::symlink(&v1, host_dir.join("link/libisofoo.so")).unwrap();
    native(
        Command::new("gcc")
            .arg("-o")
            .arg(host_dir.join("prog"))
            .arg(host_dir.join("prog.c"))
            .arg("-L")
            .arg(host_dir.join("link"))
            .arg("-lisofoo"),
    );
    let lib = "/usr/local/lib/libisofoo.so.1";
    iso.litter(lib);
    let cache = host_entry(Path::new("/etc/ld.so.cache"));
    let host = host_snapshot(&host_dir);
    let prog = iso.hp("prog");

    for (env, so) in [("A", &v1), ("B", &v2)] {
        iso.sh_ok(env, &format!("cp {so} {lib} && ldconfig"));
    }
    for (env, want) in [("A", "1\n"), ("B", "2\n"), ("A", "1\n")] {
        let run = iso.sh(env, &prog);
        run.assert_exit(0);
        assert_eq!(run.stdout_str(), want, "env {env}\n{}", run.describe());
    }
    assert_absent_on_host(lib);
    assert_eq!(
        host_entry(Path::new("/etc/ld.so.cache")),
        cache,
        "/etc/ld.so.cache changed on the host"
    );
    // Natively the program cannot find the library at all.
    let natively = iso.native_sh(&prog);
    assert_ne!(
        natively.status,
        Status::Exited(0),
        "{}",
        natively.describe()
    );
    host.assert_unchanged();
}

/// A pure-Python wheel built by hand (a zip with a RECORD), no network.
fn build_wheel(dir: &Path, module: &str, value: &str) -> String {
    let wheel = dir.join(format!("{module}-1.0-py3-none-any.whl"));
    let script = format!(
        r#"
import base64, hashlib, zipfile
files = {{
    "{module}/__init__.py": 'VALUE = {value:?}\n',
    "{module}-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
    "{module}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: isotrace-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
record = []
with zipfile.ZipFile({wheel:?}, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{{name}},sha256={{digest}},{{len(data)}}")
    record.append("{module}-1.0.dist-info/RECORD,,")
    z.writestr("{module}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#,
        wheel = common::path_str(&wheel)
    );
    native(Command::new(PYTHON).args(["-c", &script]));
    common::path_str(&wheel).to_owned()
}

#[test]
fn pip_install_of_a_local_wheel_is_importable_only_in_the_env() {
    let has_pip = Command::new(PYTHON)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pip {
        eprintln!("skipped: {PYTHON} -m pip is not available");
        return;
    }
    if !is_root() {
        eprintln!("skipped: installing into the system site-packages needs root");
        return;
    }
    let iso = Iso::new();
    let module = unique_token("whl").replace('-', "_");
    let value = unique_token("value");
    let wheel = build_wheel(&iso.host(), &module, &value);
    let site = native(Command::new(PYTHON).args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('purelib', 'posix_local') \
         if 'posix_local' in sysconfig.get_scheme_names() else sysconfig.get_path('purelib'))",
    ]));
    let site = site.trim().to_owned();
    iso.litter(format!("{site}/{module}"));
    iso.litter(format!("{site}/{module}-1.0.dist-info"));
    let host = host_snapshot(&iso.host());
    let install = iso.isotrace([
        "--env",
        "e",
        "--",
        PYTHON,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
        "--break-system-packages",
        &wheel,
    ]);
    install.assert_exit(0);
    let import = iso.isotrace([
        "--env",
        "e",
        "--",
        PYTHON,
        "-c",
        &format!("import {module}; print({module}.VALUE); print({module}.__file__)"),
    ]);
    import.assert_exit(0);
    assert_eq!(
        import.stdout_str(),
        format!("{value}\n{site}/{module}/__init__.py\n"),
        "{}",
        import.describe()
    );
    assert_absent_on_host(format!("{site}/{module}"));
    assert_absent_on_host(format!("{site}/{module}-1.0.dist-info"));
    let natively = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap();
    assert!(
        !natively.status.success(),
        "{module} is importable on the host"
    );
    host.assert_unchanged();
}

/// Builds `PKG.deb` (Architecture: amd64) in `dir`: the program
/// /usr/bin/PKG-run, linked against the shared library
/// /usr/lib/x86_64-linux-gnu/libPKG.so.1 (no rpath: the loader finds it in
/// its default search path), which prints /usr/share/PKG/greeting.
fn build_deb_with_library(dir: &Path, pkg: &str, greeting: &str) -> String {
    let root = dir.join("libroot");
    let libdir = "usr/lib/x86_64-linux-gnu";
    let lib = format!("lib{pkg}.so.1");
    write_file(
        dir,
        "greet.c",
        format!(
            "#include <stdio.h>\n\
             int greet(void) {{\n\
               FILE *f = fopen(\"/usr/share/{pkg}/greeting\", \"r\");\n\
               char line[256];\n\
               if (!f || !fgets(line, sizeof line, f)) return 1;\n\
               fputs(line, stdout);\n\
               return fclose(f);\n\
             }}\n"
        ),
    );
    write_file(
        dir,
        "run.c",
        "int greet(void);\nint main(void) { return greet(); }\n",
    );
    write_file(&root, &format!("usr/share/{pkg}/greeting"), greeting);
    fs::create_dir_all(root.join(libdir)).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    native(
        Command::new("gcc")
            .args(["-shared", "-fPIC", &format!("-Wl,-soname,{lib}"), "-o"])
            .arg(root.join(libdir).join(&lib))
            .arg(dir.join("greet.c")),
    );
    native(
        Command::new("gcc")
            .arg("-o")
            .arg(root.join(format!("usr/bin/{pkg}-run")))
            .arg(dir.join("run.c"))
            .arg(root.join(libdir).join(&lib)),
    );
    write_file(
        &root,
        "DEBIAN/control",
        format!(
            "Package: {pkg}\nVersion: 2.0-1\nArchitecture: amd64\n\
             Maintainer: isotrace tests <iso@example.invalid>\n\
             Description: isotrace deployment test package\n"
        ),
    );
    let deb = dir.join(format!("{pkg}-lib.deb"));
    native(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb),
    );
    common::path_str(&deb).to_owned()
}

/// Issue #4, installation-free deployment: a .deb installed with dpkg into
/// env A, exported, imported as env B into a fresh ISOTRACE_HOME, runs
/// there with no install step; the host and a third env see nothing, and
/// what B does leaves A alone.
#[test]
fn dpkg_installed_env_exported_and_imported_runs_without_installing() {
    if !is_root() || !have_program("dpkg-deb") || !have_program("gcc") {
        eprintln!("skipped: needs root (dpkg -i), dpkg-deb and gcc");
        return;
    }
    let a = Iso::new();
    let pkg = package_name();
    let greeting = format!("{}\n", unique_token("greeting"));
    let deb = build_deb_with_library(&a.host(), &pkg, &greeting);
    let _guard = HostPackageGuard(pkg.clone());
    let files = [
        format!("/usr/bin/{pkg}-run"),
        format!("/usr/lib/x86_64-linux-gnu/lib{pkg}.so.1"),
        format!("/usr/share/{pkg}"),
        format!("/var/lib/dpkg/info/{pkg}.list"),
    ];
    for f in &files {
        a.litter(f);
    }
    let status = host_entry(Path::new("/var/lib/dpkg/status"));
    let host = host_snapshot(&a.host());
    a.sh_ok("A", &format!("dpkg -i {deb}"));
    // The archive goes beside the host tree: it is not a change by A.
    let tar = common::path_str(&a.root().join("A.tar")).to_owned();
    a.isotrace(["env", "export", "A", "-o", &tar])
        .assert_exit(0);

    // A second machine: nothing shared with A's store but the tar file.
    let b = Iso::new();
    b.isotrace(["env", "import", &tar, "--name", "B"])
        .assert_exit(0);
    let query = format!("{pkg}-run && dpkg -s {pkg} | grep '^Status:'");
    let run = b.sh("B", &query);
    run.assert_exit(0);
    assert_eq!(
        run.stdout_str(),
        format!("{greeting}Status: install ok installed\n"),
        "{}",
        run.describe()
    );
    // B's own changes stay in B: remove the package there, A keeps it.
    b.sh_ok("B", &format!("dpkg -r {pkg} >/dev/null"));
    let gone = b.sh("B", &format!("{pkg}-run"));
    assert_eq!(gone.status, Status::Exited(127), "{}", gone.describe());
    let still = a.sh("A", &query);
    still.assert_exit(0);
    assert_eq!(still.stdout_str(), run.stdout_str(), "{}", still.describe());

    // A third env, in either store, and the host see nothing of it.
    for (iso, env) in [(&a, "C"), (&b, "C")] {
        let other = iso.sh(
            env,
            &format!("test ! -e /usr/bin/{pkg}-run && ! dpkg -s {pkg} >/dev/null 2>&1"),
        );
        other.assert_exit(0);
    }
    for f in &files {
        assert_absent_on_host(f);
    }
    assert_eq!(
        host_entry(Path::new("/var/lib/dpkg/status")),
        status,
        "/var/lib/dpkg/status changed on the host"
    );
    host.assert_unchanged();
}
