//! A group's processes, read from /proc (proc(5)) without ptrace.
//!
//! The group is the root process and its descendants that the supervisor
//! traces (`TracerPid` in /proc/PID/status). Descendants are found through
//! /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN), which costs one read
//! per thread of the group rather than one per process on the machine; when
//! that file is missing, or once the root has exited (its orphans are
//! reparented to a subreaper or init and are no longer its descendants), a
//! scan of every /proc/PID/status finds the tracees instead.

use crate::api::protocol::{Process, SupervisorStats};
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::sync::OnceLock;

/// What /proc/PID/status says about one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    pub state: String,
    pub threads: u64,
    /// VmRSS; absent (0) for zombies.
    pub rss_kib: u64,
    /// VmHWM.
    pub peak_rss_kib: u64,
}

/// Parses the text of /proc/PID/status.
pub fn parse_status(pid: i32, text: &str) -> ProcStatus {
    let mut s = ProcStatus {
        pid,
        ..ProcStatus::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let num = || {
            value
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match key {
            "State" => s.state = value.chars().take(1).collect(),
            "PPid" => s.ppid = num() as i32,
            "TracerPid" => s.tracer_pid = num() as i32,
            "Threads" => s.threads = num(),
            "VmRSS" => s.rss_kib = num(),
            "VmHWM" => s.peak_rss_kib = num(),
            _ => {}
        }
    }
    s
}

pub fn status(pid: i32) -> Option<ProcStatus> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_status(pid, &text))
}

/// argv of a process: NUL-separated /proc/PID/cmdline, empty for zombies.
pub fn cmdline(pid: i32) -> Vec<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether the kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
fn have_children_files() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let me = std::process::id();
        fs::metadata(format!("/proc/{me}/task/{me}/children")).is_ok()
    })
}

/// The children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The group traced by `tracer` whose first process is `root`, sorted by pid.
pub fn group(root: i32, tracer: i32) -> Vec<ProcStatus> {
    let mut found = BTreeMap::new();
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        let Some(s) = status(pid).filter(|s| s.tracer_pid == tracer) else {
            continue;
        };
        if found.insert(pid, s).is_some() {
            continue;
        }
        if have_children_files() {
            queue.extend(children(pid));
        }
    }
    if !have_children_files() || !found.contains_key(&root) {
        found.extend(scan(tracer).into_iter().map(|s| (s.pid, s)));
    }
    found.into_values().collect()
}

/// Every process traced by `tracer` (one read of /proc/PID/status each).
fn scan(tracer: i32) -> Vec<ProcStatus> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(status)
        .filter(|s| s.tracer_pid == tracer)
        .collect()
}

/// The `ps` entries of a group.
pub fn processes(group: &[ProcStatus]) -> Vec<Process> {
    group
        .iter()
        .map(|s| Process {
            pid: s.pid,
            ppid: s.ppid,
            state: s.state.clone(),
            threads: s.threads,
            rss_kib: s.rss_kib,
            cmdline: cmdline(s.pid),
        })
        .collect()
}

/// The supervisor's own figures from /proc/self; `api_connections` is 0.
pub fn supervisor() -> SupervisorStats {
    let me = std::process::id() as i32;
    let s = status(me).unwrap_or_default();
    let (user, system) = cpu_ms(&fs::read_to_string("/proc/self/stat").unwrap_or_default());
    SupervisorStats {
        supervisor_pid: me,
        rss_kib: s.rss_kib,
        peak_rss_kib: s.peak_rss_kib,
        threads: s.threads,
        cpu_user_ms: user,
        cpu_system_ms: system,
        api_connections: 0,
    }
}

/// utime and stime (fields 14 and 15 of /proc/PID/stat, in clock ticks) as
/// milliseconds. The comm field may hold spaces and parentheses, so fields
/// are counted after the last ')'.
fn cpu_ms(stat: &str) -> (u64, u64) {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = clock_ticks();
    // After ')': state is field 3, so utime (14) is index 11, stime index 12.
    (ticks(11) * 1000 / hz, ticks(12) * 1000 / hz)
}

/// Clock ticks per second (sysconf(3), _SC_CLK_TCK; 100 on Linux).
fn clock_ticks() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    }
}

/// The scheduler state letter in a /proc/PID/stat or /proc/PID/task/TID/stat
/// file (`""` if it cannot be read). It follows the last ')': the comm
/// field before it may hold spaces and parentheses.
pub(crate) fn state_letter(stat_path: &str) -> String {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tsleep\nState:\tS (sleeping)\nPPid:\t10\nTracerPid:\t9\n\
                    Threads:\t3\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let s = parse_status(11, text);
        assert_eq!((s.pid, s.ppid, s.tracer_pid, s.threads), (11, 10, 9, 3));
        assert_eq!(
            (s.rss_kib, s.peak_rss_kib, s.state.as_str()),
            (1024, 2048, "S")
        );
    }

    #[test]
    fn cpu_fields_after_comm() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0";
        let hz = clock_ticks();
        assert_eq!(cpu_ms(stat), (250 * 1000 / hz, 50 * 1000 / hz));
    }

    #[test]
    fn finds_this_process_and_not_others() {
        // This test process is not traced by pid 1: an empty group.
        assert!(group(std::process::id() as i32, 1).is_empty());
        let me = supervisor();
        assert!(me.rss_kib > 0 && me.threads >= 1);
    }
}
