//! /proc/PID/maps and smaps name each file mapping by its real path, which
//! for a file of the environment's private layer is a path inside the
//! store. A program reading them (a sanitizer, a profiler, a JIT looking
//! for its own library) must see the public name, as it does in
//! /proc/self/exe. So opening one for reading is served from a translated
//! copy: the supervisor reads the file as the kernel writes it at that
//! moment, rewrites the path of every mapping line, and hands the tracee a
//! read-only file in the environment's scratch directory, unlinked at the
//! call's exit (the open fd keeps it). procfs generates these files at
//! read time; the copy is the state at open(2), which is what a reader
//! that opens, reads and closes sees.
//!
//! /proc/PID/mountinfo and mounts (and /proc/mounts) are served the same
//! way when they list mounts inside the store (a store on a filesystem of
//! its own): those lines are left out, as the store's paths do not exist
//! for the environment.

use super::ops::{After, Plan};
use isotrace_idb::{public_of, View};
use isotrace_tracer::Call;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SERIAL: AtomicU64 = AtomicU64::new(0);

/// The maps-like file `public` names, as `/proc/WHO[/task/TID]/FILE`:
/// (`WHO` as given, the task part, the file name). The files whose lines
/// name mappings (maps, smaps) or mount points (mountinfo, mounts;
/// `/proc/mounts` is `self/mounts`).
pub fn maps_file(public: &Path) -> Option<(String, Option<String>, &'static str)> {
    // Every open for reading asks: most are not under /proc at all.
    if !public.starts_with("/proc")
        || !matches!(
            public.file_name()?.to_str()?,
            "maps" | "smaps" | "mountinfo" | "mounts"
        )
    {
        return None;
    }
    let parts: Vec<&str> = public
        .to_str()?
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (who, task, file) = match parts.as_slice() {
        ["proc", "mounts"] => ("self", None, "mounts"),
        ["proc", who, file] => (*who, None, *file),
        ["proc", who, "task", tid, file] => (*who, Some(tid.to_string()), *file),
        _ => return None,
    };
    let file = match file {
        "maps" => "maps",
        "smaps" => "smaps",
        "mountinfo" => "mountinfo",
        "mounts" => "mounts",
        _ => return None,
    };
    Some((who.to_string(), task, file))
}

/// `text` (mountinfo, or mounts: `field`, 4 or 1, is the mount point's
/// index) without the mounts inside the store, which the environment does
/// not have (a store on a filesystem of its own, bind mounts into it).
pub fn hide_store_mounts(view: &View, text: &str, field: usize) -> String {
    text.split_inclusive('\n')
        .filter(|line| {
            let point = line.split(' ').nth(field).map(unescape_octal);
            !point.is_some_and(|p| view.is_hidden(Path::new(&p)))
        })
        .collect()
}

/// A mount table field with the kernel's octal escapes (`\040` for a
/// space; fs/proc_namespace.c, mangle) undone.
fn unescape_octal(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (maps or smaps) with every mapped file's path made public; lines
/// that name no file, or a host file, are unchanged.
pub fn translate(view: &View, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&translate_line(view, line));
    }
    out
}

