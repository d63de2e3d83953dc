//! The live log: events as they are committed, for the admin page's
//! server-sent event stream.
//!
//! A client keeps the id of the last event it was sent and asks for the ones
//! after it. That misses nothing because ids grow in commit order: every
//! event is written under the database's write lock (by the gateway's
//! writer, or by a command beside it), a new id is one more than the largest
//! committed, and only old events are ever deleted. Filters are
//! applied here, on the event, rather than in SQL: a page of events is
//! small, and the statuses of the log page mean something else for events
//! (see [`LiveEvent::matches`]).

use super::browse::MessageFilter;
use super::{Journal, JournalError};
use rusqlite::params;

/// One entry of the live log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub message_id: Option<i64>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub actor: Option<String>,
    /// For filtering only: the live log does not show it.
    pub patient_id: Option<String>,
}

impl LiveEvent {
    /// Whether the event belongs in a live log filtered by `f`. Statuses
    /// map to events: `queued` is a message received; `delivered`, `dead`
    /// and `failing` are attempts with that outcome; `errors` either
    /// failure.
    pub fn matches(&self, f: &MessageFilter) -> bool {
        // An event carries neither the payload nor its order and specimen
        // ids: those searches are the list's, never the live log's.
        if f.key.is_some() || f.text.is_some() {
            return false;
        }
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        };
        if let Some(e) = f.endpoint.as_deref() {
            if self.source.as_deref() != Some(e) && self.destination.as_deref() != Some(e) {
                return false;
            }
        }
        if !same(&f.message_type, &self.message_type)
            || !same(&f.control_id, &self.control_id)
            || !same(&f.patient_id, &self.patient_id)
        {
            return false;
        }
        if f.from.is_some_and(|from| self.at < from) || f.to.is_some_and(|to| self.at >= to) {
            return false;
        }
        let outcome = self.outcome.as_deref();
        let attempt = self.kind == "attempt";
        match f.status.as_deref() {
            None => true,
            Some("queued") => self.kind == "received",
            Some("delivered") => attempt && outcome == Some("delivered"),
            Some("dead") => attempt && outcome == Some("dead"),
            Some("failing") => attempt && outcome == Some("retry"),
            Some("errors") => attempt && matches!(outcome, Some("retry") | Some("dead")),
            Some(_) => false,
        }
    }
}

impl Journal {
    /// Events after `after_id`, oldest first, with what the live log shows.
    pub async fn events_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LiveEvent>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT e.id, e.at, e.kind, e.outcome, e.duration_ms, e.message_id, m.source, o.destination, m.message_type, m.control_id, e.actor, m.patient_id
                 FROM event e LEFT JOIN message m ON m.id = e.message_id LEFT JOIN outbox o ON o.id = e.outbox_id
                 WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
            )?;
            let rows = s
                .query_map(params![after_id, limit as i64], |r| {
                    Ok(LiveEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        outcome: r.get(3)?,
                        duration_ms: r.get(4)?,
                        message_id: r.get(5)?,
                        source: r.get(6)?,
                        destination: r.get(7)?,
                        message_type: r.get(8)?,
                        control_id: r.get(9)?,
                        actor: r.get(10)?,
                        patient_id: r.get(11)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The newest event id (0 for an empty journal).
    pub async fn last_event_id(&self) -> Result<i64, JournalError> {
        self.read(|c| Ok(c.query_row("SELECT coalesce(max(id), 0) FROM event", [], |r| r.get(0))?))
            .await
    }
}
