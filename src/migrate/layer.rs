//! The receiving end of the environment's private layer: the tar from the
//! stream is unpacked into a staged environment (`isotrace_idb::Staged`,
//! invisible until committed), so a cut or hostile stream creates nothing.
//! The tar crate's `unpack_in` refuses entries that would land outside the
//! directory (`..` components, absolute paths).

use isotrace_checkpoint::stream::transfer::FrameSource;
use isotrace_checkpoint::stream::FrameReader;
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
