//! The last lines this process logged, kept in memory for a log bundle.
//!
//! The log itself goes to standard error and from there to journald, which
//! the service user may not be allowed to read back; the bundle the hub
//! asks for must hold at least what this process said since it started.
//! So the log writer writes every line twice: to standard error and to this
//! ring, which keeps the newest [`CAPACITY`] bytes and forgets the oldest
//! whole lines first.
//!
//! Writing must never block logging for long nor fail it: the ring is a
//! mutex over a byte queue, held only to copy one line in or the whole ring
//! out, and a poisoned lock is taken over rather than given up.

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, OnceLock};

/// The bytes kept: about a day of a busy gateway's `info` log.
pub const CAPACITY: usize = 4 << 20;

/// A ring of log text that forgets whole lines from its front.
pub struct RecentLog {
    capacity: usize,
    text: Mutex<VecDeque<u8>>,
}

impl RecentLog {
    pub fn new(capacity: usize) -> RecentLog {
        RecentLog {
            capacity,
            text: Mutex::new(VecDeque::new()),
        }
    }

    /// Appends `bytes`, then forgets the oldest lines until the ring fits.
    pub fn push(&self, bytes: &[u8]) {
        let mut text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        text.extend(bytes);
        if text.len() > self.capacity {
            let excess = text.len() - self.capacity;
            // Up to the end of the line the cut falls in, so no half line
            // is left at the front.
            let cut = text
                .iter()
                .skip(excess)
                .position(|&b| b == b'\n')
                .map_or(text.len(), |p| excess + p + 1);
            text.drain(..cut);
        }
    }

    /// Everything kept, oldest first.
    pub fn snapshot(&self) -> Vec<u8> {
        let text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        text.iter().copied().collect()
    }
}

/// The process's ring, filled by the log writer the command line installs.
pub fn process() -> &'static RecentLog {
    static RING: OnceLock<RecentLog> = OnceLock::new();
    RING.get_or_init(|| RecentLog::new(CAPACITY))
}

/// A writer that sends every line to `inner` and to the process's ring.
pub struct Tee<W> {
    pub inner: W,
}

impl<W: io::Write> io::Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        process().push(buf);
        // The ring has the whole line whatever standard error takes: a
        // full pipe must not lose it from the bundle too.
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_whole_lines_within_its_capacity() {
        let ring = RecentLog::new(32);
        for i in 0..10 {
            ring.push(format!("line {i} of the log\n").as_bytes());
        }
        let text = String::from_utf8(ring.snapshot()).unwrap();
        assert_eq!(text, "line 9 of the log\n");
        ring.push(b"short\n");
        assert_eq!(
            String::from_utf8(ring.snapshot()).unwrap(),
            "line 9 of the log\nshort\n"
        );
    }

    #[test]
    fn a_line_longer_than_the_ring_keeps_its_end() {
        let ring = RecentLog::new(8);
        ring.push(b"0123456789abcdef\n");
        assert!(ring.snapshot().len() <= 8);
        assert!(ring.snapshot().ends_with(b"\n"));
    }

    #[test]
    fn the_tee_writes_each_line_to_both() {
        use std::io::Write;
        let mut tee = Tee { inner: Vec::new() };
        tee.write_all(b"written to both by the tee\n").unwrap();
        assert_eq!(tee.inner, b"written to both by the tee\n");
        let kept = String::from_utf8(process().snapshot()).unwrap();
        assert!(kept.contains("written to both by the tee\n"), "{kept}");
    }
}
