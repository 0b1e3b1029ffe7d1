//! FIFOs of a restore. Each fd of a FIFO is reopened by its path with its
//! own flags, but opening a FIFO for reading blocks until it has a writer,
//! and for writing until it has a reader (or fails with ENXIO under
//! O_NONBLOCK). So, as [`prepare`] runs in the root vessel before the
//! other processes are cloned from it, it opens every FIFO of the image
//! O_RDWR, which never blocks on Linux (fifo(7)), above the fd line: a
//! keeper each vessel inherits, so that its own opens find both a reader
//! and a writer, and that `fds::apply` closes with everything above the
//! line. The bytes the image recorded (`fifos.bin`) are written through
//! the keeper: they stay in the FIFO as long as any fd holds it open.

use super::fds::{close, dup_above, write_all};
use super::inject::Vessel;
use crate::dump::pipes::PipeData;
use crate::error::{Error, Result};
use crate::model::{FdKind, Process};
use std::collections::BTreeSet;

/// Opens a keeper for every FIFO some fd of `procs` holds (at its path
/// mapped by `map`), above `line`, and refills each with `data`.
pub fn prepare(
    v: &Vessel,
    procs: &[&Process],
    data: &PipeData,
    line: u64,
    map: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (pid, e) in procs
        .iter()
        .flat_map(|p| p.fds.iter().map(move |e| (p.pid, e)))
    {
        if e.kind != FdKind::Fifo || !seen.insert(e.ino) {
            continue;
        }
        let path = map(&e.target);
        let at = v.stage_path(&path)?;
        let flags = (libc::O_RDWR | libc::O_CLOEXEC) as u64;
        let rc = v.raw(
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
        )?;
        if rc < 0 {
            return Err(Error::Invalid {
                what: format!(
                    "cannot restore pid {pid}: fd {} (fifo {path}): open: {}",
                    e.fd,
                    nix::errno::Errno::from_raw(-rc as i32)
                ),
            });
        }
        let keeper = dup_above(v, rc as u64, line)?;
        close(v, rc as u64)?;
        if let Some(bytes) = data.get(&e.ino) {
            if bytes.len() > 65536 {
                v.call(
                    "fcntl F_SETPIPE_SZ",
                    libc::SYS_fcntl,
                    [
                        keeper,
                        libc::F_SETPIPE_SZ as u64,
                        bytes.len() as u64,
                        0,
                        0,
                        0,
                    ],
                )?;
            }
            write_all(v, keeper, bytes)?;
        }
    }
    Ok(())
}
