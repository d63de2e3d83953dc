//! The idle-study watcher: once a study has received no object for
//! `study_idle`, one message of type `ImagingStudy` (a FHIR R4 ImagingStudy
//! of everything stored of it, built by
//! [`ecko_protocol::dicom::study::imaging_study`]) is journalled for the
//! routes to the FHIR upstream.
//!
//! The state is the journal's (`dicom_study`, updated in each object's
//! ingest transaction), so a restart loses nothing: a study idle while the
//! gateway was down is announced at the first check. The announcement's
//! duplicate key is `<study uid>/<version>` (the version counts the
//! study's objects) and it marks the study announced in its own
//! transaction, so the same content is never announced twice; a study that
//! receives more objects later is announced again, with all of them.
//!
//! A study no route takes an announcement of is marked announced without
//! a message (logged), so it is not looked at every round; a journal that
//! refuses for now (disk, cap) ends the round, and the study is tried
//! again at the next one.

use super::Shared;
use crate::journal::{DueStudy, IngestError};
use ecko_message::Envelope;
use ecko_protocol::dicom::study::{self, StudyContext};
use ecko_protocol::dicom::InstanceRecord;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Studies read from the journal per query.
const BATCH: usize = 16;

/// How often the journal is asked: a quarter of the idle time, between one
/// second and a minute.
pub(super) fn check_every(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The identifier system of the patient ids a DICOM source's objects carry
/// (the one the ASTM and HL7 maps use for ids without an authority).
fn patient_system(endpoint: &str) -> String {
    let part: String = endpoint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("urn:ecko-edge:{part}:patient")
}

impl Shared {
    /// One round: every due study announced, unless one is already running.
    pub(super) async fn announce_idle_studies(&self, idle: Duration) {
        if self.announcing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.announce_round(idle).await;
        self.announcing.store(false, Ordering::Release);
    }

    async fn announce_round(&self, idle: Duration) {
        let journal = &self.cx.journal;
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let cutoff = journal.now_ms().saturating_sub(idle_ms);
        loop {
            let due = match journal
                .due_dicom_studies(&self.endpoint, cutoff, BATCH)
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "cannot read the studies due for announcement");
                    return;
                }
            };
            let full = due.len() == BATCH;
            for d in due {
                if self.cx.shutdown.is_cancelled() || !self.announce(d).await {
                    return;
                }
            }
            if !full {
                return;
            }
        }
    }

    /// Announces one study; `false` when the journal refused for now.
    async fn announce(&self, due: DueStudy) -> bool {
        let journal = &self.cx.journal;
        let records: Vec<InstanceRecord> = due
            .records
            .iter()
            .filter_map(|r| match InstanceRecord::from_json(r) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "a stored object's record does not read; left out of its study");
                    None
                }
            })
            .collect();
        let cx = StudyContext {
            patient_system: patient_system(&self.endpoint),
            endpoint: self.study_endpoint.clone(),
        };
        let resource = match study::imaging_study(&records, &cx) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, study_uid = %due.study_uid, error = %e, "study not announced");
                return self.mark(&due).await;
            }
        };
        let envelope = Envelope {
            source: self.endpoint.clone(),
            dedup_key: Some(format!("{}/{}", due.study_uid, due.version)),
            message_type: study::MESSAGE_TYPE.to_string(),
            content_type: study::CONTENT_TYPE.to_string(),
            control_id: Some(due.study_uid.clone()),
            patient_id: records.iter().find_map(|r| r.patient_id.clone()),
            payload: resource.to_json(),
            ack: None,
            hints: Default::default(),
        };
        let (envelope, destinations) = match self.cx.route(envelope) {
            Ok(r) => r,
            // Made from the objects the journal holds: asking again cannot
            // help, and the objects themselves were delivered.
            Err(e @ IngestError::Unmappable { .. }) => {
                tracing::warn!(endpoint = %self.endpoint, study_uid = %due.study_uid, error = %e, "study not announced");
                return self.mark(&due).await;
            }
            // Disabled: nothing is announced until it is enabled again.
            Err(_) => return false,
        };
        if destinations.is_empty() {
            tracing::info!(endpoint = %self.endpoint, study_uid = %due.study_uid, "no route takes ImagingStudy from this endpoint; the study is not announced");
            return self.mark(&due).await;
        }
        match journal
            .announce_dicom_study(envelope, destinations, due.study_uid.clone(), due.version)
            .await
        {
            Ok(receipt) => {
                tracing::info!(endpoint = %self.endpoint, study_uid = %due.study_uid, version = due.version, series = resource.number_of_series, instances = resource.number_of_instances, message_id = receipt.message_id, duplicate = receipt.duplicate, "idle study announced as ImagingStudy");
                true
            }
            Err(e @ IngestError::NoRoute { .. }) => {
                tracing::info!(endpoint = %self.endpoint, study_uid = %due.study_uid, error = %e, "study not announced");
                self.mark(&due).await
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, study_uid = %due.study_uid, error = %e, "study announcement refused by the journal; tried again later");
                false
            }
        }
    }

    async fn mark(&self, due: &DueStudy) -> bool {
        match self
            .cx
            .journal
            .mark_dicom_study_announced(&self.endpoint, &due.study_uid, due.version)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, study_uid = %due.study_uid, error = %e, "cannot mark a study announced");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_asked_a_quarter_of_the_idle_time_within_a_second_and_a_minute() {
        assert_eq!(check_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            check_every(Duration::from_secs(40)),
            Duration::from_secs(10)
        );
        assert_eq!(
            check_every(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn the_patient_system_is_the_sources_local_one() {
        assert_eq!(
            patient_system("ct room 1"),
            "urn:ecko-edge:ct-room-1:patient"
        );
    }
}
