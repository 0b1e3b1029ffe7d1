//! Per-thread kernel registrations that /proc does not show but a tracer
//! can read from outside (section `threads.bin`, IMAGE.md): the rseq area
//! (PTRACE_GET_RSEQ_CONFIGURATION) and the robust futex list
//! (get_robust_list(2)). A restore registers both again in each thread.

use crate::error::Result;
use crate::image::ImageWriter;
use crate::model::ProcessTree;
use crate::Image;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The section's name.
pub const SECTION: &str = "threads.bin";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadExtra {
    /// rseq area: pointer, length, signature.
    pub rseq: Option<(u64, u32, u32)>,
    /// Robust list head and length.
    pub robust: Option<(u64, u64)>,
}

/// Thread id -> its registrations.
pub type Extras = BTreeMap<i32, ThreadExtra>;

/// Reads the registrations of every thread of `tree`, which must be in
/// ptrace-stops under the caller. A thread whose registration cannot be
/// read simply has none recorded.
pub fn capture(tree: &ProcessTree) -> Extras {
    let mut out = Extras::new();
    for t in tree.processes.iter().flat_map(|p| &p.threads) {
        let extra = ThreadExtra {
            rseq: crate::sys::rseq_config(t.tid).ok().flatten(),
            robust: crate::sys::robust_list(t.tid).ok().flatten(),
        };
        if extra != ThreadExtra::default() {
            out.insert(t.tid, extra);
        }
    }
    out
}

/// Captures the registrations of `tree` into the image being written.
pub fn write(tree: &ProcessTree, writer: &mut ImageWriter) -> Result<()> {
    let data = capture(tree);
    writer.write_optional(SECTION, &data)
}

/// The registrations of an image (empty without the section).
pub fn read(image: &Image) -> Result<Extras> {
    image.optional(SECTION)
}
