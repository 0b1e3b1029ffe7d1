//! The environment's private layer as a tar on the stream, sent while the
//! group is frozen so that the files match the fds' offsets in the image.
//! The layer is stored in the OCI layer format already (whiteouts as
//! `.wh.NAME`, see `isotrace env export`), so it is archived as it is, with
//! symlinks kept as symlinks.

use isotrace_checkpoint::stream::transfer::FrameSink;
use isotrace_checkpoint::stream::FrameWriter;
use std::io::Write;
use std::path::Path;

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
