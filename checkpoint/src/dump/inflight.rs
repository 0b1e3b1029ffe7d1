//! Files in flight: fds passed with SCM_RIGHTS in messages still queued
//! on the image's unix sockets (section `inflight.bin`, IMAGE.md).
//!
//! A MSG_PEEK that leaves room for control data copies the files of the
//! message it shows into the reader's table as new fds and leaves them
//! on the queue (net/unix/af_unix.c, unix_peek_fds); without that room
//! the kernel drops them and sets MSG_CTRUNC. The dump peeks with room,
//! through a pidfd_getfd(2) duplicate of the socket, so it holds each
//! file in flight as an fd of its own, and records it as an object the
//! restore can make again: a pipe end or a socket of the image, or a
//! file opened again by path. Any other kind refuses the checkpoint.
//!
//! On a stream socket a peek stops after the first skb that carries
//! files (unix_stream_read_generic), but may begin with bytes of skbs
//! that carry none, and a peek of fewer bytes still receives the files
//! of the next skb that has some. Where that skb begins is found with a
//! buffer one byte short, which the kernel fills with whole skbs only
//! (`sys::sockopt::peek_whole_skbs`). The queue is then recorded as
//! segments, each sent again by one sendmsg(2) with its files, so the
//! files come with the same bytes as before.

use super::embryos::Embryos;
use super::unix_pairs::Pairs;
use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{FdKind, ProcessTree};
use crate::sys::sockopt;
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// The section's name.
pub const SECTION: &str = "inflight.bin";

/// One file in flight, as the restore makes it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlightFile {
    /// An end of a pipe that a process of the image holds.
    Pipe { ino: u64, write: bool },
    /// A socket the restore rebuilds (a pair's end, a listener, a
    /// bound or connected UDP socket, a TCP connection...).
    Socket { ino: u64 },
    /// A file with no name (unlinked, or a memfd) that the image holds
    /// (`deleted.bin`, or a shared mapping's object), opened again
    /// through the restore's own fd of it with these flags and offset.
    Nameless { ino: u64, flags: i32, pos: u64 },
    /// A regular file or a directory, opened again by path with its
    /// status flags and offset (a new open file: an offset shared with
    /// a holder in the image is not kept shared).
    File { path: String, flags: i32, pos: u64 },
}

/// Bytes of a queue and the files passed with them, sent again by one
/// sendmsg(2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub data: Vec<u8>,
    pub files: Vec<FlightFile>,
}

/// Socket inode -> its whole queue, oldest first: for a stream socket
/// runs of bytes, for a datagram or seqpacket socket one message each.
/// A socket here has no queue in `sockets.bin` or `dgrams.bin`.
pub type Queues = BTreeMap<u64, Vec<Segment>>;

