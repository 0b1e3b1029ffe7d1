//! One process of a snapshot: what is read of it while it is held, how
//! its memory is kept (copy-before-write, a copy-on-write child, or read
//! while stopped), and its dump once it runs again.

use super::record::ProcessRecord;
use crate::dump::cow::CowChild;
use crate::dump::procfs::{parse_maps, parse_stat, parse_status, Stat};
use crate::dump::sigstate::{self, Handler};
use crate::dump::wp::{Prearmed, WpCopy};
use crate::dump::{described, fds, memory, threads_and_signals, Frozen, ProcDir};
use crate::error::{Error, Result};
use crate::image::ImageWriter;
use crate::model::{Process, ProcessSignals, Thread, Vma, VmaMemory};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// What [`Held::finish`] gives.
pub(super) type Finished = (
    Process,
    ProcessRecord,
    Duration,
    Option<BTreeMap<i32, Handler>>,
);

/// What is read of one process while it is held.
pub(super) struct Held {
    pub(super) pid: i32,
    /// The stopped thread whose /proc directory was read.
    pub(super) tid: i32,
    pub(super) stat: Stat,
    pub(super) status: HashMap<String, String>,
    pub(super) maps: String,
    pub(super) threads: Vec<Thread>,
    pub(super) shared_siginfo: Vec<Vec<u8>>,
    pub(super) child: Option<CowChild>,
    /// Copy-before-write, when armed.
    pub(super) wp: Option<WpCopy>,
    /// Its first hold, to make the userfaultfd.
    pub(super) prearm_pause_us: u64,
    pub(super) uffd_unavailable: Option<String>,
    pub(super) why_stopped: Option<String>,
    /// The whole process, when it was dumped while stopped.
    pub(super) stopped: Option<Process>,
    /// The fd table with each file's offset, read while held: the
    /// offsets belong with the registers and memory of that moment (the
    /// child shares the target's open files, whose offsets move on).
    pub(super) fds: Vec<crate::model::FdEntry>,
}

impl Held {
    pub(super) fn capture(frozen: &Frozen, pid: i32) -> Result<Held> {
        let proc = ProcDir::of(frozen, pid)?;
        let (threads, shared_siginfo) = threads_and_signals(frozen, pid, proc.tid)?;
        let fds = fds::dump(&proc)?;
        Ok(Held {
            pid,
            tid: proc.tid,
            fds,
            stat: parse_stat(&proc.text("stat")?).ok_or(Error::Exited { pid })?,
            status: parse_status(&proc.text("status")?),
            maps: proc.text("maps")?,
            threads,
            shared_siginfo,
            child: None,
            wp: None,
            prearm_pause_us: 0,
            uffd_unavailable: None,
            why_stopped: None,
            stopped: None,
        })
    }

