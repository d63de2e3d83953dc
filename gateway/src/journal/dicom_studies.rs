//! The DICOM studies a store SCP has received, for the ImagingStudy it
//! announces once a study is idle.
//!
//! Each stored object (a new message, not a resend) bumps its study's
//! `version` and `last_object_at` in the object's own ingest transaction,
//! and links the message to the study: the study's state commits with the
//! object or not at all, and survives restarts. A study is due when
//! `version > announced` and its last object is older than the idle time.
//! Its announcement is a message keyed `<study uid>/<version>` whose
//! transaction also sets `announced = version`; should the process die
//! between the two, the key makes the second attempt a duplicate (and a
//! duplicate still marks the study announced), so the same content is
//! never announced twice, while an object arriving later makes a new
//! version announced again with everything.

use super::ingest::{Destination, IngestError, Receipt};
use super::{Journal, JournalError};
use ecko_message::Envelope;
use rusqlite::{params, Connection};

/// A study whose last object arrived before the idle cutoff and whose
/// newest version has not been announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueStudy {
    pub study_uid: String,
    pub version: i64,
    /// The payloads (instance records) of the messages holding its
    /// objects, oldest first; purged ones are missing.
    pub records: Vec<Vec<u8>>,
}

fn journal_error(e: rusqlite::Error) -> IngestError {
    IngestError::Journal(JournalError::from(e))
}

impl Journal {
    /// Like [`Journal::ingest`] for a stored DICOM object of study
    /// `study_uid`: the study's state is updated in the same transaction.
    pub async fn ingest_dicom_object(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
        study_uid: String,
    ) -> Result<Receipt, IngestError> {
        let source = message.source.clone();
        self.ingest_then(message, destinations, move |conn, receipt| {
            conn.prepare_cached(
                "INSERT INTO dicom_study (source, study_uid, last_object_at, version)
                 SELECT ?1, ?2, received_at, 1 FROM message WHERE id = ?3
                 ON CONFLICT (source, study_uid) DO UPDATE
                 SET last_object_at = excluded.last_object_at, version = version + 1",
            )
            .and_then(|mut s| s.execute(params![source, study_uid, receipt.message_id]))
            .map_err(journal_error)?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO dicom_study_object (source, study_uid, message_id) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![source, study_uid, receipt.message_id]))
            .map_err(journal_error)?;
            Ok(())
        })
        .await
    }

    /// Studies of `source` due for announcement: last object received at or
    /// before `idle_before_ms`, newest version not announced; at most
    /// `limit`, longest idle first.
    pub async fn due_dicom_studies(
        &self,
        source: &str,
        idle_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueStudy>, JournalError> {
        let source = source.to_string();
        self.read(move |conn| {
            // One read transaction: a version and the objects it counts.
            conn.execute_batch("BEGIN")?;
            let due = due(conn, &source, idle_before_ms, limit);
            conn.execute_batch("COMMIT")?;
            due
        })
        .await
    }

    /// Journals the announcement `message` of `study_uid` at `version` (its
    /// duplicate key names both) and marks the study announced up to it in
    /// the same transaction. A duplicate (announced before a crash) only
    /// marks it.
    pub async fn announce_dicom_study(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
        study_uid: String,
        version: i64,
    ) -> Result<Receipt, IngestError> {
        let source = message.source.clone();
        let (s, u) = (source.clone(), study_uid.clone());
        let receipt = self
            .ingest_then(message, destinations, move |conn, _| {
                mark(conn, &s, &u, version).map_err(journal_error)
            })
            .await?;
        if receipt.duplicate {
            self.mark_dicom_study_announced(&source, &study_uid, version)
                .await?;
        }
        Ok(receipt)
    }

    /// Marks a study announced up to `version` without a message (no route
    /// takes its announcement, or its objects are all purged).
    pub async fn mark_dicom_study_announced(
        &self,
        source: &str,
        study_uid: &str,
        version: i64,
    ) -> Result<(), JournalError> {
        let (source, study_uid) = (source.to_string(), study_uid.to_string());
        self.write(move |conn, _| Ok(mark(conn, &source, &study_uid, version)?))
            .await
    }
}

fn mark(conn: &Connection, source: &str, study_uid: &str, version: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE dicom_study SET announced = max(announced, ?3) WHERE source = ?1 AND study_uid = ?2",
    )?
    .execute(params![source, study_uid, version])?;
    Ok(())
}

