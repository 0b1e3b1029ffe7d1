//! `isotrace ps [--all] [--json]`: the running groups, each asked over its
//! control socket (src/api); with --all also the processes that
//! `isotrace snapshot` could take (targets.rs).

mod targets;

use crate::cli::PsArgs;
use isotrace::api::client::running_groups;
use isotrace::api::protocol::GroupStatus;
use std::fmt::Write as _;
use std::io::Write as _;

/// A group could not be listed (I/O error on the socket directory).
const EXIT_FAILED: i32 = 1;

pub fn main(args: PsArgs) -> i32 {
    let listing = match running_groups() {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "isotrace: cannot list groups in {}: {e}",
                isotrace::api::rundir::socket_dir().display()
            );
            return EXIT_FAILED;
        }
    };
    for p in &listing.problems {
        eprintln!("isotrace: {p}");
    }
    let targets = args.all.then(targets::list);
    let text = match (args.json, targets) {
        (true, None) => json(&listing.groups),
        (true, Some(t)) => json(&serde_json::json!({ "groups": listing.groups, "processes": t })),
        (false, None) => table(&listing.groups),
        (false, Some(t)) => format!("{}\n{}", table(&listing.groups), targets::table(&t)),
    };
    // A closed pipe (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    0
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "[]".into()) + "\n"
}

fn table(groups: &[GroupStatus]) -> String {
    let header = [
        "NAME",
        "ENV",
        "SUPERVISOR PID",
        "PROCS",
        "THREADS",
        "RSS",
        "UPTIME",
    ];
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group.clone(),
                g.env.clone().unwrap_or_else(|| "-".into()),
                g.supervisor_pid.to_string(),
                g.processes.to_string(),
                g.threads.to_string(),
                kib(g.rss_kib),
                duration(g.uptime_s),
            ]
        })
        .collect();
    render(&header, &rows, &[0, 1])
}

/// Columns padded to their widest cell: those in `left` (names)
/// left-aligned, the others (numbers) right-aligned.
fn render(header: &[&str], rows: &[Vec<String>], left: &[usize]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&width).enumerate() {
            let _ = if left.contains(&i) {
                write!(l, "{cell:<w$}  ")
            } else {
                write!(l, "{cell:>w$}  ")
            };
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// 1536 KiB → "1.5M", like ps and top.
fn kib(k: u64) -> String {
    match k {
        k if k < 1024 => format!("{k}K"),
        k if k < 1024 * 1024 => format!("{:.1}M", k as f64 / 1024.0),
        k => format!("{:.1}G", k as f64 / (1024.0 * 1024.0)),
    }
}

/// 3725 s → "1h02m".
fn duration(s: u64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(kib(900), "900K");
        assert_eq!(kib(1536), "1.5M");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3725), "1h02m");
        assert_eq!(duration(90_000), "1d01h");
    }

    #[test]
    fn table_aligns_columns() {
        let g = GroupStatus {
            group: "web".into(),
            env: None,
            home: None,
            mode: "no-isolation".into(),
            supervisor_pid: 42,
            root_pid: 43,
            uid: 0,
            started: 0,
            uptime_s: 61,
            processes: 2,
            threads: 5,
            rss_kib: 2048,
        };
        let t = table(&[g]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME  ENV  SUPERVISOR PID  PROCS  THREADS   RSS  UPTIME"
        );
        assert_eq!(
            lines[1],
            "web   -                42      2        5  2.0M   1m01s"
        );
    }
}
