//! An in-memory [`Fs`]: a map from absolute real path to node. Intermediate
//! symlinks in a queried path are followed, as the kernel would.

use crate::fs::{Fs, Kind, ListEntry, Stat};
use crate::path::{bytes, components, from_bytes};
use crate::{Rules, View};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub const HOME: &str = "/store";
pub const UPPER: &str = "/store/envs/e/upper";

#[derive(Clone, Debug)]
enum Node {
    Dir,
    File,
    Symlink(PathBuf),
    Other,
}

pub struct FakeFs {
    nodes: BTreeMap<PathBuf, (Node, u64)>,
    next_ino: u64,
    /// Number of lstat/readlink calls, to check what the cache saves.
    pub calls: Cell<usize>,
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl FakeFs {
    /// A tree with `/`, the store and one environment's upper and work.
    pub fn new() -> Self {
        let mut fs = FakeFs {
            nodes: BTreeMap::new(),
            next_ino: 2,
            calls: Cell::new(0),
        };
        fs.nodes.insert(PathBuf::from("/"), (Node::Dir, 1));
        fs.dir(UPPER);
        fs.dir("/store/envs/e/work");
        fs
    }

    fn add(&mut self, p: &str, node: Node) -> &mut Self {
        let p = Path::new(p);
        if let Some(parent) = p.parent() {
            if !self.nodes.contains_key(parent) {
                self.add(parent.to_str().unwrap(), Node::Dir);
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(p.to_path_buf(), (node, ino));
        self
    }

    pub fn dir(&mut self, p: &str) -> &mut Self {
        self.add(p, Node::Dir)
    }
    pub fn file(&mut self, p: &str) -> &mut Self {
        self.add(p, Node::File)
    }
    pub fn other(&mut self, p: &str) -> &mut Self {
        self.add(p, Node::Other)
    }
    pub fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.add(p, Node::Symlink(PathBuf::from(target)))
    }
    /// The same, under the environment's upper layer.
    pub fn up_dir(&mut self, p: &str) -> &mut Self {
        self.dir(&format!("{UPPER}{p}"))
    }
    pub fn up_file(&mut self, p: &str) -> &mut Self {
        self.file(&format!("{UPPER}{p}"))
    }
    pub fn up_symlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.symlink(&format!("{UPPER}{p}"), target)
    }
    pub fn remove(&mut self, p: &str) {
        self.nodes.remove(Path::new(p));
    }
    pub fn ino(&self, p: &str) -> u64 {
        self.nodes[Path::new(p)].1
    }
    pub fn set_ino(&mut self, p: &str, ino: u64) {
        self.nodes.get_mut(Path::new(p)).unwrap().1 = ino;
    }

    /// Find a node, following symlinks in every component but the last.
    fn find(&self, p: &Path, depth: u32) -> io::Result<(PathBuf, &(Node, u64))> {
        if depth > 40 {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let comps: Vec<&[u8]> = components(bytes(p)).collect();
        let mut cur = PathBuf::from("/");
        for (i, c) in comps.iter().enumerate() {
            let next = cur.join(from_bytes(c.to_vec()));
            let (node, _) = self.nodes.get(&next).ok_or_else(enoent)?;
            let last = i + 1 == comps.len();
            match node {
                Node::Symlink(t) if !last => {
                    let mut rest = if t.is_absolute() {
                        t.clone()
                    } else {
                        cur.join(t)
                    };
                    for r in &comps[i + 1..] {
                        rest.push(from_bytes(r.to_vec()));
                    }
                    return self.find(&lexical(&rest), depth + 1);
                }
                Node::Dir => cur = next,
                _ if last => cur = next,
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        let n = self.nodes.get(&cur).ok_or_else(enoent)?;
        Ok((cur, n))
    }
}

/// Resolve `.` and `..` lexically (enough for the fake's own symlinks).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in components(bytes(p)) {
        match c {
            b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(from_bytes(c.to_vec())),
        }
    }
    out
}

fn kind(n: &Node) -> Kind {
    match n {
        Node::Dir => Kind::Dir,
        Node::File => Kind::File,
        Node::Symlink(_) => Kind::Symlink,
        Node::Other => Kind::Other,
    }
}

impl Fs for FakeFs {
    fn lstat(&self, real: &Path) -> io::Result<Stat> {
        self.calls.set(self.calls.get() + 1);
        let (_, (n, ino)) = self.find(real, 0)?;
        Ok(Stat {
            kind: kind(n),
            dev: 1,
            ino: *ino,
        })
    }

    fn readlink(&self, real: &Path) -> io::Result<PathBuf> {
        self.calls.set(self.calls.get() + 1);
        match self.find(real, 0)? {
            (_, (Node::Symlink(t), _)) => Ok(t.clone()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn read_dir(&self, real: &Path) -> io::Result<Vec<ListEntry>> {
        let (dir, (n, _)) = self.find(real, 0)?;
        if !matches!(n, Node::Dir) {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let entries = self
            .nodes
            .iter()
            .filter(|(p, _)| p.parent() == Some(&dir) && **p != dir);
        Ok(entries
            .map(|(p, (n, ino))| ListEntry {
                name: p.file_name().unwrap().to_os_string(),
                kind: kind(n),
                ino: *ino,
                d_type: 0,
            })
            .collect())
    }
}

/// The view of environment `e` with the default exceptions.
pub fn view() -> View {
    view_with(Rules::default())
}

pub fn view_with(rules: Rules) -> View {
    View::new(
        PathBuf::from(UPPER),
        PathBuf::from("/store/envs/e/work"),
        PathBuf::from(HOME),
        rules,
    )
}
