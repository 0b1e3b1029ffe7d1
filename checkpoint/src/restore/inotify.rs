//! inotify fds of a restore (`dump::inotify`): inotify_init1(2), then
//! each watch added again by path, with its mask and its descriptor.
//! Descriptors are handed out cyclically, each one past the last one
//! given (fs/notify/inotify/inotify_user.c: idr_alloc_cyclic from 1), so
//! adding the watches in descriptor order gives them their numbers, and
//! a gap is skipped by adding a watch and removing it again. Each removal
//! queues an IN_IGNORED event, which is read away before the fd is
//! handed over.

use super::inject::Vessel;
use crate::dump::inotify::WatchPath;
use crate::error::Result;

/// At most this many descriptors are skipped to reach a watch's own.
const MAX_SKIP: i32 = 4096;

/// A new inotify fd of the vessel with `watches` (paths mapped by
/// `map`), non-blocking if `nonblock`. Returns it and notes.
pub fn create(
    v: &Vessel,
    watches: &[WatchPath],
    nonblock: bool,
    map: &dyn Fn(&str) -> String,
) -> Result<(u64, Vec<String>)> {
    let mut notes = Vec::new();
    let fd = v.call(
        "inotify_init1",
        libc::SYS_inotify_init1,
        [libc::IN_NONBLOCK as u64, 0, 0, 0, 0, 0],
    )?;
    let mut sorted: Vec<&WatchPath> = watches.iter().collect();
    sorted.sort_by_key(|w| w.wd);
    let mut skipped = false;
    for w in sorted {
        let path = map(&w.path);
        let at = v.stage_path(&path)?;
        let mut tries = 0;
        loop {
            let args = [fd, at, u64::from(w.mask), 0, 0, 0];
            let rc = v.raw(libc::SYS_inotify_add_watch, args)?;
            if rc < 0 {
                let errno = nix::errno::Errno::from_raw(-rc as i32);
                notes.push(format!("inotify: {path} is not watched again: {errno}"));
                break;
            }
            let got = rc as i32;
            if got >= w.wd || tries >= MAX_SKIP {
                if got != w.wd {
                    notes.push(format!(
                        "inotify: {path} is watched as descriptor {got}, not {}",
                        w.wd
                    ));
                }
                break;
            }
            v.call(
                "inotify_rm_watch",
                libc::SYS_inotify_rm_watch,
                [fd, got as u64, 0, 0, 0, 0],
            )?;
            skipped = true;
            tries += 1;
        }
    }
    if skipped {
        drain(v, fd)?;
    }
    if !nonblock {
        v.call(
            "fcntl F_SETFL",
            libc::SYS_fcntl,
            [fd, libc::F_SETFL as u64, 0, 0, 0, 0],
        )?;
    }
    Ok((fd, notes))
}

/// Reads the non-blocking fd until EAGAIN: the IN_IGNORED events of the
/// watches removed while skipping descriptors.
fn drain(v: &Vessel, fd: u64) -> Result<()> {
    const ROOM: u64 = 1024;
    let at = v.stage(0, &[0u8; ROOM as usize])?;
    while v.raw(libc::SYS_read, [fd, at, ROOM, 0, 0, 0])? > 0 {}
    Ok(())
}
