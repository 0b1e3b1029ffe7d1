//! The process tree of a restore: the order processes are created in
//! (a parent before its children), each one cloned by an injected clone3
//! in its parent's vessel so the parent/child links, wait(2) and
//! getppid(2) hold, and their sessions and process groups.

use super::fds::{self, FdPlan};
use super::inject::Vessel;
use super::{memory, Options};
use crate::dump::pipes::PipeData;
use crate::dump::unix_pairs::Pairs;
use crate::dump::zombies::Zombie;
use crate::error::{Error, Result};
use crate::model::Process;
use crate::sys::CloneArgs;
use crate::Image;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What a restore will build, decided before anything exists.
pub struct Plan<'a> {
    /// Root first, then breadth-first by parent, siblings by pid.
    pub order: Vec<&'a Process>,
    /// Index in `order` of each process's parent (None for the root).
    pub parent: Vec<Option<usize>>,
    pub fds: Vec<Vec<FdPlan>>,
    /// Each process's pages section, absolute.
    pub pages: Vec<PathBuf>,
    pub notes: Vec<String>,
}

/// Orders the image's processes and plans their fds and mappings;
/// refuses what cannot be restored.
pub fn plan<'a>(
    image: &'a Image,
    tty: Option<i32>,
    data: &PipeData,
    pairs: &Pairs,
    sections: &super::objects::Sections,
) -> Result<Plan<'a>> {
    let (order, parent, mut notes) = order(image)?;
    let pipes = fds::rebuilt_pipes(order.iter().copied(), data);
    let sockets = super::sockets::rebuilt(&order, pairs, &sections.embryos);
    let mapped: BTreeSet<u64> = order
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| v.shared() && super::shm::is_shm(&v.path))
        .map(|v| v.inode)
        .collect();
    let nameless = sections.nameless_inos();
    let shape = fds::Shape {
        tty_stdio: tty,
        pipes: &pipes,
        sockets: &sockets,
        mapped: &mapped,
        nameless: &nameless,
        inotify: &sections.watches,
        open_files: &sections.open_files,
    };
    let mut fd_plans = Vec::new();
    let mut pages = Vec::new();
    for p in &order {
        super::tasks::main_thread(p)?;
        let (plan, n) = fds::plan(p, shape)?;
        fd_plans.push(plan);
        notes.extend(n);
        for vma in &p.vmas {
            memory::classify(p.pid, vma)?;
        }
        let path = image.dir.join(&p.pages_section);
        pages.push(std::fs::canonicalize(&path).map_err(|e| Error::io(path, e))?);
    }
    Ok(Plan {
        order,
        parent,
        fds: fd_plans,
        pages,
        notes,
    })
}

/// The processes root first, then breadth-first by parent (siblings by
/// pid), with the index of each one's parent; a process whose parent is
/// not in the image becomes a child of the root, with a note.
type Order<'a> = (Vec<&'a Process>, Vec<Option<usize>>, Vec<String>);

fn order(image: &Image) -> Result<Order<'_>> {
    let procs = &image.tree.processes;
    let root = image
        .tree
        .process(image.tree.root)
        .or_else(|| procs.first())
        .ok_or_else(|| Error::Invalid {
            what: "the image holds no process".into(),
        })?;
    let mut order = vec![root];
    let mut parent = vec![None];
    let mut i = 0;
    while i < order.len() {
        let mut kids: Vec<&Process> = procs
            .iter()
            .filter(|p| p.ppid == order[i].pid && p.pid != root.pid)
            .collect();
        kids.sort_by_key(|p| p.pid);
        for k in kids {
            order.push(k);
            parent.push(Some(i));
        }
        i += 1;
    }
    let mut notes = Vec::new();
    let orphans: Vec<&Process> = procs
        .iter()
        .filter(|p| !order.iter().any(|o| o.pid == p.pid))
        .collect();
    for p in orphans {
        notes.push(format!(
            "pid {}: its parent {} is not in the image; it is restored as a child of pid {}",
            p.pid, p.ppid, root.pid
        ));
        order.push(p);
        parent.push(Some(0));
    }
    Ok((order, parent, notes))
}

/// What [`create`] made: a vessel per process in `plan.order` (the
/// root's first), the zombies-to-be, stopped (see `zombie`), and notes.
pub struct Created {
    pub vessels: Vec<Vessel>,
    pub zombies: Vec<super::zombie::Pending>,
    pub notes: Vec<String>,
}

