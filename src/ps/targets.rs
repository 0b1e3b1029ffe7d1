//! `isotrace ps --all`: every process `isotrace snapshot` could take.
//!
//! Whether we may ptrace a process is the kernel's call (ptrace(2),
//! "Ptrace access mode checking", plus Yama's ptrace_scope): opening its
//! /proc/PID/mem makes exactly that check (PTRACE_MODE_ATTACH_FSCREDS,
//! fs/proc/base.c mem_open), so the listing asks the kernel rather than
//! guessing from uids. A process that already has a tracer cannot be
//! seized again (snapshot refuses it and names the tracer); kernel
//! threads have no user memory and are left out.

use serde::Serialize;

/// PF_KTHREAD in /proc/PID/stat's flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;
/// How much of a command line the table shows.
const CMD_WIDTH: usize = 60;

#[derive(Debug, Serialize)]
pub struct Target {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub user: String,
    pub comm: String,
    /// argv joined by spaces (comm in brackets when it has none).
    pub cmdline: String,
    pub threads: u32,
    pub rss_kib: u64,
    /// R, S, D, T, t... as in /proc/PID/stat.
    pub state: String,
    /// Its tracer's pid and comm, if it has one.
    pub tracer: Option<(i32, String)>,
    /// 0 none, 1 strict, 2 filter (/proc/PID/status Seccomp).
    pub seccomp: u8,
    /// Why `isotrace snapshot PID` would be refused (None: it would run).
    pub refused: Option<String>,
}

/// Every process on the system but kernel threads and ourselves, by pid.
pub fn list() -> Vec<Target> {
    let me = std::process::id() as i32;
    let mut out: Vec<Target> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(target)
        .collect();
    out.sort_by_key(|t| t.pid);
    out
}

/// One process, or None if it is a kernel thread, a zombie or gone.
fn target(pid: i32) -> Option<Target> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself hold spaces or ')'.
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.to_string();
    let ppid = fields.get(1)?.parse().ok()?;
    let flags: u64 = fields.get(6)?.parse().ok()?;
    if flags & PF_KTHREAD != 0 || state == "Z" || state == "X" {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let uid: u32 = field("Uid")?.split_whitespace().next()?.parse().ok()?;
    let tracer_pid: i32 = field("TracerPid").and_then(|t| t.parse().ok()).unwrap_or(0);
    let tracer = (tracer_pid != 0).then(|| (tracer_pid, comm_of(tracer_pid)));
    let seccomp = field("Seccomp").and_then(|s| s.parse().ok()).unwrap_or(0);
    let refused = match (&tracer, std::fs::File::open(format!("/proc/{pid}/mem"))) {
        (Some((t, name)), _) => Some(format!("already traced by {t} ({name})")),
        (None, Err(e)) => {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            Some(format!("not allowed to ptrace it ({})", errno.desc()))
        }
        (None, Ok(_)) => None,
    };
    Some(Target {
        pid,
        ppid,
        uid,
        user: user_name(uid),
        cmdline: cmdline(pid).unwrap_or_else(|| format!("[{comm}]")),
        comm,
        threads: field("Threads").and_then(|t| t.parse().ok()).unwrap_or(1),
        rss_kib: field("VmRSS")
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0),
        state,
        tracer,
        seccomp,
        refused,
    })
}

fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// argv joined by spaces; None when empty.
fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// The human table: snapshot-able ones first say "yes".
pub fn table(targets: &[Target]) -> String {
    let header = [
        "PID", "USER", "THREADS", "RSS", "STATE", "SNAPSHOT", "COMMAND",
    ];
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            let mut cmd = t.cmdline.clone();
            if cmd.chars().count() > CMD_WIDTH {
                cmd = cmd.chars().take(CMD_WIDTH - 3).collect::<String>() + "...";
            }
            vec![
                t.pid.to_string(),
                t.user.clone(),
                t.threads.to_string(),
                super::kib(t.rss_kib),
                t.state.clone(),
                match &t.refused {
                    None => "yes".to_string(),
                    Some(why) => format!("no: {why}"),
                },
                cmd,
            ]
        })
        .collect();
    super::render(&header, &rows, &[1, 4, 5, 6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_child_of_ours_and_leaves_out_kernel_threads() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // spawn returns once exec has released our vfork-style wait, which
        // is before the kernel has set up the new argv (fs/exec.c): wait
        // for /proc/PID/cmdline to show it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cmdline(pid).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let all = list();
        let me = all
            .iter()
            .find(|t| t.pid == pid)
            .expect("our child is listed");
        assert_eq!(me.comm, "sleep");
        assert_eq!(me.cmdline, "sleep 30");
        assert_eq!(me.ppid, std::process::id() as i32);
        assert!(me.refused.is_none(), "{:?}", me.refused);
        // kthreadd (pid 2) is a kernel thread, when this pid namespace
        // shows it.
        assert!(all.iter().all(|t| t.pid != 2 || t.comm != "kthreadd"));
        assert!(table(&all).contains("sleep 30"));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
