//! Modality Performed Procedure Steps: an N-CREATE or N-SET journalled as a
//! message, with the step's state, in one transaction.
//!
//! The step's attributes are a JSON object; an N-SET's object is laid over
//! the stored one (SQLite's `json_patch`, RFC 7396: the keys it has replace
//! the old ones, the others stay), and the message journalled holds the
//! result, so every `MPPS` message is the whole step as it stands and a
//! transform needs no other. The checks and the write are one job on the
//! writer, so two associations cannot both create one step or both close
//! it: an N-CREATE of a step that exists is [`MppsOutcome::Duplicate`], an
//! N-SET of one that does not is [`MppsOutcome::NoSuchStep`], and one of a
//! step whose status is final is [`MppsOutcome::Closed`]; none of those
//! writes anything.

use super::ingest::{self, Destination, IngestError, Receipt};
use super::{Journal, JournalError};
use ecko_message::Envelope;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

/// Which request changes the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MppsChange {
    Create,
    Set,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MppsOutcome {
    /// Journalled (its message holds the whole step).
    Recorded(Receipt),
    Duplicate,
    NoSuchStep,
    /// The step's status is final (named): it takes no change.
    Closed(String),
}

fn journal_error(e: rusqlite::Error) -> IngestError {
    IngestError::Journal(JournalError::from(e))
}

impl Journal {
    /// Journals `message`, whose payload is the request's attributes as a
    /// JSON object, for step `sop_instance`; a step whose status is one of
    /// `closed` takes no N-SET.
    pub async fn record_mpps(
        &self,
        mut message: Envelope,
        destinations: Vec<Destination>,
        change: MppsChange,
        sop_instance: String,
        closed: &'static [&'static str],
        worklist: Option<String>,
    ) -> Result<MppsOutcome, IngestError> {
        if destinations.is_empty() {
            return Err(IngestError::NoRoute {
                source_endpoint: message.source,
                message_type: message.message_type,
            });
        }
        let woken: Vec<String> = destinations.iter().map(|d| d.endpoint.clone()).collect();
        let outcome = self
            .write_with(move |conn, cx| {
                let stored: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT status, attributes FROM mpps_step WHERE source = ?1 AND sop_instance = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![message.source, sop_instance], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(journal_error)?;
                let update = String::from_utf8_lossy(&message.payload).into_owned();
                let merged: String = match (change, stored) {
                    (MppsChange::Create, Some(_)) => return Ok(MppsOutcome::Duplicate),
                    (MppsChange::Set, None) => return Ok(MppsOutcome::NoSuchStep),
                    (MppsChange::Set, Some((status, _))) if closed.contains(&status.as_str()) => {
                        return Ok(MppsOutcome::Closed(status))
                    }
                    (MppsChange::Create, None) => conn
                        .query_row("SELECT json(?1)", [&update], |r| r.get(0))
                        .map_err(journal_error)?,
                    (MppsChange::Set, Some((_, old))) => conn
                        .query_row("SELECT json_patch(?1, ?2)", [&old, &update], |r| r.get(0))
                        .map_err(journal_error)?,
                };
                let status: String = conn
                    .query_row(
                        "SELECT coalesce(json_extract(?1, '$.status'), '')",
                        [&merged],
                        |r| r.get(0),
                    )
                    .map_err(journal_error)?;
                message.payload = merged.clone().into_bytes();
                let hash = Sha256::digest(&message.payload).to_vec();
                let receipt = ingest::insert(
                    conn,
                    cx,
                    &message,
                    &hash,
                    i64::MIN,
                    &destinations,
                    ingest::KeyReuse::Store,
                )?;
                conn.prepare_cached(
                    "INSERT INTO mpps_step (source, sop_instance, status, attributes, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source, sop_instance) DO UPDATE
                     SET status = excluded.status, attributes = excluded.attributes, updated_at = excluded.updated_at",
                )
                .and_then(|mut s| {
                    s.execute(params![message.source, sop_instance, status, merged, cx.now])
                })
                .map_err(journal_error)?;
                if let Some(w) = &worklist {
                    follow_on_worklist(conn, cx.now, w, &status, &merged).map_err(journal_error)?;
                }
                Ok::<_, IngestError>(MppsOutcome::Recorded(receipt))
            })
            .await;
        let outcome = match outcome {
            Ok(o) => o?,
            Err(JournalError::DiskFull) => {
                return Err(IngestError::DiskFull {
                    available: 0,
                    reserve: 0,
                })
            }
            Err(e) => return Err(e.into()),
        };
        if matches!(outcome, MppsOutcome::Recorded(_)) {
            self.wake(woken);
        }
        Ok(outcome)
    }
}

