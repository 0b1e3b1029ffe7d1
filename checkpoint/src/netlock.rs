//! The network lock of a TCP checkpoint (#6): while a connection's socket
//! is being dumped, moved, or does not exist at all, no packet of that
//! connection may be answered or sent. A segment reaching a host that has
//! no socket for it is answered with RST (RFC 9293 3.10.7.1, net/ipv4/
//! tcp_ipv4.c tcp_v4_send_reset), which kills the peer's connection; and a
//! segment reaching the frozen source's socket would be ACKed by the
//! kernel after its queues were read, so the copy would never see it.
//!
//! The lock is per connection, in the network namespace of the caller:
//! one nftables table named after the checkpoint, with a rule in the
//! input hook dropping what the peer sends to the connection and one in
//! the output hook dropping what the local end sends to it. Other traffic,
//! including new connections to the same listening port, is untouched.
//! Dropped segments are retransmitted by the peer (RFC 6298) once the lock
//! is gone, so the peer sees a delay, not an error. The group's listening
//! addresses get a rule too, dropping new connections' SYNs: a connection
//! the kernel completes for a frozen listener waits in its accept queue,
//! which no image holds, and is reset when that listener goes; a dropped
//! SYN is sent again (RFC 6298 5.7) and reaches the copy. The table is made and
//! removed with nft(8) (Debian package `nftables`), which needs
//! CAP_NET_ADMIN in the namespace.

use crate::error::{Error, Result};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// nft(8), where Debian installs it when PATH lacks /usr/sbin.
fn nft() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// One connection: its local and remote end.
pub type Conn = (SocketAddr, SocketAddr);

/// A held lock; [`Lock::unlock`] removes it. Dropping it leaves the
/// table in place (a checkpoint that stopped the group leaves its
/// connections locked until `isotrace restore` lifts it, as the image
/// records its name).
#[derive(Debug)]
pub struct Lock {
    pub name: String,
}

/// A table name of ours for a new lock: `isotrace_PID_NANOS`.
pub fn fresh_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!("isotrace_{}_{nanos}", std::process::id())
}

/// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) travels as IPv4.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One nft rule matching segments from `from` to `to`.
fn rule(from: SocketAddr, to: SocketAddr) -> String {
    let (src, dst) = (plain(from.ip()), plain(to.ip()));
    let family = if src.is_ipv4() { "ip" } else { "ip6" };
    format!(
        "{family} saddr {src} {family} daddr {dst} tcp sport {} tcp dport {} drop",
        from.port(),
        to.port()
    )
}

/// One nft rule dropping SYNs (not SYN-ACKs) to a listening address.
fn syn_rule(listening: SocketAddr) -> String {
    let ip = plain(listening.ip());
    let daddr = match (ip.is_unspecified(), ip.is_ipv4()) {
        (true, _) => String::new(),
        (false, true) => format!("ip daddr {ip} "),
        (false, false) => format!("ip6 daddr {ip} "),
    };
    format!(
        "{daddr}tcp dport {} tcp flags & (syn | ack) == syn drop",
        listening.port()
    )
}

/// The nft script of a lock named `name` over `conns` and new connections
/// to `listening`. Priority -300 is before connection tracking (-200), so
/// nothing is tracked either.
pub fn script(name: &str, conns: &[Conn], listening: &[SocketAddr]) -> String {
    let mut input = String::new();
    let mut output = String::new();
    for &(local, remote) in conns {
        input += &format!("    {}\n", rule(remote, local));
        output += &format!("    {}\n", rule(local, remote));
    }
    for &l in listening {
        input += &format!("    {}\n", syn_rule(l));
    }
    format!(
        "table inet {name} {{\n  chain input {{\n    type filter hook input priority -300; policy accept;\n{input}  }}\n  \
         chain output {{\n    type filter hook output priority -300; policy accept;\n{output}  }}\n}}\n"
    )
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> std::result::Result<(), String> {
    let mut child = Command::new(nft())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft(8) (install the nftables package): {e}"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
}

impl Lock {
    /// Drops every segment of `conns`, and new connections to
    /// `listening`, from now on, in this network namespace.
    pub fn connections(name: &str, conns: &[Conn], listening: &[SocketAddr]) -> Result<Lock> {
        let text = script(name, conns, listening);
        run_nft(&["-f", "-"], Some(&text)).map_err(|why| Error::Invalid {
            what: format!(
                "cannot lock the network for {} TCP connection(s): {why}",
                conns.len()
            ),
        })?;
        Ok(Lock { name: name.into() })
    }

    /// Lets the connections' segments through again.
    pub fn unlock(self) -> Result<()> {
        unlock_named(&self.name)
    }
}

/// Removes the lock table `name` (left by a checkpoint that stopped its
/// group). A table that is not there is no error: the lock was lifted
/// already, or the image is restored on another host.
pub fn unlock_named(name: &str) -> Result<()> {
    if !valid_name(name) {
        return Err(Error::Invalid {
            what: format!("{name:?} is not the name of an isotrace network lock"),
        });
    }
    match run_nft(&["delete", "table", "inet", name], None) {
        Ok(()) => Ok(()),
        Err(why) if why.contains("No such file") => Ok(()),
        Err(why) => Err(Error::Invalid {
            what: format!("cannot lift the network lock {name}: {why}"),
        }),
    }
}

/// Only names [`fresh_name`] makes are ever handed to nft.
fn valid_name(name: &str) -> bool {
    name.starts_with("isotrace_")
        && name.len() < 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_both_directions_of_each_connection() {
        let l: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let r: SocketAddr = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        let s = script("isotrace_1_2", &[(l, r)], &["0.0.0.0:80".parse().unwrap()]);
        assert!(s.contains("ip saddr 10.0.0.2 ip daddr 10.0.0.1 tcp sport 5000 tcp dport 80 drop"));
        assert!(s.contains("ip saddr 10.0.0.1 ip daddr 10.0.0.2 tcp sport 80 tcp dport 5000 drop"));
        assert!(s.contains("    tcp dport 80 tcp flags & (syn | ack) == syn drop"));
        let v6 = script(
            "x",
            &[("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap())],
            &["[::1]:1".parse().unwrap()],
        );
        assert!(v6.contains("ip6 daddr ::1 tcp dport 1 tcp flags"));
        assert!(v6.contains("ip6 saddr ::1 ip6 daddr ::1 tcp sport 2 tcp dport 1 drop"));
    }

    #[test]
    fn only_our_names_are_unlocked() {
        assert!(valid_name(&fresh_name()));
        assert!(!valid_name("filter"));
        assert!(!valid_name("isotrace_x; flush ruleset"));
        assert!(unlock_named("nat").is_err());
    }
}
