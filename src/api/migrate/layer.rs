//! The environment's private layer as a tar on the stream. The layer is
//! stored in the OCI layer format already (whiteouts as `.wh.NAME`, see
//! `isotrace env export`), so it is archived as it is, with symlinks kept
//! as symlinks.
//!
//! Stop-and-copy sends it whole while the group is frozen ([`send`]), so
//! that the files match the fds' offsets in the image. With `--pre-copy`
//! (and a receiver that takes it, `Accept.layer_precopy`) it goes in two
//! parts, so that its size stays out of the downtime:
//! - [`send_pre`], while the group runs: every entry, each regular file
//!   with the size it had when its header was written (a file that changes
//!   meanwhile is cut or padded to that size, and sent again below);
//! - [`send_delta`], at the freeze: `LayerRemoved` frames naming what is
//!   gone or changed kind, then a tar of every entry that is new or whose
//!   ctime is not older than the pre-copy's start (less [`MARGIN`]), plus
//!   files the frozen group maps shared and writable (a page dirtied again
//!   before its writeback updates no ctime). ctime, not mtime: no call
//!   sets it back (utimensat(2) sets the others and bumps ctime).

use isotrace_checkpoint::stream::transfer::FrameSink;
use isotrace_checkpoint::stream::{FrameWriter, Kind};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Entries changed this little before the pre-copy's start are sent again
/// at the freeze: timestamps come from a coarse clock (one tick behind).
pub const MARGIN: Duration = Duration::from_secs(1);

/// Paths per `LayerRemoved` frame (frames carry at most 4 MiB).
const REMOVED_PER_FRAME: usize = 2048;

/// Sends `upper` as a tar in Layer frames; returns the tar's size.
pub fn send<W: Write>(tx: &mut FrameWriter<W>, upper: &Path) -> Result<u64, String> {
    let mut b = tar::Builder::new(FrameSink::new(tx));
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    b.append_dir_all(".", upper)
        .map_err(|e| format!("archiving {}: {e}", upper.display()))?;
    let sink = b
        .into_inner()
        .map_err(|e| format!("archiving {}: {e}", upper.display()))?;
    sink.end().map_err(|e| format!("sending the layer: {e}"))
}

/// What the pre-copy of the layer sent: each entry with its kind, and
/// when it started.
#[derive(Debug)]
pub struct PreSent {
    since: SystemTime,
    kinds: HashMap<PathBuf, u32>,
    pub bytes: u64,
}

/// The kind of an entry (the S_IFMT bits of its mode).
fn kind(meta: &std::fs::Metadata) -> u32 {
    meta.mode() & libc::S_IFMT
}

/// Every entry under `upper`, parents before children, as paths relative
/// to it, with their metadata. An entry that vanishes during the walk is
/// skipped (the group runs on during a pre-copy).
fn walk(upper: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = upper.join(&rel);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                continue
            }
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(upper.join(&child)) else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(child.clone());
            }
            out.push((child, meta));
        }
    }
    Ok(out)
}

/// Appends one entry; a regular file with exactly the size it has now.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    upper: &Path,
    rel: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    let full = upper.join(rel);
    if !meta.is_file() {
        return match b.append_path_with_name(&full, rel) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    let file = match std::fs::File::open(&full) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = file.metadata()?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&now, tar::HeaderMode::Complete);
    let size = now.len();
    header.set_size(size);
    // Cut or padded to the header's size if the file changes under us; its
    // ctime then sends it again at the freeze.
    let data = file.take(size).chain(std::io::repeat(0)).take(size);
    b.append_data(&mut header, rel, data)
}

/// The layer while the group runs (see the module's comment).
pub fn send_pre<W: Write>(tx: &mut FrameWriter<W>, upper: &Path) -> Result<PreSent, String> {
    let since = SystemTime::now() - MARGIN;
    let entries = walk(upper)?;
    let mut b = tar::Builder::new(FrameSink::new(tx));
    b.follow_symlinks(false);
    let mut kinds = HashMap::with_capacity(entries.len());
    for (rel, meta) in &entries {
        append(&mut b, upper, rel, meta)
            .map_err(|e| format!("archiving {}: {e}", upper.join(rel).display()))?;
        kinds.insert(rel.clone(), kind(meta));
    }
    let sink = b
        .into_inner()
        .map_err(|e| format!("archiving {}: {e}", upper.display()))?;
    let bytes = sink.end().map_err(|e| format!("sending the layer: {e}"))?;
    Ok(PreSent {
        since,
        kinds,
        bytes,
    })
}

/// Whether `meta` changed since `since` (its ctime).
fn changed_since(meta: &std::fs::Metadata, since: SystemTime) -> bool {
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).unwrap_or(0),
            u32::try_from(meta.ctime_nsec()).unwrap_or(0),
        );
    ctime >= since
}

/// What changed since [`send_pre`], at the freeze; `mapped`: files the
/// frozen group maps shared and writable (relative to `upper`), sent
/// whatever their ctime. Returns the delta tar's size and how many
/// entries were removed and sent.
pub fn send_delta<W: Write>(
    tx: &mut FrameWriter<W>,
    upper: &Path,
    pre: &PreSent,
    mapped: &HashSet<PathBuf>,
) -> Result<(u64, usize, usize), String> {
    let entries = walk(upper)?;
    let now: HashMap<&Path, u32> = entries
        .iter()
        .map(|(rel, meta)| (rel.as_path(), kind(meta)))
        .collect();
    let mut removed: Vec<String> = pre
        .kinds
        .iter()
        .filter(|(rel, k)| now.get(rel.as_path()) != Some(*k))
        .map(|(rel, _)| rel.to_string_lossy().into_owned())
        .collect();
    removed.sort();
    for chunk in removed.chunks(REMOVED_PER_FRAME) {
        tx.send_json(Kind::LayerRemoved, &serde_json::json!({ "paths": chunk }))
            .map_err(|e| format!("sending the layer: {e}"))?;
    }
    let mut b = tar::Builder::new(FrameSink::new(tx));
    b.follow_symlinks(false);
    let mut sent = 0;
    for (rel, meta) in &entries {
        let again = pre.kinds.get(rel) != Some(&kind(meta))
            || changed_since(meta, pre.since)
            || mapped.contains(rel);
        if again {
            append(&mut b, upper, rel, meta)
                .map_err(|e| format!("archiving {}: {e}", upper.join(rel).display()))?;
            sent += 1;
        }
    }
    let sink = b
        .into_inner()
        .map_err(|e| format!("archiving {}: {e}", upper.display()))?;
    let bytes = sink.end().map_err(|e| format!("sending the layer: {e}"))?;
    Ok((bytes, removed.len(), sent))
}

/// The files of `upper` that processes `pids` map shared and writable
/// (from /proc/PID/maps: the kernel shows their real, private paths).
pub fn mapped_shared_writable(pids: &[i32], upper: &Path) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    for pid in pids {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines() {
            let mut f = line.splitn(6, ' ');
            let perms = f.nth(1).unwrap_or("");
            let path = f.nth(3).unwrap_or("").trim_start();
            if perms.as_bytes().get(1) == Some(&b'w') && perms.as_bytes().get(3) == Some(&b's') {
                if let Ok(rel) = Path::new(path).strip_prefix(upper) {
                    out.insert(rel.to_path_buf());
                }
            }
        }
    }
    out
}
