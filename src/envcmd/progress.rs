//! Progress of `env export`, `env import` and `env copy`: an indicatif bar
//! on stderr when stderr is a terminal, and nothing but the verb's closing
//! line otherwise (a log or a pipe gets no redraw sequences).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

/// A byte-counting bar; hidden (counting only) when stderr is not a
/// terminal.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `what` (`exporting env A`) over `total` bytes.
    pub fn bytes(what: &str, total: u64) -> Progress {
        Progress::with(what, total, io::stderr().is_terminal())
    }

    fn with(what: &str, total: u64, show: bool) -> Progress {
        if !show {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Bytes counted so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Take the bar off the screen, before the closing line is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A writer that counts what goes through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub progress: Progress,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts what comes through it.
pub struct CountingReader<R> {
    pub inner: R,
    pub progress: Progress,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_passes_bytes_through() {
        let p = Progress::with("test", 10, false);
        let mut w = CountingWriter {
            inner: Vec::new(),
            progress: p.clone(),
        };
        w.write_all(b"hello").unwrap();
        let mut r = CountingReader {
            inner: &b"world"[..],
            progress: p.clone(),
        };
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!((w.inner.as_slice(), s.as_str()), (&b"hello"[..], "world"));
        assert_eq!(p.position(), 10);
        p.finish();
    }
}
