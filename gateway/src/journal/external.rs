//! The journal file from a second process: the command line (`status`, `resume`,
//! `retry`, `order`, `user add`) while a gateway may have the file open.
//! Every connection other than the gateway's writer is opened here.
//!
//! The rules for such a process:
//!
//! - It never creates, migrates or otherwise changes the schema. Only
//!   [`super::Journal::open`] does, under the lock file that keeps a second
//!   gateway out; a command that migrated behind a running gateway would
//!   change tables under its prepared statements. A file that does not exist
//!   or has another schema version is an error, and is left as it is.
//! - It never takes the lock file or returns leased rows to the queue: that
//!   is what a starting gateway does, and beside a running one it would
//!   deliver those rows twice.
//! - WAL is the file's own setting (the gateway set it when it created the
//!   file): readers see the last commit without blocking the writer, and
//!   nothing here changes the journal mode.
//! - A change is one `IMMEDIATE` transaction. It takes the write lock before
//!   reading, so waiting for the gateway's current group commit is a wait
//!   under the busy timeout (10 s; a commit takes milliseconds). A deferred
//!   transaction that read first would instead fail with `SQLITE_BUSY` when
//!   the gateway committed in between: the busy timeout cannot help it.
//! - The gateway cannot be woken from here: its delivery workers find a
//!   change on their next look at the queue (at most a second later).
//!
//! The gateway's own pooled readers are opened the same way: a read-only
//! connection obeys the same rules in either process.
//!
//! What the command line calls is defined with its concept and gathered
//! below, so this module is the one list of what another process may do.

use super::{configure, schema, JournalError};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;

pub use super::breakers::resume_breaker_at;
pub use super::orders::{add_order_at, read_astm_sender, read_incomplete, read_orders};
pub use super::query::JournalReader;
pub use super::selection::{retry_dead_at, DeadSelection, Requeued};
pub use super::users::add_user_offline;

/// A read-only connection: it cannot write, and cannot create a missing
/// file.
pub(super) fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn, false)?;
    Ok(conn)
}

/// Runs `f` in one `IMMEDIATE` transaction on the existing journal at
/// `path` and commits what it did; an error from `f` rolls it all back.
pub(super) fn change<T, E>(path: &Path, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
where
    E: From<JournalError>,
{
    let mut conn = open_existing(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(JournalError::from)?;
    let out = f(&tx)?;
    tx.commit().map_err(JournalError::from)?;
    Ok(out)
}

/// How many schema migrations opening the journal at `path` will run,
/// read without writing: none for a missing file (a new journal's schema
/// is quick to create) or one already at this build's version. Start-up
/// asks before it opens the journal, so the service manager can be told
/// that a long migration is not a hang.
pub fn migrations_pending(path: &Path) -> Result<i64, JournalError> {
    if !path.exists() {
        return Ok(0);
    }
    let version: i64 = open_reader(path)?.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((schema::VERSION - version).max(0))
}

fn open_existing(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Open {
            path: path.display().to_string(),
            reason: "no journal there".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn, false)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != schema::VERSION {
        return Err(JournalError::Storage(format!(
            "the journal has schema version {version}, this program writes {}",
            schema::VERSION
        )));
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_pending_are_counted_without_writing_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        assert_eq!(migrations_pending(&path).unwrap(), 0);
        assert!(!path.exists(), "asking creates nothing");
        drop(crate::journal::Journal::open(crate::journal::JournalOptions::new(&path)).unwrap());
        assert_eq!(migrations_pending(&path).unwrap(), 0);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", schema::VERSION - 2)
            .unwrap();
        drop(conn);
        assert_eq!(migrations_pending(&path).unwrap(), 2);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::VERSION - 2, "still unmigrated");
    }

    #[test]
    fn a_missing_journal_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let err = retry_dead_at(&path, &DeadSelection::default(), "cli", false).unwrap_err();
        assert!(err.to_string().contains("no journal there"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_change_waits_for_a_commit_in_progress_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let j = super::super::Journal::open(super::super::JournalOptions::new(&path)).unwrap();
            j.close().await;
        });
        // Stands in for the gateway's writer: it holds the write lock while
        // the command starts, then commits a row, which makes any snapshot
        // the command had read before stale.
        let (started, wait) = std::sync::mpsc::channel();
        let gateway_path = path.clone();
        let gateway = std::thread::spawn(move || {
            let mut c = Connection::open(&gateway_path).unwrap();
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute(
                "INSERT INTO audit (at, actor, action) VALUES (1, 'gateway', 'test')",
                [],
            )
            .unwrap();
            started.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.commit().unwrap();
        });
        wait.recv().unwrap();

        add_user_offline(&path, "ann", "admin", "hash", "cli", 2).unwrap();
        gateway.join().unwrap();
        let c = Connection::open(&path).unwrap();
        let actors: Vec<String> = c
            .prepare("SELECT actor FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(actors, ["gateway", "cli"]);
    }

    #[test]
    fn a_journal_of_another_schema_version_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        drop(old);

        let err = add_user_offline(&path, "ann", "admin", "hash", "cli", 0).unwrap_err();
        assert!(err.to_string().contains("schema version 1"), "{err}");
        let old = Connection::open(&path).unwrap();
        let version: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let tables: i64 = old
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing was created in it");
    }
}