/// A segment as peeked, its files still fds of ours.
pub struct Raw {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Queues that carry files, as peeked: socket inode -> (pid, fd of a
/// holder, the segments), to be classified once the image's pairs are
/// known; or why a queue could not be read whole (a peek failed, or the
/// kernel cut the files short: MSG_CTRUNC, e.g. at RLIMIT_NOFILE), which
/// refuses the checkpoint rather than record part of it.
pub type Pending = BTreeMap<u64, (i32, i32, std::result::Result<Vec<Raw>, String>)>;

/// True if any segment carries files.
pub fn carries_files(raws: &[Raw]) -> bool {
    raws.iter().any(|r| !r.fds.is_empty())
}

/// An error for a peek whose control data the kernel cut short.
fn ctrunc() -> std::io::Error {
    std::io::Error::other("a message carries more files than one peek receives (MSG_CTRUNC)")
}

/// The whole queue of a stream socket (`fd`, a duplicate of ours), with
/// the files in flight where they are, read without consuming it. The
/// socket's peek offset is put back.
pub fn walk_stream(fd: &OwnedFd) -> std::io::Result<Vec<Raw>> {
    let queued = sockopt::ioctl_int(fd.as_fd(), libc::FIONREAD)?.max(0) as usize;
    let mut out = Vec::new();
    if queued == 0 {
        return Ok(out);
    }
    let old = sockopt::get_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    let walked = walk_from_zero(fd, queued, &mut out);
    set_peek_off(fd, old)?;
    walked?;
    Ok(out)
}

fn set_peek_off(fd: &OwnedFd, v: i32) -> std::io::Result<()> {
    sockopt::set(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_PEEK_OFF,
        &v.to_ne_bytes(),
    )?;
    Ok(())
}

fn walk_from_zero(fd: &OwnedFd, queued: usize, out: &mut Vec<Raw>) -> std::io::Result<()> {
    let mut buf = vec![0u8; queued];
    let mut at = 0usize;
    while at < queued {
        set_peek_off(fd, at as i32)?;
        let got = match sockopt::peek_with_fds(fd.as_fd(), &mut buf[..queued - at], false) {
            Ok(p) => p,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => return Err(e.into()),
        };
        if got.ctrunc {
            return Err(ctrunc());
        }
        if got.len == 0 {
            break;
        }
        let data = &buf[..got.len];
        if got.fds.is_empty() {
            out.push(Raw {
                data: data.to_vec(),
                fds: Vec::new(),
            });
        } else {
            // Only the last skb of this read carries files; where it
            // begins is where whole skbs stop fitting one byte short.
            set_peek_off(fd, at as i32)?;
            let lo = sockopt::peek_whole_skbs(fd.as_fd(), got.len - 1)?;
            if lo > 0 {
                out.push(Raw {
                    data: data[..lo].to_vec(),
                    fds: Vec::new(),
                });
            }
            out.push(Raw {
                data: data[lo..].to_vec(),
                fds: got.fds,
            });
        }
        at += got.len;
    }
    Ok(())
}

/// What the image holds that a file in flight may be.
#[derive(Default)]
pub struct Known {
    /// Inodes of the pipes the image's processes hold.
    pub pipes: BTreeSet<u64>,
    /// Inodes of the unix sockets of the image's pairs (a queue is sent
    /// again through its socket's peer).
    pub paired: BTreeSet<u64>,
    /// Inodes of every socket a restore rebuilds.
    pub sockets: BTreeSet<u64>,
    /// Inodes of the nameless files (unlinked files, memfds) the
    /// processes hold, and of the shared memory objects they map.
    pub nameless: BTreeSet<u64>,
}

impl Known {
    pub fn of(tree: &ProcessTree, pairs: &Pairs, embryos: &Embryos) -> Known {
        let procs: Vec<&crate::model::Process> = tree.processes.iter().collect();
        let fds = || tree.processes.iter().flat_map(|p| &p.fds);
        let shm = tree
            .processes
            .iter()
            .flat_map(|p| &p.vmas)
            .filter(|v| v.shared() && v.inode != 0 && crate::restore::shm::is_shm(&v.path))
            .map(|v| v.inode);
        Known {
            pipes: fds()
                .filter(|e| e.kind == FdKind::Pipe)
                .map(|e| e.ino)
                .collect(),
            paired: pairs.keys().copied().collect(),
            sockets: crate::restore::sockets::rebuilt(&procs, pairs, embryos),
            nameless: fds()
                .filter(|e| matches!(e.kind, FdKind::File { deleted: true } | FdKind::Memfd(_)))
                .map(|e| e.ino)
                .chain(shm)
                .collect(),
        }
    }
}

/// The number in a "kind:[N]" link.
fn bracketed(link: &str, kind: &str) -> Option<u64> {
    link.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// What the file in flight that `fd` (ours) refers to is, or why it
/// cannot be carried.
pub fn classify(fd: &OwnedFd, known: &Known) -> std::result::Result<FlightFile, String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("an fd in flight that cannot be read ({e})"))?;
    let flags = sockopt::fd_flags(fd.as_fd()).map_err(|e| format!("{link}: F_GETFL: {e}"))?;
    if let Some(ino) = bracketed(&link, "pipe") {
        if !known.pipes.contains(&ino) {
            return Err(format!(
                "{link} in flight, a pipe no process of the group holds"
            ));
        }
        return match flags & libc::O_ACCMODE {
            libc::O_RDONLY => Ok(FlightFile::Pipe { ino, write: false }),
            libc::O_WRONLY => Ok(FlightFile::Pipe { ino, write: true }),
            _ => Err(format!("{link} in flight, opened read-write")),
        };
    }
    if let Some(ino) = bracketed(&link, "socket") {
        if !known.sockets.contains(&ino) {
            return Err(format!(
                "{link} in flight, a socket the restore does not rebuild (no process of the group holds it, or of a kind not restored)"
            ));
        }
        return Ok(FlightFile::Socket { ino });
    }
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("{link} in flight: {e}"))?;
    let plain = meta.is_file() || meta.is_dir();
    if !plain || !link.starts_with('/') {
        return Err(format!("{link} in flight, a kind that is not carried"));
    }
    let flags = flags & !libc::O_CLOEXEC;
    let pos = sockopt::fd_offset(fd.as_fd()).map_err(|e| format!("{link}: lseek: {e}"))?;
    if link.ends_with(" (deleted)") {
        use std::os::unix::fs::MetadataExt;
        let ino = meta.ino();
        if !meta.is_file() || !known.nameless.contains(&ino) {
            return Err(format!(
                "{link} in flight, a file with no name that no process of the group holds"
            ));
        }
        return Ok(FlightFile::Nameless { ino, flags, pos });
    }
    Ok(FlightFile::File {
        path: link,
        flags,
        pos,
    })
}

