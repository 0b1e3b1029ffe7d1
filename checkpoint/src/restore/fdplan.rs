//! Where each fd of a restored process comes from, decided from the image
//! alone before anything exists; what cannot be restored is refused here,
//! naming the pid and the fd.

use crate::dump::pipes::PipeData;
use crate::error::{Error, Result};
use crate::model::{FdEntry, FdKind, Process};
use std::collections::{BTreeMap, BTreeSet};

/// Where one fd of the restored process comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The restorer's own fd 0, 1 or 2 (a terminal, or a pipe or socket
    /// whose other end was outside the image): the restored program talks
    /// to whoever runs `isotrace restore`.
    Stdio(i32),
    /// Reopened by path, then seeked to `pos` (if any).
    Open {
        path: String,
        flags: i32,
        pos: Option<u64>,
    },
    /// One end of a new pipe shared by every fd recorded with this inode.
    Pipe { ino: u64, write: bool },
    /// A socket made in the root vessel (see `sockets`).
    Socket { ino: u64 },
    /// An eventfd, signalfd, timerfd or epoll made anew from its fdinfo
    /// (see `anon`).
    Anon { kind: String, info: String },
    /// A memfd some process maps (see `shm`), seeked to `pos`.
    Memfd { ino: u64, pos: u64 },
    /// A file with no name (deleted, or an unmapped memfd) made from the
    /// image (see `deleted`), opened anew with `flags` at `pos`.
    Nameless { ino: u64, flags: i32, pos: u64 },
    /// An inotify fd with these watches (see `inotify`).
    Inotify {
        watches: Vec<crate::dump::inotify::WatchPath>,
    },
    /// One open file several fds share (`dump::open_files`): made once in
    /// the root vessel from `source`, the plan of the first fd holding it
    /// (`of`, pid and fd), and given to each of them (see `open_files`).
    Shared { of: (i32, i32), source: Box<Source> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdPlan {
    pub fd: i32,
    pub source: Source,
    pub cloexec: bool,
    /// O_NONBLOCK to set on a pipe, socket or anonymous-inode file the
    /// restore creates (it belongs to the open file, not the fd).
    pub nonblock: bool,
}

/// What the whole image shares, which decides where an fd comes from.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    /// The first of the restorer's fds 0..2 that is a terminal, if any.
    pub tty_stdio: Option<i32>,
    /// [`rebuilt_pipes`] of the image.
    pub pipes: &'a BTreeSet<u64>,
    /// The sockets the restore makes (`sockets::rebuilt`).
    pub sockets: &'a BTreeSet<u64>,
    /// The shared memory objects some process maps (see `shm`).
    pub mapped: &'a BTreeSet<u64>,
    /// The nameless files whose contents the image holds (`deleted`).
    pub nameless: &'a BTreeSet<u64>,
    /// The watches of the image's inotify fds.
    pub inotify: &'a crate::dump::inotify::Watches,
    /// Fds that share an open file with another (`dump::open_files`).
    pub open_files: &'a crate::dump::open_files::Shared,
}

/// open(2) flags the kernel clears after open (fs/open.c do_dentry_open),
/// and O_CLOEXEC, which belongs to the fd, not the open file.
const NOT_REOPENED: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC;

fn unsupported(pid: i32, e: &FdEntry, why: &str) -> Error {
    Error::Invalid {
        what: format!(
            "cannot restore pid {pid}: fd {} ({} {}): {why}",
            e.fd,
            e.kind.name(),
            e.target
        ),
    }
}

/// The pipes of `procs` that are rebuilt as pipes: those with both ends
/// in the image, with data recorded (`data`), or held by more than one
/// process. The others (one end in one process, nothing buffered) lead
/// outside the image: at fd 0..2 they become the restorer's own stdio,
/// elsewhere a pipe whose other end is closed.
pub fn rebuilt_pipes<'a>(
    procs: impl IntoIterator<Item = &'a Process>,
    data: &PipeData,
) -> BTreeSet<u64> {
    // Per inode: read end seen, write end seen, holders.
    let mut seen: BTreeMap<u64, (bool, bool, BTreeSet<i32>)> = BTreeMap::new();
    for proc in procs {
        for e in proc.fds.iter().filter(|e| e.kind == FdKind::Pipe) {
            let s = seen.entry(e.ino).or_default();
            if is_write(e) {
                s.1 = true;
            } else {
                s.0 = true;
            }
            s.2.insert(proc.pid);
        }
    }
    seen.into_iter()
        .filter(|(ino, (r, w, holders))| (*r && *w) || holders.len() > 1 || data.contains_key(ino))
        .map(|(ino, _)| ino)
        .collect()
}

