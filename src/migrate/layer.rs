//! The receiving end of the environment's private layer: the tar from the
//! stream is unpacked into a staged environment (`isotrace_idb::Staged`,
//! invisible until committed), so a cut or hostile stream creates nothing.
//! The tar crate's `unpack_in` refuses entries that would land outside the
//! directory (`..` components, absolute paths).

use isotrace_checkpoint::stream::transfer::FrameSource;
use isotrace_checkpoint::stream::{FrameReader, Kind};
use isotrace_idb::Staged;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

/// Unpacks the layer into `staged`; returns the entries written (relative
/// to the private layer).
pub fn receive<R: Read>(
    rx: &mut FrameReader<R>,
    staged: &Staged,
) -> Result<Vec<std::path::PathBuf>, String> {
    let upper = staged.upper();
    let mut written = Vec::new();
    let mut source = FrameSource::new(rx);
    {
        let mut ar = tar::Archive::new(&mut source);
        ar.set_preserve_permissions(true);
        ar.set_preserve_mtime(true);
        ar.set_unpack_xattrs(true);
        ar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
        let entries = ar.entries().map_err(|e| format!("the layer: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("the layer: {e}"))?;
            let path = entry.path_bytes().into_owned();
            match entry.unpack_in(&upper) {
                Ok(true) => {
                    written.push(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&path)))
                }
                Ok(false) => {
                    return Err(format!(
                        "the layer: refused entry {}",
                        String::from_utf8_lossy(&path)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "the layer: entry {}: {e}",
                        String::from_utf8_lossy(&path)
                    ))
                }
            }
        }
    }
    source.finish().map_err(|e| format!("the layer: {e}"))?;
    Ok(written)
}

/// At the freeze of a layer pre-copy: removes what `LayerRemoved` frames
/// name, then unpacks the delta tar over the pre-copied layer; returns the
/// entries written and the parents of those removed (to make durable).
pub fn receive_delta<R: Read>(
    rx: &mut FrameReader<R>,
    staged: &Staged,
) -> Result<Vec<std::path::PathBuf>, String> {
    let upper = staged.upper();
    let mut touched = Vec::new();
    loop {
        let frame = rx.recv().map_err(|e| format!("the layer: {e}"))?;
        if frame.kind != Kind::LayerRemoved {
            rx.unread(frame);
            break;
        }
        let removed: Removed = serde_json::from_slice(&frame.payload)
            .map_err(|e| format!("the layer: a LayerRemoved frame: {e}"))?;
        for rel in removed.paths {
            let rel = std::path::PathBuf::from(rel);
            remove_beneath(&upper, &rel)?;
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                touched.push(parent.to_path_buf());
            }
        }
    }
    touched.extend(receive(rx, staged)?);
    Ok(touched)
}

#[derive(serde::Deserialize)]
struct Removed {
    paths: Vec<String>,
}

/// Removes `upper/rel` (a tree, if a directory) where `rel` is a plain
/// relative path and none of its parents under `upper` is a symlink: a
/// hostile stream must not make us delete outside the staged layer by
/// naming `..` or a path through a symlink it planted in the layer.
fn remove_beneath(upper: &std::path::Path, rel: &std::path::Path) -> Result<(), String> {
    use std::path::Component;
    let refused = || format!("the layer: refused removal of {}", rel.display());
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refused());
    }
    let mut at = upper.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            // Gone already (its parent was removed before it).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("the layer: {}: {e}", at.display())),
        };
        if parts.peek().is_some() {
            if !meta.is_dir() {
                return Err(refused());
            }
            continue;
        }
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&at)
        } else {
            std::fs::remove_file(&at)
        };
        return gone.map_err(|e| format!("the layer: removing {}: {e}", at.display()));
    }
    Ok(())
}
