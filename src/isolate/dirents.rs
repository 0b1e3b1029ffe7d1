//! Merged directory listings: getdents64 emulated over the union of the
//! host directory and the environment's private one.
//!
//! The cursor is the real file offset of the tracee's directory fd, read
//! and moved through a pidfd_getfd(2) duplicate that shares the open file
//! description. So rewinddir()/seekdir() (lseek on the fd) keep working
//! without being trapped, and entry `i`'s d_off is `i + 1`.

use isotrace_tracer::{Call, TraceeView, Verdict};

/// One entry of a merged listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// DT_* type.
    pub dtype: u8,
}

/// Encodes entries `[start..]` as `struct linux_dirent64` records into at
/// most `room` bytes. Returns the bytes and the index after the last entry
/// written. Fails with EINVAL when even the first entry does not fit, as
/// the kernel does for a too-small buffer.
pub fn encode(entries: &[Entry], start: usize, room: usize) -> Result<(Vec<u8>, usize), i32> {
    let mut out = Vec::new();
    let mut i = start;
    while let Some(e) = entries.get(i) {
        // d_ino u64, d_off i64, d_reclen u16, d_type u8, name, NUL; 8-aligned.
        let reclen = (19 + e.name.len() + 1).div_ceil(8) * 8;
        if out.len() + reclen > room {
            break;
        }
        let at = out.len();
        out.extend_from_slice(&e.ino.to_ne_bytes());
        out.extend_from_slice(&((i + 1) as i64).to_ne_bytes());
        out.extend_from_slice(&(reclen as u16).to_ne_bytes());
        out.push(e.dtype);
        out.extend_from_slice(&e.name);
        out.resize(at + reclen, 0);
        i += 1;
    }
    if i == start && start < entries.len() {
        return Err(libc::EINVAL);
    }
    Ok((out, i))
}

impl super::Isolation {
    pub(super) fn getdents64(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
    ) -> Result<Verdict, i32> {
        let fd = call.args[0] as i32;
        let Some(real) = tv.fd_path(fd) else {
            return Err(libc::EBADF);
        };
        let Some(public) = isotrace_idb::public_of(&self.view, &real) else {
            return Ok(Verdict::CONTINUE);
        };
        let r = self
            .resolver(call, tv)
            .resolve(None, &super::paths::bytes(&public), true)
            .map_err(|e| e.errno())?;
        if r.loc != Some(isotrace_idb::Loc::Upper) {
            // A host directory with nothing of the environment in it (or an
            // exception): the kernel's own listing is the merged one.
            return Ok(Verdict::CONTINUE);
        }
        let room = call.args[2] as usize;
        let buf = call.args[1];
        let act = self.dirs.emulate(&self.view, call.pid, fd, &r, room, tv)?;
        Ok(Verdict {
            action: act.into_action(buf),
            exit_stop: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: &str) -> Entry {
        Entry {
            name: n.as_bytes().to_vec(),
            ino: 7,
            dtype: libc::DT_REG,
        }
    }

    #[test]
    fn an_exited_process_leaves_no_listing_behind() {
        let mut l = Listings::default();
        for (pid, fd) in [(10, 3), (10, 4), (11, 3)] {
            l.open.insert((pid, fd), ("/d".into(), vec![e("a")]));
        }
        l.forget(10);
        assert_eq!(l.open.keys().copied().collect::<Vec<_>>(), vec![(11, 3)]);
    }

    #[test]
    fn records_are_aligned_and_resumable() {
        let all = vec![e("."), e(".."), e("a"), e("long-name-here")];
        let (buf, next) = encode(&all, 0, 48).unwrap();
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(next, 2);
        let (rest, end) = encode(&all, next, 4096).unwrap();
        assert_eq!(end, 4);
        let mut at = 0;
        let mut seen = Vec::new();
        while at < rest.len() {
            let off = i64::from_ne_bytes(rest[at + 8..at + 16].try_into().unwrap());
            let len = u16::from_ne_bytes(rest[at + 16..at + 18].try_into().unwrap()) as usize;
            let name: Vec<u8> = rest[at + 19..at + len]
                .iter()
                .copied()
                .take_while(|&b| b != 0)
                .collect();
            seen.push((off, String::from_utf8(name).unwrap()));
            at += len;
        }
        assert_eq!(
            seen,
            vec![(3, "a".to_string()), (4, "long-name-here".to_string())]
        );
        assert_eq!(encode(&all, 4, 4096).unwrap(), (vec![], 4));
        assert_eq!(encode(&all, 0, 8), Err(libc::EINVAL));
    }
}

/// Merged listings of the directories tracees are reading, per (pid, fd),
/// computed when a read starts at offset 0 and reused for the next batches.
#[derive(Default)]
pub struct Listings {
    open: std::collections::HashMap<(i32, i32), (std::path::PathBuf, Vec<Entry>)>,
}

/// An emulated getdents64: the records to store and the byte count.
pub struct Emulated {
    bytes: Vec<u8>,
}

impl Emulated {
    pub fn into_action(self, buf: u64) -> isotrace_tracer::Action {
        let ret = self.bytes.len() as i64;
        isotrace_tracer::Action::EmulateWrite {
            ret,
            writes: vec![isotrace_tracer::MemWrite {
                addr: buf,
                bytes: self.bytes,
            }],
        }
    }
}

impl Listings {
    /// Process `pid` exited: its listings go (a long build runs thousands
    /// of processes; each would otherwise leave its last listing behind).
    pub fn forget(&mut self, pid: i32) {
        self.open.retain(|(p, _), _| *p != pid);
    }

    pub fn emulate(
        &mut self,
        view: &isotrace_idb::View,
        pid: i32,
        fd: i32,
        dir: &isotrace_idb::Resolved,
        room: usize,
        tv: &mut dyn isotrace_tracer::TraceeView,
    ) -> Result<Emulated, i32> {
        use std::io::Seek;
        let dup = tv.dup_fd(fd).ok_or(libc::EBADF)?;
        let mut file = std::fs::File::from(dup);
        let pos = file.stream_position().map_err(os)? as usize;
        let key = (pid, fd);
        let stale = pos == 0 || self.open.get(&key).is_none_or(|(p, _)| *p != dir.public);
        if stale {
            let list = isotrace_idb::merged_listing(view, &isotrace_idb::RealFs, dir)
                .map_err(|e| e.errno())?;
            let entries = list
                .into_iter()
                .map(|e| Entry {
                    name: e.name.into_encoded_bytes(),
                    ino: e.ino,
                    dtype: e.d_type,
                })
                .collect();
            self.open.insert(key, (dir.public.clone(), entries));
        }
        let entries = &self.open[&key].1;
        let (bytes, next) = encode(entries, pos, room)?;
        file.seek(std::io::SeekFrom::Start(next as u64))
            .map_err(os)?;
        Ok(Emulated { bytes })
    }
}

fn os(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
