//! `env export` and `env import`: an environment as one portable tar.
//!
//! Layout: the first entry is `isotrace-env.json` (the [`Manifest`]: the
//! environment's metadata, the global rules it ran under, and how many
//! layer entries follow); then the private layer, relative to `/`, exactly
//! as stored. The layer already uses the OCI image-layer whiteout format
//! (image-spec layer.md: `.wh.NAME` deletes NAME, `.wh..wh..opq` makes a
//! directory opaque), so the rest of the archive is an OCI layer as is.
//!
//! Export writes a file with no name yet (O_TMPFILE, [`Unnamed`]) in the
//! target's directory, fsyncs it and only then names it, replacing the
//! target atomically: an export killed or failing at any point leaves
//! neither a partial archive nor a temp file. Import unpacks into a staged
//! environment that gets its name only when every entry is in and synced
//! ([`isotrace_idb::Staged`]); any refusal or read error drops it, so a
//! corrupt, truncated or hostile archive creates nothing.

use super::progress::{CountingReader, CountingWriter, Progress};
use super::{carry, idb_err, EXIT_FAILED};
use crate::run::Failure;
use isotrace_idb::{EnvMeta, Environment, Rules, Staged, Store, Unnamed};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tar::{Archive, Builder, EntryType, Header, HeaderMode};

/// The name of the archive's first entry.
pub const MANIFEST_NAME: &str = "isotrace-env.json";
const FORMAT: &str = "isotrace-env";
const FORMAT_VERSION: u32 = 1;
/// A manifest is a few KiB; a bigger first entry is not one.
const MANIFEST_MAX: u64 = 1 << 20;

/// `isotrace-env.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub env: EnvMeta,
    /// The global rules of the exporting store: the exceptions the
    /// environment's programs saw as public.
    pub rules: Rules,
    /// How many layer entries follow; an archive cut at an entry boundary
    /// still parses as tar, and this is how import notices.
    pub entries: u64,
    /// The env's own settings (`config set --env`), restored by import.
    /// Absent in archives of an env without overrides (and in those
    /// written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<carry::Carried>,
}

pub fn export(store: &Store, name: &str, output: &Path) -> Result<(), Failure> {
    let env = store.get(name).map_err(idb_err)?;
    let rules = store.rules().map_err(idb_err)?;
    let upper = env.upper();
    let mut paths = Vec::new();
    let mut bytes = 0;
    collect(&upper, Path::new(""), &mut paths, &mut bytes)
        .map_err(|e| (EXIT_FAILED, format!("reading {}: {e}", upper.display())))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        env: env.meta().clone(),
        rules,
        entries: paths.len() as u64,
        settings: carry::export(store, name)?,
    };
    let fail = |e: io::Error| (EXIT_FAILED, format!("{}: {e}", output.display()));
    if output.file_name().is_none() {
        return Err(fail(io::Error::from_raw_os_error(libc::EISDIR)));
    }
    // Each entry is a 512-byte header, then its data padded to 512.
    let total = bytes + 1024 * (paths.len() as u64 + 1);
    let bar = Progress::bytes(&format!("exporting env {name}"), total);
    let written = Unnamed::create(output).and_then(|file| {
        write_archive(file.file(), &manifest, &upper, &paths, &bar)?;
        file.publish(output)
    });
    bar.finish();
    written.map_err(fail)?;
    eprintln!(
        "isotrace: exported env {name} ({} entries) to {}",
        paths.len(),
        output.display()
    );
    Ok(())
}

/// Every object under `dir`, relative to the layer's root, parents before
/// children, sorted by name (a reproducible archive for the same tree).
/// `bytes` sums the sizes of the regular files.
fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>, bytes: &mut u64) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let p = rel.join(&n);
        let meta = std::fs::symlink_metadata(root.join(&p))?;
        out.push(p.clone());
        if meta.is_dir() {
            collect(root, &p, out, bytes)?;
        } else if meta.is_file() {
            *bytes += meta.len();
        }
    }
    Ok(())
}

