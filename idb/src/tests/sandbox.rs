//! A real store and a real "host" tree in a tempdir. Public paths are the
//! host tree's real absolute paths (the view's host is the machine's `/`).

use crate::{resolve, RealFs, Resolved, Rules, Store, View};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Store,
    pub view: View,
}

impl Sandbox {
    pub fn new() -> Self {
        Self::with_store(None)
    }

    /// `store_dir`: where the store goes, if not `<tmp>/store`.
    pub fn with_store(store_dir: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir(root.join("host")).unwrap();
        let home = store_dir.map_or_else(|| root.join("store"), Path::to_path_buf);
        let store = Store::open(&home).unwrap();
        let env = store.create("e").unwrap();
        let view = store.view(&env, Rules::default()).unwrap();
        Sandbox {
            _dir: dir,
            root,
            store,
            view,
        }
    }

    /// The public (= host) path of `rel` in the host tree.
    pub fn host(&self, rel: &str) -> PathBuf {
        self.root.join("host").join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> PathBuf {
        let p = self.host(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    pub fn resolve(&self, public: &Path, follow: bool) -> Resolved {
        let b = public.as_os_str().as_encoded_bytes();
        resolve(&self.view, &RealFs, Path::new("/"), b, follow).unwrap()
    }

    pub fn upper(&self, public: &Path) -> PathBuf {
        self.view.upper_path(public)
    }

    pub fn work_is_empty(&self) -> bool {
        fs::read_dir(self.view.work()).unwrap().next().is_none()
    }
}
