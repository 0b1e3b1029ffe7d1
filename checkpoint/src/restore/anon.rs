//! Anonymous-inode files rebuilt from what their fdinfo recorded (proc(5),
//! /proc/PID/fdinfo): eventfd (its counter), signalfd (its mask), timerfd
//! (clock, remaining time, interval) and epoll (its interest list, added
//! once every other fd of the process is in place, since each entry
//! names an fd of the process).
//!
//! All anonymous inodes share one inode number, so the image cannot tell
//! two fds of one such file from two files: each fd gets its own object.

use super::inject::Vessel;
use crate::error::{Error, Result};

/// The kinds rebuilt here, by their /proc link name.
pub const KINDS: [&str; 4] = ["[eventfd]", "[signalfd]", "[timerfd]", "[eventpoll]"];

/// The text after `key` on its fdinfo line.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

fn bad(kind: &str, what: &str) -> Error {
    Error::Invalid {
        what: format!("cannot restore a {kind} fd: its fdinfo has no valid {what}"),
    }
}

/// "(SECONDS, NANOSECONDS)" of a timerfd's fdinfo.
fn pair(text: &str) -> Option<(u64, u64)> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (s, ns) = inner.split_once(',')?;
    Some((s.trim().parse().ok()?, ns.trim().parse().ok()?))
}

/// One epoll interest: target fd, events, data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

