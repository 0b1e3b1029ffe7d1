//! Children of the image's processes that have exited but were not
//! reaped yet (zombies, section `zombies.bin`, IMAGE.md). They are not
//! in the group's pid list (they have no threads to stop), but their
//! parent may still wait(2) for them, so a restore makes them again:
//! same pid, parent, group and session, and the same wait status.

use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::ProcessTree;
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The section's name.
pub const SECTION: &str = "zombies.bin";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The status its parent's wait(2) will see, as waitpid(2) encodes it
    /// (exit code << 8, or the killing signal with 0x80 for a core dump).
    pub status: i32,
}

/// Finds the zombie children of every process of `tree` through
/// /proc/PID/task/TID/children (proc(5): a task's children, reaped or
/// not yet), and reads each one's ids and status from /proc/PID/stat.
/// A child that is gone meanwhile is simply not recorded.
pub fn capture(tree: &ProcessTree) -> Vec<Zombie> {
    let live: BTreeSet<i32> = tree.processes.iter().map(|p| p.pid).collect();
    let mut out = Vec::new();
    for p in &tree.processes {
        for t in &p.threads {
            let path = format!("/proc/{}/task/{}/children", p.pid, t.tid);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for pid in text.split_whitespace().filter_map(|w| w.parse().ok()) {
                if live.contains(&pid) || out.iter().any(|z: &Zombie| z.pid == pid) {
                    continue;
                }
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                if let Some(z) = stat.ok().and_then(|s| parse(pid, &s)) {
                    out.push(z);
                }
            }
        }
    }
    out.sort_by_key(|z| z.pid);
    out
}

/// A zombie from its /proc/PID/stat text, or None if it is not one.
/// Field 52, exit_code, is "the thread's exit status in the form
/// reported by waitpid(2)" (proc(5), since Linux 3.5); the fields after
/// comm are counted from the last ')', as comm may hold anything.
pub fn parse(pid: i32, stat: &str) -> Option<Zombie> {
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // rest[0] is field 3 (state).
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<i32>().ok());
    if rest.first() != Some(&"Z") {
        return None;
    }
    Some(Zombie {
        pid,
        ppid: field(4)?,
        pgid: field(5)?,
        sid: field(6)?,
        status: field(52)?,
    })
}

/// Captures the zombies of `tree` into the image being written (no
/// section when there are none).
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let zombies = capture(tree);
    writer.write_optional(SECTION, &zombies)
}

/// The zombies of an image (none without the section).
pub fn read(image: &Image) -> Result<Vec<Zombie>> {
    image.optional(SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(state: &str, exit_code: i32) -> String {
        // Fields 3..=52: state, ppid, pgrp, session, then 45 zeros, then
        // exit_code (field 52).
        let mut f = vec![state.to_string(), "10".into(), "11".into(), "12".into()];
        f.extend(std::iter::repeat_n("0".to_string(), 45));
        f.push(exit_code.to_string());
        format!("42 (a (b) c) {}", f.join(" "))
    }

    #[test]
    fn a_zombie_with_its_status() {
        let z = parse(42, &stat("Z", 42 << 8)).unwrap();
        assert_eq!(
            z,
            Zombie {
                pid: 42,
                ppid: 10,
                pgid: 11,
                sid: 12,
                status: 42 << 8
            }
        );
        assert_eq!(parse(42, &stat("S", 0)), None);
    }
}
