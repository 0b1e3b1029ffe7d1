//! Unix datagram sockets of a restore that are not one end of a pair
//! (`unix_pairs`): unconnected, unnamed or bound to a path or an abstract
//! name; and listening unix stream and seqpacket sockets, bound again and
//! listening. Each is made in the root vessel above the fd line, like every
//! socket (`sockets`), bound again to its name, and given back the
//! messages queued on it (`dgrams.bin`), sent to that name from a
//! scratch socket (their senders were unnamed or are gone: a reply
//! address is not kept).
//!
//! A path name still exists as a socket file after the original process
//! is gone, and bind(2) fails with EADDRINUSE while it does. The file is
//! removed only if nothing answers there: sending to a socket file whose
//! socket is closed fails with ECONNREFUSED (unix(7)).

use super::fds::{close, dup_above};
use super::inject::Vessel;
use crate::dump::dgrams::Dgrams;
use crate::dump::embryos::Embryos;
use crate::dump::unix_pairs::Pairs;
use crate::error::{Error, Result};
use crate::model::{FdKind, Process, SocketInfo};
use std::collections::BTreeMap;

/// The unconnected unix datagram sockets of `procs` with no pair: inode
/// -> name ("" unnamed, "@..." abstract, else a path).
pub fn unpaired(procs: &[&Process], pairs: &Pairs) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for e in procs.iter().flat_map(|p| &p.fds) {
        if let FdKind::Socket(Some(SocketInfo::Unix { kind, state, path })) = &e.kind {
            if kind == "dgram" && state == "unconnected" && !pairs.contains_key(&e.ino) {
                out.insert(e.ino, path.clone());
            }
        }
    }
    out
}

/// The listening unix stream and seqpacket sockets of `procs`: inode ->
/// (socket type, name as in [`unpaired`]).
pub fn listening(procs: &[&Process]) -> BTreeMap<u64, (u64, String)> {
    let mut out = BTreeMap::new();
    for e in procs.iter().flat_map(|p| &p.fds) {
        if let FdKind::Socket(Some(SocketInfo::Unix { kind, state, path })) = &e.kind {
            let ty = match kind.as_str() {
                "stream" => libc::SOCK_STREAM,
                "seqpacket" => libc::SOCK_SEQPACKET,
                _ => continue,
            };
            if state == "listen" {
                out.insert(e.ino, (ty as u64, path.clone()));
            }
        }
    }
    out
}

/// struct sockaddr_un for `name` and its length (an abstract name has a
/// NUL first byte and no terminator, unix(7)).
fn sockaddr(name: &str) -> Option<(Vec<u8>, u64)> {
    let mut sa = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    let bytes = match name.strip_prefix('@') {
        Some(abs) => [&[0u8][..], abs.as_bytes()].concat(),
        None => [name.as_bytes(), &[0u8][..]].concat(),
    };
    if bytes.len() > 108 {
        return None;
    }
    sa.extend(&bytes);
    let len = sa.len() as u64;
    Some((sa, len))
}

/// Makes every socket of [`unpaired`] above `line`, adds it to `fds`,
/// and requeues its messages. Returns notes.
pub fn create(
    v: &Vessel,
    procs: &[&Process],
    pairs: &Pairs,
    queued: &Dgrams,
    line: u64,
    map: &dyn Fn(&str) -> String,
    fds: &mut BTreeMap<u64, u64>,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for (ino, name) in unpaired(procs, pairs) {
        let (fd, name) = named_socket(v, libc::SOCK_DGRAM as u64, ino, &name, map)?;
        if let Some(msgs) = queued.get(&ino).filter(|_| !name.is_empty()) {
            notes.extend(requeue(v, ino, &name, msgs)?);
        }
        fds.insert(ino, dup_above(v, fd, line)?);
        close(v, fd)?;
    }
    for (ino, (ty, name)) in listening(procs) {
        let (fd, _) = named_socket(v, ty, ino, &name, map)?;
        // The backlog is not recorded (unix_diag would have it): the
        // system's largest. Connections the original had not accepted yet
        // come back in `connect_waiting`.
        let backlog = libc::SOMAXCONN as u64;
        v.call("listen", libc::SYS_listen, [fd, backlog, 0, 0, 0, 0])?;
        fds.insert(ino, dup_above(v, fd, line)?);
        close(v, fd)?;
    }
    Ok(notes)
}

