//! Arbitrary frames, correctly tagged, as the image part of a migration
//! stream: what an authenticated but broken or hostile sender could send.
//! The receiver must reject it with an error, or accept an image only when
//! the manifest vouches for every section; it must never panic and never
//! create anything outside the directory it was given.
//!
//! Input: a sequence of `kind: u8, len: u16 LE, payload[len]`. Each is
//! sent through a `FrameWriter` with the harness's key, so the frames pass
//! the HMAC check and reach the protocol code (tests/migrate_faults.rs
//! covers untagged and wrongly tagged streams end to end). Leading
//! `PrePages` frames go to a page store, as the receiver's pre-copy phase
//! does, so `PreEnd` and `Reuse` frames reach the store too.
#![no_main]

use isotrace_checkpoint::stream::pages::PageStore;
use isotrace_checkpoint::stream::transfer::recv_image;
use isotrace_checkpoint::stream::{FrameReader, FrameWriter, Kind};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const KEY: [u8; 32] = [7; 32];

const KINDS: [Kind; 21] = [
    Kind::Hello,
    Kind::Accept,
    Kind::Refuse,
    Kind::Layer,
    Kind::LayerEnd,
    Kind::Section,
    Kind::Data,
    Kind::SectionEnd,
    Kind::Manifest,
    Kind::Commit,
    Kind::Ready,
    Kind::Go,
    Kind::Running,
    Kind::Failed,
    Kind::Abort,
    Kind::PrePages,
    Kind::Reuse,
    Kind::PreEnd,
    Kind::LayerRemoved,
    Kind::PostCopied,
    Kind::Reject,
];

/// The frames of `data`, tagged as a sender with `KEY` would.
fn wire(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut tx = FrameWriter::new(&mut out, KEY);
    while data.len() >= 3 {
        let kind = KINDS[usize::from(data[0]) % KINDS.len()];
        let len = usize::from(u16::from_le_bytes([data[1], data[2]])).min(data.len() - 3);
        let _ = tx.send(kind, &data[3..3 + len]);
        data = &data[3 + len..];
    }
    out
}

/// Every path under `root`, for the "nothing outside" check.
fn tree(root: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                tree(&e.path(), out);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = wire(data);
    let Ok(root) = tempfile_dir() else {
        return;
    };
    let image = root.join("image");
    let stage = root.join("stage");
    std::fs::create_dir(&image).expect("image dir");
    std::fs::create_dir(&stage).expect("stage dir");
    let mut rx = FrameReader::new(&bytes[..], KEY);
    let mut store: Option<PageStore> = None;
    loop {
        let Ok(frame) = rx.recv() else { break };
        if frame.kind != Kind::PrePages {
            rx.unread(frame);
            break;
        }
        if store.is_none() {
            store = PageStore::new(&stage).ok();
        }
        let Some(s) = store.as_mut() else { break };
        if s.put(&frame.payload).is_err() {
            break;
        }
    }
    let _ = recv_image(&mut rx, &image, store.as_ref());
    drop(store);
    let mut all = Vec::new();
    tree(&root, &mut all);
    for p in &all {
        assert!(
            p.starts_with(&image) || p.starts_with(&stage),
            "the receiver wrote {} outside its directories",
            p.display()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
});

/// A fresh directory under /dev/shm (tmpfs keeps the many small writes
/// cheap), or the system temp directory.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = if Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "isotrace-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