fn translate_line(view: &View, line: &str) -> String {
    // "START-END PERMS OFFSET DEV INODE   PATH": a mapping line starts with
    // its hex address range (smaps' other lines are "Key: value").
    let is_mapping = line
        .split(' ')
        .next()
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| is_hex(a) && is_hex(b.trim_end()));
    let Some(at) = line.find(" /").filter(|_| is_mapping) else {
        return line.to_string();
    };
    let (head, rest) = line.split_at(at + 1);
    let body = rest.trim_end_matches('\n');
    let (path, deleted) = match body.strip_suffix(" (deleted)") {
        Some(p) => (p, " (deleted)"),
        None => (body, ""),
    };
    match public_of(view, Path::new(path)) {
        Some(public) if public != Path::new(path) => {
            let nl = if rest.ends_with('\n') { "\n" } else { "" };
            format!("{head}{}{deleted}{nl}", public.display())
        }
        _ => line.to_string(),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `text` to a new read-only file in `dir` and returns its path.
pub fn serve(dir: &Path, tid: i32, text: &str) -> std::io::Result<PathBuf> {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".procmaps-{}-{tid}-{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    Ok(path)
}

impl super::Isolation {
    /// An open of /proc/PID/{maps,smaps} that would show private paths:
    /// served from a translated copy (procmaps.rs). None when nothing in it
    /// is private, or it cannot be read: the kernel's file then.
    pub(super) fn proc_maps(&mut self, call: &Call, r: &isotrace_idb::Resolved) -> Option<Plan> {
        let (who, task, file) = maps_file(&r.public)?;
        let pid = match who.as_str() {
            "self" => call.pid,
            "thread-self" => call.tid,
            n => self.procs.host_pid(call.pid, n)?,
        };
        let src = match task {
            Some(t) => format!(
                "/proc/{pid}/task/{}/{file}",
                self.procs.host_pid(call.pid, &t)?
            ),
            None => format!("/proc/{pid}/{file}"),
        };
        let text = std::fs::read_to_string(src).ok()?;
        let shown = match file {
            "mountinfo" => hide_store_mounts(&self.view, &text, 4),
            "mounts" => hide_store_mounts(&self.view, &text, 1),
            _ => translate(&self.view, &text),
        };
        if shown == text {
            return None;
        }
        let copy = serve(self.view.work(), call.tid, &shown).ok()?;
        Some(Plan {
            real: copy.clone(),
            after: vec![After::Unlink(copy)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isotrace_idb::Rules;

    #[test]
    fn which_files() {
        let f = |p: &str| maps_file(Path::new(p)).map(|(w, t, f)| (w, t, f.to_string()));
        assert_eq!(
            f("/proc/self/maps"),
            Some(("self".into(), None, "maps".into()))
        );
        assert_eq!(
            f("/proc/7/task/8/smaps"),
            Some(("7".into(), Some("8".into()), "smaps".into()))
        );
        assert_eq!(
            f("/proc/mounts"),
            Some(("self".into(), None, "mounts".into()))
        );
        assert_eq!(
            f("/proc/1/mountinfo"),
            Some(("1".into(), None, "mountinfo".into()))
        );
        assert_eq!(f("/proc/self/status"), None);
        assert_eq!(f("/etc/maps"), None);
    }

    #[test]
    fn private_paths_become_public() {
        let view = View::new(
            PathBuf::from("/store/envs/e/upper"),
            PathBuf::from("/store/envs/e/work"),
            PathBuf::from("/store"),
            Rules::default(),
        );
        let text = "7f00-7f10 r-xp 00000000 fe:00 12   /store/envs/e/upper/usr/lib/libx.so\n\
                    7f10-7f20 rw-p 00000000 00:00 0 \n\
                    7f20-7f30 r--p 00000000 fe:00 13   /usr/lib/liby.so\n\
                    7f30-7f40 rw-s 00000000 fe:00 14   /store/envs/e/upper/tmp/db-shm (deleted)\n\
                    Size:                  4 kB\n";
        let want = "7f00-7f10 r-xp 00000000 fe:00 12   /usr/lib/libx.so\n\
                    7f10-7f20 rw-p 00000000 00:00 0 \n\
                    7f20-7f30 r--p 00000000 fe:00 13   /usr/lib/liby.so\n\
                    7f30-7f40 rw-s 00000000 fe:00 14   /tmp/db-shm (deleted)\n\
                    Size:                  4 kB\n";
        assert_eq!(translate(&view, text), want);
    }

    #[test]
    fn store_mounts_are_hidden() {
        let view = View::new(
            PathBuf::from("/store/envs/e/upper"),
            PathBuf::from("/store/envs/e/work"),
            PathBuf::from("/my store"),
            Rules::default(),
        );
        let info = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    30 22 0:40 / /my\\040store rw - tmpfs tmpfs rw\n\
                    31 30 0:41 / /my\\040store/envs/e/upper/mnt rw - tmpfs tmpfs rw\n\
                    32 22 0:42 / /my\\040storey rw - tmpfs tmpfs rw\n";
        assert_eq!(
            hide_store_mounts(&view, info, 4),
            "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             32 22 0:42 / /my\\040storey rw - tmpfs tmpfs rw\n"
        );
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /my\\040store tmpfs rw 0 0\n";
        assert_eq!(
            hide_store_mounts(&view, mounts, 1),
            "/dev/vda / ext4 rw 0 0\n"
        );
        assert_eq!(unescape_octal("a\\011b\\134c\\9"), "a\tb\\c\\9");
    }
}
