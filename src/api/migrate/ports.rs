//! The listening-port policy of a clone (`isotrace clone --ports`, README
//! "Checkpoint, restore, migration"). A clone's source keeps running with
//! its listeners, and a copy on this host lives in the same network
//! namespace, where two listeners of one port conflict (bind(2)
//! EADDRINUSE) unless both have SO_REUSEPORT. So, for a clone whose
//! receiver is on this host:
//!
//! - `share` (the default): SO_REUSEPORT is set on the source's listeners
//!   at the freeze (`isotrace_checkpoint::dump::tcp_share`), the copy's
//!   listeners join them, and the kernel spreads new connections over
//!   both copies. UDP sockets bound to a port are shared the same way
//!   (datagrams spread by their source address; those queued at the
//!   freeze stay with the original). A socket that cannot share (another
//!   uid) refuses the clone, naming its port.
//! - `refuse`: a group with a TCP listener or a UDP socket bound to a
//!   port is not cloned on this host.
//!
//! Either way nothing fails silently: a refusal happens at the freeze,
//! before anything is sent, and the group resumes untouched. A clone to
//! another host, and a migration (whose source stops listening before
//! the copy starts: `tcp::TcpMove::before_restore`), need neither.

use isotrace_checkpoint::dump::tcp_share::{self, Listener, Shared};
use isotrace_checkpoint::model::ProcessTree;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ports {
    #[default]
    Share,
    Refuse,
}

impl Ports {
    /// The op's `"ports"`: `"share"` or `"refuse"`.
    pub fn parse(text: &str) -> Option<Ports> {
        match text {
            "share" => Some(Ports::Share),
            "refuse" => Some(Ports::Refuse),
            _ => None,
        }
    }
}

/// Applies `ports` to the listeners of a frozen group being cloned into
/// this network namespace. Ok(None): nothing to share.
pub fn open(ports: Ports, tree: &ProcessTree) -> Result<Option<Shared>, String> {
    let found = tcp_share::listeners(tree);
    let Some(first) = found.first() else {
        return Ok(None);
    };
    match ports {
        Ports::Refuse => Err(refusal(first, found.len())),
        Ports::Share => {
            let uid = nix::unistd::geteuid().as_raw();
            tcp_share::share(&found, uid)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

fn refusal(first: &Listener, count: usize) -> String {
    let more = match count {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    format!(
        "--ports refuse: the group listens on {} port {} ({}, pid {} fd {}{more}), which a \
         copy on this host could not listen on too; clone with --ports share (both copies \
         accept on the port and the kernel spreads new connections), or to another host with \
         --to",
        first.kind(),
        tcp_share::port_of(&first.local),
        first.local,
        first.pid,
        first.fd
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_named_as_the_cli_says_it() {
        assert_eq!(Ports::parse("share"), Some(Ports::Share));
        assert_eq!(Ports::parse("refuse"), Some(Ports::Refuse));
        assert_eq!(Ports::parse("netns"), None);
        assert_eq!(Ports::default(), Ports::Share);
    }

    #[test]
    fn a_refusal_names_the_port_and_the_way_out() {
        let l = Listener {
            pid: 7,
            fd: 3,
            ino: 1,
            local: "127.0.0.1:8000".into(),
            proto: "tcp".into(),
        };
        let why = refusal(&l, 2);
        assert!(why.contains("port 8000"), "{why}");
        assert!(why.contains("pid 7 fd 3"), "{why}");
        assert!(why.contains("and 1 more"), "{why}");
        assert!(why.contains("--ports share"), "{why}");
    }

    #[test]
    fn a_group_without_listeners_has_nothing_to_share() {
        let tree = ProcessTree::default();
        assert!(open(Ports::Refuse, &tree).unwrap().is_none());
    }
}
