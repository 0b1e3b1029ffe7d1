//! Messages queued on the image's unix datagram and seqpacket socketpairs
//! (`dump::dgrams`), sent again one write(2) each, through the peer end,
//! so each keeps its boundary. A message bigger than the vessel's data
//! page is staged in a scratch mapping made for it.

use super::inject::Vessel;
use crate::dump::dgrams::Dgrams;
use crate::dump::unix_pairs::Pairs;
use crate::error::Result;
use std::collections::BTreeMap;

/// Room in the data page for one message (the rest holds paths).
const STAGED: usize = 2048;

/// Sends every queued message of `dgrams` into its socket, through its
/// peer's end in `sockets` (inode -> the root vessel's fd). Returns notes.
pub fn refill(
    v: &Vessel,
    dgrams: &Dgrams,
    pairs: &Pairs,
    sockets: &BTreeMap<u64, u64>,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for (ino, msgs) in dgrams {
        // A socket with no pair is `unix_dgram`'s.
        let Some(pair) = pairs.get(ino) else {
            continue;
        };
        let Some(&peer) = sockets.get(&pair.peer) else {
            notes.push(format!(
                "unix socket {ino}: {} queued messages are lost (its peer is not restored)",
                msgs.len()
            ));
            continue;
        };
        for m in msgs {
            let rc = send(v, peer, m)?;
            if rc != m.len() as i64 {
                notes.push(format!(
                    "unix socket {ino}: a queued message of {} bytes was not sent again ({})",
                    m.len(),
                    if rc < 0 {
                        nix::errno::Errno::from_raw(-rc as i32).to_string()
                    } else {
                        format!("{rc} bytes")
                    }
                ));
                break;
            }
        }
    }
    Ok(notes)
}

/// write(2) of `msg` on the vessel's `fd`, from the data page or a
/// scratch mapping; the raw result.
fn send(v: &Vessel, fd: u64, msg: &[u8]) -> Result<i64> {
    if msg.len() <= STAGED {
        let at = v.stage(0, msg)?;
        return v.raw(libc::SYS_write, [fd, at, msg.len() as u64, 0, 0, 0]);
    }
    let len = (msg.len() as u64).div_ceil(crate::PAGE_SIZE) * crate::PAGE_SIZE;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let at = v.call(
        "mmap a scratch page for a message",
        libc::SYS_mmap,
        [0, len, prot, flags, u64::MAX, 0],
    )?;
    v.poke(at, msg)?;
    let rc = v.raw(libc::SYS_write, [fd, at, msg.len() as u64, 0, 0, 0])?;
    v.call("munmap", libc::SYS_munmap, [at, len, 0, 0, 0, 0])?;
    Ok(rc)
}
