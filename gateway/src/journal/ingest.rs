//! Accepting a message: one transaction holds the message and its outbox
//! rows, and nothing else the acknowledgement does not need.
//!
//! The message row is the record that it was received and each outbox row
//! the record that it was routed: the history shows both, derived from them
//! (`query.rs`), with no event rows of their own. Statistics and the search
//! by control or patient id are kept after the commit (`stats_fold.rs`,
//! `search_keys.rs`), so the only indexes written here are the ones
//! delivery and duplicate detection read, and a few that only ever grow at
//! their end (source, type, time, outbox by message).
//!
//! # Duplicates
//!
//! A resend is the same duplicate key (MSH-10, an ASTM content hash, a file
//! digest) from the same source with the same content (SHA-256 of the
//! payload), received within the duplicate window (the retention period):
//! it gets the original's receipt and nothing is queued. The same key with
//! different content is not a resend but a sender that reused a control id
//! (an analyzer whose counter restarted): it is stored as a new message,
//! logged at `warn` and recorded in a `key reused` event, so nothing is lost
//! behind a positive acknowledgement. A sender that changes any byte on a
//! resend (a fresh MSH-7, say) is therefore stored twice; downstream
//! deliveries are idempotent, a lost message would not be.

use super::writer::{BatchContext, Refusal};
use super::{schema, Journal, JournalError};
use ecko_message::Envelope;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

/// Where one message must go, as the router decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub endpoint: String,
    pub transform: String,
    /// Partition key: FIFO holds within a lane; `""` is the single lane.
    pub lane: String,
    /// Outbound MLLP endpoint that gets an application acknowledgement once
    /// this destination's delivery settles (a route's `application_ack`).
    pub reply_to: Option<String>,
}

/// Proof that a message is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: i64,
    /// The message had been accepted before; nothing new was queued.
    pub duplicate: bool,
    /// Outbox rows the message has.
    pub destinations: usize,
}

/// Why a message was not taken. Every variant means the sender must keep its
/// copy and be told so.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("the journal is over its size cap ({used} of {cap} bytes in use)")]
    JournalFull { used: u64, cap: u64 },
    #[error("{}", disk_full(*available, *reserve))]
    DiskFull { available: u64, reserve: u64 },
    #[error("no route accepts message type `{message_type}` from `{source_endpoint}`")]
    NoRoute {
        source_endpoint: String,
        message_type: String,
    },
    #[error("endpoint `{0}` is disabled")]
    Disabled(String),
    /// A destination could not take the message as it is (its transform
    /// failed on it): refused before the commit, so nobody was told
    /// "accepted" about a message that could never be delivered.
    #[error("destination `{destination}` cannot take the message: {reason}")]
    Unmappable { destination: String, reason: String },
    /// The sender's own idempotency key already names another message
    /// with a different body ([`Journal::ingest_keyed`]).
    #[error("the key `{key}` was already used for message {earlier} with a different body")]
    KeyReused { key: String, earlier: i64 },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A reserve of 0 means the disk itself said it was full.
fn disk_full(available: u64, reserve: u64) -> String {
    if reserve == 0 {
        "the disk holding the journal is full".to_string()
    } else {
        format!("the disk is almost full ({available} bytes free, {reserve} kept in reserve)")
    }
}

impl IngestError {
    /// A condition that may clear by itself (the sender should try again
    /// later), as opposed to one that needs a person.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            IngestError::JournalFull { .. }
                | IngestError::DiskFull { .. }
                | IngestError::Journal(_)
        )
    }
}

impl Journal {
    /// Commits `message` with one outbox row per destination, or finds the
    /// earlier copy of a resend. Resolves only after the commit.
    pub async fn ingest(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
    ) -> Result<Receipt, IngestError> {
        self.ingest_then(message, destinations, |_, _| Ok(())).await
    }

    /// Like [`Journal::ingest`] for a duplicate key the sender chose as a
    /// promise (an HTTP `Idempotency-Key`): the same key with a different
    /// body is a client's mistake to be told about, not an analyzer's
    /// restarted counter, so it is refused with
    /// [`IngestError::KeyReused`] and nothing is stored.
    pub async fn ingest_keyed(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
    ) -> Result<Receipt, IngestError> {
        self.ingest_as(message, destinations, KeyReuse::Refuse, |_, _| Ok(()))
            .await
    }

    /// Like [`Journal::ingest`], with `then` run in the same transaction
    /// once a new (not duplicate) message is stored: what a source keeps
    /// beside the message commits with it or not at all. `then` may run
    /// more than once (the batch is run again when a job beside it fails,
    /// `writer.rs`); only its last run counts.
    pub(super) async fn ingest_then<F>(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
        then: F,
    ) -> Result<Receipt, IngestError>
    where
        F: FnMut(&Connection, &Receipt) -> Result<(), IngestError> + Send + 'static,
    {
        self.ingest_as(message, destinations, KeyReuse::Store, then)
            .await
    }

