//! Unix socket paths in sockaddrs: bind(2), connect(2), and sendto(2)
//! with a destination name a socket file, which lives in the merged view
//! like any other file.

use super::classify::Op;
use super::ops::{self, Plan};
use super::{paths, Isolation, Pending, SOCKADDR_UN_LEN};
use isotrace_tracer::{Action, Call, TraceeView, Verdict};

impl Isolation {
    /// bind(2)/connect(2), and sendto(2) with a destination, of a unix
    /// socket path (the sockaddr at argument `addr_idx`, its length at
    /// `len_idx`): the socket file lives in the merged view like any other
    /// file. Abstract and unnamed addresses do not touch the filesystem and
    /// pass.
    pub(super) fn unix_socket(
        &mut self,
        call: &Call,
        tv: &mut dyn TraceeView,
        (addr_idx, len_idx): (usize, usize),
    ) -> Result<Verdict, i32> {
        let len = (call.args[len_idx] as usize).min(SOCKADDR_UN_LEN);
        if len <= 2 {
            return Ok(Verdict::CONTINUE);
        }
        let raw = tv
            .read_bytes(call.args[addr_idx], len)
            .ok_or(libc::EFAULT)?;
        if u16::from_ne_bytes([raw[0], raw[1]]) != libc::AF_UNIX as u16 || raw[2] == 0 {
            return Ok(Verdict::CONTINUE);
        }
        let path: Vec<u8> = raw[2..].iter().copied().take_while(|&b| b != 0).collect();
        let bind = call.sc.name == "bind";
        let r = self
            .resolver(call, tv)
            .resolve(None, &path, !bind)
            .map_err(|e| if bind { e.create_errno() } else { e.errno() })?;
        let plan = if r.loc == Some(isotrace_idb::Loc::Exception) {
            Plan {
                real: r.real.clone(),
                after: Vec::new(),
            }
        } else {
            let op = if bind { Op::Create } else { Op::Read };
            ops::plan(&self.view, &mut self.cache, &r, op)?
        };
        let real = paths::bytes(&plan.real);
        if real.len() + 1 > SOCKADDR_UN_LEN - 2 {
            // sun_path holds 108 bytes; the private path is longer.
            return Err(libc::ENAMETOOLONG);
        }
        if bind {
            self.note_change(r.public.clone());
        }
        let mut addr = raw[..2].to_vec();
        addr.extend_from_slice(&real);
        addr.push(0);
        let addr_len = addr.len() as u64;
        if !plan.after.is_empty() {
            self.pending.insert(call.tid, Pending::After(plan.after));
        }
        Ok(Verdict {
            action: Action::Rewrite {
                paths: vec![(addr_idx, addr)],
                args: vec![(len_idx, addr_len)],
            },
            exit_stop: self.pending.contains_key(&call.tid),
        })
    }
}
