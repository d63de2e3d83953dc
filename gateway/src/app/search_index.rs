//! Records the order and specimen ids of new messages for the log page's
//! search ([`ecko_fhir::keys`]), after their commit and off the
//! acknowledgement's path: a batch at a time, then a pause once caught up.

use crate::journal::{Journal, JournalError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Messages read per batch.
const BATCH: usize = 500;
/// How long a caught-up indexer waits before looking again.
const IDLE: Duration = Duration::from_secs(1);

pub async fn index_search_keys(journal: Journal, stop: CancellationToken) {
    loop {
        let caught_up = match index_once(&journal).await {
            Ok(n) => n < BATCH,
            Err(JournalError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "search keys not recorded; trying again");
                true
            }
        };
        if caught_up {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(IDLE) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
    }
}

/// Records the keys of one batch; how many messages it read.
pub async fn index_once(journal: &Journal) -> Result<usize, JournalError> {
    let batch = journal.unindexed_messages(BATCH).await?;
    let Some(up_to) = batch.messages.last().map(|m| m.id) else {
        return Ok(0);
    };
    let read = batch.messages.len();
    let after = batch.after;
    let keys = tokio::task::spawn_blocking(move || {
        batch
            .messages
            .iter()
            .flat_map(|m| {
                // A payload that trips the reader costs its keys, never
                // the indexer.
                let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ecko_fhir::keys::search_keys(m)
                }))
                .unwrap_or_default();
                found.into_iter().map(move |k| (m.id, k))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| JournalError::Storage(format!("search keys task failed: {e}")))?;
    journal.record_search_keys(after, up_to, keys).await?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Destination, JournalOptions, MessageFilter};
    use ecko_message::Envelope;

    async fn ingest(j: &Journal, control: &str, body: &str) -> i64 {
        j.ingest(
            Envelope {
                source: "lab".into(),
                dedup_key: Some(control.into()),
                message_type: "ORU^R01".into(),
                content_type: "x-application/hl7-v2+er7".into(),
                control_id: Some(control.into()),
                patient_id: Some(format!("P-{control}")),
                payload: format!("MSH|^~\\&|LAB|L|GW|G|20260101||ORU^R01|{control}|P|2.5\r{body}")
                    .into_bytes(),
                ..Default::default()
            },
            vec![Destination {
                endpoint: "archive".into(),
                transform: "none".into(),
                lane: String::new(),
                reply_to: None,
            }],
        )
        .await
        .unwrap()
        .message_id
    }

    async fn found(j: &Journal, filter: MessageFilter) -> Vec<i64> {
        let page = j.list_messages(filter, None, 50).await.unwrap();
        page.messages.iter().map(|m| m.id).collect()
    }

    fn by_key(key: &str) -> MessageFilter {
        MessageFilter {
            key: Some(key.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_are_found_by_their_accession_or_specimen_once_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let a = ingest(&j, "C1", "ORC|RE|PL-1|ACC-1\rOBR|1|PL-1|ACC-1|GLU\r").await;
        let b = ingest(&j, "C2", "ORC|RE|PL-2|ACC-2\rSPM|1|TUBE-9\r").await;
        // Not yet read: a search finds nothing rather than guessing.
        assert!(found(&j, by_key("ACC-1")).await.is_empty());
        assert_eq!(index_once(&j).await.unwrap(), 2);
        assert_eq!(found(&j, by_key("ACC-1")).await, [a]);
        assert_eq!(found(&j, by_key("TUBE-9")).await, [b]);
        assert!(found(&j, by_key("ACC-3")).await.is_empty());
        // Caught up: nothing is read twice.
        assert_eq!(index_once(&j).await.unwrap(), 0);
        let c = ingest(&j, "C3", "ORC|RE|PL-3|ACC-1\r").await;
        assert_eq!(index_once(&j).await.unwrap(), 1);
        assert_eq!(found(&j, by_key("ACC-1")).await, [c, a]);
    }

    #[tokio::test]
    async fn a_control_id_is_found_before_the_indexer_reads_it_and_after_without_a_second_copy() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let by_control = |c: &str| MessageFilter {
            control_id: Some(c.into()),
            ..Default::default()
        };
        let a = ingest(
            &j,
            "C1",
            "PID|||P-1
",
        )
        .await;
        let b = ingest(
            &j,
            "C2",
            "PID|||P-2
",
        )
        .await;
        // In the unindexed tail: read from the rows themselves.
        assert_eq!(found(&j, by_control("C1")).await, [a]);
        assert_eq!(index_once(&j).await.unwrap(), 2);
        assert_eq!(found(&j, by_control("C1")).await, [a]);
        assert_eq!(found(&j, by_control("C2")).await, [b]);
        // A control id reused later: one copy below the watermark, one above.
        let c = ingest(
            &j,
            "C1",
            "PID|||P-3
",
        )
        .await;
        assert_eq!(found(&j, by_control("C1")).await, [c, a]);
        assert_eq!(index_once(&j).await.unwrap(), 1);
        assert_eq!(found(&j, by_control("C1")).await, [c, a]);
        assert!(found(&j, by_control("C3")).await.is_empty());
        let by_patient = MessageFilter {
            patient_id: Some("P-C2".into()),
            ..Default::default()
        };
        assert_eq!(found(&j, by_patient).await, [b]);
        // An order id equal to a control id is another search.
        assert!(found(&j, by_key("C1")).await.is_empty());
    }

    #[tokio::test]
    async fn text_is_found_within_payloads_without_case() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let a = ingest(&j, "C1", "OBX|1|NM|GLU^Glucose||5.4\r").await;
        ingest(&j, "C2", "OBX|1|NM|NA^Sodium||140\r").await;
        let now = j.now_ms();
        let f = MessageFilter {
            text: Some("GLUCOSE".into()),
            from: Some(now - 60_000),
            to: Some(now + 60_000),
            ..Default::default()
        };
        assert_eq!(found(&j, f).await, [a]);
    }

    #[tokio::test]
    async fn ids_given_out_again_after_a_purge_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        ingest(&j, "C1", "ORC|RE|OLD-1\r").await;
        index_once(&j).await.unwrap();
        // Delivered and purged: the next message may take id 1 again.
        let leased = j.lease("archive", 1, 10).await.unwrap();
        let settled = leased
            .lanes
            .into_iter()
            .flatten()
            .map(|l| {
                let done = crate::journal::Settlement::Delivered {
                    response: None,
                    duration_ms: 1,
                };
                (l, done)
            })
            .collect();
        j.settle(settled).await.unwrap();
        assert_eq!(j.purge_delivered_before(j.now_ms() + 1).await.unwrap(), 1);
        let again = ingest(&j, "C9", "ORC|RE|NEW-1\r").await;
        assert_eq!(index_once(&j).await.unwrap(), 1);
        assert_eq!(found(&j, by_key("NEW-1")).await, [again]);
    }
}