    /// Seals the copy-before-write prepared for this process (wp.rs), or
    /// says why there is none.
    pub(super) fn seal(&mut self, frozen: &Frozen, pre: &mut Prearmed) -> Result<()> {
        let threads: Vec<_> = frozen.threads_of(self.pid).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            self.why_stopped = Some("the process is stopped by job control".into());
            return Ok(());
        }
        let Some(mut wp) = pre.copies.remove(&self.pid) else {
            self.uffd_unavailable = Some(
                pre.unavailable
                    .remove(&self.pid)
                    .unwrap_or_else(|| "it was not there at the first hold".into()),
            );
            return Ok(());
        };
        wp.seal(&parse_maps(&self.maps))?;
        self.wp = Some(wp);
        self.prearm_pause_us = pre.pause_us;
        Ok(())
    }

    pub(super) fn fork(&mut self, frozen: &Frozen) -> Result<()> {
        let threads: Vec<_> = frozen.threads_of(self.pid).collect();
        if threads.iter().any(|t| t.stop.starts_with("group-stop")) {
            self.why_stopped = Some("the process is stopped by job control".into());
            return Ok(());
        }
        match CowChild::fork(&threads, &parse_maps(&self.maps))? {
            Ok(child) => self.child = Some(child),
            Err(why) => self.why_stopped = Some(why),
        }
        Ok(())
    }

    /// The process from its child (or as dumped while stopped), its
    /// record, how long reaping the child held the target, and its signal
    /// handlers (read in the child).
    pub(super) fn finish(mut self, writer: &mut ImageWriter) -> Result<Finished> {
        let mut rec = ProcessRecord {
            pid: self.pid,
            memory_method: "stopped".into(),
            why_stopped: self.why_stopped.take(),
            cow_child: None,
            handlers_unread: None,
            uffd_unavailable: self.uffd_unavailable.take(),
            uffd: None,
        };
        if let Some(process) = self.stopped.take() {
            rec.handlers_unread = Some("dumped while stopped".into());
            return Ok((process, rec, Duration::ZERO, None));
        }
        if let Some(mut wp) = self.wp.take() {
            rec.memory_method = "uffd-wp".into();
            let handlers = std::mem::replace(&mut wp.handlers, Ok(BTreeMap::new()));
            let target = ProcDir {
                pid: self.pid,
                tid: self.tid,
                base: format!("/proc/{}/task/{}", self.pid, self.tid),
            };
            let dumped = self.dump_memory(&target, writer, Some(&wp), None);
            // Un-protected whatever happened: the target runs on freely.
            let report = wp.finish();
            // A torn copy first: reads through an mm that exec(2) replaced
            // fail like those of a process that exited.
            if let Err(e @ Error::Torn { .. }) = report {
                return Err(e);
            }
            let process = dumped?;
            rec.uffd = Some(report?);
            let handlers = handlers
                .map_err(|e| rec.handlers_unread = Some(e.to_string()))
                .ok();
            return Ok((process, rec, Duration::ZERO, handlers));
        }
        let child = self.child.take().ok_or(Error::Exited { pid: self.pid })?;
        rec.memory_method = "cow-fork".into();
        rec.cow_child = Some(child.pid);
        let result = self.dump_from_child(&child, writer).map(|p| {
            // After the memory is read: the calls use the child's stack.
            let handlers = sigstate::handlers_in_child(child.pid, &p.vmas, p.signals.caught);
            (p, handlers)
        });
        // Reaped whatever happened, so the target is left as it was.
        let reap = child.finish();
        let (process, handlers) = result?;
        let handlers = handlers
            .map_err(|e| rec.handlers_unread = Some(e.to_string()))
            .ok();
        Ok((process, rec, reap?, handlers))
    }

    fn dump_from_child(self, child: &CowChild, writer: &mut ImageWriter) -> Result<Process> {
        self.dump_memory(&child.proc_dir(), writer, None, Some(child))
    }

    /// The process, its memory read from `from`: the copy-on-write
    /// child's /proc (with `child`), or the target's under `wp`.
    fn dump_memory(
        self,
        from: &ProcDir,
        writer: &mut ImageWriter,
        wp: Option<&WpCopy>,
        child: Option<&CowChild>,
    ) -> Result<Process> {
        let cp = from;
        let pid = self.pid;
        let target = ProcDir {
            pid,
            tid: self.tid,
            base: format!("/proc/{pid}/task/{}", self.tid),
        };
        let pages_section = format!("pages-{pid}.img");
        let mut pages = writer.section(&pages_section)?;
        let mut vmas: Vec<Vma> = match (wp, child) {
            (Some(wp), _) => {
                let mut vmas = parse_maps(&self.maps);
                memory::dump_guarded(&target, &mut vmas, &mut pages, wp)?;
                vmas
            }
            _ => {
                let child_maps = parse_maps(&cp.text("maps")?);
                let wiped = wipeonfork_starts(&cp.text("smaps")?);
                let (mut private, mut shared, left_out) =
                    partition(parse_maps(&self.maps), &child_maps, &wiped);
                memory::dump(cp, &mut private, &mut pages, None)?;
                // Shared pages are not copied into the child's page tables by
                // fork(2) (mm/memory.c, copy_page_range skips VMAs without an
                // anon_vma), so which exist is the target's pagemap's to say.
                memory::dump(&target, &mut shared, &mut pages, None)?;
                private.into_iter().chain(shared).chain(left_out).collect()
            }
        };
        writer.finish(pages)?;
        vmas.sort_by_key(|v| v.start);
        let p = described(pid, &self.stat, &self.status, cp)?;
        Ok(Process {
            signals: ProcessSignals {
                shared_siginfo: self.shared_siginfo,
                ..p.signals
            },
            threads: self.threads,
            vmas,
            fds: self.fds,
            pages_section,
            ..p
        })
    }
}

