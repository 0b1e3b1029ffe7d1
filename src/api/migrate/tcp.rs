//! The TCP connections of a migrating group, phase by phase (the policy
//! over `isotrace_checkpoint::dump::tcp`, the mechanism):
//!
//! 1. The dump puts every connection in repair mode, locks it
//!    (`isotrace_checkpoint::netlock`) and reads it.
//! 2. If the receiver is in this network namespace (`--to-env`, or a
//!    receiver on an address of this host), the source's sockets are
//!    taken out of the copy's way before the copy is restored: the
//!    connections are disconnected in repair mode and the listeners shut
//!    down, since one namespace cannot hold two sockets of one 4-tuple, or
//!    two listeners of one port. Not for a clone, whose source runs on
//!    with its listeners: `ports` decides, at the freeze, whether they
//!    share their ports with the copy or the clone is refused.
//! 3. Before `Go`: the action script's `pre-resume` moves the address.
//! 4. Once the copy runs: the source's sockets are released silently and
//!    the lock lifted. On any failure before that, the source's
//!    connections are put back as they were (re-made in place if step 2
//!    ran) and the lock lifted: the source resumes with them intact.

use super::action::ActionScript;
use super::ports::{self, Ports};
use isotrace_checkpoint::dump::tcp::{self, Held, TcpPolicy};
use isotrace_checkpoint::dump::tcp_share::{Listener, Shared};
use isotrace_checkpoint::model::ProcessTree;
use std::net::{ToSocketAddrs, UdpSocket};

pub struct TcpMove {
    held: Option<Held>,
    script: Option<ActionScript>,
    /// The listening sockets to shut down in step 2 (pid, fd, inode).
    listeners: Vec<(i32, i32, u64)>,
    /// The UDP sockets bound to a port, to give way in step 2.
    udp: Vec<(i32, i32, u64)>,
    same_netns: bool,
    /// A clone: the source keeps its sockets (see `ports`).
    clone: bool,
    /// A same-host clone's listeners, opened to the copy.
    shared: Option<Shared>,
}

/// Whether `to` (HOST:PORT) is an address of this network namespace: one
/// can bind a socket to it (bind(2) EADDRNOTAVAIL otherwise, ip(7)).
pub fn is_local(to: &str) -> bool {
    to.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| UdpSocket::bind((a.ip(), 0)).is_ok())
}

/// The policy of a move: a clone keeps the source's connections, so the
/// copy gets them closed; `--tcp-close` closes them for a migration too.
pub fn policy(purpose: &str, tcp_close: bool) -> TcpPolicy {
    if tcp_close || purpose == "clone" {
        TcpPolicy::Close
    } else {
        TcpPolicy::Repair
    }
}

impl TcpMove {
    pub fn new(
        held: Held,
        tree: &ProcessTree,
        script: Option<&str>,
        group: &str,
        to: &str,
    ) -> TcpMove {
        let conns: Vec<String> = tcp::connections(tree)
            .iter()
            .map(|f| format!("{}>{}", f.local, f.remote))
            .collect();
        TcpMove {
            held: Some(held),
            script: script.map(|p| ActionScript {
                path: p.into(),
                group: group.into(),
                to: to.into(),
                connections: conns.join(" "),
            }),
            listeners: tcp::listeners(tree),
            udp: tcp::bound_udp(tree),
            same_netns: is_local(to),
            clone: false,
            shared: None,
        }
    }

    /// A clone: with the copy in this network namespace, `ports` decides
    /// about the source's listeners (see `ports`). Err: the clone is
    /// refused, naming the port. Returns notes.
    pub fn cloning(&mut self, tree: &ProcessTree, policy: Ports) -> Result<Vec<String>, String> {
        self.clone = true;
        if !self.same_netns {
            return Ok(Vec::new());
        }
        self.shared = ports::open(policy, tree)?;
        let note = |l: Listener| match l.kind() {
            "UDP" => format!(
                "UDP port {} shared with the copy (SO_REUSEPORT): the kernel spreads \
                 datagrams over both by their source address; those queued now stay with \
                 the original",
                l.local
            ),
            _ => format!(
                "listening port {} shared with the copy (SO_REUSEPORT): \
                 the kernel spreads new connections over both",
                l.local
            ),
        };
        Ok(self
            .shared
            .iter()
            .flat_map(Shared::ports)
            .map(note)
            .collect())
    }

    fn run(&self, phase: &str, result: Option<&str>) -> Result<(), String> {
        self.script
            .as_ref()
            .map_or(Ok(()), |s| s.run(phase, result))
    }

    /// Step 1's script phase.
    pub fn locked(&self) -> Result<(), String> {
        self.run("network-lock", None)
    }

    /// Step 2, just before the receiver restores.
    pub fn before_restore(&mut self) -> Result<(), String> {
        match &mut self.held {
            Some(h) if self.same_netns && !self.clone => h
                .detach(&self.listeners, &self.udp)
                .map_err(|e| format!("moving the TCP connections: {e}")),
            _ => Ok(()),
        }
    }

    /// Step 3.
    pub fn before_go(&self) -> Result<(), String> {
        self.run("pre-resume", None)
    }

    /// Step 4, the copy runs. Returns notes.
    pub fn succeeded(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(h) = self.held.take() {
            if let Err(e) = h.release(true) {
                notes.push(format!("TCP connections: {e}"));
            }
        }
        if let Err(e) = self.run("network-unlock", Some("migrated")) {
            notes.push(e);
        }
        notes
    }

    /// A clone's copy runs: the source runs on beside it, with the ports
    /// it shares still shared. Returns notes.
    pub fn cloned(&mut self) -> Vec<String> {
        if let Some(s) = self.shared.take() {
            s.keep();
        }
        self.failed()
    }

    /// The source resumes. Returns what could not be put back.
    pub fn failed(&mut self) -> Vec<String> {
        let mut lost = self.held.take().map(Held::resume).unwrap_or_default();
        lost.extend(self.shared.take().map(Shared::undo).unwrap_or_default());
        if let Err(e) = self.run("network-unlock", Some("resumed")) {
            lost.push(e);
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_told_from_remote_ones() {
        assert!(is_local("127.0.0.1:1"));
        assert!(is_local("localhost:7070"));
        // TEST-NET-1 (RFC 5737) is nobody's address.
        assert!(!is_local("192.0.2.1:7070"));
        assert!(!is_local("no-such-host.invalid:1"));
    }

    #[test]
    fn a_clone_never_carries_connections() {
        assert_eq!(policy("clone", false), TcpPolicy::Close);
        assert_eq!(policy("migrate", true), TcpPolicy::Close);
        assert_eq!(policy("migrate", false), TcpPolicy::Repair);
    }
}
