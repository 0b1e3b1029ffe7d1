//! Carrying out a verdict at a seccomp stop.

use crate::entry::Entry;
use crate::error::Result;
use crate::inject::{self, Injected};
use crate::policy::{Action, ArgvItem, Call, Verdict};
use crate::remote::MemFile;
use crate::scratch::{Pool, SCRATCH_BASE, SCRATCH_LEN, SLOT_SIZE};
use crate::supervisor::Supervisor;
use crate::sys::{self, Tid};
use crate::task::Pending;
use isotrace_arch::RegAccess;
use nix::errno::Errno;

pub fn verdict(
    sup: &mut Supervisor<'_>,
    tid: Tid,
    mut entry: Entry,
    call: Call,
    verdict: Verdict,
) -> Result<()> {
    let exit_stop = verdict.exit_stop;
    match &verdict.action {
        Action::Continue => resume(sup, tid, call, Vec::new(), exit_stop),
        Action::Emulate(ret) => skip_with(sup, &mut entry, *ret, call, exit_stop),
        Action::EmulateWrite { ret, writes } => {
            let ret = match write_all(tid, writes) {
                Ok(()) => *ret,
                Err(e) => -(e.guest_errno() as i64),
            };
            skip_with(sup, &mut entry, ret, call, exit_stop)
        }
        Action::Deny(e) => skip_with(sup, &mut entry, -(*e as i64), call, exit_stop),
        Action::Rewrite { paths, args } => {
            let mut nr = entry.nr();
            let mut new = entry.args();
            for &(i, v) in args {
                if i == crate::policy::SYSCALL_NR {
                    nr = v;
                } else if let Some(a) = new.get_mut(i) {
                    *a = v;
                }
            }
            if paths.is_empty() {
                entry.set_call(nr, new)?;
                sup.stats.rewrites += 1;
                return resume(sup, tid, call, Vec::new(), exit_stop);
            }
            rewrite_paths(sup, tid, entry, (nr, new), call, verdict)
        }
        Action::RewriteArgv { .. } => {
            let now = (entry.nr(), entry.args());
            rewrite_paths(sup, tid, entry, now, call, verdict)
        }
    }
}

/// Skips a syscall the filter trapped but the table does not know.
pub fn skip(tid: Tid, mut entry: Entry, ret: i64) -> Result<()> {
    entry.skip(ret)?;
    sys::cont(tid, 0)
}

fn skip_with(
    sup: &mut Supervisor<'_>,
    entry: &mut Entry,
    ret: i64,
    call: Call,
    exit_stop: bool,
) -> Result<()> {
    entry.skip(ret)?;
    resume(sup, call.tid, call, Vec::new(), exit_stop)
}

fn resume(
    sup: &mut Supervisor<'_>,
    tid: Tid,
    call: Call,
    rewritten: Vec<(usize, Vec<u8>)>,
    exit_stop: bool,
) -> Result<()> {
    if exit_stop {
        if let Some(task) = sup.tasks.get_mut(&tid) {
            task.pending = Some(Pending { call, rewritten });
        }
        sys::cont_syscall(tid, 0)
    } else if sup.gate.is_exclusive(tid) {
        // The gate holds until this call's exit stop (gate.rs).
        sys::cont_syscall(tid, 0)
    } else {
        sys::cont(tid, 0)
    }
}

/// One path argument to rewrite: its index and the new bytes.
type PathRewrite = (usize, Vec<u8>);

