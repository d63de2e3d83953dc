//! Checkpoints off the writer thread.
//!
//! Copying WAL pages into the database file and syncing it takes far longer
//! than a commit. Done by the writer (SQLite's automatic checkpoint runs
//! inside the commit that crosses the threshold) it would hold every sender
//! waiting for an ACK behind it, which is what sets the latency tail. So the
//! writer's connection has automatic checkpoints off and this thread runs a
//! `PASSIVE` checkpoint every [`INTERVAL`] on a connection of its own:
//! passive checkpoints never block the writer, and SQLite lets one run while
//! the writer appends.
//!
//! The WAL starts over from its beginning only when a write transaction
//! begins with every frame already copied. Under sustained load a passive
//! checkpoint can keep trailing the writer by a few commits, so the WAL would
//! only grow; past [`RESTART_FRAMES`] this thread asks for a `RESTART`
//! checkpoint, which waits for the writer's current commit, copies the little
//! that is left and makes the next commit start the WAL over.
//!
//! Durability is not affected: a commit is on disk once its WAL frames are
//! synced, whoever copies them into the database file later.

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How often the WAL is copied into the database file. Not more often: the
/// first commit after a complete checkpoint starts the WAL over and syncs
/// its new header, one more fsync on the path of an ACK.
pub(super) const INTERVAL: Duration = Duration::from_secs(1);
/// WAL length (in 4 KiB frames, 64 MiB) at which the WAL is made to start
/// over even if that means waiting for the writer.
pub(super) const RESTART_FRAMES: i64 = 16_384;

/// Opens the checkpointing connection, or says why it cannot.
pub(super) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Checkpoints until `stop` says so (or its sender is gone).
pub(super) fn run(conn: Connection, stop: Receiver<()>) {
    // A message or a dropped sender both mean stop.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, frames, _)) if frames > RESTART_FRAMES => {
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    tracing::warn!(error = %e, frames, "WAL restart checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; will try again"),
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the checkpoint connection failed");
    }
}

/// (busy, frames in the WAL, frames copied).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}
