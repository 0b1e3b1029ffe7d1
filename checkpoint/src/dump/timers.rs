//! Each process's timers, in their own section (`timers.bin`,
//! IMAGE.md): the interval timers of setitimer(2) (ITIMER_REAL,
//! _VIRTUAL, _PROF) and the POSIX timers of timer_create(2). /proc shows
//! only what a POSIX timer is (/proc/PID/timers: id, signal and value,
//! how it notifies, clock), not when it fires, and nothing of the
//! interval timers; so getitimer(2) and timer_gettime(2) run in one
//! stopped thread of the process, lent to us (`lend.rs`) as for the
//! signal handlers (`sigstate.rs`). A process with no thread to lend has
//! none recorded. A restore arms them again with the time that remained
//! (the time the image spent on disk is not counted).

use super::lend::Lent;
use super::Frozen;
use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::{ProcessTree, Vma};
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "timers.bin";

/// struct itimerval (or itimerspec) as four numbers: interval (s, µs or
/// ns), then value.
pub type TimerVal = [u64; 4];

/// One POSIX timer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub signo: i32,
    /// sigev_value.
    pub value: u64,
    /// sigev_notify (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, with
    /// SIGEV_THREAD_ID added when it targets `tid`).
    pub notify: i32,
    pub tid: i32,
    /// timer_gettime(2): interval then remaining time (s, ns).
    pub spec: TimerVal,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// (which, itimerval) of the armed interval timers.
    pub itimers: Vec<(i32, TimerVal)>,
    pub posix: Vec<PosixTimer>,
}

/// pid -> its timers, for processes that have any.
pub type ProcessTimers = BTreeMap<i32, Timers>;

const WHICH: [i32; 3] = [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF];

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// /proc/PID/timers (fs/proc/base.c, show_timer): blocks of
/// `ID: 5`, `signal: 14/00000000000000ff`, `notify: signal/pid.42` (or
/// `none/...`, `thread/...`, and `tid` for SIGEV_THREAD_ID),
/// `ClockID: 1`. `spec` is left zero.
pub fn parse_timers(text: &str) -> Vec<PosixTimer> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(": ") else {
            continue;
        };
        if key == "ID" {
            out.push(PosixTimer {
                id: val.trim().parse().unwrap_or(-1),
                ..Default::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else { continue };
        match key {
            "signal" => {
                let (sig, value) = val.split_once('/').unwrap_or((val, "0"));
                t.signo = sig.trim().parse().unwrap_or(0);
                t.value = u64::from_str_radix(value.trim(), 16).unwrap_or(0);
            }
            "notify" => {
                let (how, target) = val.split_once('/').unwrap_or((val, ""));
                t.notify = match how {
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => libc::SIGEV_SIGNAL,
                };
                if let Some(tid) = target.strip_prefix("tid.") {
                    t.notify |= libc::SIGEV_THREAD_ID;
                    t.tid = tid.trim().parse().unwrap_or(0);
                }
            }
            "ClockID" => t.clock = val.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    out.retain(|t| t.id >= 0);
    out
}

/// The timers of one process, read in its lent thread.
fn read_in(lent: &mut Lent, posix: Vec<PosixTimer>) -> Result<Timers> {
    let mut timers = Timers::default();
    for which in WHICH {
        let (rc, b) = lent.call(libc::SYS_getitimer, [which as u64, lent.scratch, 0, 0])?;
        let val = [u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16), u64_at(&b, 24)];
        if rc == 0 && (val[2], val[3]) != (0, 0) {
            timers.itimers.push((which, val));
        }
    }
    for mut t in posix {
        let args = [t.id as u64, lent.scratch, 0, 0];
        let (rc, b) = lent.call(libc::SYS_timer_gettime, args)?;
        if rc == 0 {
            t.spec = [u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16), u64_at(&b, 24)];
        }
        timers.posix.push(t);
    }
    Ok(timers)
}

/// Reads the timers of every process of `tree`, each in the first
/// thread of `frozen` that can be lent.
pub fn capture(frozen: &Frozen, tree: &ProcessTree) -> Result<ProcessTimers> {
    let mut out = ProcessTimers::new();
    for p in &tree.processes {
        let text = std::fs::read_to_string(format!("/proc/{}/timers", p.pid)).unwrap_or_default();
        let posix = parse_timers(&text);
        for t in frozen.threads_of(p.pid) {
            if !t.lendable() {
                continue;
            }
            let Some(gadget) = super::cow::find_gadget(p.pid, t.tid, &p.vmas as &[Vma]) else {
                break;
            };
            let Ok(mut lent) = Lent::new(t.pid, t.tid, gadget) else {
                continue;
            };
            let got = read_in(&mut lent, posix);
            lent.give_back()?;
            let timers = got?;
            if timers != Timers::default() {
                out.insert(p.pid, timers);
            }
            break;
        }
    }
    Ok(out)
}

/// Captures the timers of `tree` into the image being written (no
/// section when there are none).
pub fn write(frozen: &Frozen, tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let timers = capture(frozen, tree)?;
    writer.write_optional(SECTION, &timers)
}

/// The timers of an image (none without the section).
pub fn read(image: &Image) -> Result<ProcessTimers> {
    image.optional(SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_timers() {
        let t = parse_timers(
            "ID: 5\nsignal: 34/0000000000007a69\nnotify: signal/pid.42\nClockID: 1\n\
             ID: 6\nsignal: 14/0000000000000000\nnotify: signal/tid.43\nClockID: 0\n",
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].id, t[0].signo, t[0].value, t[0].notify, t[0].clock),
            (5, 34, 31337, libc::SIGEV_SIGNAL, 1)
        );
        assert_eq!(
            (t[1].notify, t[1].tid),
            (libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID, 43)
        );
    }
}
