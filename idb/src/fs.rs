//! The narrow filesystem interface resolution needs, so that the merged-view
//! walk can be unit-tested over a fake tree. [`RealFs`] is the one the
//! supervisor uses.

use std::ffi::OsString;
use std::fs::FileType;
use std::io;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What an object is, as far as path walking cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// Device, fifo or socket.
    Other,
}

/// lstat(2) as resolution needs it. `dev`/`ino` let the view recognise the
/// store's directories even when they are bind-mounted elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub dev: u64,
    pub ino: u64,
}

/// One entry of a directory listing. `d_type` is the getdents64(2) value
/// (DT_REG, DT_DIR, ...; 0 is DT_UNKNOWN), for synthesizing dirents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub name: OsString,
    pub kind: Kind,
    pub ino: u64,
    pub d_type: u8,
}

/// Real-path operations on one filesystem namespace. Errors keep the errno:
/// ENOENT and ENOTDIR mean "not there", anything else is reported.
pub trait Fs {
    fn lstat(&self, real: &Path) -> io::Result<Stat>;
    fn readlink(&self, real: &Path) -> io::Result<PathBuf>;
    /// The entries of a directory, without `.` and `..`, in any order.
    fn read_dir(&self, real: &Path) -> io::Result<Vec<ListEntry>>;
}

/// The supervisor's own filesystem, through std.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// getdents64 d_type values (linux/fs.h, the DT_* of readdir(3)).
pub(crate) mod dt {
    pub const UNKNOWN: u8 = 0;
    pub const FIFO: u8 = 1;
    pub const CHR: u8 = 2;
    pub const DIR: u8 = 4;
    pub const BLK: u8 = 6;
    pub const REG: u8 = 8;
    pub const LNK: u8 = 10;
    pub const SOCK: u8 = 12;
}

pub(crate) fn kind_of(ft: FileType) -> Kind {
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    }
}

pub(crate) fn d_type_of(ft: FileType) -> u8 {
    match () {
        _ if ft.is_dir() => dt::DIR,
        _ if ft.is_file() => dt::REG,
        _ if ft.is_symlink() => dt::LNK,
        _ if ft.is_fifo() => dt::FIFO,
        _ if ft.is_char_device() => dt::CHR,
        _ if ft.is_block_device() => dt::BLK,
        _ if ft.is_socket() => dt::SOCK,
        _ => dt::UNKNOWN,
    }
}

impl Fs for RealFs {
    fn lstat(&self, real: &Path) -> io::Result<Stat> {
        let m = std::fs::symlink_metadata(real)?;
        Ok(Stat {
            kind: kind_of(m.file_type()),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn readlink(&self, real: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(real)
    }

    fn read_dir(&self, real: &Path) -> io::Result<Vec<ListEntry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(real)? {
            let e = e?;
            // file_type() is the dirent's d_type, or an lstat when the
            // filesystem reports DT_UNKNOWN.
            let ft = e.file_type()?;
            out.push(ListEntry {
                name: e.file_name(),
                kind: kind_of(ft),
                ino: e.ino(),
                d_type: d_type_of(ft),
            });
        }
        Ok(out)
    }
}

/// Whether an lstat error means "no such object" to a path walk.
pub(crate) fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}