fn due(
    conn: &Connection,
    source: &str,
    idle_before_ms: i64,
    limit: usize,
) -> Result<Vec<DueStudy>, JournalError> {
    let studies: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT study_uid, version FROM dicom_study
             WHERE source = ?1 AND version > announced AND last_object_at <= ?2
             ORDER BY last_object_at LIMIT ?3",
        )?
        .query_map(
            params![
                source,
                idle_before_ms,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(studies.len());
    let mut objects = conn.prepare_cached(
        "SELECT m.payload FROM dicom_study_object o JOIN message m ON m.id = o.message_id
         WHERE o.source = ?1 AND o.study_uid = ?2 ORDER BY m.id",
    )?;
    for (study_uid, version) in studies {
        let records = objects
            .query_map(params![source, study_uid], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        out.push(DueStudy {
            study_uid,
            version,
            records,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use rusqlite::OptionalExtension;

    /// The version a study was announced up to.
    fn announced(
        conn: &Connection,
        source: &str,
        study_uid: &str,
    ) -> rusqlite::Result<Option<i64>> {
        conn.query_row(
            "SELECT announced FROM dicom_study WHERE source = ?1 AND study_uid = ?2",
            params![source, study_uid],
            |r| r.get(0),
        )
        .optional()
    }

    fn object(sop: &str, payload: &str) -> Envelope {
        Envelope {
            source: "modalities".into(),
            dedup_key: Some(sop.into()),
            message_type: "DICOM".into(),
            content_type: "application/x-ecko-dicom-instance+json".into(),
            control_id: Some(sop.into()),
            patient_id: None,
            payload: payload.as_bytes().to_vec(),
            ack: None,
            hints: Default::default(),
        }
    }

    fn announcement(study: &str, version: i64) -> Envelope {
        Envelope {
            source: "modalities".into(),
            dedup_key: Some(format!("{study}/{version}")),
            message_type: "ImagingStudy".into(),
            content_type: "application/fhir+json".into(),
            control_id: Some(study.into()),
            patient_id: None,
            payload: format!("{{\"v\":{version}}}").into_bytes(),
            ack: None,
            hints: Default::default(),
        }
    }

    fn to(endpoint: &str) -> Vec<Destination> {
        vec![Destination {
            endpoint: endpoint.into(),
            transform: "none".into(),
            lane: String::new(),
            reply_to: None,
        }]
    }

    #[tokio::test]
    async fn a_study_is_due_once_idle_announced_once_and_due_again_after_a_new_object() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        for sop in ["1.1", "1.2"] {
            j.ingest_dicom_object(object(sop, sop), to("pacs"), "1".into())
                .await
                .unwrap();
        }
        // A resend is no new object.
        j.ingest_dicom_object(object("1.2", "1.2"), to("pacs"), "1".into())
            .await
            .unwrap();
        let now = j.now_ms();
        assert!(j
            .due_dicom_studies("modalities", now - 60_000, 10)
            .await
            .unwrap()
            .is_empty());
        let due = j
            .due_dicom_studies("modalities", now + 1, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].version, 2);
        assert_eq!(due[0].records, vec![b"1.1".to_vec(), b"1.2".to_vec()]);

        let first = j
            .announce_dicom_study(announcement("1", 2), to("hub"), "1".into(), 2)
            .await
            .unwrap();
        assert!(!first.duplicate);
        assert!(j
            .due_dicom_studies("modalities", now + 1, 10)
            .await
            .unwrap()
            .is_empty());
        // Announcing the same version again (a crash between) is a duplicate.
        let again = j
            .announce_dicom_study(announcement("1", 2), to("hub"), "1".into(), 2)
            .await
            .unwrap();
        assert!(again.duplicate);

        j.ingest_dicom_object(object("1.3", "1.3"), to("pacs"), "1".into())
            .await
            .unwrap();
        let due = j
            .due_dicom_studies("modalities", j.now_ms() + 1, 10)
            .await
            .unwrap();
        assert_eq!(due[0].version, 3);
        assert_eq!(due[0].records.len(), 3);
        let announced = j
            .read(|c| Ok(announced(c, "modalities", "1")?))
            .await
            .unwrap();
        assert_eq!(announced, Some(2));
    }

    #[tokio::test]
    async fn retention_forgets_a_study_once_its_objects_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(crate::journal::ManualClock::new(1_000_000));
        let mut o = JournalOptions::new(dir.path().join("j.db"));
        o.clock = clock.clone();
        let j = Journal::open(o).unwrap();
        j.ingest_dicom_object(object("1.1", "1.1"), to("pacs"), "1".into())
            .await
            .unwrap();
        j.announce_dicom_study(announcement("1", 1), to("hub"), "1".into(), 1)
            .await
            .unwrap();
        for endpoint in ["pacs", "hub"] {
            let leased = j.lease(endpoint, 1, 10).await.unwrap();
            let done = leased
                .lanes
                .into_iter()
                .flatten()
                .map(|l| {
                    let s = crate::journal::Settlement::Delivered {
                        response: None,
                        duration_ms: 1,
                    };
                    (l, s)
                })
                .collect();
            j.settle(done).await.unwrap();
        }
        let day = 86_400_000;
        clock.advance(2 * day);
        let rows = |j: &Journal| {
            let j = j.clone();
            async move {
                j.read(|c| {
                    let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
                    Ok((
                        n("SELECT count(*) FROM dicom_study")?,
                        n("SELECT count(*) FROM dicom_study_object")?,
                    ))
                })
                .await
                .unwrap()
            }
        };
        assert_eq!(rows(&j).await, (1, 1));
        assert_eq!(j.purge_delivered_before(j.now_ms() - day).await.unwrap(), 2);
        assert_eq!(rows(&j).await, (1, 0), "the object's link goes with it");
        j.purge_delivered_before(j.now_ms() - day).await.unwrap();
        assert_eq!(rows(&j).await, (0, 0), "then the announced study");
    }
}
