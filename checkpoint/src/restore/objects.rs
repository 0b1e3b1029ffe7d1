//! The image's optional sections beyond pipes and socket pairs, read
//! once ([`Sections::read`]), and the shared objects made from them in
//! the root vessel before the other processes are cloned from it
//! ([`prepare`]): nameless files (`deleted`), FIFO keepers (`fifo`),
//! datagram queues (`dgrams`), unpaired unix datagram sockets, unix
//! listeners and their waiting connections (`unix_dgram`), queues that
//! pass files (`inflight`), UDP queues (`udp`) and open files several
//! fds share (`open_files`).

use super::fds::Shared;
use super::inject::Vessel;
use super::tree::Plan;
use super::{deleted, dgrams, fifo, inflight, open_files, udp, unix_dgram, Options};
use crate::dump;
use crate::dump::unix_pairs::Pairs;
use crate::error::{Error, Result};
use crate::Image;
use std::collections::BTreeSet;

/// What those sections hold (each empty when the image has none).
pub struct Sections {
    pub nameless: dump::deleted::Files,
    pub fifos: dump::pipes::PipeData,
    pub dgrams: dump::dgrams::Dgrams,
    pub inflight: dump::inflight::Queues,
    pub seals: dump::seals::Seals,
    pub embryos: dump::embryos::Embryos,
    pub udp: dump::udp::UdpQueues,
    pub watches: dump::inotify::Watches,
    pub open_files: dump::open_files::Shared,
    pub zombies: Vec<dump::zombies::Zombie>,
    pub timers: dump::timers::ProcessTimers,
}

impl Sections {
    pub fn read(image: &Image) -> Result<Sections> {
        Ok(Sections {
            nameless: dump::deleted::read(image)?,
            fifos: dump::pipes::read_fifos(image)?,
            dgrams: dump::dgrams::read(image)?,
            inflight: dump::inflight::read(image)?,
            seals: dump::seals::read(image)?,
            embryos: dump::embryos::read(image)?,
            udp: dump::udp::read(image)?,
            watches: dump::inotify::read(image)?,
            open_files: dump::open_files::read(image)?,
            zombies: dump::zombies::read(image)?,
            timers: dump::timers::read(image)?,
        })
    }

    /// The inodes of the nameless files whose contents the image holds.
    pub fn nameless_inos(&self) -> BTreeSet<u64> {
        self.nameless.keys().copied().collect()
    }
}

/// Makes the objects of `sections` in the root vessel `v`, into
/// `shared` (whose pipes, sockets and shared memory exist already).
pub fn prepare(
    v: &Vessel,
    image: &Image,
    plan: &Plan<'_>,
    pairs: &Pairs,
    sections: &Sections,
    opts: &Options,
    shared: &mut Shared,
) -> Result<()> {
    let map = |p: &str| opts.path(p);
    let image_dir = std::fs::canonicalize(&image.dir).map_err(|e| Error::io(&image.dir, e))?;
    let (made, notes) = deleted::prepare(
        v,
        &sections.nameless,
        &image_dir,
        shared.line,
        &map,
        &sections.seals,
    )?;
    shared.nameless = made;
    shared.notes.extend(notes);
    fifo::prepare(v, &plan.order, &sections.fifos, shared.line, &map)?;
    let notes = dgrams::refill(v, &sections.dgrams, pairs, &shared.sockets)?;
    shared.notes.extend(notes);
    let notes = unix_dgram::create(
        v,
        &plan.order,
        pairs,
        &sections.dgrams,
        shared.line,
        &map,
        &mut shared.sockets,
    )?;
    shared.notes.extend(notes);
    unix_dgram::connect_waiting(
        v,
        &plan.order,
        &sections.embryos,
        shared.line,
        &map,
        &mut shared.sockets,
    )?;
    // Every pipe, socket and nameless file exists by now: queues may
    // pass them.
    inflight::refill(v, &sections.inflight, pairs, shared, opts)?;
    let notes = udp::refill(v, &sections.udp, &plan.order, shared)?;
    shared.notes.extend(notes);
    let (opened, notes) = open_files::prepare(v, &plan.order, &plan.fds, shared, opts)?;
    shared.open_files = opened;
    shared.notes.extend(notes);
    Ok(())
}
