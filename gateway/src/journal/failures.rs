//! Deliveries that need a person, as rows: what the errors page groups by
//! cause. The grouping itself (what counts as the same cause) is the
//! application's (`control::errors`); the journal only reads.

use super::schema::{DEAD, QUEUED};
use super::{Journal, JournalError};
use rusqlite::params;

/// One dead, or failing (queued again after a failed attempt), delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub outbox_id: i64,
    pub message_id: i64,
    pub destination: String,
    pub dead: bool,
    pub attempts: u32,
    pub error: String,
    /// When its state last changed (ms since the Unix epoch).
    pub at: i64,
}

impl Journal {
    /// The failed deliveries of each of `destinations`, at most `most` per
    /// destination and state; dead ones a person discarded are left out.
    /// Reads through the outbox's (destination, state) index.
    pub async fn failed_deliveries(
        &self,
        destinations: Vec<String>,
        most: usize,
    ) -> Result<Vec<FailedDelivery>, JournalError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT o.id, o.message_id, o.state, o.attempts, coalesce(o.last_error, ''), o.updated_at
                 FROM outbox o
                 WHERE o.destination = ?1 AND o.state = ?2 AND (?2 = 3 OR o.attempts > 0)
                   AND NOT EXISTS (SELECT 1 FROM outbox_discard d WHERE d.outbox_id = o.id)
                 LIMIT ?3",
            )?;
            let mut out = Vec::new();
            for d in &destinations {
                for state in [DEAD, QUEUED] {
                    let rows = stmt.query_map(params![d, state, most as i64], |r| {
                        Ok(FailedDelivery {
                            outbox_id: r.get(0)?,
                            message_id: r.get(1)?,
                            destination: d.clone(),
                            dead: r.get::<_, i64>(2)? == DEAD,
                            attempts: r.get(3)?,
                            error: r.get(4)?,
                            at: r.get(5)?,
                        })
                    })?;
                    for row in rows {
                        out.push(row?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
