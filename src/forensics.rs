//! `isotrace snapshot`, `inspect` and `core` (issue #7): the CLI glue over
//! the checkpoint crate. Errors are one line on stderr and exit status 1.

use crate::cli::{CoreArgs, InspectArgs, InspectView, SnapshotArgs, SnapshotMethod};
use isotrace_checkpoint::inspect::{self, View};
use isotrace_checkpoint::{dump, elfcore, Image};

/// Exit status of a snapshot, inspect or core that failed.
const EXIT_FAILED: i32 = 1;

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("isotrace: {e}");
    EXIT_FAILED
}

pub fn snapshot(args: SnapshotArgs) -> i32 {
    let opts = dump::Options { tree: args.tree };
    let method = match args.method {
        SnapshotMethod::Auto => dump::snapshot::Method::Auto,
        SnapshotMethod::Uffd => dump::snapshot::Method::Uffd,
        SnapshotMethod::Fork => dump::snapshot::Method::Fork,
    };
    match dump::snapshot::take_with(args.pid, &args.output, &opts, method) {
        Ok(taken) => {
            let (s, r) = (&taken.summary, &taken.record);
            let ms = |us: u64| us as f64 / 1e3;
            let stopped: Vec<String> = r
                .processes
                .iter()
                .filter_map(|p| Some(format!("pid {}: {}", p.pid, p.why_stopped.as_ref()?)))
                .collect();
            let mut copy = String::new();
            if r.processes.iter().any(|p| p.uffd.is_some()) {
                let copied: u64 = r
                    .processes
                    .iter()
                    .filter_map(|p| Some(p.uffd.as_ref()?.copied_before_write))
                    .sum();
                copy += &format!(
                    " (write-protect {:.1} ms; {copied} page(s) copied before a write)",
                    ms(r.phases_us.protect.saturating_sub(r.phases_us.capture))
                );
            }
            if r.processes.iter().any(|p| p.cow_child.is_some()) {
                copy += &format!(
                    " (fork {:.1} ms), reaping the copy held one thread {:.1} ms",
                    ms(r.phases_us.fork.saturating_sub(r.phases_us.protect)),
                    ms(r.reap_pause_us)
                );
            }
            if let Some(why) = &r.uffd_abandoned {
                copy += &format!("; taken again by fork: the uffd copy was abandoned ({why})");
            }
            eprintln!(
                "isotrace: snapshot of pid {} written to {}: {} process(es), {} thread(s), {} KiB of memory by {}; \
                 paused {:.1} ms{copy}; done in {:.0} ms",
                args.pid,
                s.dir.display(),
                s.pids.len(),
                s.threads,
                s.bytes >> 10,
                method_word(r),
                ms(r.pause_us),
                ms(r.total_us)
            );
            if !stopped.is_empty() {
                eprintln!(
                    "isotrace: dumped while stopped (the pause grows with memory): {}",
                    stopped.join("; ")
                );
            }
            0
        }
        Err(e) => fail(e),
    }
}

/// The methods the processes were captured by.
fn method_word(r: &dump::snapshot::Record) -> String {
    let mut m: Vec<&str> = r
        .processes
        .iter()
        .map(|p| p.memory_method.as_str())
        .collect();
    m.sort_unstable();
    m.dedup();
    m.join("+")
}

/// "0x1000", "4096", "1000h" is not accepted: hex needs 0x.
fn parse_num(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

pub fn inspect(args: InspectArgs) -> i32 {
    let image = match Image::open(&args.image) {
        Ok(i) => i,
        Err(e) => return fail(format_args!("{}: {e}", args.image.display())),
    };
    if let Some(range) = &args.dump_memory {
        let (Some(addr), Some(len)) = (parse_num(&range[0]), parse_num(&range[1])) else {
            eprintln!(
                "isotrace: --dump-memory wants ADDR LEN as numbers (hex with 0x), got {range:?}"
            );
            return crate::EXIT_USAGE;
        };
        let pid = args.pid.unwrap_or(image.tree.root);
        return match inspect::hexdump(&image, pid, addr, len) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => fail(e),
        };
    }
    let view = match args.view {
        None => View::All,
        Some(InspectView::Ps) => View::Ps,
        Some(InspectView::Fds) => View::Fds,
        Some(InspectView::Mems) => View::Mems,
        Some(InspectView::Sockets) => View::Sockets,
    };
    if args.json {
        println!("{}", inspect::json_text(&image, view));
    } else {
        print!("{}", inspect::human(&image, view));
    }
    0
}

pub fn core(args: CoreArgs) -> i32 {
    let image = match Image::open(&args.image) {
        Ok(i) => i,
        Err(e) => return fail(format_args!("{}: {e}", args.image.display())),
    };
    match elfcore::write(&image, args.pid, &args.output) {
        Ok(size) => {
            eprintln!(
                "isotrace: core of pid {} written to {} ({} KiB)",
                args.pid.unwrap_or(image.tree.root),
                args.output.display(),
                size >> 10
            );
            0
        }
        Err(e) => fail(e),
    }
}
