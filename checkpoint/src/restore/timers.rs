//! A process's timers (`dump::timers`), armed again by injected calls
//! with the time that remained at the dump: setitimer(2) for the interval
//! timers, timer_create(2) and timer_settime(2) for the POSIX ones. A
//! POSIX timer must keep its id, which the program holds: with
//! prctl(PR_TIMER_CREATE_RESTORE_IDS) on, timer_create takes the id it
//! is handed instead of choosing one (Linux 6.15,
//! kernel/time/posix-timers.c). Run once every thread has the injection
//! mask (`thread::signal_state`), so a timer that fires before the
//! process is released only leaves its signal pending.

use super::inject::Vessel;
use crate::dump::timers::{PosixTimer, Timers};
use crate::error::Result;

/// include/uapi/linux/prctl.h.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// Arms `timers` in the vessel's process. Returns notes.
pub fn arm(v: &Vessel, timers: &Timers) -> Result<Vec<String>> {
    for (which, val) in &timers.itimers {
        let at = v.stage(0, &bytes(val))?;
        v.call(
            "setitimer",
            libc::SYS_setitimer,
            [*which as u64, at, 0, 0, 0, 0],
        )?;
    }
    let mut notes = Vec::new();
    if timers.posix.is_empty() {
        return Ok(notes);
    }
    let on = v.raw(
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )? == 0;
    for t in &timers.posix {
        notes.extend(create(v, t)?);
    }
    if on {
        v.call(
            "prctl PR_TIMER_CREATE_RESTORE_IDS off",
            libc::SYS_prctl,
            [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
        )?;
    }
    Ok(notes)
}

fn bytes(val: &[u64; 4]) -> Vec<u8> {
    val.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// One POSIX timer with its id, armed if it was.
fn create(v: &Vessel, t: &PosixTimer) -> Result<Option<String>> {
    // struct sigevent (64 bytes): sigev_value, sigev_signo, sigev_notify,
    // then the union whose first int is the target tid.
    let mut sev = t.value.to_ne_bytes().to_vec();
    sev.extend(t.signo.to_ne_bytes());
    sev.extend(t.notify.to_ne_bytes());
    sev.extend(t.tid.to_ne_bytes());
    sev.resize(64, 0);
    let at = v.stage(0, &sev)?;
    let id_at = v.stage(64, &t.id.to_ne_bytes())?;
    let args = [t.clock as u64, at, id_at, 0, 0, 0];
    let rc = v.raw(libc::SYS_timer_create, args)?;
    if rc < 0 {
        let errno = nix::errno::Errno::from_raw(-rc as i32);
        return Ok(Some(format!("POSIX timer {} not restored: {errno}", t.id)));
    }
    let mut got = [0u8; 4];
    v.peek(id_at, &mut got)?;
    let got = i32::from_ne_bytes(got);
    let note = (got != t.id).then(|| format!("POSIX timer {} is now timer {got}", t.id));
    if (t.spec[2], t.spec[3]) != (0, 0) {
        let spec_at = v.stage(128, &bytes(&t.spec))?;
        v.call(
            "timer_settime",
            libc::SYS_timer_settime,
            [got as u64, 0, spec_at, 0, 0, 0],
        )?;
    }
    Ok(note)
}