    async fn ingest_as<F>(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
        reuse: KeyReuse,
        mut then: F,
    ) -> Result<Receipt, IngestError>
    where
        F: FnMut(&Connection, &Receipt) -> Result<(), IngestError> + Send + 'static,
    {
        if destinations.is_empty() {
            return Err(IngestError::NoRoute {
                source_endpoint: message.source,
                message_type: message.message_type,
            });
        }
        let woken: Vec<String> = destinations.iter().map(|d| d.endpoint.clone()).collect();
        // Hashed here, on the sender's task, not on the writer thread.
        let hash = Sha256::digest(&message.payload).to_vec();
        let window = self.inner.duplicate_window;
        let receipt = match self
            .write_rerunnable(move |conn, cx| {
                let since = window.map_or(i64::MIN, |w| {
                    cx.now
                        .saturating_sub(i64::try_from(w.as_millis()).unwrap_or(i64::MAX))
                });
                let receipt = insert(conn, cx, &message, &hash, since, &destinations, reuse)?;
                if !receipt.duplicate {
                    then(conn, &receipt)?;
                }
                Ok::<_, IngestError>(receipt)
            })
            .await
        {
            Ok(inserted) => inserted?,
            // The disk may fill between the insert and the commit.
            Err(JournalError::DiskFull) => {
                return Err(IngestError::DiskFull {
                    available: 0,
                    reserve: 0,
                })
            }
            Err(e) => return Err(e.into()),
        };
        if !receipt.duplicate {
            self.wake(woken);
        }
        Ok(receipt)
    }
}

/// What a duplicate key seen before with other content means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyReuse {
    /// A reused control id: the message is stored anew.
    Store,
    /// A broken promise of the sender's: refused.
    Refuse,
}

pub(super) fn insert(
    conn: &Connection,
    cx: &BatchContext,
    m: &Envelope,
    hash: &[u8],
    since: i64,
    destinations: &[Destination],
    reuse: KeyReuse,
) -> Result<Receipt, IngestError> {
    let mut reused_by: Option<i64> = None;
    if let Some(key) = &m.dedup_key {
        // Rows from before content hashes were kept compare their payload.
        let earlier: Vec<(i64, bool, i64)> = conn
            .prepare_cached(
                "SELECT id,
                        CASE WHEN payload_hash IS NULL THEN payload = ?4 ELSE payload_hash = ?3 END,
                        (SELECT count(*) FROM outbox WHERE message_id = message.id)
                 FROM message WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?5
                 ORDER BY id DESC",
            )
            .and_then(|mut s| {
                s.query_map(params![m.source, key, hash, m.payload, since], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<bool>>(1)?.unwrap_or(false),
                        r.get(2)?,
                    ))
                })?
                .collect()
            })
            .map_err(storage)?;
        if let Some(&(message_id, _, count)) = earlier.iter().find(|(_, same, _)| *same) {
            return Ok(Receipt {
                message_id,
                duplicate: true,
                destinations: count as usize,
            });
        }
        reused_by = earlier.first().map(|(id, _, _)| *id);
        if let (Some(earlier), KeyReuse::Refuse) = (reused_by, reuse) {
            return Err(IngestError::KeyReused {
                key: key.clone(),
                earlier,
            });
        }
    }
    match cx.refusal {
        Some(Refusal::OverCap { used, cap }) => return Err(IngestError::JournalFull { used, cap }),
        Some(Refusal::DiskLow { available, reserve }) => {
            return Err(IngestError::DiskFull { available, reserve })
        }
        None => {}
    }
    conn.prepare_cached(
        "INSERT INTO message (source, dedup_key, message_type, content_type, control_id, patient_id, received_at, payload, ack, payload_hash, charset, time_zone)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.source,
            m.dedup_key,
            m.message_type,
            m.content_type,
            m.control_id,
            m.patient_id,
            cx.now,
            m.payload,
            m.ack,
            hash,
            m.hints.charset,
            m.hints.time_zone
        ])
    })
    .map_err(storage)?;
    let message_id = conn.last_insert_rowid();
    if let Some(earlier) = reused_by {
        tracing::warn!(
            source = %m.source,
            message_id,
            earlier_message_id = earlier,
            "duplicate key reused with different content; stored as a new message"
        );
        conn.prepare_cached(
            "INSERT INTO event (at, message_id, kind, detail) VALUES (?1, ?2, 'key reused', ?3)",
        )
        .and_then(|mut s| {
            s.execute(params![
                cx.now,
                message_id,
                format!(
                    "its duplicate key was already used by message {earlier} with different content"
                )
            ])
        })
        .map_err(storage)?;
    }
    let mut outbox = conn
        .prepare_cached(
            "INSERT INTO outbox (message_id, destination, transform, lane, state, next_attempt_at, created_at, updated_at, reply_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7)",
        )
        .map_err(storage)?;
    for d in destinations {
        outbox
            .execute(params![
                message_id,
                d.endpoint,
                d.transform,
                d.lane,
                schema::QUEUED,
                cx.now,
                d.reply_to
            ])
            .map_err(storage)?;
    }
    Ok(Receipt {
        message_id,
        duplicate: false,
        destinations: destinations.len(),
    })
}

/// A write that failed because the disk filled up is a refusal, not a fault.
fn storage(e: rusqlite::Error) -> IngestError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DiskFull {
            return IngestError::DiskFull {
                available: 0,
                reserve: 0,
            };
        }
    }
    IngestError::Journal(JournalError::from(e))
}