/// Plans every fd of `proc`; also returns notes for the user.
pub fn plan(proc: &Process, shape: Shape<'_>) -> Result<(Vec<FdPlan>, Vec<String>)> {
    let mut plans = Vec::new();
    let mut notes = Vec::new();
    for e in &proc.fds {
        let flags = e.flags as i32;
        let mut source = source(proc.pid, e, shape, &mut notes)?;
        let opened = matches!(
            source,
            Source::Open { .. } | Source::Nameless { .. } | Source::Memfd { .. }
        );
        if let (true, Some(&of)) = (opened, shape.open_files.get(&(proc.pid, e.fd))) {
            source = Source::Shared {
                of,
                source: Box::new(source),
            };
        }
        let created = matches!(
            source,
            Source::Pipe { .. }
                | Source::Socket { .. }
                | Source::Anon { .. }
                | Source::Inotify { .. }
        );
        plans.push(FdPlan {
            fd: e.fd,
            source,
            cloexec: flags & libc::O_CLOEXEC != 0,
            nonblock: created && flags & libc::O_NONBLOCK != 0,
        });
    }
    Ok((plans, notes))
}

/// Where fd `e` of process `pid` comes from, or why it cannot be restored.
fn source(pid: i32, e: &FdEntry, shape: Shape<'_>, notes: &mut Vec<String>) -> Result<Source> {
    let rebuilt_pipe = shape.pipes.contains(&e.ino);
    Ok(match &e.kind {
        FdKind::Tty if e.fd <= 2 => Source::Stdio(e.fd),
        FdKind::Tty => match shape.tty_stdio {
            Some(fd) => Source::Stdio(fd),
            None => reopen(e, false),
        },
        FdKind::Socket(_) if shape.sockets.contains(&e.ino) => Source::Socket { ino: e.ino },
        FdKind::Memfd(_) if shape.mapped.contains(&e.ino) => Source::Memfd {
            ino: e.ino,
            pos: e.pos,
        },
        FdKind::Memfd(_) | FdKind::File { deleted: true } if shape.nameless.contains(&e.ino) => {
            Source::Nameless {
                ino: e.ino,
                flags: e.flags as i32 & !(NOT_REOPENED | libc::O_CLOEXEC),
                pos: e.pos,
            }
        }
        FdKind::AnonInode(kind) if kind == "inotify" => match shape.inotify.get(&(pid, e.fd)) {
            Some(watches) => Source::Inotify {
                watches: watches.clone(),
            },
            None => {
                let why = "the image does not record its watches";
                return Err(unsupported(pid, e, why));
            }
        },
        FdKind::AnonInode(kind) if super::anon::KINDS.contains(&kind.as_str()) => Source::Anon {
            kind: kind.clone(),
            info: e.fdinfo_extra.clone(),
        },
        FdKind::Pipe | FdKind::Fifo | FdKind::Socket(_) if e.fd <= 2 && !rebuilt_pipe => {
            notes.push(format!(
                "fd {} was a {} to outside the image; it is now isotrace restore's own fd {}",
                e.fd,
                e.kind.name(),
                e.fd
            ));
            Source::Stdio(e.fd)
        }
        FdKind::Pipe => {
            if !rebuilt_pipe {
                notes.push(format!(
                    "pid {pid} fd {}: the pipe's other end was outside the image; it is now closed",
                    e.fd
                ));
            }
            Source::Pipe {
                ino: e.ino,
                write: is_write(e),
            }
        }
        FdKind::File { deleted: false } => reopen(e, true),
        // Reopened by path: `fifo` keeps it open for reading and writing
        // meanwhile, so the open does not block.
        FdKind::Fifo => reopen(e, false),
        // A directory's position is where its listing goes on: without it a
        // program frozen between two getdents64 batches lists the first
        // again (an index for a merged listing of isolation, a cookie the
        // filesystem keeps valid across opens for a native one).
        FdKind::Dir => reopen(e, true),
        FdKind::Device { .. } => reopen(e, false),
        FdKind::File { deleted: true } => {
            let why = "a deleted file's contents are not in the image";
            return Err(unsupported(pid, e, why));
        }
        _ => return Err(unsupported(pid, e, "this kind of fd is not restored yet")),
    })
}

