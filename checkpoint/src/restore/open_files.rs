//! Open files several fds share (`dump::open_files`): each is opened once
//! in the root vessel, above the fd line, before the other processes are
//! cloned from it, from the plan of its first holder; every fd that
//! shares it is then a dup of that one fd (fds::apply), so they share one
//! offset and one set of status flags again, within a process and across
//! processes alike.

use super::fdplan::{FdPlan, Source};
use super::fds::{source_fd, Shared};
use super::inject::Vessel;
use crate::error::Result;
use crate::model::Process;
use std::collections::BTreeMap;

/// (pid, fd) of the first holder of a shared open file -> the root
/// vessel's fd of it.
pub type Opened = BTreeMap<(i32, i32), u64>;

/// Opens every shared open file of `plans` (each process's fd plans, in
/// the order of `procs`) in the root vessel. Returns (pid, fd) of its
/// first holder -> the vessel's fd, and notes.
pub fn prepare(
    v: &Vessel,
    procs: &[&Process],
    plans: &[Vec<FdPlan>],
    shared: &Shared,
    opts: &super::Options,
) -> Result<(Opened, Vec<String>)> {
    let mut out = Opened::new();
    let mut notes = Vec::new();
    for (proc, plans) in procs.iter().zip(plans) {
        for p in plans {
            let Source::Shared { of, source } = &p.source else {
                continue;
            };
            if *of != (proc.pid, p.fd) {
                continue;
            }
            let first = FdPlan {
                fd: p.fd,
                source: (**source).clone(),
                cloexec: false,
                nonblock: false,
            };
            out.insert(*of, source_fd(v, &first, shared, opts, &mut notes)?);
        }
    }
    Ok((out, notes))
}
