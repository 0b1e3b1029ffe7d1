//! Parsers for the /proc files the dump reads (proc(5)). Pure functions of
//! the text, so they are tested without a kernel.

use crate::model::{Creds, Limit, Vma};
use std::collections::HashMap;

/// /proc/PID/maps: `start-end perms offset dev inode pathname`. The
/// pathname may contain spaces (and " (deleted)"), so it is everything
/// after the fifth field.
pub fn parse_maps(text: &str) -> Vec<Vma> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<Vma> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field().to_owned();
    let offset = u64::from_str_radix(field(), 16).ok()?;
    let dev = field().to_owned();
    let inode = field().parse().ok()?;
    let path = rest.trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    Some(Vma {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        dev,
        inode,
        path,
        memory: Default::default(),
    })
}

/// /proc/PID/status as key → value (value trimmed).
pub fn parse_status(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

pub fn hex_field(status: &HashMap<String, String>, key: &str) -> u64 {
    status
        .get(key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

fn ids(status: &HashMap<String, String>, key: &str) -> [u32; 4] {
    let mut out = [0; 4];
    if let Some(v) = status.get(key) {
        for (slot, n) in out.iter_mut().zip(v.split_whitespace()) {
            *slot = n.parse().unwrap_or(0);
        }
    }
    out
}

pub fn creds(status: &HashMap<String, String>) -> Creds {
    let num = |k: &str| status.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Creds {
        uid: ids(status, "Uid"),
        gid: ids(status, "Gid"),
        groups: status
            .get("Groups")
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        cap_inh: hex_field(status, "CapInh"),
        cap_prm: hex_field(status, "CapPrm"),
        cap_eff: hex_field(status, "CapEff"),
        cap_bnd: hex_field(status, "CapBnd"),
        no_new_privs: num("NoNewPrivs") != 0,
        seccomp: num("Seccomp"),
    }
}

/// The fields of /proc/PID/stat the image keeps. comm may hold spaces and
/// parentheses, so the fields after it are found from the last ')'.
#[derive(Debug, Default, PartialEq)]
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
}

pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        state: rest.first()?.to_string(),
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
    })
}

