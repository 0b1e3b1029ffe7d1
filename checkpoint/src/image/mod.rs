//! The image format (IMAGE.md): a directory with `manifest.json`, the
//! encoded process metadata `procs.bin`, and one raw `pages-PID.img` per
//! process. Every section is covered by a digest in the manifest
//! ([`digest`]); a restore checks the pages sections as it reads them into
//! place ([`SectionReader`]), the rest when the image is opened.

pub mod codec;
pub mod digest;
pub mod held;
pub mod manifest;
mod reader;
mod section_reader;
mod write_behind;
mod writer;

pub use manifest::{
    Host, Kind, Manifest, Section, FORMAT_NAME, FORMAT_VERSION, MANIFEST, OLDEST_VERSION,
};
pub use reader::{decode_tree, Extent, Image, PROCS};
pub use section_reader::SectionReader;
pub use writer::{ImageWriter, SectionWriter, CHUNK as WRITE_CHUNK};

#[cfg(test)]
mod tests;
