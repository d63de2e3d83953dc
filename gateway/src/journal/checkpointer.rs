//! Copying the WAL into the database file beside the writer, never in its
//! way.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the committing connection: the writer, and with it every
//! sender waiting for an acknowledgement, stood still while a thousand
//! pages were copied and the database file was fsynced. Here the writer
//! never checkpoints (`wal_autocheckpoint = 0`); a thread of its own, on
//! its own connection, runs a passive checkpoint every [`EVERY`]. A passive
//! checkpoint takes no lock the writer needs: it copies what no reader still
//! reads and leaves the rest for the next round. Once everything is copied,
//! the writer's next transaction starts the WAL over from its beginning,
//! and `journal_size_limit` cuts the file back to [`WAL_KEPT_BYTES`], so the
//! WAL stays bounded under sustained load. A truncating checkpoint happens
//! only where the writer is idle by construction: after a purge's shrink
//! and when the journal closes.

use rusqlite::{Connection, OpenFlags};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the WAL is copied into the database file.
const EVERY: Duration = Duration::from_millis(250);

/// What the WAL file is cut back to once it starts over.
pub(super) const WAL_KEPT_BYTES: i64 = 64 << 20;

/// The running checkpoint thread; stopped (and joined) on drop.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the journal at `path`; `None` (and a warning)
    /// when its connection cannot be opened, in which case the writer keeps
    /// SQLite's automatic checkpoint.
    pub(super) fn start(path: &std::path::Path) -> Option<Checkpointer> {
        let conn = match Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.pragma_update(None, "synchronous", "FULL").map(|()| c))
        {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints in its commits");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || run(conn, &stopping))
            .map_err(|e| tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints in its commits"))
            .ok()?;
        Some(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(EVERY);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A full disk or a reader holding old frames only means less is
        // copied this round; the next round tries again.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "passive checkpoint failed");
        }
    }
}

/// The writer's side: it leaves checkpoints to the thread.
pub(super) fn hand_over(writer: &Connection) -> rusqlite::Result<()> {
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    writer.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)?;
    Ok(())
}

/// The writer's side when there is no thread: SQLite's automatic
/// checkpoint, as before.
pub(super) fn take_back(writer: &Connection) -> rusqlite::Result<()> {
    writer.pragma_update(None, "wal_autocheckpoint", 1000)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn the_wal_stays_bounded_while_the_writer_never_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer
            .execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
        hand_over(&writer).unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        let write = |rows: usize| {
            for _ in 0..rows {
                writer
                    .execute("INSERT INTO t (v) VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
        };
        // 3,000 commits of a page or more each: far past the thousand pages
        // at which SQLite would have checkpointed in a commit.
        for _ in 0..30 {
            write(100);
            std::thread::sleep(EVERY / 5);
        }
        std::thread::sleep(EVERY * 3);
        write(1);
        let wal = std::fs::metadata(dir.path().join("j.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal <= WAL_KEPT_BYTES as u64,
            "the WAL file holds {wal} bytes"
        );
        // Everything was copied in the background and the WAL started over:
        // it holds the last commit, not the 3,000 before it.
        drop(checkpointer);
        assert!(wal_frames(&writer) < 100, "{} frames", wal_frames(&writer));
    }
}
