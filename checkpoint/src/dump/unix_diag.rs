//! sock_diag(7) for AF_UNIX (<linux/unix_diag.h>): one dump of every unix
//! socket of the caller's network namespace, with the attributes asked
//! for. Shared by the socket-pair reader (unix_pairs.rs: peers and
//! shutdown) and the accept-queue reader (embryos.rs: a listener's
//! embryos and queue lengths).

use std::collections::BTreeMap;

/// unix_diag_req.udiag_show bits.
pub const SHOW_PEER: u32 = 0x4;
pub const SHOW_ICONS: u32 = 0x8;
pub const SHOW_RQLEN: u32 = 0x10;
/// Attribute types of a unix_diag_msg.
pub const PEER: u16 = 2;
pub const ICONS: u16 = 3;
pub const RQLEN: u16 = 4;
pub const SHUTDOWN: u16 = 6;

/// One socket's attributes: (type, payload) in the kernel's order.
pub type Attrs = Vec<(u16, Vec<u8>)>;

/// Every unix socket of the network namespace, by inode, with the
/// attributes `show` asks for (SHOW_*).
pub fn dump(show: u32) -> std::io::Result<BTreeMap<u64, Attrs>> {
    let mut all = BTreeMap::new();
    crate::sys::netlink_query(libc::NETLINK_SOCK_DIAG, &request(show), |b| {
        parse(b, &mut all)
    })?;
    Ok(all)
}

/// nlmsghdr + unix_diag_req: every state.
fn request(show: u32) -> Vec<u8> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    let mut req = Vec::with_capacity(40);
    req.extend(40u32.to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend(NLM_F_REQUEST_DUMP.to_ne_bytes());
    req.extend(1u32.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend([libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend(u32::MAX.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend(show.to_ne_bytes());
    req.extend([0u8; 8]);
    req
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Adds the sockets of one batch of netlink messages; true at
/// NLMSG_DONE.
fn parse(buf: &[u8], all: &mut BTreeMap<u64, Attrs>) -> std::io::Result<bool> {
    messages(buf, |msg| {
        // unix_diag_msg: family, type, state, pad, ino (u32), cookie[2];
        // then rtattrs (u16 len, u16 type, payload, 4-byte aligned).
        let ino = u32_at(msg, 4).ok_or_else(bad)? as u64;
        let attrs = all.entry(ino).or_default();
        let mut rest = msg.get(16..).unwrap_or_default();
        while let (Some(alen), Some(atype)) = (u16_at(rest, 0), u16_at(rest, 2)) {
            let alen = alen as usize;
            if alen < 4 || alen > rest.len() {
                break;
            }
            attrs.push((atype, rest[4..alen].to_vec()));
            rest = &rest[alen.next_multiple_of(4).min(rest.len())..];
        }
        Ok(())
    })
}

/// A malformed sock_diag answer.
pub fn bad() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad sock_diag message")
}

/// Walks one batch of netlink messages (a sock_diag dump's answer),
/// handing each message's payload (after its nlmsghdr) to `each`; true at
/// NLMSG_DONE, an error at NLMSG_ERROR or a malformed header.
pub fn messages(
    mut buf: &[u8],
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    while buf.len() >= 16 {
        let len = u32_at(buf, 0).ok_or_else(bad)? as usize;
        if len < 16 || len > buf.len() {
            return Err(bad());
        }
        match u16_at(buf, 4).ok_or_else(bad)? {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(buf, 16).ok_or_else(bad)? as i32;
                return Err(std::io::Error::from_raw_os_error(-errno));
            }
            _ => each(&buf[16..len])?,
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ok(false)
}