/// Classifies every pending queue: the queues to record, and for each
/// socket that carries a file that cannot be carried, the refusal,
/// naming the pid, the fd and the socket.
pub fn resolve(tree: &ProcessTree, pending: Pending, known: &Known) -> (Queues, Vec<String>) {
    let mut queues = Queues::new();
    let mut refusals = Vec::new();
    for (ino, (pid, fd, raws)) in pending {
        let target = tree
            .process(pid)
            .and_then(|p| p.fds.iter().find(|e| e.fd == fd))
            .map_or_else(|| format!("socket:[{ino}]"), |e| e.target.clone());
        let refuse =
            |why: String| format!("cannot checkpoint pid {pid}: fd {fd} (socket {target}): {why}");
        let raws = match raws {
            Ok(raws) => raws,
            Err(why) => {
                refusals.push(refuse(format!("its queue cannot be read whole: {why}")));
                continue;
            }
        };
        if !known.paired.contains(&ino) {
            refusals.push(refuse(
                "a message queued on it passes files (SCM_RIGHTS), and its peer is not in the group to send them again".into(),
            ));
            continue;
        }
        let mut segments = Vec::new();
        let mut refused = None;
        for raw in raws {
            let mut files = Vec::new();
            for f in &raw.fds {
                match classify(f, known) {
                    Ok(file) => files.push(file),
                    Err(why) => {
                        refused.get_or_insert(why);
                    }
                }
            }
            segments.push(Segment {
                data: raw.data,
                files,
            });
        }
        match refused {
            Some(why) => refusals.push(refuse(format!("a message queued on it passes {why}"))),
            None => {
                queues.insert(ino, segments);
            }
        }
    }
    (queues, refusals)
}

/// Writes the queues that carry files into the image being written (no
/// section when there are none); returns the refusals (see [`resolve`]).
pub fn write(
    tree: &ProcessTree,
    pending: Pending,
    known: &Known,
    writer: &mut ImageWriter,
) -> Result<Vec<String>> {
    let (queues, refusals) = resolve(tree, pending, known);
    writer.write_optional(SECTION, &queues)?;
    Ok(refusals)
}

/// The queues with files in flight of an image (none without the section).
pub fn read(image: &Image) -> Result<Queues> {
    image.optional(SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn send_with(s: &UnixStream, data: &[u8], fd: Option<i32>) {
        crate::sys::sockopt::send_with_fds(s.as_fd(), data, fd.as_slice()).unwrap();
    }

    /// Bytes before, between and after two messages that pass files are
    /// found whole, the files at their own bytes, and the queue is left
    /// as it was.
    #[test]
    fn walks_a_stream_queue_with_files() {
        let (a, b) = UnixStream::pair().unwrap();
        let (p0, p1) = nix::unistd::pipe().unwrap();
        send_with(&a, b"aaa", None);
        send_with(&a, b"bbbb", Some(p0.as_raw_fd()));
        send_with(&a, b"cc", None);
        send_with(&a, b"d", Some(p1.as_raw_fd()));
        send_with(&a, b"eeee", None);
        let dup: OwnedFd = b.try_clone().unwrap().into();
        let raws = walk_stream(&dup).unwrap();
        let shape: Vec<(&[u8], usize)> = raws.iter().map(|r| (&r.data[..], r.fds.len())).collect();
        assert_eq!(
            shape,
            vec![
                (&b"aaa"[..], 0),
                (&b"bbbb"[..], 1),
                (&b"cc"[..], 0),
                (&b"d"[..], 1),
                (&b"eeee"[..], 0)
            ]
        );
        let peek_off = sockopt::get_int(dup.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF);
        assert_eq!(peek_off.unwrap(), -1, "the peek offset is put back");
        let mut all = [0u8; 64];
        let n = sockopt::peek_message(dup.as_fd(), &mut all).unwrap();
        assert_eq!(&all[..n], b"aaabbbb", "the queue is still there");
    }

    #[test]
    fn classifies_pipes_sockets_and_files() {
        let (p0, p1) = nix::unistd::pipe().unwrap();
        let ino = |fd: &OwnedFd| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .unwrap()
                .ino()
        };
        let mut known = Known::default();
        assert!(classify(&p1, &known).unwrap_err().contains("pipe"));
        known.pipes.insert(ino(&p0));
        assert_eq!(
            classify(&p1, &known).unwrap(),
            FlightFile::Pipe {
                ino: ino(&p0),
                write: true
            }
        );
        let file: OwnedFd = std::fs::File::open("/proc/self/exe").unwrap().into();
        assert!(matches!(
            classify(&file, &known),
            Ok(FlightFile::File { pos: 0, .. })
        ));
        let dev: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert!(classify(&dev, &known).unwrap_err().contains("/dev/null"));
    }
}