/// The `tfd:` lines of an epoll's fdinfo (fs/eventpoll.c, ep_show_fdinfo).
pub fn interests(info: &str) -> Vec<Interest> {
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["tfd:", fd, "events:", ev, "data:", data, ..] => Some(Interest {
                    fd: fd.parse().ok()?,
                    events: u32::from_str_radix(ev, 16).ok()?,
                    data: u64::from_str_radix(data, 16).ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Creates the object of an fd of kind `kind` (one of [`KINDS`]) from its
/// fdinfo `info`; an epoll is created empty (see [`add_interests`]).
/// Returns the vessel's new fd and notes.
pub fn create(v: &Vessel, kind: &str, info: &str) -> Result<(u64, Vec<String>)> {
    let mut notes = Vec::new();
    let fd = match kind {
        "[eventfd]" => {
            let count = field(info, "eventfd-count:")
                .and_then(|c| u64::from_str_radix(c, 16).ok())
                .ok_or_else(|| bad(kind, "eventfd-count"))?;
            const EFD_SEMAPHORE: u64 = 1;
            let sem = field(info, "eventfd-semaphore:") == Some("1");
            let flags = if sem { EFD_SEMAPHORE } else { 0 };
            let fd = v.call("eventfd2", libc::SYS_eventfd2, [0, flags, 0, 0, 0, 0])?;
            if count > 0 {
                // The initial value is 32-bit; a write adds all 64 bits.
                let at = v.stage(0, &count.to_ne_bytes())?;
                v.call("write to eventfd", libc::SYS_write, [fd, at, 8, 0, 0, 0])?;
            }
            fd
        }
        "[signalfd]" => {
            let mask = field(info, "sigmask:")
                .and_then(|m| u64::from_str_radix(m, 16).ok())
                .ok_or_else(|| bad(kind, "sigmask"))?;
            let at = v.stage(0, &mask.to_ne_bytes())?;
            let all = u64::MAX;
            v.call("signalfd4", libc::SYS_signalfd4, [all, at, 8, 0, 0, 0])?
        }
        "[timerfd]" => timerfd(v, info, &mut notes)?,
        "[eventpoll]" => v.call("epoll_create1", libc::SYS_epoll_create1, [0; 6])?,
        _ => return Err(bad(kind, "kind")),
    };
    Ok((fd, notes))
}

/// timerfd_create(2) on the recorded clock, armed with the remaining time
/// the fdinfo shows (relative, whatever flags it was set with) and its
/// interval, then given back its unread expirations (`ticks`) with
/// ioctl(TFD_IOC_SET_TICKS), which exists for checkpoint/restore
/// (fs/timerfd.c, CONFIG_CHECKPOINT_RESTORE). Time the image spent on
/// disk is not counted: the timer goes on as if it had been stopped.
/// Without that ioctl a timer with unread expirations fires again at
/// once, once.
fn timerfd(v: &Vessel, info: &str, notes: &mut Vec<String>) -> Result<u64> {
    let clock: u64 = field(info, "clockid:")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("timerfd", "clockid"))?;
    let ticks: u64 = field(info, "ticks:")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let value = field(info, "it_value:").and_then(pair).unwrap_or((0, 0));
    let interval = field(info, "it_interval:").and_then(pair).unwrap_or((0, 0));
    let fd = v.call(
        "timerfd_create",
        libc::SYS_timerfd_create,
        [clock, 0, 0, 0, 0, 0],
    )?;
    settime(v, fd, interval, value)?;
    if ticks == 0 {
        return Ok(fd);
    }
    // After timerfd_settime(2), which zeroes the count.
    let at = v.stage(0, &ticks.to_ne_bytes())?;
    if v.raw(libc::SYS_ioctl, [fd, TFD_IOC_SET_TICKS, at, 0, 0, 0])? != 0 {
        if ticks > 1 {
            notes.push(format!(
                "a timerfd had {ticks} expirations unread; after the restore it reads 1 \
                 (no TFD_IOC_SET_TICKS in this kernel)"
            ));
        }
        settime(v, fd, interval, (0, 1))?;
    }
    Ok(fd)
}

/// timerfd_settime(2) of `fd`, relative; a zero `value` leaves it disarmed.
fn settime(v: &Vessel, fd: u64, interval: (u64, u64), value: (u64, u64)) -> Result<()> {
    if value == (0, 0) {
        return Ok(());
    }
    // struct itimerspec: it_interval, then it_value.
    let its: Vec<u8> = [interval.0, interval.1, value.0, value.1]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let at = v.stage(0, &its)?;
    v.call(
        "timerfd_settime",
        libc::SYS_timerfd_settime,
        [fd, 0, at, 0, 0, 0],
    )
    .map(drop)
}

/// _IOW('T', 0, __u64) (include/uapi/linux/timerfd.h).
const TFD_IOC_SET_TICKS: u64 = (1 << 30) | (8 << 16) | ((b'T' as u64) << 8);

/// Adds the recorded interests to the process's epoll at fd `epfd`, all
/// its target fds being in place. A target the process no longer had
/// open is left out with a note.
pub fn add_interests(v: &Vessel, epfd: u64, info: &str) -> Result<Vec<String>> {
    const EPOLL_CTL_ADD: u64 = 1;
    let mut notes = Vec::new();
    for i in interests(info) {
        // struct epoll_event is packed on x86_64: u32 events, u64 data.
        let mut ev = i.events.to_ne_bytes().to_vec();
        ev.extend(i.data.to_ne_bytes());
        let at = v.stage(0, &ev)?;
        let args = [epfd, EPOLL_CTL_ADD, i.fd as u64, at, 0, 0];
        let rc = v.raw(libc::SYS_epoll_ctl, args)?;
        if rc != 0 {
            notes.push(format!(
                "epoll fd {epfd}: fd {} not watched again: {}",
                i.fd,
                nix::errno::Errno::from_raw(-rc as i32)
            ));
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fdinfo() {
        let ep = "pos:\t0\ntfd:        4 events:       19 data:                4  pos:0 ino:db9a3 sdev:f\ntfd:        3 events: 80000019 data:                3  pos:0 ino:40e sdev:10\n";
        assert_eq!(
            interests(ep),
            [
                Interest {
                    fd: 4,
                    events: 0x19,
                    data: 4
                },
                Interest {
                    fd: 3,
                    events: 0x8000_0019,
                    data: 3
                }
            ]
        );
        let t = "clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (1, 498623795)\nit_interval: (0, 20000000)\n";
        assert_eq!(field(t, "it_value:").and_then(pair), Some((1, 498623795)));
        assert_eq!(field(t, "clockid:"), Some("1"));
    }
}