/// The target's mappings, split by where their pages are read: from the
/// child (private ones, and those memory::dump skips anyway), from the
/// target (shared ones), or nowhere (not in the child, or wiped in it:
/// marked with the reason).
fn partition(
    vmas: Vec<Vma>,
    child_maps: &[Vma],
    wiped: &HashSet<u64>,
) -> (Vec<Vma>, Vec<Vma>, Vec<Vma>) {
    let in_child: HashSet<u64> = child_maps.iter().map(|v| v.start).collect();
    let (mut private, mut shared, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for mut v in vmas {
        let skipped = |reason: &str| VmaMemory::Skipped {
            reason: reason.into(),
        };
        if memory::skip_reason(&v).is_some() {
            private.push(v);
        } else if !in_child.contains(&v.start) {
            v.memory = skipped("not copied by fork(2) (MADV_DONTFORK or a driver's VM_DONTCOPY)");
            left_out.push(v);
        } else if wiped.contains(&v.start) {
            v.memory = skipped("MADV_WIPEONFORK: empty in the copy-on-write child");
            left_out.push(v);
        } else if v.shared() {
            shared.push(v);
        } else {
            private.push(v);
        }
    }
    (private, shared, left_out)
}

/// Start addresses of the mappings /proc/PID/smaps flags "wf"
/// (MADV_WIPEONFORK; proc(5), VmFlags).
pub fn wipeonfork_starts(smaps: &str) -> HashSet<u64> {
    let mut out = HashSet::new();
    let mut current = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "wf") {
                out.extend(current);
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if let Ok(start) = u64::from_str_radix(start, 16) {
                    current = Some(start);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipeonfork_flags() {
        let smaps = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n\
                     Size:                  4 kB\n\
                     VmFlags: rd wr mr mw me ac wf \n\
                     7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n\
                     Size:                  4 kB\n\
                     VmFlags: rd wr mr mw me ac \n";
        let starts = wipeonfork_starts(smaps);
        assert_eq!(starts.len(), 1);
        assert!(starts.contains(&0x7f0000000000));
    }

    #[test]
    fn mappings_are_read_where_their_pages_are() {
        let maps = parse_maps(
            "1000-2000 rw-p 00000000 00:00 0 \n\
             3000-4000 rw-p 00000000 00:00 0 \n\
             5000-6000 rw-p 00000000 00:00 0 \n\
             7000-8000 rw-s 00000000 00:01 9 /dev/zero (deleted)\n\
             9000-a000 r--p 00000000 00:00 0 [vvar]\n",
        );
        // 0x3000 was MADV_DONTFORK (absent in the child), 0x5000 wiped.
        let child: Vec<Vma> = maps.iter().filter(|v| v.start != 0x3000).cloned().collect();
        let wiped = HashSet::from([0x5000]);
        let (private, shared, left_out) = partition(maps, &child, &wiped);
        let starts = |v: &[Vma]| v.iter().map(|v| v.start).collect::<Vec<_>>();
        assert_eq!(starts(&private), [0x1000, 0x9000]);
        assert_eq!(starts(&shared), [0x7000]);
        assert_eq!(starts(&left_out), [0x3000, 0x5000]);
        let reason = |v: &Vma| match &v.memory {
            VmaMemory::Skipped { reason } => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reason(&left_out[0]).contains("MADV_DONTFORK"));
        assert!(reason(&left_out[1]).contains("MADV_WIPEONFORK"));
    }
}