fn is_write(e: &FdEntry) -> bool {
    e.flags as i32 & libc::O_ACCMODE == libc::O_WRONLY
}

fn reopen(e: &FdEntry, seek: bool) -> Source {
    Source::Open {
        path: e.target.clone(),
        flags: e.flags as i32 & !(NOT_REOPENED | libc::O_CLOEXEC),
        pos: seek.then_some(e.pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &BTreeSet<u64> = &BTreeSet::new();
    static NO_WATCHES: crate::dump::inotify::Watches = crate::dump::inotify::Watches::new();
    static NO_SHARING: crate::dump::open_files::Shared = crate::dump::open_files::Shared::new();

    fn shape(tty_stdio: Option<i32>, pipes: &BTreeSet<u64>) -> Shape<'_> {
        Shape {
            tty_stdio,
            pipes,
            sockets: NONE,
            mapped: NONE,
            nameless: NONE,
            inotify: &NO_WATCHES,
            open_files: &NO_SHARING,
        }
    }

    fn fd(n: i32, kind: FdKind, target: &str, flags: u32, ino: u64) -> FdEntry {
        FdEntry {
            fd: n,
            target: target.into(),
            flags,
            ino,
            kind,
            pos: 42,
            ..Default::default()
        }
    }

    #[test]
    fn a_directory_goes_back_to_its_position_a_device_is_reopened() {
        let proc = Process {
            pid: 7,
            fds: vec![
                fd(3, FdKind::Dir, "/usr/include", 0o2200000, 5),
                fd(
                    4,
                    FdKind::Device { major: 1, minor: 3 },
                    "/dev/null",
                    0o2,
                    6,
                ),
            ],
            ..Default::default()
        };
        let (plans, _) = plan(&proc, shape(None, NONE)).unwrap();
        assert!(
            matches!(&plans[0].source, Source::Open { pos: Some(42), .. }),
            "{:?}",
            plans[0].source
        );
        assert!(
            matches!(&plans[1].source, Source::Open { pos: None, .. }),
            "{:?}",
            plans[1].source
        );
    }

    #[test]
    fn plans_each_kind() {
        let proc = Process {
            pid: 7,
            fds: vec![
                fd(0, FdKind::Tty, "/dev/pts/1", 0o2, 1),
                fd(1, FdKind::Pipe, "pipe:[9]", 0o1, 9),
                fd(3, FdKind::File { deleted: false }, "/tmp/out", 0o2101101, 5),
                fd(4, FdKind::Pipe, "pipe:[8]", 0o0, 8),
                fd(5, FdKind::Pipe, "pipe:[8]", 0o2000001, 8),
            ],
            ..Default::default()
        };
        let pipes = rebuilt_pipes([&proc], &PipeData::new());
        let (plans, notes) = plan(&proc, shape(Some(0), &pipes)).unwrap();
        assert_eq!(plans[0].source, Source::Stdio(0));
        assert_eq!(plans[1].source, Source::Stdio(1));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            plans[2].source,
            Source::Open {
                path: "/tmp/out".into(),
                flags: 0o100001,
                pos: Some(42)
            }
        );
        assert!(plans[2].cloexec);
        assert_eq!(
            plans[3].source,
            Source::Pipe {
                ino: 8,
                write: false
            }
        );
        assert_eq!(
            plans[4].source,
            Source::Pipe {
                ino: 8,
                write: true
            }
        );
        assert!(plans[4].cloexec && !plans[3].cloexec);
    }

    #[test]
    fn rebuilds_pipes_shared_or_with_data() {
        let p = |pid, fds| Process {
            pid,
            fds,
            ..Default::default()
        };
        let procs = [
            p(
                1,
                vec![
                    fd(0, FdKind::Pipe, "pipe:[5]", 0o0, 5),
                    fd(1, FdKind::Pipe, "pipe:[6]", 0o1, 6),
                ],
            ),
            p(
                2,
                vec![
                    fd(0, FdKind::Pipe, "pipe:[5]", 0o0, 5),
                    fd(3, FdKind::Pipe, "pipe:[7]", 0o0, 7),
                ],
            ),
            p(
                3,
                vec![
                    fd(4, FdKind::Pipe, "pipe:[8]", 0o0, 8),
                    fd(5, FdKind::Pipe, "pipe:[8]", 0o1, 8),
                ],
            ),
        ];
        let data = PipeData::from([(7, b"x".to_vec())]);
        let got = rebuilt_pipes(procs.iter(), &data);
        // 5: two readers; 7: data; 8: both ends. 6: one writer, no data.
        assert_eq!(got, BTreeSet::from([5, 7, 8]));
        let (plans, _) = plan(&procs[0], shape(None, &got)).unwrap();
        assert_eq!(
            plans[0].source,
            Source::Pipe {
                ino: 5,
                write: false
            }
        );
        assert_eq!(plans[1].source, Source::Stdio(1));
    }

    #[test]
    fn refuses_unsupported_kinds() {
        let proc = Process {
            pid: 7,
            fds: vec![fd(
                6,
                FdKind::AnonInode("inotify".into()),
                "anon_inode:inotify",
                2,
                1,
            )],
            ..Default::default()
        };
        let err = plan(&proc, shape(None, &BTreeSet::new()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pid 7") && err.contains("fd 6") && err.contains("anon_inode"),
            "{err}"
        );
    }

    /// FIFOs are reopened by path; a deleted file and an unmapped memfd
    /// whose contents the image holds are made from them; fds sharing an
    /// open file come from the first one; inotify fds get their watches.
    #[test]
    fn plans_nameless_shared_fifo_and_inotify() {
        let proc = Process {
            pid: 7,
            fds: vec![
                fd(3, FdKind::Fifo, "/tmp/f", 0o4000, 11),
                fd(
                    4,
                    FdKind::File { deleted: true },
                    "/tmp/g (deleted)",
                    0o2,
                    12,
                ),
                fd(5, FdKind::Memfd("m".into()), "/memfd:m (deleted)", 0o2, 13),
                fd(6, FdKind::File { deleted: false }, "/tmp/h", 0o1, 14),
                fd(7, FdKind::File { deleted: false }, "/tmp/h", 0o1, 14),
                fd(
                    8,
                    FdKind::AnonInode("inotify".into()),
                    "anon_inode:inotify",
                    0,
                    1,
                ),
            ],
            ..Default::default()
        };
        let nameless = BTreeSet::from([12, 13]);
        let open_files =
            crate::dump::open_files::Shared::from([((7, 6), (7, 6)), ((7, 7), (7, 6))]);
        let watch = crate::dump::inotify::WatchPath {
            wd: 1,
            mask: 0x100,
            path: "/tmp".into(),
        };
        let inotify = crate::dump::inotify::Watches::from([((7, 8), vec![watch.clone()])]);
        let shape = Shape {
            nameless: &nameless,
            open_files: &open_files,
            inotify: &inotify,
            ..shape(None, NONE)
        };
        let (plans, _) = plan(&proc, shape).unwrap();
        let sources: Vec<&Source> = plans.iter().map(|p| &p.source).collect();
        assert_eq!(
            sources[0],
            &Source::Open {
                path: "/tmp/f".into(),
                flags: 0o4000,
                pos: None
            }
        );
        assert_eq!(
            sources[1],
            &Source::Nameless {
                ino: 12,
                flags: 0o2,
                pos: 42
            }
        );
        assert!(matches!(sources[2], Source::Nameless { ino: 13, .. }));
        for s in &sources[3..5] {
            assert!(matches!(s, Source::Shared { of: (7, 6), .. }), "{s:?}");
        }
        assert_eq!(
            sources[5],
            &Source::Inotify {
                watches: vec![watch]
            }
        );
    }
}
