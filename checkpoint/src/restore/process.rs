//! One process of a restore, inside its vessel: address space, mm
//! fields, fd table, settings, signal dispositions, then its threads,
//! each left in its final ptrace-stop.

use super::fds::{self, FdPlan};
use super::inject::Vessel;
use super::{memory, mm, ns, tasks, thread, Options, Task};
use crate::dump::sigstate::SigState;
use crate::dump::thread_extra::Extras;
use crate::error::Result;
use crate::image::SectionReader;
use crate::model::{Process, Thread};
use crate::Image;
use isotrace_tracer::sys as tsys;

/// What the process-wide part of a restore needs besides the process.
pub struct Context<'a> {
    pub image: &'a Image,
    pub opts: &'a Options,
    pub shared: &'a fds::Shared,
    /// The vessels hold capabilities the image's processes did not
    /// (rootless same-pid restore): set each thread's to the image's.
    pub drop_caps: bool,
    /// Per-thread registrations the image recorded (threads.bin).
    pub extras: &'a Extras,
    /// Handlers, alternate stacks, clear_child_tid (signals.bin).
    pub signals: &'a SigState,
    /// The restorer is root: it may set supplementary groups.
    pub may_setgroups: bool,
    /// Interval and POSIX timers (timers.bin).
    pub timers: &'a crate::dump::timers::ProcessTimers,
    /// The post-copy server, when held pages are filled after the release
    /// (`Options::post_copy`).
    pub post_copy: Option<&'a super::lazy::PostCopy>,
}

/// Rebuilds `proc` in its vessel `v`, creates its threads, and parks
/// every thread in its final stop. Appends each thread to `out`, main
/// thread first; returns notes.
pub fn restore(
    cx: &Context<'_>,
    proc: &Process,
    v: &Vessel,
    plans: &[FdPlan],
    out: &mut Vec<Task>,
) -> Result<Vec<String>> {
    memory::teardown(v)?;
    memory::move_vdso(v, proc, cx.image)?;
    // The pages are read once, into place, and their digest checked here,
    // while every restored task is still held (see restore::restore).
    let (lazy, refused) = lazy(cx, proc, v)?;
    let skip = match &lazy {
        Some(l) => memory::post_copied(proc, l.extents)?,
        None => Vec::new(),
    };
    let mut section = SectionReader::open_skipping(cx.image, &proc.pages_section, skip)?;
    memory::rebuild(v, proc, &mut section, cx.opts, &cx.shared.shm, lazy)?;
    section.finish()?;
    let mut notes: Vec<String> = refused
        .map(|why| {
            format!("post-copy unavailable, the held pages were filled before the release: {why}")
        })
        .into_iter()
        .collect();
    notes.extend(mm::apply(v, cx.image, proc, cx.opts)?);
    notes.extend(fds::apply(v, plans, cx.shared, cx.opts)?);
    notes.extend(super::settings(v, proc, cx.opts)?);
    notes.extend(thread::dispositions(
        v,
        proc,
        cx.signals.handlers.get(&proc.pid),
    )?);
    notes.extend(threads(cx, proc, v, out)?);
    Ok(notes)
}

/// Post-copy for `proc` when the restore does it and the process has held
/// pages; None to fill eagerly, with why when the kernel refused it (the
/// server is told too).
fn lazy<'a>(
    cx: &Context<'a>,
    proc: &Process,
    v: &Vessel,
) -> Result<(Option<memory::Lazy<'a>>, Option<String>)> {
    let (Some(server), Some(extents)) = (cx.post_copy, cx.image.elsewhere.get(&proc.pages_section))
    else {
        return Ok((None, None));
    };
    if extents.is_empty() || !memory::whole_pages(proc) {
        return Ok((None, None));
    }
    match super::uffd::Filler::open_lazy(v)? {
        Ok(filler) => Ok((
            Some(memory::Lazy {
                server,
                filler,
                extents,
            }),
            None,
        )),
        Err(why) => {
            server.eager(why.clone());
            Ok((None, Some(why)))
        }
    }
}

/// Creates the threads of `proc` (with the injection mask, which they
/// inherit from the main thread), queues the pending signals, sets each
/// thread's own state and parks it; the main thread last, after the
/// seccomp filter if any.
fn threads(
    cx: &Context<'_>,
    proc: &Process,
    v: &Vessel,
    out: &mut Vec<Task>,
) -> Result<Vec<String>> {
    thread::signal_state(v, None)?;
    let mut timer_notes = Vec::new();
    if let Some(timers) = cx.timers.get(&proc.pid) {
        timer_notes = super::timers::arm(v, timers)?;
    }
    let threads = tasks::spawn(v, proc, cx.opts.same_pids)?;
    let own: Vec<(i32, &Thread)> = threads
        .iter()
        .map(|&(tid, t)| (if cx.opts.same_pids { t.tid } else { tid }, t))
        .collect();
    let pid = if cx.opts.same_pids { proc.pid } else { v.pid };
    let mut notes = thread::queue_pending(v, proc, pid, &own)?;
    notes.append(&mut timer_notes);
    for &(tid, t) in &threads {
        out.push(Task {
            old_pid: proc.pid,
            old_tid: t.tid,
            pid: v.pid,
            tid,
        });
    }
    for &(tid, t) in threads.iter().skip(1) {
        let tv = v.task(tid)?;
        notes.extend(own_state(cx, proc, &tv, t)?);
        tv.park(&thread::resume_regs(t), &t.xstate, t.sig_blocked)?;
    }
    let main = threads[0].1;
    notes.extend(own_state(cx, proc, v, main)?);
    if let Some(filter) = &cx.opts.seccomp_filter {
        tasks::install_seccomp(v, filter)?;
        tsys::set_options(v.pid, ns::TRACE_OPTIONS | libc::PTRACE_O_TRACESECCOMP)?;
    }
    v.unmap_gadget()?;
    v.park(&thread::resume_regs(main), &main.xstate, main.sig_blocked)?;
    if cx.opts.seccomp_filter.is_some() {
        tsys::set_options(v.pid, ns::TRACE_OPTIONS)?;
    }
    Ok(notes)
}

/// One thread's registrations, then its ids and capabilities (last: they
/// may take away what the calls before them need).
fn own_state(cx: &Context<'_>, proc: &Process, tv: &Vessel, t: &Thread) -> Result<Vec<String>> {
    let sig = cx.signals.threads.get(&t.tid);
    let mut notes = tasks::setup(tv, proc, t, cx.extras.get(&t.tid), sig)?;
    notes.extend(tasks::set_ids(tv, proc, cx.may_setgroups)?);
    if cx.drop_caps {
        tasks::drop_caps(tv, &proc.creds)?;
    }
    Ok(notes)
}
