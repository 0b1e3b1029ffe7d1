//! `--report FILE`: every path the group read, wrote, created, deleted or
//! executed, with the pids that did it, as JSON written when the group
//! exits. Only calls that succeeded count: a call is noted at its seccomp
//! stop and recorded at its exit stop if it returned >= 0.

use crate::isolate::classify::{classify, Op};
use isotrace_tracer::{Call, TraceeView};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How a call touched a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Written,
    Created,
    Deleted,
    Executed,
}

/// Maps a real path the kernel reports (a cwd, an fd's path) to the name
/// the program knows it by.
pub type PublicName = Box<dyn Fn(&Path) -> Option<PathBuf>>;

pub struct Report {
    pending: HashMap<i32, Vec<(PathBuf, Access)>>,
    seen: BTreeMap<PathBuf, BTreeMap<Access, BTreeSet<i32>>>,
    public: PublicName,
}

#[derive(Serialize)]
struct PathEntry<'a> {
    path: String,
    #[serde(flatten)]
    how: BTreeMap<Access, &'a BTreeSet<i32>>,
}

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    command: Vec<String>,
    env: Option<&'a str>,
    exit_status: i32,
    paths: Vec<PathEntry<'a>>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            pending: HashMap::new(),
            seen: BTreeMap::new(),
            public: Box::new(|p| Some(p.to_path_buf())),
        }
    }

    /// Real-to-public mapping under isolation.
    pub fn set_public_name(&mut self, f: PublicName) {
        self.public = f;
    }

    /// Notes the paths of a trapped call at its seccomp stop. Returns
    /// whether an exit stop is needed to learn if it succeeded.
    pub fn begin(&mut self, call: &Call, tv: &mut dyn TraceeView) -> bool {
        let Some(uses) = classify(call.sc, &call.args) else {
            return false;
        };
        let mut items = Vec::new();
        for u in &uses {
            let Some(raw) = call.path(u.idx) else {
                continue;
            };
            let dirfd = call.sc.dirfd_for(u.idx).map(|i| call.args[i] as i32);
            let Some(path) = self.absolute(raw, dirfd, tv) else {
                continue;
            };
            let access = match u.op {
                Op::Read if matches!(call.sc.name, "execve" | "execveat") => Access::Executed,
                Op::Read | Op::Refuse | Op::CreateOrOpen { write: false } => Access::Read,
                Op::Modify => Access::Written,
                Op::CreateOrOpen { write: true } if std::fs::symlink_metadata(&path).is_ok() => {
                    Access::Written
                }
                Op::CreateOrOpen { write: true } | Op::Create | Op::RenameTo => Access::Created,
                Op::Remove { .. } | Op::RenameFrom => Access::Deleted,
            };
            items.push((path, access));
        }
        let any = !items.is_empty();
        if any {
            self.pending.insert(call.tid, items);
        }
        any
    }

    /// Records the call's paths if it succeeded.
    pub fn end(&mut self, call: &Call, ret: i64) {
        let Some(items) = self.pending.remove(&call.tid) else {
            return;
        };
        // execve reports 0 at its exit stop after a successful exec.
        if ret < 0 {
            return;
        }
        for (path, access) in items {
            self.seen
                .entry(path)
                .or_default()
                .entry(access)
                .or_default()
                .insert(call.pid);
        }
    }

    pub fn abandon(&mut self, tid: i32) {
        self.pending.remove(&tid);
    }

    /// Writes the report atomically: a temp file beside `file`, fsynced,
    /// then renamed over it.
    pub fn write(
        &self,
        file: &Path,
        command: &[String],
        env: Option<&str>,
        status: i32,
    ) -> std::io::Result<()> {
        let doc = Document {
            version: 1,
            command: command.to_vec(),
            env,
            exit_status: status,
            paths: self
                .seen
                .iter()
                .map(|(p, how)| PathEntry {
                    path: p.to_string_lossy().into_owned(),
                    how: how.iter().map(|(a, pids)| (*a, pids)).collect(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file.file_name().and_then(OsStr::to_str).unwrap_or("report"),
            std::process::id()
        ));
        let res = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// The absolute, lexically normalised public path of an argument.
    fn absolute(&self, raw: &[u8], dirfd: Option<i32>, tv: &mut dyn TraceeView) -> Option<PathBuf> {
        let p = Path::new(OsStr::from_bytes(raw));
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            let base = match dirfd {
                None | Some(-100) => tv.cwd()?,
                Some(fd) => tv.fd_path(fd)?,
            };
            (self.public)(&base)?.join(p)
        };
        Some(normalize(&joined))
    }
}

/// `.` and `..` removed lexically (the report names what the program asked
/// for, not where symlinks led).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}
