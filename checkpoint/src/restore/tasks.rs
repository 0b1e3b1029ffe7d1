//! The threads of a restored process and their per-thread kernel state:
//! each thread is created by an injected clone3 in the process's vessel,
//! then gets its own state by syscalls injected in that thread.

use super::inject::Vessel;
use super::thread;
use crate::dump::sigstate::ThreadSignals;
use crate::dump::thread_extra::ThreadExtra;
use crate::error::Result;
use crate::model::{Creds, Process, Thread};
use crate::sys::CloneArgs;

/// A thread's flags: one address space, fs info, fd table and signal
/// handlers, in the same thread group, sharing SysV semaphore undo
/// (clone(2); what pthread_create passes, nptl/pthread_create.c).
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates every thread of `proc` but the main one (which the vessel
/// is), with its tid if `same_pids`. Returns (tid in our namespace,
/// image thread) pairs, main thread first.
pub fn spawn<'a>(v: &Vessel, proc: &'a Process, same_pids: bool) -> Result<Vec<(i32, &'a Thread)>> {
    let main = main_thread(proc)?;
    let mut out = vec![(v.pid, main)];
    for t in proc.threads.iter().filter(|t| t.tid != proc.pid) {
        let args = CloneArgs {
            flags: THREAD_FLAGS,
            ..Default::default()
        };
        let what = format!("clone3 of thread {} of pid {}", t.tid, proc.pid);
        let tid = v.clone3(&what, args, same_pids.then_some(t.tid))?;
        out.push((tid, t));
    }
    Ok(out)
}

/// The thread whose tid is the pid: the vessel itself.
pub fn main_thread(proc: &Process) -> Result<&Thread> {
    proc.threads
        .iter()
        .find(|t| t.tid == proc.pid)
        .ok_or_else(|| crate::Error::Invalid {
            what: format!(
                "cannot restore pid {}: its main thread has exited (the image has threads {:?} only)",
                proc.pid,
                proc.threads.iter().map(|t| t.tid).collect::<Vec<_>>()
            ),
        })
}

/// glibc's struct pthread on x86_64 (nptl/descr.h), found at the thread
/// pointer (fs_base): the TCB header starts with `tcb` and has `self` at
/// 16, both pointing at itself; `tid` is at 0x2d0 and `robust_head` at
/// 0x2e0 (the same in glibc 2.34 to 2.40). glibc gives the kernel
/// exactly these two addresses: set_tid_address(&pd->tid) and
/// set_robust_list(&pd->robust_head, 24).
const GLIBC_TID: u64 = 0x2d0;
const GLIBC_ROBUST: u64 = 0x2e0;
/// struct robust_list_head: list, futex_offset, list_op_pending.
const ROBUST_HEAD_LEN: u64 = 24;
/// glibc's futex_offset: offsetof(pthread_mutex_t, __data.__lock) minus
/// offsetof(..., __data.__list.__next) on x86_64.
const GLIBC_FUTEX_OFFSET: i64 = -32;

fn read_u64(v: &Vessel, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    v.peek(addr, &mut b).ok()?;
    Some(u64::from_ne_bytes(b))
}

/// The clear_child_tid and robust list addresses of a glibc thread,
/// recognised in its (already restored) memory: the image does not
/// record them, and neither can be read without running code in the
/// dumped thread (prctl PR_GET_TID_ADDRESS). None if the thread does
/// not look like glibc's, byte for byte.
fn glibc_addresses(v: &Vessel, t: &Thread) -> Option<(u64, u64)> {
    let fs = t.reg("fs_base");
    if fs == 0 || read_u64(v, fs)? != fs || read_u64(v, fs + 16)? != fs {
        return None;
    }
    let tid = read_u64(v, fs + GLIBC_TID)? as u32;
    let futex_offset = read_u64(v, fs + GLIBC_ROBUST + 8)? as i64;
    let list = read_u64(v, fs + GLIBC_ROBUST)?;
    (tid == t.tid as u32 && futex_offset == GLIBC_FUTEX_OFFSET && list != 0)
        .then_some((fs + GLIBC_TID, fs + GLIBC_ROBUST))
}

/// The per-thread kernel state, injected in thread `tv`: signal mask and
/// alternate stack, the robust futex list (set_robust_list(2)), the rseq
/// area (rseq(2)), both as the image recorded them (`extra`), and
/// clear_child_tid, what wakes pthread_join when the thread exits
/// (set_tid_address(2)), recognised in glibc's thread layout. Returns
/// notes.
pub fn setup(
    tv: &Vessel,
    proc: &Process,
    t: &Thread,
    extra: Option<&ThreadExtra>,
    sig: Option<&ThreadSignals>,
) -> Result<Vec<String>> {
    thread::signal_state(tv, sig.and_then(|s| s.altstack))?;
    let mut notes = Vec::new();
    let glibc = glibc_addresses(tv, t);
    let tid_address = sig.and_then(|s| s.tid_address);
    let robust = extra
        .and_then(|e| e.robust)
        .or(glibc.map(|(_, head)| (head, ROBUST_HEAD_LEN)));
    if let Some((head, len)) = robust {
        tv.call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [head, len, 0, 0, 0, 0],
        )?;
    }
    match tid_address.or(glibc.map(|(tid_addr, _)| tid_addr)) {
        Some(tid_addr) => {
            tv.call(
                "set_tid_address",
                libc::SYS_set_tid_address,
                [tid_addr, 0, 0, 0, 0, 0],
            )?;
        }
        None if proc.threads.len() > 1 => notes.push(format!(
            "pid {} thread {}: not a glibc thread layout; its clear_child_tid is not restored (a join on it would not return)",
            proc.pid, t.tid
        )),
        None => {}
    }
    if let Some((ptr, len, sig)) = extra.and_then(|e| e.rseq) {
        let rc = tv.raw(libc::SYS_rseq, [ptr, len as u64, 0, sig as u64, 0, 0])?;
        if rc != 0 {
            notes.push(format!(
                "pid {} thread {}: rseq area {ptr:#x} not registered again: {}",
                proc.pid,
                t.tid,
                nix::errno::Errno::from_raw(-rc as i32)
            ));
        }
    }
    Ok(notes)
}

