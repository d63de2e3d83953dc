//! Reading the journal: for delivery, the admin page, the hub and the tests.

use super::schema::{DELIVERED, LEASED, QUEUED};
use super::{open_reader, Journal, JournalError};
use ecko_message::{DecodeHints, Envelope, StoredMessage};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    Queued,
    Leased,
    Delivered,
    Dead,
}

impl OutboxState {
    fn from_db(v: i64) -> Self {
        match v {
            QUEUED => OutboxState::Queued,
            LEASED => OutboxState::Leased,
            DELIVERED => OutboxState::Delivered,
            _ => OutboxState::Dead,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Leased => "leased",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }
}

/// One destination of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub id: i64,
    pub message_id: i64,
    pub destination: String,
    pub transform: String,
    pub lane: String,
    pub state: OutboxState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub message_id: Option<i64>,
    pub outbox_id: Option<i64>,
    pub kind: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub detail: Option<String>,
    pub actor: Option<String>,
}

/// What waits for one destination now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub destination: String,
    /// Rows queued or in flight.
    pub waiting: u64,
    /// Unix ms the oldest of them was queued.
    pub oldest_queued_at: i64,
}

/// Waiting rows per destination, through the pending index: the oldest row
/// of a destination is its lowest id.
fn queue_depths(conn: &Connection) -> Result<Vec<QueueDepth>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.destination, p.n, o.created_at
         FROM (SELECT destination, count(*) AS n, min(id) AS oldest
               FROM outbox WHERE state IN (?1, ?2) GROUP BY destination) p
         JOIN outbox o ON o.id = p.oldest
         ORDER BY p.destination",
    )?;
    let rows = stmt.query_map(params![QUEUED, LEASED], |r| {
        Ok(QueueDepth {
            destination: r.get(0)?,
            waiting: r.get::<_, i64>(1)? as u64,
            oldest_queued_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Queue depth and totals of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationCounts {
    pub destination: String,
    pub queued: u64,
    pub leased: u64,
    pub delivered: u64,
    pub dead: u64,
}

pub(super) fn load_message(
    conn: &Connection,
    id: i64,
) -> Result<Option<StoredMessage>, JournalError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, source, dedup_key, message_type, content_type, control_id, patient_id, received_at, payload, ack, charset, time_zone
             FROM message WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(StoredMessage {
                id: r.get(0)?,
                received_at: r.get(7)?,
                envelope: Envelope {
                    source: r.get(1)?,
                    dedup_key: r.get(2)?,
                    message_type: r.get(3)?,
                    content_type: r.get(4)?,
                    control_id: r.get(5)?,
                    patient_id: r.get(6)?,
                    payload: r.get(8)?,
                    ack: r.get(9)?,
                    hints: DecodeHints {
                        charset: r.get(10)?,
                        time_zone: r.get(11)?,
                    },
                },
            })
        })
        .optional()?)
}

