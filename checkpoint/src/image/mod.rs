//! The image format (IMAGE.md): a directory with `manifest.json`, the
//! encoded process metadata `procs.bin`, and one raw `pages-PID.img` per
//! process.

pub mod codec;
pub mod manifest;
mod reader;
mod writer;

pub use manifest::{Host, Kind, Manifest, Section, FORMAT_NAME, FORMAT_VERSION, MANIFEST};
pub use reader::{decode_tree, Image, PROCS};
pub use writer::{ImageWriter, SectionWriter};

#[cfg(test)]
mod tests;
