//! Connections waiting in the accept queues of a frozen group's TCP
//! listeners. They have no fd, so no image can hold them
//! (`isotrace_checkpoint::dump::unread` refuses the checkpoint). A
//! checkpoint or migration drains them instead: new connections to those
//! listeners are held back (their SYNs dropped by a network lock of
//! their own, `netlock`; clients send them again, RFC 6298 5.7), the
//! group is let run until it has accepted what waited, and it is frozen
//! again. The dump's own lock drops the listeners' SYNs from then on.
//!
//! Used by a barrier job: [`AcceptDrain::start`] at the barrier (true:
//! resume and freeze again), [`AcceptDrain::again`] from its `finish`,
//! [`AcceptDrain::end`] once it is done.

use isotrace_checkpoint::dump::backlog;
use isotrace_checkpoint::netlock::{self, Lock};
use isotrace_tracer::{Barrier, BarrierJob, Waker};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the group may take to accept what waits in its queues.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How many times it is let run for that, at most: a handshake in flight
/// when the lock came completes after it.
const MAX: u32 = 3;

pub struct AcceptDrain {
    waker: Waker,
    lock: Option<Lock>,
    root: i32,
    addrs: Vec<SocketAddr>,
    inos: Vec<u64>,
    what: String,
    began: Instant,
    times: u32,
    /// Whether the job is to freeze again rather than answer.
    pending: bool,
}

impl AcceptDrain {
    pub fn new(waker: Waker) -> AcceptDrain {
        AcceptDrain {
            waker,
            lock: None,
            root: 0,
            addrs: Vec::new(),
            inos: Vec::new(),
            what: String::new(),
            began: Instant::now(),
            times: 0,
            pending: false,
        }
    }

    /// At the barrier: whether connections wait and the group is to run
    /// until it accepted them (then the job answers [`AfterFreeze::Resume`]
    /// and its `finish` calls [`AcceptDrain::again`]). Without the lock (no
    /// CAP_NET_ADMIN, no nft) nothing is drained, a note says why, and the
    /// dump refuses as before, naming the listener.
    ///
    /// [`AfterFreeze::Resume`]: isotrace_tracer::AfterFreeze::Resume
    pub fn start(&mut self, b: &Barrier, notes: &mut Vec<String>) -> bool {
        if self.times >= MAX {
            return false;
        }
        let waiting = backlog::waiting(b.root, &b.pids());
        if waiting.is_empty() {
            return false;
        }
        self.times += 1;
        let what = waiting
            .iter()
            .map(|w| format!("{} on {}", w.count, w.local))
            .collect::<Vec<_>>()
            .join(", ");
        let addrs: Vec<SocketAddr> = waiting.iter().map(|w| w.local).collect();
        if self.lock.is_none() {
            match Lock::connections(&netlock::fresh_name(), &[], &addrs) {
                Ok(lock) => (self.lock, self.addrs) = (Some(lock), addrs.clone()),
                Err(e) => {
                    notes.push(format!(
                        "connections wait to be accepted ({what}), and new ones could not be \
                         held back to let the group accept them: {e}"
                    ));
                    return false;
                }
            }
        }
        if !addrs.iter().all(|a| self.addrs.contains(a)) {
            // A listener the lock does not cover (new since): refused.
            return false;
        }
        self.root = b.root;
        self.inos = waiting.iter().map(|w| w.ino).collect();
        self.what = what;
        self.began = Instant::now();
        self.pending = true;
        true
    }

    /// Whether `finish` is to call [`AcceptDrain::again`] (once per
    /// [`AcceptDrain::start`] that said so).
    pub fn take_pending(&mut self) -> bool {
        std::mem::take(&mut self.pending)
    }

    /// Off the tracer thread (which runs the group meanwhile): waits, up to
    /// [`TIMEOUT`], until the group accepted what waited, notes it, and
    /// hands `job` to the barrier again. A group that ended meanwhile
    /// drops the job, and with it its reply.
    pub fn again<J: BarrierJob + 'static>(
        mut job: Box<J>,
        paused: std::time::Duration,
        drain: impl Fn(&mut J) -> (&mut AcceptDrain, &mut Vec<String>) + Send + 'static,
    ) {
        std::thread::spawn(move || {
            let (d, notes) = drain(&mut job);
            while backlog::still_waiting(d.root, &d.inos) > 0 && d.began.elapsed() < TIMEOUT {
                std::thread::sleep(Duration::from_millis(2));
            }
            let ms = |t: Duration| t.as_secs_f64() * 1000.0;
            notes.push(format!(
                "connections waited in accept queues at the freeze ({}): new connections were \
                 held back while the group accepted them ({:.1} ms, after a {:.1} ms pause), \
                 then it was frozen again",
                d.what,
                ms(d.began.elapsed()),
                ms(paused)
            ));
            let waker = d.waker.clone();
            let _ = waker.submit(job);
        });
    }

    /// The job is done: new connections are let in again (the dump's own
    /// lock, if any, holds the listeners' SYNs as long as it needs).
    pub fn end(&mut self, notes: &mut Vec<String>) {
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.unlock() {
                notes.push(format!("the accept queues' lock: {e}"));
            }
        }
    }
}
