//! How a snapshot went (snapshot.json, shown by inspect), and what each
//! method cannot see (the manifest's limitations).

use crate::dump::wp::WpReport;
use crate::dump::STOPPED_LIMITATIONS;
use crate::error::{Error, Result};
use crate::image::Image;
use serde::{Deserialize, Serialize};

/// The image section holding the [`Record`] (JSON).
pub const RECORD_SECTION: &str = "snapshot.json";
pub const RECORD_VERSION: u32 = 1;

/// What the copy-before-write method cannot see, in words (the
/// manifest's `limitations`).
pub const UFFD_LIMITATIONS: &[&str] = &[
    "memory is the pause's: each page is copied before the target's first write to it (userfaultfd write-protection), and read after the pause otherwise",
    "writable private file mappings (a library's .data) cannot be write-protected and are read during the pause; read-only ones are read after it (snapshot.json lists them)",
    "shared memory (MAP_SHARED anonymous, memfd, SysV shm) is protected against the target's writes only: another process's writes through its own mapping may be newer than the registers",
    "the fd table (with file offsets) is read during the pause; the bytes buffered in its pipes are read just after it",
    "contents of shared file mappings are not captured (they are the file's)",
    "[vvar]/[vsyscall] and device mappings are not captured",
    "pages never touched (neither present nor swapped at the pause) are not stored",
    "while the snapshot runs, the target's first write to each page not yet read waits for its copy, and each page its private anonymous memory gains waits for the fault thread to map it",
];

/// What the copy-on-write method cannot see, in words (the manifest's
/// `limitations`).
pub const COW_LIMITATIONS: &[&str] = &[
    "memory is the copy-on-write child's: mappings fork(2) does not copy (MADV_DONTFORK, a driver's VM_DONTCOPY) and MADV_WIPEONFORK contents are not captured; each is marked in mems",
    "shared memory (MAP_SHARED anonymous, memfd, SysV shm) is read from the target after the pause, so it may be newer than the registers",
    "the fd table (with file offsets) is read during the pause; the bytes buffered in its pipes are read just after it",
    "contents of shared file mappings are not captured (they are the file's)",
    "[vvar]/[vsyscall] and device mappings are not captured",
    "pages never touched (neither present nor swapped in pagemap) are not stored",
    "while the child lives, the target's first write to each private page copies it (as after any fork)",
];

/// How the snapshot went, stored as `snapshot.json` and shown by inspect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// From the first PTRACE_SEIZE to the last PTRACE_DETACH.
    pub pause_us: u64,
    /// Where the pause went, cumulative from the first seize.
    pub phases_us: Phases,
    /// Copy-before-write's first, short hold (to make the userfaultfd),
    /// before the pause: from its first seize to its last detach.
    #[serde(default)]
    pub prearm_pause_us: u64,
    /// From that first seize to the memory write-protected, when the
    /// pause's hold begins (`pause_us` and `phases_us` count from there).
    #[serde(default)]
    pub prearm_us: u64,
    /// The method asked for: "auto", "uffd" or "fork".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Why a first copy-before-write attempt was abandoned and the
    /// snapshot taken again by fork (`--method auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd_abandoned: Option<String>,
    /// The longest second hold of one thread per process, to reap the
    /// copy-on-write child (cow.rs).
    pub reap_pause_us: u64,
    /// From the first seize (of the first hold) to the committed image.
    pub total_us: u64,
    pub processes: Vec<ProcessRecord>,
}

/// Time since the first seize at the end of each step, in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Every thread seized and in its interrupt stop.
    pub freeze: u64,
    /// Registers, XSAVE areas, siginfos, stat/status/maps read.
    pub capture: u64,
    /// The memory write-protected (copy-before-write method).
    #[serde(default)]
    pub protect: u64,
    /// The copy-on-write children forked.
    pub fork: u64,
    /// Processes without a child dumped while stopped.
    pub stopped_dump: u64,
    /// Every thread detached: the pause.
    pub release: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    /// "uffd-wp", "cow-fork" or "stopped".
    pub memory_method: String,
    /// Why the copy-before-write method was not used (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd_unavailable: Option<String>,
    /// What the copy-before-write method did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uffd: Option<WpReport>,
    /// Why a process was dumped while stopped.
    pub why_stopped: Option<String>,
    /// The pid the copy-on-write child had (gone by now).
    pub cow_child: Option<i32>,
    /// Why its signal handlers are not in the image (read in the child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers_unread: Option<String>,
}

/// The [`Record`] of a snapshot image (None for checkpoints and images
/// written before it existed). The section's checksum was verified when
/// the image was opened.
pub fn record(image: &Image) -> Result<Option<Record>> {
    if image.manifest.section(RECORD_SECTION).is_none() {
        return Ok(None);
    }
    let path = image.dir.join(RECORD_SECTION);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::corrupt(RECORD_SECTION, e.to_string()))
}

/// The manifest's memory_method and limitations for the processes' methods.
pub(super) fn method_of(record: &Record) -> (&'static str, Vec<String>) {
    let count = |m: &str| {
        record
            .processes
            .iter()
            .filter(|p| p.memory_method == m)
            .count()
    };
    let (uffd, cow) = (count("uffd-wp"), count("cow-fork"));
    let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = record.processes.len();
    if uffd == all {
        ("uffd-wp", lines(UFFD_LIMITATIONS))
    } else if cow == all {
        ("cow-fork", lines(COW_LIMITATIONS))
    } else if cow + uffd == 0 {
        ("stopped", lines(STOPPED_LIMITATIONS))
    } else {
        let mut all = Vec::new();
        if uffd > 0 {
            all.extend(lines(UFFD_LIMITATIONS));
        }
        if cow > 0 {
            all.extend(lines(COW_LIMITATIONS));
        }
        all.push("processes were captured by different methods (see snapshot.json)".into());
        ("mixed", all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        let p = |m: &str| ProcessRecord {
            memory_method: m.into(),
            ..Default::default()
        };
        let mut r = Record {
            processes: vec![p("cow-fork")],
            ..Default::default()
        };
        assert_eq!(method_of(&r).0, "cow-fork");
        r.processes.push(p("stopped"));
        assert_eq!(method_of(&r).0, "mixed");
        r.processes.remove(0);
        assert_eq!(method_of(&r).0, "stopped");
    }
}
