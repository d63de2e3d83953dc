//! Changes made from another process (the command line) to a journal file
//! that a running gateway may hold open.
//!
//! SQLite serialises the two writers: the change is one `IMMEDIATE`
//! transaction beside the gateway's own, and the gateway's delivery workers
//! see it on their next look at the queue (at most a second later). The file
//! must already exist with this program's schema: a command never creates or
//! migrates a journal behind a gateway's back.

use super::outbox::record;
use super::schema::{self, DEAD, QUEUED};
use super::{configure, JournalError};
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;

/// Which dead deliveries to put back in the queue.
#[derive(Debug, Clone, Default)]
pub struct DeadSelection {
    /// Only this destination endpoint.
    pub destination: Option<String>,
    /// Only this message's deliveries.
    pub message_id: Option<i64>,
}

/// One delivery put back in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub outbox_id: i64,
    pub message_id: i64,
    pub destination: String,
}

/// Puts the selected dead deliveries back in the queue, due now, with a
/// fresh attempt budget, recording `actor` on each; returns what was
/// requeued. With `dry_run` nothing changes and the same list comes back.
pub fn retry_dead_at(
    path: &Path,
    selection: &DeadSelection,
    actor: &str,
    dry_run: bool,
) -> Result<Vec<Requeued>, JournalError> {
    let mut conn = open_existing(path)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<Requeued> = tx
        .prepare(
            "SELECT id, message_id, destination FROM outbox
             WHERE state = ?1 AND (?2 IS NULL OR destination = ?2) AND (?3 IS NULL OR message_id = ?3)
             ORDER BY id",
        )?
        .query_map(
            params![DEAD, selection.destination, selection.message_id],
            |r| {
                Ok(Requeued {
                    outbox_id: r.get(0)?,
                    message_id: r.get(1)?,
                    destination: r.get(2)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    if dry_run {
        return Ok(rows);
    }
    let now = jiff::Timestamp::now().as_millisecond();
    for row in &rows {
        tx.execute(
            "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1",
            params![row.outbox_id, QUEUED, now],
        )?;
        record(
            &tx,
            now,
            row.outbox_id,
            "retried",
            None,
            None,
            None,
            Some(actor),
        )?;
    }
    tx.commit()?;
    Ok(rows)
}

fn open_existing(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Open {
            path: path.display().to_string(),
            reason: "no journal there".into(),
        });
    }
    let conn = Connection::open(path)?;
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
    use crate::journal::{Destination, Journal, JournalOptions, Settlement};
    use ecko_message::Envelope;

    async fn dead_message(j: &Journal, key: &str, dest: &str) -> i64 {
        let m = Envelope {
            source: "lab".into(),
            dedup_key: Some(key.into()),
            message_type: "ORU^R01".into(),
            content_type: "x".into(),
            payload: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let d = vec![Destination {
            endpoint: dest.into(),
            transform: "none".into(),
            lane: String::new(),
            reply_to: None,
        }];
        let id = j.ingest(m, d).await.unwrap().message_id;
        let lease = j.lease(dest, 1, 1).await.unwrap().lanes.remove(0).remove(0);
        j.settle(vec![(
            lease,
            Settlement::Dead {
                error: "refused".into(),
                duration_ms: 1,
            },
        )])
        .await
        .unwrap();
        id
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dead_deliveries_are_requeued_beside_a_running_gateway_and_the_actor_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let a = dead_message(&j, "1", "hub").await;
        let b = dead_message(&j, "2", "archive").await;

        let only_hub = DeadSelection {
            destination: Some("hub".into()),
            message_id: None,
        };
        let planned = retry_dead_at(&path, &only_hub, "cli:ann", true).unwrap();
        assert_eq!(planned.len(), 1);
        assert_eq!(
            j.outbox_of(a).await.unwrap()[0].state,
            crate::journal::OutboxState::Dead,
            "a dry run changes nothing"
        );

        let done = retry_dead_at(&path, &only_hub, "cli:ann", false).unwrap();
        assert_eq!(done, planned);
        assert_eq!(done[0].message_id, a);
        let row = &j.outbox_of(a).await.unwrap()[0];
        assert_eq!(row.state, crate::journal::OutboxState::Queued);
        assert_eq!(row.attempts, 0);
        assert!(j
            .events_of(a)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "retried" && e.actor.as_deref() == Some("cli:ann")));
        assert_eq!(
            j.outbox_of(b).await.unwrap()[0].state,
            crate::journal::OutboxState::Dead,
            "another destination's dead delivery stays dead"
        );
        // The running journal can lease it again.
        assert_eq!(j.lease("hub", 1, 1).await.unwrap().lanes.len(), 1);
        j.close().await;
    }

    #[test]
    fn a_missing_journal_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let err = retry_dead_at(&path, &DeadSelection::default(), "cli", false).unwrap_err();
        assert!(err.to_string().contains("no journal there"), "{err}");
        assert!(!path.exists());
    }
}
