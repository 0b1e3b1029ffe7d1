//! A thread that writes a section's buffers to its file, in order, while
//! the dumping thread reads (and hashes) the next pages: on a dump of a
//! large process the write(2) into the page cache is the largest single
//! cost (perf: copy_folio_from_iter_atomic and the filesystem's page
//! allocation, over half of the dump's CPU time on tmpfs), and it overlaps
//! the reads this way instead of following them. Two threads for the two
//! halves of the work: a third (a hash thread of its own) only added
//! wake-ups between CPUs, which cost tens of microseconds each on this
//! kind of VM.
//!
//! On a filesystem with writeback, the thread also starts the disk
//! writes as it goes (sync_file_range(2), SYNC_FILE_RANGE_WRITE, every
//! [`WRITEBACK_STEP`] bytes): the commit's fsync then waits for the tail
//! of the section instead of all of it, while the disk worked during the
//! dump. It does not wait for that writeback, so it never makes the image
//! durable by itself: the commit's fsync still does (writer.rs).
//!
//! On a filesystem with blocks (not tmpfs), the thread also allocates the
//! file's blocks ahead of its writes, [`ALLOCATE_STEP`] bytes at a time
//! (fallocate(2)). A write(2) into blocks that are not allocated yet goes
//! through ext4's delayed allocation for every block (reserving space and
//! quota, inserting a delayed extent: perf showed ext4_da_get_block_prep,
//! the extent status tree and the reservation as much of the write
//! thread's time as the copy itself); into allocated (unwritten) extents
//! it only finds them. Measured here on a 1 GiB dump to the root ext4, it
//! halved the write thread's write(2) time and took the dump from about
//! 1.6 to 1.0 s under load. Where less room is left than a step, the
//! thread gives back what the failed fallocate did allocate and stops
//! allocating: the writes then meet a full disk as before. What is
//! allocated past the data is cut off when the last op is done.

use crate::sys::files::{allocate, memory_backed, start_writeback};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes written between two starts of writeback.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Bytes of the file allocated at a time, ahead of the writes.
const ALLOCATE_STEP: u64 = 64 << 20;

pub enum Op {
    /// Write `buf[..len]`.
    Data(Vec<u8>, usize),
    /// Leave a hole of this many bytes (`SectionWriter::skip`).
    Hole(u64),
}

pub struct WriteBehind {
    work: Option<Sender<Op>>,
    thread: Option<JoinHandle<(File, io::Result<()>)>>,
    failed: Arc<AtomicBool>,
    /// Buffers back from the write thread, to fill again.
    free: Receiver<Vec<u8>>,
}

impl WriteBehind {
    /// Starts writing to `file`, with a pool of `buffers` buffers of
    /// `size` bytes (their pages are touched only as they are used).
    pub fn start(file: File, buffers: usize, size: usize, writeback: bool) -> WriteBehind {
        let (work, rx) = channel::<Op>();
        let (returns, free) = channel::<Vec<u8>>();
        for _ in 0..buffers {
            returns.send(vec![0u8; size]).expect("receiver held");
        }
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("isotrace-write".into())
            .spawn(move || {
                crate::sys::cpus::spread();
                write_all(file, rx, returns, flag, writeback)
            })
            .expect("spawning the write thread");
        WriteBehind {
            work: Some(work),
            thread: Some(thread),
            failed,
            free,
        }
    }

    /// A buffer to fill, waiting for the write thread to be done with one
    /// if needed; None once the write thread has failed.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.free.recv().ok()
    }

    pub fn send(&self, op: Op) {
        self.work
            .as_ref()
            .expect("not finished")
            .send(op)
            .expect("the write thread runs until finish");
    }

    /// Whether a write failed already (the error comes from `finish`).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits for every write; returns the file and the first error.
    pub fn finish(mut self) -> (File, io::Result<()>) {
        self.join().expect("joined once")
    }

    fn join(&mut self) -> Option<(File, io::Result<()>)> {
        drop(self.work.take());
        let t = self.thread.take()?;
        Some(t.join().expect("the write thread does not panic"))
    }
}

/// Where the file's blocks are allocated up to, ahead of its writes.
struct Allocation {
    /// Whether to allocate at all (not on tmpfs; not once the filesystem
    /// said it cannot).
    on: bool,
    end: u64,
}

impl Allocation {
    fn new(file: &File) -> Allocation {
        Allocation {
            on: !memory_backed(file.as_fd()),
            end: 0,
        }
    }

    /// Makes sure [at, at + len) is allocated. A hole (`Op::Hole`) past
    /// the allocated end stays one; one inside it is allocated but
    /// unwritten, and reads as zeros all the same.
    fn cover(&mut self, file: &File, at: u64, len: u64) -> io::Result<()> {
        if !self.on || at + len <= self.end {
            return Ok(());
        }
        let from = self.end.max(at);
        let step = ALLOCATE_STEP.max(at + len - from);
        match allocate(file.as_fd(), from, step) {
            Ok(()) => {
                self.end = from + step;
                Ok(())
            }
            // A filesystem without fallocate (EOPNOTSUPP), or a file it
            // refuses it for: write(2) allocates as before.
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => {
                self.on = false;
                Ok(())
            }
            // Less room (or quota) left than a step, though the section
            // may still fit. ext4 keeps the blocks it did allocate, and
            // the file's size they reached (ext4_alloc_file_blocks): cut
            // them off, so that the writes (and the sections after this
            // one) have them; write(2) then fails if the disk is full.
            Err(nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT) => {
                self.on = false;
                self.end = 0;
                file.set_len(at)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Cuts the allocation past the data off (`size`: the file's length
    /// when its writes are done).
    fn trim(&self, file: &File, size: u64) -> io::Result<()> {
        match self.end > size {
            true => file.set_len(size),
            false => Ok(()),
        }
    }
}

/// The write thread: every op in order, each buffer back to the pool.
fn write_all(
    mut file: File,
    ops: Receiver<Op>,
    returns: Sender<Vec<u8>>,
    failed: Arc<AtomicBool>,
    writeback: bool,
) -> (File, io::Result<()>) {
    // Where the file is, and where writeback was last started from: not
    // always 0, a section may start with a hole its writer left before
    // this thread started (`SectionWriter::skip`).
    let (mut res, mut at) = match file.stream_position() {
        Ok(at) => (Ok(()), at),
        Err(e) => (Err(e), 0),
    };
    let mut started = at;
    let mut allocation = Allocation::new(&file);
    for op in ops {
        // After an error, only give the buffers back: the caller sees
        // the flag and stops.
        match op {
            Op::Data(buf, len) => {
                if res.is_ok() {
                    res = allocation
                        .cover(&file, at, len as u64)
                        .and_then(|()| file.write_all(&buf[..len]));
                    at += len as u64;
                }
                // The pool may be gone (an error ended the dump).
                let _ = returns.send(buf);
            }
            Op::Hole(len) if res.is_ok() => {
                let by = i64::try_from(len).unwrap_or(i64::MAX);
                res = file.seek(SeekFrom::Current(by)).map(drop);
                at += len;
            }
            Op::Hole(_) => {}
        }
        if res.is_err() {
            failed.store(true, Ordering::Relaxed);
        } else if writeback && at - started >= WRITEBACK_STEP {
            // Advisory: an I/O error it would meet is the commit's
            // fsync's to report (fsync(2) returns writeback errors).
            let _ = start_writeback(file.as_fd(), started, at - started);
            started = at;
        }
    }
    if res.is_ok() {
        res = allocation.trim(&file, at);
    }
    (file, res)
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.join();
    }
}