/// Connects the clients of the connections that waited in each unix
/// listener's accept queue (`dump::embryos`) to the rebuilt listener
/// (its fd in `fds`), in queue order, each a new socket of the
/// listener's type above `line`, added to `fds`: the kernel queues a new
/// embryo for each, which the program accepts as it would have.
pub fn connect_waiting(
    v: &Vessel,
    procs: &[&Process],
    embryos: &Embryos,
    line: u64,
    map: &dyn Fn(&str) -> String,
    fds: &mut BTreeMap<u64, u64>,
) -> Result<()> {
    let listeners = listening(procs);
    for (ino, clients) in embryos {
        let bad = |why: String| Error::Invalid {
            what: format!("cannot restore the connections waiting on unix listener {ino}: {why}"),
        };
        let (ty, name) = listeners
            .get(ino)
            .ok_or_else(|| bad("it is not in the image".into()))?;
        let name = if name.starts_with('/') {
            map(name)
        } else {
            name.clone()
        };
        let (sa, len) = sockaddr(&name)
            .filter(|_| !name.is_empty())
            .ok_or_else(|| bad(format!("no name to connect to ({name:?})")))?;
        for client in clients {
            let fd = v.call(
                "socket AF_UNIX",
                libc::SYS_socket,
                [
                    libc::AF_UNIX as u64,
                    *ty | libc::SOCK_CLOEXEC as u64,
                    0,
                    0,
                    0,
                    0,
                ],
            )?;
            let at = v.stage(0, &sa)?;
            let rc = v.raw(libc::SYS_connect, [fd, at, len, 0, 0, 0])?;
            if rc < 0 {
                let e = nix::errno::Errno::from_raw(-rc as i32);
                return Err(bad(format!("connect of socket {client} to {name}: {e}")));
            }
            fds.insert(*client, dup_above(v, fd, line)?);
            close(v, fd)?;
        }
    }
    Ok(())
}

/// A new AF_UNIX socket of type `ty` in the vessel, bound to `name` (a
/// path mapped by `map`, an abstract "@name", or "" for none). Returns the
/// fd and the name it is bound to.
fn named_socket(
    v: &Vessel,
    ty: u64,
    ino: u64,
    name: &str,
    map: &dyn Fn(&str) -> String,
) -> Result<(u64, String)> {
    let name = if name.starts_with('/') {
        map(name)
    } else {
        name.to_owned()
    };
    let ty = ty | libc::SOCK_CLOEXEC as u64;
    let fd = v.call(
        "socket AF_UNIX",
        libc::SYS_socket,
        [libc::AF_UNIX as u64, ty, 0, 0, 0, 0],
    )?;
    if !name.is_empty() {
        bind(v, fd, ino, &name)?;
    }
    Ok((fd, name))
}

fn bind(v: &Vessel, fd: u64, ino: u64, name: &str) -> Result<()> {
    let (sa, len) = sockaddr(name).ok_or_else(|| Error::Invalid {
        what: format!("unix socket {ino}: name {name} is too long"),
    })?;
    let at = v.stage(0, &sa)?;
    let mut rc = v.raw(libc::SYS_bind, [fd, at, len, 0, 0, 0])?;
    if rc == -(libc::EADDRINUSE as i64) && name.starts_with('/') && stale(v, name)? {
        let p = v.stage_path(name)?;
        v.call(
            "unlink a stale socket file",
            libc::SYS_unlink,
            [p, 0, 0, 0, 0, 0],
        )?;
        let at = v.stage(0, &sa)?;
        rc = v.raw(libc::SYS_bind, [fd, at, len, 0, 0, 0])?;
    }
    if rc < 0 {
        return Err(Error::Invalid {
            what: format!(
                "cannot restore unix socket {ino}: bind {name}: {}",
                nix::errno::Errno::from_raw(-rc as i32)
            ),
        });
    }
    Ok(())
}

/// True if a datagram sent to `name` is refused: no socket is bound
/// there any more.
fn stale(v: &Vessel, name: &str) -> Result<bool> {
    let rc = scratch_send(v, name, &[])?;
    Ok(rc == -(libc::ECONNREFUSED as i64))
}

/// sendto(2) of `msg` to `name` from a new unnamed datagram socket.
fn scratch_send(v: &Vessel, name: &str, msg: &[u8]) -> Result<i64> {
    let Some((sa, len)) = sockaddr(name) else {
        return Ok(-(libc::ENAMETOOLONG as i64));
    };
    let ty = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64;
    let s = v.call(
        "socket AF_UNIX",
        libc::SYS_socket,
        [libc::AF_UNIX as u64, ty, 0, 0, 0, 0],
    )?;
    // The address first, then the message, in the data page.
    let at = v.stage(0, &sa)?;
    let body = v.stage(128, msg)?;
    let flags = libc::MSG_DONTWAIT as u64;
    let rc = v.raw(
        libc::SYS_sendto,
        [s, body, msg.len() as u64, flags, at, len],
    )?;
    close(v, s)?;
    Ok(rc)
}

/// Sends the recorded messages to the socket bound at `name`, in order.
fn requeue(v: &Vessel, ino: u64, name: &str, msgs: &[Vec<u8>]) -> Result<Vec<String>> {
    for m in msgs {
        // The data page holds the address too: longer messages would
        // need a scratch mapping (restore/dgrams.rs); they are rare on
        // named sockets and are reported instead.
        let rc = if m.len() <= 1800 {
            scratch_send(v, name, m)?
        } else {
            -(libc::EMSGSIZE as i64)
        };
        if rc != m.len() as i64 {
            return Ok(vec![format!(
                "unix socket {ino} ({name}): {} queued messages were not sent again",
                msgs.len()
            )]);
        }
    }
    Ok(Vec::new())
}