fn outbox_rows(
    conn: &Connection,
    where_clause: &str,
    arg: i64,
) -> Result<Vec<OutboxRecord>, JournalError> {
    let sql = format!(
        "SELECT id, message_id, destination, transform, lane, state, attempts, next_attempt_at, last_error
         FROM outbox WHERE {where_clause} ORDER BY id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([arg], |r| {
            Ok(OutboxRecord {
                id: r.get(0)?,
                message_id: r.get(1)?,
                destination: r.get(2)?,
                transform: r.get(3)?,
                lane: r.get(4)?,
                state: OutboxState::from_db(r.get(5)?),
                attempts: r.get(6)?,
                next_attempt_at: r.get(7)?,
                last_error: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The history of a message: its receipt and routing, derived from the
/// message row and its outbox rows (they are those records, `ingest.rs`),
/// then every event recorded about it, in order. Derived entries have id 0.
fn events(conn: &Connection, message_id: i64) -> Result<Vec<EventRecord>, JournalError> {
    let mut out: Vec<EventRecord> = Vec::new();
    let mut routes = conn.prepare_cached(
        "SELECT id, created_at, destination, transform, lane FROM outbox WHERE message_id = ?1 ORDER BY id",
    )?;
    let routed: Vec<(i64, i64, String, String, String)> = routes
        .query_map([message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let received = conn
        .prepare_cached(
            "SELECT received_at, length(payload), message_type FROM message WHERE id = ?1",
        )?
        .query_row([message_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    if let Some((at, size, message_type)) = received {
        let to: Vec<&str> = routed.iter().map(|(_, _, d, _, _)| d.as_str()).collect();
        out.push(derived(
            at,
            message_id,
            None,
            "received",
            format!("{size} bytes {message_type}; routed to {}", to.join(", ")),
        ));
    }
    for (outbox_id, at, destination, transform, lane) in routed {
        let detail = if lane.is_empty() {
            format!("to {destination} (transform {transform})")
        } else {
            format!("to {destination} (transform {transform}, lane {lane})")
        };
        out.push(derived(at, message_id, Some(outbox_id), "routed", detail));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, message_id, outbox_id, kind, outcome, duration_ms, detail, actor
         FROM event WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([message_id], |r| {
        Ok(EventRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            message_id: r.get(2)?,
            outbox_id: r.get(3)?,
            kind: r.get(4)?,
            outcome: r.get(5)?,
            duration_ms: r.get(6)?,
            detail: r.get(7)?,
            actor: r.get(8)?,
        })
    })?;
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

fn derived(
    at: i64,
    message_id: i64,
    outbox_id: Option<i64>,
    kind: &str,
    detail: String,
) -> EventRecord {
    EventRecord {
        id: 0,
        at,
        message_id: Some(message_id),
        outbox_id,
        kind: kind.to_string(),
        outcome: None,
        duration_ms: None,
        detail: Some(detail),
        actor: None,
    }
}

fn counts(conn: &Connection) -> Result<Vec<DestinationCounts>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT destination, state, count(*) FROM outbox GROUP BY destination, state ORDER BY destination",
    )?;
    let mut out: Vec<DestinationCounts> = Vec::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (destination, state, n) = row?;
        if out.last().is_none_or(|c| c.destination != destination) {
            out.push(DestinationCounts {
                destination: destination.clone(),
                ..Default::default()
            });
        }
        if let Some(c) = out.last_mut() {
            let n = n as u64;
            match OutboxState::from_db(state) {
                OutboxState::Queued => c.queued = n,
                OutboxState::Leased => c.leased = n,
                OutboxState::Delivered => c.delivered = n,
                OutboxState::Dead => c.dead = n,
            }
        }
    }
    Ok(out)
}

fn message_ids(conn: &Connection) -> Result<Vec<i64>, JournalError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM message ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

fn find_by_key(conn: &Connection, source: &str, key: &str) -> Result<Option<i64>, JournalError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM message WHERE source = ?1 AND dedup_key = ?2 ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![source, key], |r| r.get(0))
        .optional()?)
}

/// Read access without a running gateway: the CLI, and tests that inspect
/// what a (possibly killed) gateway left behind.
pub struct JournalReader {
    conn: Connection,
}

impl JournalReader {
    pub fn open(path: &Path) -> Result<JournalReader, JournalError> {
        Ok(JournalReader {
            conn: open_reader(path)?,
        })
    }
    pub fn message(&self, id: i64) -> Result<Option<StoredMessage>, JournalError> {
        load_message(&self.conn, id)
    }
    pub fn message_ids(&self) -> Result<Vec<i64>, JournalError> {
        message_ids(&self.conn)
    }
    pub fn find_by_key(&self, source: &str, key: &str) -> Result<Option<i64>, JournalError> {
        find_by_key(&self.conn, source, key)
    }
    pub fn outbox_of(&self, message_id: i64) -> Result<Vec<OutboxRecord>, JournalError> {
        outbox_rows(&self.conn, "message_id = ?1", message_id)
    }
    pub fn events_of(&self, message_id: i64) -> Result<Vec<EventRecord>, JournalError> {
        events(&self.conn, message_id)
    }
    pub fn counts(&self) -> Result<Vec<DestinationCounts>, JournalError> {
        counts(&self.conn)
    }
    /// Users of the admin page: none until the first-run setup is done.
    pub fn admin_user_count(&self) -> Result<u64, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM admin_user", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }
}

impl Journal {
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>, JournalError> {
        self.read(move |c| load_message(c, id)).await
    }
    pub async fn outbox_of(&self, message_id: i64) -> Result<Vec<OutboxRecord>, JournalError> {
        self.read(move |c| outbox_rows(c, "message_id = ?1", message_id))
            .await
    }
    pub async fn outbox_row(&self, outbox_id: i64) -> Result<Option<OutboxRecord>, JournalError> {
        self.read(move |c| Ok(outbox_rows(c, "id = ?1", outbox_id)?.pop()))
            .await
    }
    pub async fn events_of(&self, message_id: i64) -> Result<Vec<EventRecord>, JournalError> {
        self.read(move |c| events(c, message_id)).await
    }
    pub async fn counts(&self) -> Result<Vec<DestinationCounts>, JournalError> {
        self.read(counts).await
    }
    pub async fn message_ids(&self) -> Result<Vec<i64>, JournalError> {
        self.read(message_ids).await
    }
    /// Bytes of live data in the journal file.
    pub async fn live_bytes(&self) -> Result<u64, JournalError> {
        self.read(|c| Ok(super::writer::live_bytes(c)?)).await
    }
    /// Rows waiting per destination that has any, and the age of the
    /// oldest.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, JournalError> {
        self.read(queue_depths).await
    }
    /// Size of the write-ahead log beside the database file.
    pub fn wal_bytes(&self) -> u64 {
        let mut wal = self.path().as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }
    /// Size of the database file on disk (without its WAL).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.len())
    }
}