fn write_archive(
    file: &File,
    m: &Manifest,
    upper: &Path,
    paths: &[PathBuf],
    bar: &Progress,
) -> io::Result<()> {
    let mut b = Builder::new(CountingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        progress: bar.clone(),
    });
    b.mode(HeaderMode::Complete);
    b.follow_symlinks(false);
    let json = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(m.env.created);
    b.append_data(&mut h, MANIFEST_NAME, json.as_slice())?;
    for rel in paths {
        b.append_path_with_name(upper.join(rel), rel)?;
    }
    let mut w = b.into_inner()?.inner;
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

pub fn import(store: &Store, file: &Path, name: Option<&str>) -> Result<(), Failure> {
    let bad = |what: String| (EXIT_FAILED, format!("{}: {what}", file.display()));
    let f = File::open(file).map_err(|e| bad(e.to_string()))?;
    let total = f.metadata().map_or(0, |m| m.len());
    let bar = Progress::bytes(&format!("importing {}", file.display()), total);
    let counted = CountingReader {
        inner: f,
        progress: bar.clone(),
    };
    let mut ar = Archive::new(BufReader::with_capacity(1 << 20, counted));
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    // Owners are kept only where chown(2) may give them away: as root.
    ar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    let result = unpack(store, file, ar, name);
    bar.finish();
    result
}

fn unpack<R: Read>(
    store: &Store,
    file: &Path,
    mut ar: Archive<R>,
    name: Option<&str>,
) -> Result<(), Failure> {
    let bad = |what: String| (EXIT_FAILED, format!("{}: {what}", file.display()));
    let mut entries = ar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let manifest = read_manifest(&mut entries).map_err(bad)?;
    let carried = manifest.settings.clone().unwrap_or_default();
    carry::check(&carried).map_err(bad)?;
    let name = name.unwrap_or(&manifest.env.name);
    let staged = store.stage(name).map_err(idb_err)?;
    let upper = staged.upper();
    let mut links = HashSet::new();
    let mut dirs = Vec::new();
    let mut count = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(cause(&e)))?;
        check_entry(&entry, &mut links).map_err(&bad)?;
        count += 1;
        let unpack = |e: &mut tar::Entry<_>| {
            let p = e.path_bytes().into_owned();
            match e.unpack_in(&upper) {
                Ok(true) => Ok(()),
                Ok(false) => Err(bad(format!("refused entry {}", show(&p)))),
                Err(err) => Err(bad(format!("entry {}: {}", show(&p), cause(&err)))),
            }
        };
        match entry.header().entry_type() {
            EntryType::XGlobalHeader => count -= 1,
            // Directories last, deepest first, as tar(1) does: their modes
            // could stop their own entries and their times would be bumped.
            EntryType::Directory => dirs.push(entry),
            _ => unpack(&mut entry)?,
        }
    }
    if count != manifest.entries {
        return Err(bad(format!(
            "truncated archive: {count} of {} layer entries",
            manifest.entries
        )));
    }
    dirs.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut d in dirs {
        let p = d.path_bytes().into_owned();
        match d.unpack_in(&upper) {
            Ok(_) => {}
            Err(err) => return Err(bad(format!("entry {}: {}", show(&p), cause(&err)))),
        }
    }
    let env = finish(store, staged, &carried)?;
    note_rules(store, &manifest.rules, env.name());
    eprintln!(
        "isotrace: imported env {} ({count} entries) from {}",
        env.name(),
        file.display()
    );
    Ok(())
}

/// Restore the settings the archive carries, then give the env its name;
/// the settings are put back if that fails.
fn finish(store: &Store, staged: Staged, carried: &carry::Carried) -> Result<Environment, Failure> {
    let name = staged.name().to_string();
    let written = carry::restore(store, &name, carried)?;
    staged.commit().map_err(|e| {
        carry::undo(store, &name, written);
        idb_err(e)
    })
}

/// What went wrong under a tar error, without the staging path the tar
/// crate puts in its own message. A short read is a truncated archive: an
/// UnexpectedEof, or one of the tar crate's own messages for it (tar 0.4:
/// "failed to read entire block" for a cut header, "failed to write entire
/// file" for a body shorter than its header's size).
fn cause(e: &io::Error) -> String {
    let mut deepest: &dyn std::error::Error = e;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::UnexpectedEof {
                return "truncated archive (unexpected end of file)".into();
            }
        }
        deepest = err;
        cur = err.source().or_else(|| {
            err.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &dyn std::error::Error)
        });
    }
    let text = deepest.to_string();
    if ["failed to read entire block", "failed to write entire file"].contains(&text.as_str()) {
        return format!("truncated archive ({text})");
    }
    format!("corrupt archive: {deepest}")
}

