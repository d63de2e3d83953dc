//! What the gateway did about firmware updates, recorded once each: a slot
//! marked good after its readiness check, and an update the bootloader
//! fell back from. Each is its audit record and its hub event in one
//! transaction.
//!
//! The failed update seen last is kept in `hub_meta` (`update.failed`), not
//! in a table of its own: after a fallback the older slot runs, and an older
//! gateway refuses a journal whose schema is newer than its own. A key in an
//! existing table keeps the schema where every slot can open it.

use super::audit::insert_audit;
use super::hub_events;
use super::{Journal, JournalError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

const FAILED_KEY: &str = "update.failed";
/// The actor the audit log names for what the gateway did by itself.
const GATEWAY: &str = "gateway";

/// An update the bootloader fell back from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpdate {
    /// The slot it was installed in (`a`, `b`).
    pub slot: String,
    pub version: String,
    /// Unix ms when the gateway, started on the older slot, first saw it.
    pub detected_at: i64,
    /// What the boot state said about it.
    pub result: Option<String>,
}

impl Journal {
    /// Records `version` in `slot` as failed, with its audit record and the
    /// `update.rolled_back` event, unless that very failure is recorded
    /// already; the record either way, and whether it is new.
    pub async fn record_failed_update(
        &self,
        slot: &str,
        version: &str,
        result: Option<&str>,
    ) -> Result<(FailedUpdate, bool), JournalError> {
        let (slot, version, result) = (
            slot.to_string(),
            version.to_string(),
            result.map(str::to_string),
        );
        self.write(move |conn, cx| {
            if let Some(seen) = failed(conn)? {
                if seen.slot == slot && seen.version == version {
                    return Ok((seen, false));
                }
            }
            let record = FailedUpdate {
                slot,
                version,
                detected_at: cx.now,
                result,
            };
            let text = serde_json::to_string(&record)
                .map_err(|e| JournalError::Storage(format!("failed update: {e}")))?;
            conn.prepare_cached(
                "INSERT INTO hub_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![FAILED_KEY, text])?;
            let detail = serde_json::json!({
                "slot": record.slot,
                "version": record.version,
                "result": record.result,
            })
            .to_string();
            insert_audit(
                conn,
                cx.now,
                GATEWAY,
                "update.rolled_back",
                Some(&record.version),
                Some(&detail),
            )?;
            hub_events::insert(
                conn,
                cx.now,
                "update.rolled_back",
                Some(&record.version),
                Some(&detail),
            )?;
            Ok((record, true))
        })
        .await
    }

    /// The failed update recorded last, if any.
    pub async fn failed_update(&self) -> Result<Option<FailedUpdate>, JournalError> {
        self.read(failed).await
    }

    /// Records that `version` in `slot` passed the readiness check and was
    /// marked good: audited, and `update.installed` for the hub.
    pub async fn record_update_installed(
        &self,
        slot: &str,
        version: &str,
    ) -> Result<(), JournalError> {
        let detail = serde_json::json!({"slot": slot, "version": version}).to_string();
        let version = version.to_string();
        self.write(move |conn, cx| {
            insert_audit(
                conn,
                cx.now,
                GATEWAY,
                "update.marked_good",
                Some(&version),
                Some(&detail),
            )?;
            hub_events::insert(
                conn,
                cx.now,
                "update.installed",
                Some(&version),
                Some(&detail),
            )?;
            Ok(())
        })
        .await
    }
}

fn failed(conn: &rusqlite::Connection) -> Result<Option<FailedUpdate>, JournalError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM hub_meta WHERE key = ?1")?
        .query_row([FAILED_KEY], |r| r.get(0))
        .optional()?;
    // A value this build cannot read (written by a newer one) is not a
    // reason to fail the page or the alert: it reads as none.
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    #[tokio::test]
    async fn a_failed_update_is_recorded_once_with_one_event_and_a_new_failure_replaces_it() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(d.path().join("j.db"))).unwrap();
        assert_eq!(j.failed_update().await.unwrap(), None);
        let (first, new) = j
            .record_failed_update("a", "2.0", Some("update to 2.0 failed"))
            .await
            .unwrap();
        assert!(new);
        let (again, new) = j.record_failed_update("a", "2.0", None).await.unwrap();
        assert!(!new);
        assert_eq!(again, first);
        let events = j.hub_events_after(0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "update.rolled_back");
        let (later, new) = j.record_failed_update("b", "3.0", None).await.unwrap();
        assert!(new);
        assert_eq!(j.failed_update().await.unwrap(), Some(later));
        assert_eq!(j.hub_events_after(0, 10).await.unwrap().len(), 2);
        j.close().await;
    }
}