/// /proc/PID/limits: a header, then `Name  Soft  Hard  Units` in fixed
/// columns (the name has spaces, so split at the column of "Soft Limit").
pub fn parse_limits(text: &str) -> Vec<Limit> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let soft_col = header.find("Soft Limit").unwrap_or(26);
    let value = |s: &str| match s {
        "unlimited" => None,
        n => n.parse().ok(),
    };
    lines
        .filter(|l| l.len() > soft_col)
        .filter_map(|l| {
            let (name, rest) = l.split_at(soft_col);
            let mut cols = rest.split_whitespace();
            Some(Limit {
                name: name.trim().to_owned(),
                soft: value(cols.next()?),
                hard: value(cols.next()?),
                units: cols.next().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// /proc/PID/fdinfo/N: pos, flags (octal), mnt_id and ino, plus every other
/// line verbatim.
#[derive(Debug, Default, PartialEq)]
pub struct FdInfo {
    pub pos: u64,
    pub flags: u32,
    pub mnt_id: u64,
    pub ino: u64,
    pub extra: String,
}

pub fn parse_fdinfo(text: &str) -> FdInfo {
    let mut info = FdInfo::default();
    for line in text.lines() {
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "pos" => info.pos = value.parse().unwrap_or(0),
            "flags" => info.flags = u32::from_str_radix(value, 8).unwrap_or(0),
            "mnt_id" => info.mnt_id = value.parse().unwrap_or(0),
            "ino" => info.ino = value.parse().unwrap_or(0),
            _ => {
                info.extra.push_str(line);
                info.extra.push('\n');
            }
        }
    }
    info
}

/// One `inotify` line of an inotify fd's fdinfo (fs/notify/fdinfo.c):
/// `inotify wd:1 ino:3c4a7 sdev:fe00000 mask:300 ignored_mask:0
/// fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000`, every
/// number hex except wd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    pub wd: i32,
    pub ino: u64,
    pub sdev: u64,
    pub mask: u32,
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

impl FdInfo {
    /// The watches an inotify fd's fdinfo lists (its `extra` lines).
    pub fn watches(extra: &str) -> Vec<Watch> {
        extra.lines().filter_map(parse_watch).collect()
    }
}

fn parse_watch(line: &str) -> Option<Watch> {
    let rest = line.strip_prefix("inotify ")?;
    let fields: HashMap<&str, &str> = rest
        .split_whitespace()
        .filter_map(|f| f.split_once(':'))
        .collect();
    let hex = |k: &str| u64::from_str_radix(fields.get(k)?, 16).ok();
    let handle = fields.get("f_handle")?;
    let handle = (0..handle.len() / 2)
        .map(|i| u8::from_str_radix(handle.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Watch {
        wd: fields.get("wd")?.parse().ok()?,
        ino: hex("ino")?,
        sdev: hex("sdev")?,
        mask: hex("mask")? as u32,
        handle_type: fields.get("fhandle-type")?.parse().ok()?,
        handle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let text =
            "55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234  /usr/bin/my prog (deleted)\n\
                    7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]\n\
                    7f0000000000-7f0000001000 rw-s 00001000 00:05 99 /dev/zero (deleted)\n\
                    7f0000002000-7f0000003000 ---p 00000000 00:00 0 \n";
        let v = parse_maps(text);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].start, 0x55d0c0a00000);
        assert_eq!(v[0].path, "/usr/bin/my prog (deleted)");
        assert_eq!(v[0].inode, 1234);
        assert!(v[0].file_backed());
        assert_eq!(v[1].path, "[stack]");
        assert!(v[1].writable() && !v[1].shared());
        assert_eq!(v[2].offset, 0x1000);
        assert!(v[2].shared());
        assert_eq!(v[3].path, "");
        assert!(!v[3].readable());
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = parse_stat("42 (a) b (c)) S 1 42 40 0 -1").unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(
            (s.state.as_str(), s.ppid, s.pgrp, s.session),
            ("S", 1, 42, 40)
        );
    }

    #[test]
    fn status_creds() {
        let st = parse_status(
            "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \nCapEff:\t000001ffffffffff\nSeccomp:\t2\nSigBlk:\t0000000000010000\n",
        );
        let c = creds(&st);
        assert_eq!(c.uid, [1, 2, 3, 4]);
        assert_eq!(c.gid, [5, 6, 7, 8]);
        assert_eq!(c.groups, vec![10, 20]);
        assert_eq!(c.cap_eff, 0x1ff_ffff_ffff);
        assert_eq!(c.seccomp, 2);
        assert_eq!(hex_field(&st, "SigBlk"), 1 << 16);
    }

    #[test]
    fn limits_table() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n\
                    Max nice priority         0                    0                    \n";
        let l = parse_limits(text);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "Max cpu time");
        assert_eq!((l[0].soft, l[0].hard), (None, None));
        assert_eq!((l[1].soft, l[1].hard), (Some(1024), Some(524288)));
        assert_eq!(l[1].units, "files");
        assert_eq!(l[2].units, "");
    }

    #[test]
    fn inotify_watches() {
        let w = FdInfo::watches(
            "inotify wd:2 ino:3c4a7 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n",
        );
        assert_eq!(
            w,
            [Watch {
                wd: 2,
                ino: 0x3c4a7,
                sdev: 0xfe00000,
                mask: 0x300,
                handle_type: 1,
                handle: vec![0xa7, 0xc4, 3, 0, 0, 0, 0, 0],
            }]
        );
        assert!(FdInfo::watches("eventfd-count: 5\n").is_empty());
    }

    #[test]
    fn fdinfo_fields() {
        let i = parse_fdinfo(
            "pos:\t12\nflags:\t02100002\nmnt_id:\t25\nino:\t777\neventfd-count:    5\n",
        );
        assert_eq!(i.pos, 12);
        assert_eq!(i.flags, 0o2100002);
        assert_eq!((i.mnt_id, i.ino), (25, 777));
        assert_eq!(i.extra, "eventfd-count:    5\n");
    }
}