fn show(p: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(p))
}

fn read_manifest<R: Read>(entries: &mut tar::Entries<'_, R>) -> Result<Manifest, String> {
    let not_ours = |why: String| format!("not an isotrace env archive: {why}");
    let mut first = match entries.next() {
        None => return Err(not_ours("empty archive".into())),
        Some(Err(e)) => return Err(not_ours(e.to_string())),
        Some(Ok(e)) => e,
    };
    if &*first.path_bytes() != MANIFEST_NAME.as_bytes() || first.size() > MANIFEST_MAX {
        return Err(not_ours(format!("first entry is not {MANIFEST_NAME}")));
    }
    let mut text = Vec::new();
    first
        .read_to_end(&mut text)
        .map_err(|e| format!("corrupt or truncated archive: {e}"))?;
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| not_ours(format!("{MANIFEST_NAME}: {e}")))?;
    if m.format != FORMAT || m.version != FORMAT_VERSION {
        return Err(not_ours(format!(
            "{MANIFEST_NAME}: format {:?} version {}, expected {FORMAT:?} version {FORMAT_VERSION}",
            m.format, m.version
        )));
    }
    Ok(m)
}

/// Refuse what could write outside the new layer or make a link leave it:
/// absolute paths, `..` components, an entry below a symlink the archive
/// made, a hard link to outside, a relative symlink that climbs above the
/// layer's root, and entry types an export never writes. An absolute
/// symlink target is kept: it is resolved in the environment's merged
/// view, not on the host. `links` collects the archive's symlinks.
fn check_entry<R: Read>(e: &tar::Entry<'_, R>, links: &mut HashSet<Vec<u8>>) -> Result<(), String> {
    let raw = e.path_bytes();
    let shown = show(&raw);
    let path = Path::new(OsStr::from_bytes(&raw));
    if raw.first() == Some(&b'/') {
        return Err(format!("refused entry {shown}: absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("refused entry {shown}: `..` in path"));
    }
    let norm: Vec<&[u8]> = raw
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    for i in 1..norm.len() {
        if links.contains(&norm[..i].join(&b'/')) {
            return Err(format!("refused entry {shown}: below a symlink"));
        }
    }
    let ty = e.header().entry_type();
    let target = e.link_name_bytes().map(|t| t.into_owned());
    match ty {
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => Ok(()),
        EntryType::Fifo | EntryType::Char | EntryType::Block | EntryType::XGlobalHeader => Ok(()),
        EntryType::Symlink => {
            let t = target.unwrap_or_default();
            if t.first() != Some(&b'/') && climbs_out(norm.len() - 1, &t) {
                return Err(format!("refused entry {shown}: symlink leaves the layer"));
            }
            links.insert(norm.join(&b'/'));
            Ok(())
        }
        EntryType::Link => {
            let t = target.unwrap_or_default();
            if t.first() == Some(&b'/') || climbs_out(0, &t) {
                return Err(format!("refused entry {shown}: hard link leaves the layer"));
            }
            Ok(())
        }
        other => Err(format!("refused entry {shown}: entry type {other:?}")),
    }
}

/// Whether relative link target `t`, followed from a directory `depth`
/// levels below the root, goes above the root.
fn climbs_out(depth: usize, t: &[u8]) -> bool {
    let mut d = depth as isize;
    for c in t.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                d -= 1;
                if d < 0 {
                    return true;
                }
            }
            _ => d += 1,
        }
    }
    false
}

/// An imported environment runs under this store's global rules; say so
/// when they differ from the exporting store's.
fn note_rules(store: &Store, theirs: &Rules, name: &str) {
    let Ok(ours) = store.rules() else { return };
    let set = |r: &Rules| -> Vec<String> {
        let mut v: Vec<_> = r
            .exceptions
            .iter()
            .map(|e| e.prefix.display().to_string())
            .collect();
        v.sort();
        v
    };
    let (a, b) = (set(theirs), set(&ours));
    if a != b {
        eprintln!(
            "isotrace: note: env {name} was exported under global exceptions [{}]; \
             it runs here under [{}]",
            a.join(" "),
            b.join(" ")
        );
    }
}