/// Gives the thread the image's ids, in the order the kernel allows:
/// supplementary groups (only if `groups`: setgroups(2) needs
/// CAP_SETGID and is denied in a user namespace whose gid map an
/// unprivileged user wrote), gids, then uids (a thread that gave up uid 0
/// can no longer change its gids), then the filesystem ids
/// (setresuid(2) resets them to the effective ids). Changing from uid 0
/// clears the capabilities as for any setuid (capabilities(7)). Run in
/// that thread: credentials are per thread. Returns notes for what the
/// kernel refused (a restorer can only take ids it may take).
pub fn set_ids(tv: &Vessel, proc: &Process, groups: bool) -> Result<Vec<String>> {
    let c = &proc.creds;
    let mut notes = Vec::new();
    let mut try_call = |what: &str, nr: i64, args: [u64; 6]| -> Result<()> {
        let rc = tv.raw(nr, args)?;
        if rc < 0 {
            notes.push(format!(
                "pid {}: {what} refused ({}): it keeps isotrace restore's ids",
                proc.pid,
                nix::errno::Errno::from_raw(-rc as i32)
            ));
        }
        Ok(())
    };
    if groups {
        let list: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        let at = tv.stage(0, &list)?;
        let n = c.groups.len() as u64;
        try_call("setgroups", libc::SYS_setgroups, [n, at, 0, 0, 0, 0])?;
    }
    let [rg, eg, sg, fg] = c.gid.map(u64::from);
    let [ru, eu, su, fu] = c.uid.map(u64::from);
    try_call("setresgid", libc::SYS_setresgid, [rg, eg, sg, 0, 0, 0])?;
    try_call("setresuid", libc::SYS_setresuid, [ru, eu, su, 0, 0, 0])?;
    // setfs[ug]id return the previous id, never an error code.
    tv.raw(libc::SYS_setfsgid, [fg, 0, 0, 0, 0, 0])?;
    tv.raw(libc::SYS_setfsuid, [fu, 0, 0, 0, 0, 0])?;
    Ok(notes)
}

/// _LINUX_CAPABILITY_VERSION_3 (<linux/capability.h>).
const CAP_V3: u32 = 0x2008_0522;

/// Sets the thread's capability sets to the image's with capset(2),
/// run in that thread (capabilities are per thread). Used after a
/// rootless same-pid restore, whose vessels hold every capability of
/// their new user namespace until then.
pub fn drop_caps(tv: &Vessel, creds: &Creds) -> Result<()> {
    let mut bytes = Vec::new();
    bytes.extend(CAP_V3.to_ne_bytes());
    bytes.extend(0i32.to_ne_bytes());
    // struct __user_cap_data_struct[2]: effective, permitted, inheritable
    // (low 32 bits, then high 32 bits).
    for shift in [0, 32] {
        for set in [creds.cap_eff, creds.cap_prm, creds.cap_inh] {
            bytes.extend(((set >> shift) as u32).to_ne_bytes());
        }
    }
    let hdr = tv.stage(0, &bytes[..8])?;
    let data = tv.stage(64, &bytes[8..])?;
    tv.call("capset", libc::SYS_capset, [hdr, data, 0, 0, 0, 0])
        .map(drop)
}

/// seccomp(2) operation and flag (<linux/seccomp.h>).
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;

/// Installs `filter` in every thread of the process (TSYNC), after
/// PR_SET_NO_NEW_PRIVS, which an unprivileged filter needs and TSYNC
/// copies to every thread (kernel/seccomp.c, seccomp_sync_threads).
/// `v` is the main thread. A TSYNC failure returns the tid of the
/// thread that could not be synchronised.
pub fn install_seccomp(v: &Vessel, filter: &[libc::sock_filter]) -> Result<()> {
    v.call(
        "prctl PR_SET_NO_NEW_PRIVS",
        libc::SYS_prctl,
        [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
    )?;
    // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k.
    let mut prog = Vec::with_capacity(filter.len() * 8);
    for f in filter {
        prog.extend(f.code.to_ne_bytes());
        prog.push(f.jt);
        prog.push(f.jf);
        prog.extend(f.k.to_ne_bytes());
    }
    if prog.len() as u64 > crate::PAGE_SIZE - 512 {
        return Err(crate::Error::Invalid {
            what: format!(
                "the seccomp filter has {} instructions; at most {} fit the restore's data page",
                filter.len(),
                (crate::PAGE_SIZE - 512) / 8
            ),
        });
    }
    let insns = v.stage(512, &prog)?;
    // struct sock_fprog: u16 len (padded to 8), then the pointer.
    let mut fprog = (filter.len() as u64).to_ne_bytes().to_vec();
    fprog.extend(insns.to_ne_bytes());
    let at = v.stage(0, &fprog)?;
    let rc = v.raw(
        libc::SYS_seccomp,
        [
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            at,
            0,
            0,
            0,
        ],
    )?;
    if rc != 0 {
        let why = if rc > 0 {
            format!("thread {rc} could not be synchronised")
        } else {
            nix::errno::Errno::from_raw(-rc as i32).to_string()
        };
        return Err(crate::Error::Invalid {
            what: format!("restore (pid {}): seccomp filter: {why}", v.pid),
        });
    }
    Ok(())
}
