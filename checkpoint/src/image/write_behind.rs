//! A thread that writes a section's buffers to its file, in order, while
//! the dumping thread reads the next pages and the hash thread hashes:
//! on a dump of a large process the write(2) into the page cache is the
//! largest single cost after the hash (perf: copy_folio_from_iter_atomic
//! and the filesystem's page allocation), and it overlaps the reads of
//! /proc/PID/mem this way instead of following them.

use super::digest::{release, Buf};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub enum Op {
    /// Write `buf[..len]`.
    Data(Buf, usize),
    /// Leave a hole of this many bytes (`SectionWriter::skip`).
    Hole(u64),
}

pub struct WriteBehind {
    work: Option<Sender<Op>>,
    thread: Option<JoinHandle<(File, io::Result<()>)>>,
    failed: Arc<AtomicBool>,
}

impl WriteBehind {
    /// Starts writing to `file`; written buffers go back through `returns`.
    pub fn start(mut file: File, returns: Sender<Buf>) -> WriteBehind {
        let (work, rx) = channel::<Op>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("isotrace-write".into())
            .spawn(move || {
                let mut res = Ok(());
                for op in rx {
                    // After an error, only give the buffers back: the
                    // caller sees the flag and stops.
                    match op {
                        Op::Data(buf, len) => {
                            if res.is_ok() {
                                res = file.write_all(&buf[..len]);
                            }
                            release(&returns, buf);
                        }
                        Op::Hole(len) if res.is_ok() => {
                            let by = i64::try_from(len).unwrap_or(i64::MAX);
                            res = file.seek(SeekFrom::Current(by)).map(drop);
                        }
                        Op::Hole(_) => {}
                    }
                    if res.is_err() {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                (file, res)
            })
            .expect("spawning the write thread");
        WriteBehind {
            work: Some(work),
            thread: Some(thread),
            failed,
        }
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

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.join();
    }
}