/// The worklist step a performed step names (by its accession number and
/// scheduled step id, else its study UID) follows it: `IN PROGRESS` is
/// started (still offered, status STARTED), `COMPLETED` leaves the list,
/// `DISCONTINUED` is offered again (the exam was stopped and is still to
/// be done). Steps taken off the list by their order stay off.
fn follow_on_worklist(
    conn: &rusqlite::Connection,
    now: i64,
    worklist: &str,
    status: &str,
    step: &str,
) -> Result<usize, rusqlite::Error> {
    let (state, dicom) = match status {
        "IN PROGRESS" => ("started", "STARTED"),
        "COMPLETED" => ("completed", "COMPLETED"),
        "DISCONTINUED" => ("scheduled", "SCHEDULED"),
        _ => return Ok(0),
    };
    conn.prepare_cached(
        "UPDATE worklist_item
         SET state = ?1, item = json_set(item, '$.status', ?2), updated_at = ?3
         WHERE worklist = ?4 AND state IN ('scheduled', 'started')
           AND CASE
             WHEN json_extract(?5, '$.accession_number') IS NOT NULL THEN
               json_extract(item, '$.accession_number') = json_extract(?5, '$.accession_number')
               AND (json_extract(?5, '$.scheduled_step_id') IS NULL
                    OR json_extract(item, '$.step_id') = json_extract(?5, '$.scheduled_step_id'))
             ELSE json_extract(item, '$.study_instance_uid') = json_extract(?5, '$.study_uid')
           END",
    )?
    .execute(params![state, dicom, now, worklist, step])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    const CLOSED: &[&str] = &["COMPLETED", "DISCONTINUED"];

    fn request(payload: &str) -> Envelope {
        Envelope {
            source: "modalities".into(),
            dedup_key: None,
            message_type: "MPPS".into(),
            content_type: "application/x-ecko-mpps+json".into(),
            control_id: Some("1.9".into()),
            patient_id: None,
            payload: payload.as_bytes().to_vec(),
            ack: None,
            hints: Default::default(),
        }
    }

    fn to_hub() -> Vec<Destination> {
        vec![Destination {
            endpoint: "hub".into(),
            transform: "dicom-fhir".into(),
            lane: String::new(),
            reply_to: None,
        }]
    }

    #[tokio::test]
    async fn a_step_is_created_once_updated_by_merging_and_closed_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let record = |payload: &str, change| {
            let j = j.clone();
            let payload = payload.to_string();
            async move {
                j.record_mpps(
                    request(&payload),
                    to_hub(),
                    change,
                    "1.9".into(),
                    CLOSED,
                    None,
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(
            record(r#"{"status":"IN PROGRESS"}"#, MppsChange::Set).await,
            MppsOutcome::NoSuchStep
        );
        let created = record(
            r#"{"status":"IN PROGRESS","modality":"CT","accession_number":"A1"}"#,
            MppsChange::Create,
        )
        .await;
        assert!(matches!(created, MppsOutcome::Recorded(_)));
        assert_eq!(
            record(r#"{"status":"IN PROGRESS"}"#, MppsChange::Create).await,
            MppsOutcome::Duplicate
        );
        let MppsOutcome::Recorded(done) = record(
            r#"{"status":"COMPLETED","end":"20260131110000"}"#,
            MppsChange::Set,
        )
        .await
        else {
            panic!("the N-SET was not recorded");
        };
        let m = j.message(done.message_id).await.unwrap().unwrap();
        let step: serde_json::Value = serde_json::from_slice(&m.envelope.payload).unwrap();
        assert_eq!(step["status"], "COMPLETED");
        assert_eq!(step["modality"], "CT", "what the N-SET did not set is kept");
        assert_eq!(step["end"], "20260131110000");
        assert_eq!(
            record(r#"{"status":"DISCONTINUED"}"#, MppsChange::Set).await,
            MppsOutcome::Closed("COMPLETED".into())
        );
    }
}
