//! Environment diffs over the fake filesystem.

use super::fake::{view, FakeFs};
use crate::diff;

fn lines(fs: &FakeFs) -> Vec<String> {
    let d = diff(&view(), fs).unwrap();
    d.iter()
        .map(|e| format!("{} {}", e.change.letter(), e.public.display()))
        .collect()
}

#[test]
fn added_modified_deleted() {
    let mut fs = FakeFs::new();
    fs.file("/etc/passwd")
        .file("/etc/hosts")
        .file("/etc/gone")
        .dir("/usr/lib");
    fs.up_file("/etc/passwd")
        .up_file("/etc/new")
        .up_file("/etc/.wh.gone");
    fs.up_file("/usr/lib/libfoo.so")
        .up_file("/usr/.wh.never-on-host");
    fs.up_dir("/srv/data").up_file("/srv/data/x");
    assert_eq!(
        lines(&fs),
        [
            "D /etc/gone",
            "A /etc/new",
            "M /etc/passwd",
            "A /srv",
            "A /srv/data",
            "A /srv/data/x",
            "A /usr/lib/libfoo.so",
        ]
    );
}

#[test]
fn opaque_directories_delete_what_they_hide() {
    let mut fs = FakeFs::new();
    fs.file("/opt/a").file("/opt/b").file("/var/d/old");
    fs.up_file("/opt/.wh..wh..opq").up_file("/opt/b");
    // Re-created over its own whiteout, not yet finished: opaque too.
    fs.up_file("/var/.wh.d").up_file("/var/d/fresh");
    assert_eq!(
        lines(&fs),
        ["D /opt/a", "M /opt/b", "A /var/d/fresh", "D /var/d/old"]
    );
}
