//! The environment store: `home/envs/NAME/` holds `upper/` (the private
//! layer), `work/` (temp files for atomic copy-up, on the same filesystem as
//! upper so that rename(2) can move them in) and `env.json`.
//!
//! An environment appears atomically: it is built under a temp name and
//! renamed into place with RENAME_NOREPLACE, so two concurrent creates of
//! one name give one environment and one EEXIST, and a crash leaves only a
//! dot-named temp directory that no listing shows. Removal renames it away
//! first for the same reason.

use crate::cow::copy_attrs;
use crate::durable::{temp_name, write_atomic};
use crate::error::{Error, Result};
use crate::rules::Rules;
use crate::view::View;
use serde::{Deserialize, Serialize};
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Version of the serialized [`EnvMeta`].
pub const ENV_VERSION: u32 = 1;
const META: &str = "env.json";
const RULES: &str = "rules.json";

/// `env.json`: what a checkpoint or an export carries about an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvMeta {
    pub version: u32,
    pub name: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The host directory the private layer sits on; always `/` for now.
    pub base: PathBuf,
}

/// One environment of the store.
#[derive(Clone, Debug)]
pub struct Environment {
    pub(crate) dir: PathBuf,
    pub(crate) meta: EnvMeta,
}

impl Environment {
    pub fn name(&self) -> &str {
        &self.meta.name
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn meta(&self) -> &EnvMeta {
        &self.meta
    }
}

/// Check an environment name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. This keeps
/// `/`, `..`, NUL and the empty name out, and the leading character keeps
/// the store's own dot-named temp directories apart.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok_rest = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    let ok =
        !b.is_empty() && b.len() <= 64 && b[0].is_ascii_alphanumeric() && b.iter().all(ok_rest);
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// The store at ISOTRACE_HOME.
#[derive(Clone, Debug)]
pub struct Store {
    home: PathBuf,
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    DirBuilder::new()
        .mode(mode)
        .recursive(true)
        .create(path)
        .map_err(|e| Error::io("mkdir", path, e))
}

impl Store {
    /// Open (creating if needed, mode 0700) the store at `home`. The path is
    /// canonicalized: the view hides the store by its canonical name.
    pub fn open(home: &Path) -> Result<Store> {
        mkdir(&home.join("envs"), 0o700)?;
        let home = home
            .canonicalize()
            .map_err(|e| Error::io("canonicalize", home, e))?;
        Ok(Store { home })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub(crate) fn envs(&self) -> PathBuf {
        self.home.join("envs")
    }

    /// Create an environment; EnvExists if the name is taken.
    pub fn create(&self, name: &str) -> Result<Environment> {
        self.stage(name)?.place()
    }

    pub(crate) fn build(&self, dir: &Path, name: &str) -> Result<Environment> {
        mkdir(dir, 0o700)?;
        let upper = dir.join("upper");
        mkdir(&upper, 0o755)?;
        // The upper root stands for the view's `/`: give it the host root's
        // mode, owner (where permitted) and times.
        let _ = copy_attrs(Path::new("/"), &upper);
        mkdir(&dir.join("work"), 0o700)?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let meta = EnvMeta {
            version: ENV_VERSION,
            name: name.to_string(),
            created,
            base: PathBuf::from("/"),
        };
        let path = dir.join(META);
        let json = serde_json::to_vec_pretty(&meta).expect("env meta serializes");
        write_atomic(&path, &json).map_err(|e| Error::io("write", &path, e))?;
        Ok(Environment {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// The environment called `name`; NoSuchEnv names it if it is missing.
    pub fn get(&self, name: &str) -> Result<Environment> {
        validate_name(name)?;
        let dir = self.envs().join(name);
        let path = dir.join(META);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoSuchEnv(name.to_string()))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let corrupt = |what: String| Error::Corrupt {
            path: path.clone(),
            what,
        };
        let meta: EnvMeta = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if meta.version != ENV_VERSION {
            return Err(corrupt(format!("unknown version {}", meta.version)));
        }
        if meta.name != name {
            return Err(corrupt(format!("names environment {:?}", meta.name)));
        }
        Ok(Environment { dir, meta })
    }

    /// All environments, sorted by name.
    pub fn list(&self) -> Result<Vec<Environment>> {
        let envs = self.envs();
        let rd = std::fs::read_dir(&envs).map_err(|e| Error::io("readdir", &envs, e))?;
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io("readdir", &envs, e))?;
            if let Some(n) = e.file_name().to_str() {
                if validate_name(n).is_ok() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        names.iter().map(|n| self.get(n)).collect()
    }

    /// Delete an environment and its private layer. It disappears
    /// atomically (renamed to a dot name) before its files are deleted.
    pub fn remove(&self, name: &str) -> Result<()> {
        let env = self.get(name)?;
        let trash = self.envs().join(temp_name(".rm-"));
        // Held across the rename (the lock is on the inode): a sweep leaves
        // the trash alone while this removal runs (see `Store::sweep`).
        let _lock =
            crate::sys::try_lock_dir(env.dir()).map_err(|e| Error::io("flock", env.dir(), e))?;
        std::fs::rename(env.dir(), &trash).map_err(|e| Error::io("rename", env.dir(), e))?;
        remove_tree(&trash).map_err(|e| Error::io("remove", &trash, e))
    }

    /// The global rules (`rules.json`); the defaults if none were saved.
    pub fn rules(&self) -> Result<Rules> {
        let path = self.home.join(RULES);
        match std::fs::read_to_string(&path) {
            Ok(text) => Rules::from_json(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Rules::default()),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Replace the global rules atomically.
    pub fn save_rules(&self, rules: &Rules) -> Result<()> {
        let path = self.home.join(RULES);
        write_atomic(&path, rules.to_json().as_bytes()).map_err(|e| Error::io("write", &path, e))
    }

    /// The merged view of `env` under `rules`, hiding the store by path and
    /// by the identity of its directories (home, envs/, every environment
    /// and its upper and work), so a bind mount of any of them is hidden too.
    pub fn view(&self, env: &Environment, rules: Rules) -> Result<View> {
        sweep_work(&env.work());
        let mut view = View::new(env.upper(), env.work(), self.home.clone(), rules);
        let envs = self.envs();
        let mut dirs = vec![self.home.clone(), envs.clone()];
        if let Ok(rd) = std::fs::read_dir(&envs) {
            for e in rd.flatten() {
                let d = e.path();
                dirs.extend([d.join("upper"), d.join("work"), d]);
            }
        }
        for d in dirs {
            if let Ok(m) = std::fs::symlink_metadata(&d) {
                view.hide_dir_id(m.dev(), m.ino());
            }
        }
        Ok(view)
    }
}

/// Removes what supervisors killed mid-operation left in an environment's
/// `work/`: copy-up temps (`#PID-...`), directories on their way out
/// (`#rm-PID-...`), whiteout temps (`#wh-PID-...`) and translated maps
/// files (`.procmaps-PID-...`). Only those whose maker is gone (no
/// /proc/PID) and that have not changed for [`crate::stage::STALE_AFTER`]:
/// another supervisor using the environment may be writing its own, and a
/// pid alone could be another pid namespace's. Returns what it removed;
/// an error only skips an entry.
pub(crate) fn sweep_work(work: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(work) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = temp_maker(&name.to_string_lossy()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        let idle = crate::stage::idle(&path);
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let gone = match (idle, is_dir) {
            (false, _) => false,
            (true, true) => remove_tree(&path).is_ok(),
            (true, false) => std::fs::remove_file(&path).is_ok(),
        };
        if gone {
            removed.push(path);
        }
    }
    removed
}

/// The pid in a `work/` temp name ([`temp_name`]: PREFIX PID-N-NANOS).
fn temp_maker(name: &str) -> Option<u32> {
    let rest = ["#rm-", "#wh-", ".procmaps-", "#"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// remove_dir_all that also gets through directories copied up without
/// write permission for their owner (a host dir of mode 0555): on EACCES it
/// gives every directory u+rwx and tries again.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        r => r,
    }
}

fn open_up(dir: &Path) {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let mode = m.permissions().mode() | 0o700;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            open_up(&e.path());
        }
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn temp_makers() {
        assert_eq!(temp_maker("#123-4-5"), Some(123));
        assert_eq!(temp_maker("#rm-77-0-9"), Some(77));
        assert_eq!(temp_maker("#wh-8-1-2"), Some(8));
        assert_eq!(temp_maker(".procmaps-9-10-0"), Some(9));
        assert_eq!(temp_maker("keep"), None);
        assert_eq!(temp_maker("#x-1"), None);
    }

    #[test]
    fn only_a_dead_makers_idle_temps_go() {
        let work = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // A pid that is surely not running: above the kernel's pid_max.
        let dead = 1 << 23;
        for n in [
            format!("#{dead}-0-0"),
            format!("#rm-{dead}-1-0"),
            format!("#{me}-2-0"),
        ] {
            std::fs::create_dir_all(work.path().join(&n).join("sub")).unwrap();
        }
        std::fs::write(work.path().join(format!("#{dead}-3-0")), b"fresh").unwrap();
        std::fs::write(work.path().join(format!("#{dead}-4-0")), b"half a copy").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        for n in [
            format!("#{dead}-0-0"),
            format!("#rm-{dead}-1-0"),
            format!("#{me}-2-0"),
            format!("#{dead}-4-0"),
        ] {
            std::fs::File::open(work.path().join(n))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let mut gone: Vec<String> = sweep_work(work.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        gone.sort();
        let want = [
            format!("#{dead}-0-0"),
            format!("#{dead}-4-0"),
            format!("#rm-{dead}-1-0"),
        ];
        assert_eq!(gone, want);
        assert!(work.path().join(format!("#{me}-2-0")).exists());
        assert!(work.path().join(format!("#{dead}-3-0")).exists());
    }
}
