//! The process tree of a restore: the order processes are created in
//! (a parent before its children), each one cloned by an injected clone3
//! in its parent's vessel so the parent/child links, wait(2) and
//! getppid(2) hold, and their sessions and process groups.

use super::fds::{self, FdPlan};
use super::inject::Vessel;
use super::{memory, Options};
use crate::dump::pipes::PipeData;
use crate::dump::unix_pairs::Pairs;
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
) -> Result<Plan<'a>> {
    let (order, parent, mut notes) = order(image)?;
    let pipes = fds::rebuilt_pipes(order.iter().copied(), data);
    let sockets = super::sockets::rebuilt(&order, pairs);
    let mapped: BTreeSet<u64> = order
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| v.shared() && super::shm::is_shm(&v.path))
        .map(|v| v.inode)
        .collect();
    let shape = fds::Shape {
        tty_stdio: tty,
        pipes: &pipes,
        sockets: &sockets,
        mapped: &mapped,
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

/// Clones every process after the root from its parent's vessel, in
/// `plan.order`, each with its pid if `opts.same_pids`. `born` gets each
/// new pid as soon as it exists (so a failure can kill it). Returns the
/// vessels in `plan.order`, the root's first.
pub fn create(
    root: Vessel,
    plan: &Plan<'_>,
    opts: &Options,
    born: &mut Vec<i32>,
) -> Result<(Vec<Vessel>, Vec<String>)> {
    let mut vessels = vec![root];
    // Image pid -> pid inside the restored processes' namespace.
    let mut inner: BTreeMap<i32, i32> = BTreeMap::new();
    let root_inner = if opts.same_pids {
        plan.order[0].pid
    } else {
        vessels[0].pid
    };
    inner.insert(plan.order[0].pid, root_inner);
    let mut notes = session(&vessels[0], plan.order[0], &inner, opts, true)?;
    for (i, p) in plan.order.iter().enumerate().skip(1) {
        let parent = &vessels[plan.parent[i].expect("only the root has no parent")];
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            ..Default::default()
        };
        let what = format!("clone3 of pid {}", p.pid);
        let pid = parent.clone3(&what, args, opts.same_pids.then_some(p.pid))?;
        born.push(pid);
        let v = parent.task(pid)?;
        inner.insert(p.pid, if opts.same_pids { p.pid } else { pid });
        notes.extend(session(&v, p, &inner, opts, false)?);
        vessels.push(v);
    }
    Ok((vessels, notes))
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
