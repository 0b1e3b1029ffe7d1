//! Pre-copy of a group of processes: one [`PreCopy`] per process (each has
//! its own mm, so its own userfaultfd and page tables), driven in rounds
//! over all of them, one digest over every PrePages payload in the order
//! sent (what the receiver's store hashes; STREAM.md, PreEnd).
//!
//! What is not pre-copied is dumped whole at the freeze, never held:
//! - a process whose tracking could not be set up (`fallen` at start);
//! - a process that started during pre-copy (it has no tracker);
//! - a process whose round failed (its clean set is not trusted);
//! - a process that exited: it is dropped, and a process later found
//!   under its pid is another one (the pidfd tells them apart);
//! - a process that ran execve(2): its tracking describes the old mm.

use super::{PreCopy, Round, MAX_ROUNDS, SMALL_SET};
use crate::image::digest::{Algo, Hasher};
use crate::pageset::PageSet;
use crate::PAGE_SIZE;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// The pages each pre-copied process's receiver copy holds (pid to
/// pages), as `dump::checkpoint::dump_tcp_holding` takes them.
pub type Held = HashMap<i32, Arc<PageSet>>;

/// Sends one PrePages payload: (pid, address, whole pages).
pub type Send<'a> = dyn FnMut(i32, u64, &[u8]) -> io::Result<()> + 'a;

pub struct GroupPreCopy {
    procs: Vec<PreCopy>,
    /// What happened to each process that is not (or no longer) pre-copied.
    pub notes: Vec<String>,
    /// Every pid at the start: pre-copied, or noted as not.
    known: Vec<i32>,
    sent: Hasher,
    pub rounds: Vec<Round>,
}

impl GroupPreCopy {
    /// `procs` tracked; `fallen` (pid, why) will be dumped whole.
    pub fn new(procs: Vec<PreCopy>, fallen: &[(i32, String)]) -> GroupPreCopy {
        let notes = fallen
            .iter()
            .map(|(pid, why)| format!("pid {pid}: dumped whole at the freeze ({why})"))
            .collect();
        GroupPreCopy {
            known: procs
                .iter()
                .map(|p| p.pid)
                .chain(fallen.iter().map(|f| f.0))
                .collect(),
            procs,
            notes,
            sent: Hasher::new(Algo::Blake3),
            rounds: Vec::new(),
        }
    }

    /// Pids being pre-copied now.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// One round over every process; `send` gets (pid, address, bytes).
    /// Err only when `send` fails (the connection); a process that fails
    /// is dropped, to be dumped whole.
    pub fn round(&mut self, send: &mut Send<'_>) -> io::Result<u64> {
        let t = Instant::now();
        let mut total = 0;
        let mut dropped = Vec::new();
        for (i, pc) in self.procs.iter_mut().enumerate() {
            let pid = pc.pid;
            let mut link: Option<io::Error> = None;
            let sent = &mut self.sent;
            let mut each = |addr: u64, bytes: &[u8]| {
                // What `stream::pages::payload` puts in the frame.
                sent.update(&(pid as u32).to_le_bytes());
                sent.update(&addr.to_le_bytes());
                sent.update(bytes);
                send(pid, addr, bytes).inspect_err(|e| {
                    link = Some(io::Error::new(e.kind(), e.to_string()));
                })
            };
            match pc.round(&mut each) {
                Ok(n) => total += n,
                Err(e) => {
                    if let Some(e) = link {
                        return Err(e);
                    }
                    dropped.push((i, gone_or_failed(pc, &e)));
                }
            }
        }
        self.drop_procs(dropped);
        self.rounds.push(Round {
            pages: total,
            bytes: total * PAGE_SIZE,
            ms: t.elapsed().as_secs_f64() * 1000.0,
        });
        Ok(total)
    }

    fn drop_procs(&mut self, mut dropped: Vec<(usize, String)>) {
        dropped.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (i, note) in dropped {
            self.procs.remove(i);
            self.notes.push(note);
        }
    }

    /// Whether another round is worth it: some process is still tracked,
    /// and the last round was not small and sent fewer pages than the one
    /// before (over the whole group).
    pub fn converging(&self) -> bool {
        if self.procs.is_empty() || self.rounds.len() > MAX_ROUNDS {
            return false;
        }
        match self.rounds.as_slice() {
            [] | [_] => true,
            [.., a, b] => b.pages > SMALL_SET && b.pages < a.pages,
        }
    }

    /// Hex BLAKE3 of every PrePages payload sent so far, in order: what the
    /// receiver's `PageStore::digest` must match.
    pub fn sent_digest(&self) -> String {
        self.sent.clone().hex()
    }

    /// After the freeze: per process still in `frozen` (the pids at the
    /// barrier), the pages the receiver holds as they are now. A process
    /// whose clean set cannot be read is left out, so dumped whole.
    /// The trackers come back too ([`Retired`]): drop them once the
    /// downtime is over ([`PreCopy::clean`] says why).
    pub fn clean(mut self, frozen: &[i32]) -> (Held, Vec<String>, Retired) {
        let mut held = Held::new();
        let mut notes = std::mem::take(&mut self.notes);
        let mut retired = Retired(Vec::new());
        for mut pc in self.procs {
            let pid = pc.pid;
            if !frozen.contains(&pid) {
                notes.push(format!("pid {pid}: exited during pre-copy, dropped"));
                continue;
            }
            if let Some(why) = pc.gone() {
                notes.push(format!(
                    "pid {pid}: {why} during pre-copy, dropped (dumped whole if still there)"
                ));
                continue;
            }
            let sent: u64 = pc.rounds.iter().map(|r| r.pages).sum();
            let rounds = pc.rounds.len();
            let clean = pc.clean();
            retired.0.push(pc);
            match clean {
                Ok(c) => {
                    notes.push(format!(
                        "pid {pid}: pre-copied ({sent} pages in {rounds} rounds, {} still clean at the freeze)",
                        c.len()
                    ));
                    held.insert(pid, Arc::new(c));
                }
                Err(e) => notes.push(format!(
                    "pid {pid}: dumped whole at the freeze (its dirty pages could not be read: {e})"
                )),
            }
        }
        for pid in frozen.iter().filter(|p| !self.known.contains(p)) {
            notes.push(format!(
                "pid {pid}: started during pre-copy, dumped whole at the freeze"
            ));
        }
        (held, notes, retired)
    }
}

/// The trackers of a sealed pre-copy, still armed: dropping this closes
/// their userfaultfds (which unregisters their ranges), a cost kept out
/// of the downtime by dropping it after the copy runs, or after the
/// source resumed.
pub struct Retired(Vec<PreCopy>);

fn gone_or_failed(pc: &PreCopy, e: &io::Error) -> String {
    let pid = pc.pid;
    if let Some(why) = pc.gone() {
        format!("pid {pid}: {why} during pre-copy, dropped (dumped whole if still there)")
    } else {
        format!("pid {pid}: dumped whole at the freeze (pre-copy round failed: {e})")
    }
}
