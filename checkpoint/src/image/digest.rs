//! Section digests (IMAGE.md): BLAKE3 from format version 2 on, SHA-256
//! in version 1 images, which are still read.
//!
//! A section of a large process is gigabytes, and hashing it on the thread
//! that moves the bytes made the hash the largest cost of a checkpoint and
//! of a restore (perf: `sha256::x86::digest_blocks` was over half of the
//! dumping thread's time). BLAKE3 is cryptographic, as the migration stream
//! needs (STREAM.md: page data is covered by the manifest's digests), and
//! several times faster than SHA-256 with AVX-512; and [`Pipeline`] runs it
//! on a second thread, so the copy and the hash of one buffer overlap.

use sha2::{Digest as _, Sha256};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How a section's digest is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Blake3,
    /// Format version 1.
    Sha256,
}

/// An incremental hash of either kind.
#[derive(Clone)]
pub enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// Lower-case hex of the digest.
    pub fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A buffer shared between the thread that fills it and the hash thread.
pub type Buf = Arc<Vec<u8>>;

/// A hash thread fed whole buffers in order, with a pool of buffers that
/// come back once hashed. The caller fills a buffer from [`Pipeline::take`],
/// hands a clone to [`Pipeline::hash`] (and to anything else that reads
/// it, such as a write-behind thread), and gives its own to
/// [`Pipeline::release`]: the buffer returns to the pool when the last
/// holder lets go of it (`Arc::into_inner` decides which, without a race).
pub struct Pipeline {
    algo: Algo,
    work: Option<Sender<(Buf, usize)>>,
    free: Receiver<Buf>,
    free_tx: Sender<Buf>,
    thread: Option<JoinHandle<Hasher>>,
}

/// Gives `buf` back to the pool of `free` if this is its last holder.
pub fn release(free: &Sender<Buf>, buf: Buf) {
    if let Some(v) = Arc::into_inner(buf) {
        // The pool may be gone (an error ended the dump).
        let _ = free.send(Arc::new(v));
    }
}

impl Pipeline {
    /// `buffers` buffers of `size` bytes each (their pages are touched only
    /// as they are used).
    pub fn new(algo: Algo, buffers: usize, size: usize) -> Pipeline {
        let (work_tx, work_rx) = channel::<(Buf, usize)>();
        let (free_tx, free_rx) = channel::<Buf>();
        for _ in 0..buffers {
            free_tx
                .send(Arc::new(vec![0u8; size]))
                .expect("receiver held");
        }
        let back = free_tx.clone();
        let thread = std::thread::Builder::new()
            .name("isotrace-hash".into())
            .spawn(move || {
                crate::sys::cpus::spread();
                let mut hasher = Hasher::new(algo);
                for (buf, len) in work_rx {
                    hasher.update(&buf[..len]);
                    release(&back, buf);
                }
                hasher
            })
            .expect("spawning the hash thread");
        Pipeline {
            algo,
            work: Some(work_tx),
            free: free_rx,
            free_tx,
            thread: Some(thread),
        }
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    /// A free buffer, waiting for the hash thread to finish one if needed.
    /// The caller must have dropped its clone of it (see [`buf_mut`]).
    pub fn take(&mut self) -> Buf {
        self.free
            .recv()
            .expect("the hash thread holds the pool open")
    }

    /// Lets go of the caller's clone of a buffer.
    pub fn release(&self, buf: Buf) {
        release(&self.free_tx, buf);
    }

    /// A handle for another holder of buffers to give them back with.
    pub fn returns(&self) -> Sender<Buf> {
        self.free_tx.clone()
    }

    /// Queues `buf[..len]` to be hashed after everything queued before.
    pub fn hash(&self, buf: Buf, len: usize) {
        self.work
            .as_ref()
            .expect("not finished")
            .send((buf, len))
            .expect("the hash thread runs until finish");
    }

    /// Waits for everything queued and returns the digest.
    pub fn finish(mut self) -> String {
        self.join().hex()
    }

    fn join(&mut self) -> Hasher {
        drop(self.work.take());
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("the hash thread does not panic")
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.join();
        }
    }
}

/// Mutable access to a buffer back from the pool. The hash thread moves
/// its clone into the pool, so once the caller dropped its own the buffer
/// is unique again.
pub fn buf_mut(buf: &mut Buf) -> &mut Vec<u8> {
    Arc::get_mut(buf).expect("the caller dropped its clone of a pooled buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_hashes_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut p = Pipeline::new(Algo::Blake3, 2, 1 << 16);
        for chunk in data.chunks(1 << 16) {
            let mut b = p.take();
            buf_mut(&mut b)[..chunk.len()].copy_from_slice(chunk);
            p.hash(b.clone(), chunk.len());
            p.release(b);
        }
        let want = blake3::hash(&data).to_hex().to_string();
        assert_eq!(p.finish(), want);
    }

    #[test]
    fn both_algorithms() {
        let mut h = Hasher::new(Algo::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hasher::new(Algo::Blake3);
        h.update(b"abc");
        assert_eq!(h.hex(), blake3::hash(b"abc").to_hex().to_string());
    }
}
