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

/// A held lock. Its table is owned (`flags owner`, Linux 5.12+) by the
/// netlink socket of an `nft -i` child that lives as long as the lock:
/// [`Lock::unlock`], dropping the lock, or the death of this process in
/// any way (SIGKILL included: the child reads EOF on its stdin and exits)
/// closes that socket, and the kernel removes the table with it
/// (NFT_TABLE_F_OWNER). So a supervisor killed mid-migration leaves no
/// rule dropping its connections' (or its listeners') packets for ever.
/// [`Lock::persist`] is the one way to keep it beyond us: a checkpoint
/// that stopped its group leaves the connections locked until `isotrace
/// restore` lifts the lock, as the image records its name.
#[derive(Debug)]
pub struct Lock {
    pub name: String,
    /// The `nft -i` whose netlink socket owns the table.
    holder: std::process::Child,
    /// The rules, for [`Lock::persist`].
    conns: Vec<Conn>,
    listening: Vec<SocketAddr>,
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

/// The packet mark (SO_MARK) that lets a segment through every lock: the
/// FIN a restore plays to a connection whose peer had closed its side
/// (`restore::tcp_fin`), while the connection is still locked.
pub const PASS_MARK: u32 = 0x1507_0f1e;

/// One nft rule matching segments from `from` to `to`.
fn rule(from: SocketAddr, to: SocketAddr) -> String {
    let (src, dst) = (plain(from.ip()), plain(to.ip()));
    let family = if src.is_ipv4() { "ip" } else { "ip6" };
    format!(
        "meta mark != {PASS_MARK:#x} {family} saddr {src} {family} daddr {dst} tcp sport {} tcp dport {} drop",
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

/// The nft commands of a lock named `name` over `conns` and new
/// connections to `listening`, one per line (as `nft -i` reads them);
/// `owned`: the table goes when the netlink socket that made it closes.
/// Priority -300 is before connection tracking (-200), so nothing is
/// tracked either.
pub fn script(name: &str, conns: &[Conn], listening: &[SocketAddr], owned: bool) -> String {
    let flags = if owned { " flags owner ;" } else { "" };
    let mut s = format!("add table inet {name} {{{flags} }}\n");
    for chain in ["input", "output"] {
        s += &format!(
            "add chain inet {name} {chain} {{ type filter hook {chain} priority -300 ; policy accept ; }}\n"
        );
    }
    for &(local, remote) in conns {
        s += &format!("add rule inet {name} input {}\n", rule(remote, local));
        s += &format!("add rule inet {name} output {}\n", rule(local, remote));
    }
    for &l in listening {
        s += &format!("add rule inet {name} input {}\n", syn_rule(l));
    }
    s
}

/// The name of the unowned twin [`Lock::persist`] makes of lock `name`.
fn persistent_name(name: &str) -> String {
    format!("{name}_p")
}

/// How long `nft -i` may take to make a lock's table.
const MAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until `holder` has made table `name`: after the one-line batch
/// (all or nothing: `nft -i` sends each line as one transaction) it lists
/// the table on stdout, or says why not on stderr. Both pipes are then
/// drained on threads, so that the child never blocks on a full pipe.
fn await_table(holder: &mut std::process::Child, name: &str) -> std::result::Result<(), String> {
    use std::io::BufRead;
    let (Some(out), Some(err)) = (holder.stdout.take(), holder.stderr.take()) else {
        return Err("nft -i has no output pipes".into());
    };
    let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
    let want = format!("table inet {name}");
    let ok = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            if line.trim_start().starts_with(&want) {
                let _ = ok.send(Ok(()));
            }
        }
    });
    std::thread::spawn(move || {
        let mut why = Vec::new();
        for line in std::io::BufReader::new(err).lines().map_while(|l| l.ok()) {
            if line.starts_with("Error") || !why.is_empty() {
                why.push(line);
                if why.len() == 3 {
                    let _ = tx.send(Err(why.join(" ")));
                }
            }
        }
        if !why.is_empty() {
            let _ = tx.send(Err(why.join(" ")));
        }
    });
    let got = rx
        .recv_timeout(MAKE_TIMEOUT)
        .unwrap_or_else(|_| Err(format!("nft -i made no table within {MAKE_TIMEOUT:?}")));
    if got.is_err() {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    got
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
        let failed = |why: String| Error::Invalid {
            what: format!(
                "cannot lock the network for {} TCP connection(s): {why}",
                conns.len()
            ),
        };
        if !valid_name(name) {
            return Err(failed(format!("{name:?} is not a lock name of ours")));
        }
        let mut holder = Command::new(nft())
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "cannot run nft(8) (install the nftables package): {e}"
                ))
            })?;
        // One line: one transaction.
        let commands = script(name, conns, listening, true);
        let batch: Vec<&str> = commands.lines().collect();
        let text = format!("{}\nlist table inet {name}\n", batch.join(" ; "));
        let sent = holder
            .stdin
            .as_mut()
            .map(|i| i.write_all(text.as_bytes()).and_then(|()| i.flush()));
        if !matches!(sent, Some(Ok(()))) {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(failed("nft -i did not take its commands".into()));
        }
        await_table(&mut holder, name).map_err(failed)?;
        Ok(Lock {
            name: name.into(),
            holder,
            conns: conns.to_vec(),
            listening: listening.to_vec(),
        })
    }

    /// Lets the connections' segments through again.
    pub fn unlock(mut self) -> Result<()> {
        self.end();
        Ok(())
    }

    /// Keeps the lock after this process ends (a checkpoint that stopped
    /// its group): an unowned twin table with the same rules is made
    /// before the owned one goes, so no segment passes in between;
    /// [`unlock_named`] with the lock's name removes both.
    pub fn persist(mut self) -> Result<()> {
        let twin = persistent_name(&self.name);
        let text = script(&twin, &self.conns, &self.listening, false);
        let made = run_nft(&["-f", "-"], Some(&text));
        self.end();
        made.map_err(|why| Error::Invalid {
            what: format!("cannot keep the network lock {}: {why}", self.name),
        })
    }

    /// Closes the holder's stdin: it exits, and its table goes with its
    /// netlink socket.
    fn end(&mut self) {
        drop(self.holder.stdin.take());
        // ECHILD if the tracer's waitpid(-1) reaped it first: no matter.
        let _ = self.holder.wait();
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.end();
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
    // The persistent twin (Lock::persist), and a table of an older image
    // made under the name itself.
    for table in [persistent_name(name), name.to_string()] {
        match run_nft(&["delete", "table", "inet", &table], None) {
            Ok(()) => {}
            Err(why) if why.contains("No such file") => {}
            Err(why) => {
                return Err(Error::Invalid {
                    what: format!("cannot lift the network lock {name}: {why}"),
                })
            }
        }
    }
    Ok(())
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
        let s = script(
            "isotrace_1_2",
            &[(l, r)],
            &["0.0.0.0:80".parse().unwrap()],
            true,
        );
        assert!(s.starts_with("add table inet isotrace_1_2 { flags owner ; }\n"));
        assert!(s.contains("ip saddr 10.0.0.2 ip daddr 10.0.0.1 tcp sport 5000 tcp dport 80 drop"));
        assert!(s.contains("ip saddr 10.0.0.1 ip daddr 10.0.0.2 tcp sport 80 tcp dport 5000 drop"));
        assert!(s.contains("input tcp dport 80 tcp flags & (syn | ack) == syn drop"));
        let v6 = script(
            "x",
            &[("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap())],
            &["[::1]:1".parse().unwrap()],
            false,
        );
        assert!(v6.starts_with("add table inet x { }\n"));
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
