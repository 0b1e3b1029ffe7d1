//! What `env show` reports about a private layer: its size and what it
//! holds, counted from the tree itself.

use isotrace_idb::{is_reserved_name, OPAQUE_NAME};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Default, Debug)]
pub struct Usage {
    /// Apparent size (st_size) of every non-directory object, whiteouts
    /// aside: what an export carries.
    pub bytes: u64,
    /// Files, symlinks and special files (whiteouts aside).
    pub files: u64,
    pub dirs: u64,
    /// Whiteouts and opaque markers: host objects this environment hides.
    pub whiteouts: u64,
}

/// Count the private layer rooted at `upper` (not counting `upper` itself).
pub fn of(upper: &Path) -> io::Result<Usage> {
    let mut u = Usage::default();
    walk(upper, &mut u)?;
    Ok(u)
}

fn walk(dir: &Path, u: &mut Usage) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            u.dirs += 1;
            walk(&entry.path(), u)?;
        } else if is_reserved_name(name.as_bytes()) || name == OPAQUE_NAME {
            u.whiteouts += 1;
        } else {
            u.files += 1;
            u.bytes += entry.metadata()?.len();
        }
    }
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (the image
/// manifest's formatter, shared).
pub fn utc(secs: u64) -> String {
    isotrace_checkpoint::image::manifest::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