/// Writes the verdict's paths (and argv) into a scratch slot and points
/// the arguments at them. The paths are borrowed from the verdict: they
/// are copied only when an exit stop needs them.
fn rewrite_paths(
    sup: &mut Supervisor<'_>,
    tid: Tid,
    mut entry: Entry,
    (nr, mut args): (u64, [u64; 6]),
    call: Call,
    verdict: Verdict,
) -> Result<()> {
    let (paths, argv): (&[PathRewrite], Option<(usize, &[ArgvItem])>) = match &verdict.action {
        Action::Rewrite { paths, .. } => (paths, None),
        Action::RewriteArgv {
            paths,
            argv_idx,
            argv,
        } => (paths, Some((*argv_idx, argv.as_slice()))),
        _ => (&[], None),
    };
    let task = sup.tasks.get_mut(&tid).expect("known task");
    let mm = task.mm.clone();
    let pid = task.pid;
    if !mm.borrow().pool.mapped {
        return map_scratch(sup, tid, entry, call, verdict);
    }
    let mut space = mm.borrow_mut();
    let argv_need: usize = argv.as_ref().map_or(0, |(_, items)| {
        items
            .iter()
            .map(|i| match i {
                ArgvItem::New(s) => s.len() + 1,
                ArgvItem::Tracee(_) => 0,
            })
            .sum::<usize>()
            + 8 * (items.len() + 2)
    });
    let need: usize = paths.iter().map(|(_, p)| p.len() + 1).sum::<usize>() + argv_need;
    let Some(slot) = (need as u64 <= SLOT_SIZE)
        .then(|| space.pool.alloc())
        .flatten()
    else {
        drop(space);
        let e = if need as u64 > SLOT_SIZE && argv_need > 0 {
            Errno::E2BIG
        } else if need as u64 > SLOT_SIZE {
            Errno::ENAMETOOLONG
        } else {
            Errno::EAGAIN
        };
        return skip_with(sup, &mut entry, -(e as i64), call, verdict.exit_stop);
    };
    if space.mem.is_none() {
        space.mem = Some(MemFile::open(pid)?);
    }
    let mem = space.mem.as_ref().expect("just opened");
    let addr = Pool::addr(slot);
    let mut blob = Vec::with_capacity(need);
    for (i, p) in paths {
        args[*i] = addr + blob.len() as u64;
        blob.extend_from_slice(p);
        blob.push(0);
    }
    if let Some((idx, items)) = &argv {
        let array = lay_out_argv(addr, &mut blob, items);
        args[*idx] = array;
    }
    // The slot may still hold these very bytes from its last use (the
    // tracee cannot write it: scratch.rs); then there is nothing to write.
    let written = if space.pool.holds(slot, &blob) {
        Ok(())
    } else {
        let w = mem.write(tid, addr, &blob);
        space
            .pool
            .set_held(slot, w.is_ok().then_some(blob.as_slice()));
        w
    };
    drop(space);
    if let Err(e) = written {
        mm.borrow_mut().pool.free(slot);
        return skip_with(sup, &mut entry, -(e.guest_errno() as i64), call, false);
    }
    sup.tasks.get_mut(&tid).expect("known task").slot = Some(slot);
    sup.stats.rewrites += 1;
    entry.set_call(nr, args)?;
    let pending = if verdict.exit_stop {
        paths.to_vec()
    } else {
        Vec::new()
    };
    resume(sup, tid, call, pending, verdict.exit_stop)
}

/// Maps the scratch region by an injected mmap, then lets the tracee
/// re-issue its syscall, which will find `verdict` waiting.
fn map_scratch(
    sup: &mut Supervisor<'_>,
    tid: Tid,
    mut entry: Entry,
    call: Call,
    verdict: Verdict,
) -> Result<()> {
    let regs = entry.regs()?;
    let nr = isotrace_arch::by_name("mmap").expect("mmap in table").nr as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let args = [
        SCRATCH_BASE,
        SCRATCH_LEN,
        libc::PROT_READ as u64,
        flags,
        u64::MAX,
        0,
    ];
    sup.stats.injections += 1;
    match inject::at_entry(tid, &regs, nr, args)? {
        Injected::Interrupted(status) => {
            sup.deferred.push_back((tid, status));
            Ok(())
        }
        Injected::Returned(ret) => {
            let task = sup.tasks.get_mut(&tid).expect("known task");
            // EEXIST: a CLONE_VM sibling mapped it already; nothing else
            // can be there, since the guard refuses fixed mappings in range.
            if ret as u64 == SCRATCH_BASE || ret == -(libc::EEXIST as i64) {
                task.mm.borrow_mut().pool.mapped = true;
                task.replay = Some((regs.syscall_nr(), call, verdict));
                sys::cont(tid, 0)
            } else {
                tracing::warn!("tid {tid}: cannot map the scratch region: {ret}");
                task.replay = Some((regs.syscall_nr(), call, Verdict::deny(Errno::ENOMEM)));
                sys::cont(tid, 0)
            }
        }
    }
}

/// Stores policy-provided bytes into the tracee's own buffers with
/// process_vm_writev, which honours page protections as the kernel's
/// copy_to_user would: a read-only buffer gives EFAULT.
pub fn write_all(tid: Tid, writes: &[crate::policy::MemWrite]) -> Result<()> {
    for w in writes {
        sys::vm_write(tid, w.addr, &w.bytes)?;
    }
    Ok(())
}

/// Appends the new strings of `items`, then the 8-aligned pointer array
/// (NULL-terminated) to `blob`, which starts at tracee address `base`.
/// Returns the array's address.
fn lay_out_argv(base: u64, blob: &mut Vec<u8>, items: &[ArgvItem]) -> u64 {
    let mut ptrs = Vec::with_capacity(items.len() + 1);
    for item in items {
        match item {
            ArgvItem::Tracee(p) => ptrs.push(*p),
            ArgvItem::New(s) => {
                ptrs.push(base + blob.len() as u64);
                blob.extend_from_slice(s);
                blob.push(0);
            }
        }
    }
    ptrs.push(0);
    blob.resize(blob.len().next_multiple_of(8), 0);
    let array = base + blob.len() as u64;
    for p in ptrs {
        blob.extend_from_slice(&p.to_ne_bytes());
    }
    array
}