/// Clones every process after the root from its parent's vessel, in
/// `plan.order`, each with its pid if `opts.same_pids`, and right after
/// each process its `zombies` (before any later process, which may be in
/// a group a zombie leads). `born` gets each new pid as soon as it
/// exists (so a failure can kill it).
pub fn create(
    root: Vessel,
    plan: &Plan<'_>,
    zombies: &[Zombie],
    opts: &Options,
    born: &mut Vec<i32>,
) -> Result<Created> {
    let mut out = Created {
        vessels: vec![root],
        zombies: Vec::new(),
        notes: Vec::new(),
    };
    // Image pid -> pid inside the restored processes' namespace.
    let mut inner: BTreeMap<i32, i32> = BTreeMap::new();
    let root_inner = if opts.same_pids {
        plan.order[0].pid
    } else {
        out.vessels[0].pid
    };
    inner.insert(plan.order[0].pid, root_inner);
    out.notes = session(&out.vessels[0], plan.order[0], &inner, opts, true)?;
    for (i, p) in plan.order.iter().enumerate() {
        if i > 0 {
            let parent = &out.vessels[plan.parent[i].expect("only the root has no parent")];
            let v = clone_child(parent, p.pid, opts, born, &mut inner)?;
            out.notes.extend(session(&v, p, &inner, opts, false)?);
            out.vessels.push(v);
        }
        for z in zombies.iter().filter(|z| z.ppid == p.pid) {
            let v = clone_child(&out.vessels[i], z.pid, opts, born, &mut inner)?;
            let ids = Process {
                pid: z.pid,
                ppid: z.ppid,
                pgid: z.pgid,
                sid: z.sid,
                ..Default::default()
            };
            out.notes.extend(session(&v, &ids, &inner, opts, false)?);
            out.zombies.push(super::zombie::Pending {
                vessel: v,
                zombie: z.clone(),
            });
        }
    }
    for z in zombies {
        if !plan.order.iter().any(|p| p.pid == z.ppid) {
            out.notes.push(format!(
                "zombie pid {}: its parent {} is not in the image; it is not restored",
                z.pid, z.ppid
            ));
        }
    }
    Ok(out)
}

/// An injected clone3 of image pid `pid` in `parent`'s vessel (with that
/// pid if `opts.same_pids`); records it in `born` and `inner`.
fn clone_child(
    parent: &Vessel,
    pid: i32,
    opts: &Options,
    born: &mut Vec<i32>,
    inner: &mut BTreeMap<i32, i32>,
) -> Result<Vessel> {
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let what = format!("clone3 of pid {pid}");
    let new = parent.clone3(&what, args, opts.same_pids.then_some(pid))?;
    born.push(new);
    inner.insert(pid, if opts.same_pids { pid } else { new });
    parent.task(new)
}

/// The process's session and process group, right after it is cloned
/// and before it clones its own children, which inherit both. A session
/// leader calls setsid(2); a group leader setpgid(0, 0); a member joins
/// its group, whose leader (lower pid, or an ancestor) already exists
/// unless it was outside the image. setpgid(2) only works within one
/// session, which holds for groups the image shows in one session.
fn session(
    v: &Vessel,
    p: &Process,
    inner: &BTreeMap<i32, i32>,
    opts: &Options,
    is_root: bool,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let leader = p.sid == p.pid && (opts.same_pids || !is_root);
    if leader || (is_root && opts.new_session) {
        // setsid(2) also makes it the leader of a new process group, and
        // a session leader cannot change its group (setpgid(2), EPERM).
        v.call("setsid", libc::SYS_setsid, [0; 6])?;
        if p.pgid != p.pid && p.pgid != p.sid && !is_root {
            notes.push(format!(
                "pid {}: process group {} not restored: it leads session {}",
                p.pid, p.pgid, p.sid
            ));
        }
        return Ok(notes);
    }
    let target = if p.pgid == p.pid {
        (opts.same_pids || !is_root).then_some(0)
    } else {
        inner.get(&p.pgid).copied()
    };
    match target {
        Some(pgid) => {
            let rc = v.raw(libc::SYS_setpgid, [0, pgid as u64, 0, 0, 0, 0])?;
            if rc != 0 {
                notes.push(format!(
                    "pid {}: process group {} not restored (setpgid: {})",
                    p.pid,
                    p.pgid,
                    nix::errno::Errno::from_raw(-rc as i32)
                ));
            }
        }
        None if !is_root => notes.push(format!(
            "pid {}: its process group {} was led from outside the image; it stays in its parent's",
            p.pid, p.pgid
        )),
        None => {}
    }
    Ok(notes)
}
