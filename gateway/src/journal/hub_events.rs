//! The hub uplink's outbox of events (endpoint down and up, a message given
//! up on, a configuration changed, the disk low).
//!
//! An event is a row here before anyone tries to publish it, committed like
//! any other journal write; it leaves only when the uplink has the broker's
//! acknowledgement of its publication ([`Journal::release_hub_events`]). A
//! crash or a broker away in between leaves it here to be published again,
//! so the hub sees every event at least once and deduplicates by its id.
//! A delivery given up on is journalled by a trigger in the very
//! transaction that marks it dead (see the schema).

use super::schema::{DEAD, LEASED, QUEUED};
use super::{Journal, JournalError};
use rusqlite::{params, Connection};

/// One journalled event, not yet acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubEvent {
    /// Never reused within one journal (see [`Journal::hub_epoch`]).
    pub id: i64,
    pub at: i64,
    /// `endpoint.down`, `endpoint.up`, `message.dead`, `config.changed`,
    /// `disk.low`, `disk.ok`, `order.accepted`, `order.cancelled`,
    /// `order.refused`.
    pub kind: String,
    /// What it is about: an endpoint's name, a file.
    pub subject: Option<String>,
    /// More, as a JSON object.
    pub detail: Option<String>,
}

/// One destination's queue, for the hub's health report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backlog {
    pub destination: String,
    /// Queued or in flight.
    pub pending: u64,
    pub dead: u64,
    /// When the oldest pending row was queued (Unix ms).
    pub oldest_pending_at: Option<i64>,
}

/// Events kept at most; past that the oldest are dropped, so a hub that is
/// never reached cannot fill the disk with them.
pub const HUB_EVENTS_KEPT: i64 = 100_000;

pub(super) fn insert(
    conn: &Connection,
    now: i64,
    kind: &str,
    subject: Option<&str>,
    detail: Option<&str>,
) -> Result<i64, JournalError> {
    conn.prepare_cached(
        "INSERT INTO hub_event (at, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![now, kind, subject, detail])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM hub_event WHERE id <= ?1")?
        .execute([id - HUB_EVENTS_KEPT])?;
    Ok(id)
}

impl Journal {
    /// Journals one event for the hub; its id once committed.
    pub async fn record_hub_event(
        &self,
        kind: &str,
        subject: Option<&str>,
        detail: Option<&str>,
    ) -> Result<i64, JournalError> {
        let kind = kind.to_string();
        let subject = subject.map(str::to_string);
        let detail = detail.map(str::to_string);
        self.write(move |conn, cx| {
            insert(conn, cx.now, &kind, subject.as_deref(), detail.as_deref())
        })
        .await
    }

    /// Up to `limit` unacknowledged events with an id above `after`, oldest
    /// first.
    pub async fn hub_events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<HubEvent>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, at, kind, subject, detail FROM hub_event WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = s
                .query_map(params![after, limit as i64], |r| {
                    Ok(HubEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        subject: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deletes events whose publication the broker acknowledged.
    pub async fn release_hub_events(&self, ids: Vec<i64>) -> Result<(), JournalError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(move |conn, _| {
            let mut s = conn.prepare_cached("DELETE FROM hub_event WHERE id = ?1")?;
            for id in ids {
                s.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    /// Events not yet acknowledged by the broker.
    pub async fn hub_events_pending(&self) -> Result<u64, JournalError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT count(*) FROM hub_event", [], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    /// This journal's epoch: made once with the table, so event ids of a
    /// journal made afresh on the same device are told apart.
    pub async fn hub_epoch(&self) -> Result<String, JournalError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT value FROM hub_meta WHERE key = 'epoch'", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    /// Every destination's pending and dead rows and its oldest pending
    /// row, for the hub's health report.
    pub async fn backlogs(&self) -> Result<Vec<Backlog>, JournalError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT destination,
                        sum(state IN (?1, ?2)),
                        sum(state = ?3),
                        min(iif(state IN (?1, ?2), created_at, NULL))
                 FROM outbox WHERE state IN (?1, ?2, ?3)
                 GROUP BY destination ORDER BY destination",
            )?;
            let rows = s
                .query_map(params![QUEUED, LEASED, DEAD], |r| {
                    Ok(Backlog {
                        destination: r.get(0)?,
                        pending: r.get::<_, i64>(1)? as u64,
                        dead: r.get::<_, i64>(2)? as u64,
                        oldest_pending_at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    #[tokio::test]
    async fn an_event_stays_until_released_and_its_id_is_never_given_again() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let a = j
            .record_hub_event("endpoint.down", Some("hub"), None)
            .await
            .unwrap();
        let b = j
            .record_hub_event("endpoint.up", Some("hub"), Some("{}"))
            .await
            .unwrap();
        assert!(b > a);
        let all = j.hub_events_after(0, 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b]);
        assert_eq!(j.hub_events_after(a, 10).await.unwrap().len(), 1);
        j.release_hub_events(vec![b]).await.unwrap();
        let c = j.record_hub_event("disk.low", None, None).await.unwrap();
        assert!(c > b, "the released newest id is not reused");
        assert_eq!(j.hub_events_pending().await.unwrap(), 2);
        assert_eq!(j.hub_epoch().await.unwrap().len(), 16);
        j.close().await;
    }
}
