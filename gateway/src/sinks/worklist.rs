//! The `worklist` destination: orders routed to it are kept as Modality
//! Worklist entries, which the DICOM SCPs naming it answer C-FIND from.
//!
//! Delivering an order is reading it ([`ecko_fhir::worklist`]) and writing
//! its entries through a [`WorklistStore`]; an order that cannot be read is
//! a permanent failure with the reason (dead, visible on the page, never
//! dropped), a store that cannot write now is retried. Delivery is at least
//! once and an entry is keyed by its order, so a redelivery rewrites the
//! same entry.

use super::{Delivery, Outcome, Sink};
use crate::config::WorklistConfig;
use ecko_fhir::worklist::{changes, WorklistChange, WorklistDefaults};
use ecko_fhir::Payload;
use futures_util::future::BoxFuture;
use jiff::tz::TimeZone;
use std::sync::Arc;
use std::time::Duration;

/// An entry to keep: the change, and when it may be forgotten (ms since
/// the Unix epoch).
pub type Kept = (WorklistChange, i64);

/// Where entries are kept: the journal, behind this so the sink stays out
/// of it.
pub trait WorklistStore: Send + Sync + 'static {
    fn keep(&self, message_id: i64, entries: Vec<Kept>) -> BoxFuture<'static, Result<(), String>>;
}

pub struct WorklistSink {
    defaults: WorklistDefaults,
    keep_for: Duration,
    store: Arc<dyn WorklistStore>,
}

impl WorklistSink {
    pub fn new(name: &str, config: &WorklistConfig, store: Arc<dyn WorklistStore>) -> Self {
        WorklistSink {
            defaults: config.defaults(name),
            keep_for: config.keep_for.0,
            store,
        }
    }

    async fn one(&self, d: &Delivery) -> Outcome {
        let tz = d
            .message
            .hints
            .time_zone
            .as_deref()
            .and_then(|z| TimeZone::get(z).ok())
            .unwrap_or_else(TimeZone::system);
        let bundle = match &d.payload {
            Payload::Bundle(v) => Some(v),
            Payload::Bytes(_) => None,
        };
        let found = match changes(&d.message, bundle, &self.defaults, &tz) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Permanent {
                    error: format!("not an order the worklist can keep: {e}"),
                }
            }
        };
        let now = jiff::Timestamp::now();
        let summary: Vec<String> = found
            .iter()
            .map(|c| format!("{} {}", c.key, c.state.as_str()))
            .collect();
        let kept = found
            .into_iter()
            .map(|c| {
                let expires = c.expires_at(self.keep_for, &tz, now);
                (c, expires)
            })
            .collect();
        match self.store.keep(d.message.id, kept).await {
            Ok(()) => Outcome::Delivered {
                response: Some(format!("worklist: {}", summary.join(", "))),
            },
            Err(error) => Outcome::Retryable {
                error,
                retry_after: None,
            },
        }
    }
}

impl Sink for WorklistSink {
    fn max_batch(&self) -> usize {
        32
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(self.one(d).await);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;
    use ecko_message::{Envelope, StoredMessage};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Memory(Mutex<Vec<(i64, Vec<Kept>)>>, Mutex<bool>);

    impl WorklistStore for Arc<Memory> {
        fn keep(&self, id: i64, entries: Vec<Kept>) -> BoxFuture<'static, Result<(), String>> {
            let me = self.clone();
            Box::pin(async move {
                if *me.1.lock().unwrap() {
                    return Err("journal full".into());
                }
                me.0.lock().unwrap().push((id, entries));
                Ok(())
            })
        }
    }

    fn delivery(text: &str) -> Delivery {
        Delivery {
            outbox_id: 1,
            attempt: 1,
            lane: String::new(),
            message: Arc::new(StoredMessage {
                id: 7,
                received_at: 0,
                envelope: Envelope {
                    source: "his".into(),
                    dedup_key: None,
                    message_type: "ORM^O01".into(),
                    content_type: "application/hl7-v2".into(),
                    control_id: None,
                    patient_id: None,
                    payload: text.replace('\n', "\r").into_bytes(),
                    ack: None,
                    hints: ecko_message::DecodeHints {
                        charset: None,
                        time_zone: Some("UTC".into()),
                    },
                },
            }),
            payload: Payload::Bytes(Vec::new()),
        }
    }

    fn sink(memory: &Arc<Memory>) -> WorklistSink {
        let config = WorklistConfig {
            modality: "CT".into(),
            station_ae: String::new(),
            keep_for: Span(Duration::from_secs(3600)),
        };
        WorklistSink::new("wl", &config, Arc::new(memory.clone()))
    }

    const ORM: &str = "MSH|^~\\&|RIS|H|ECKO|G|20991204080000||ORM^O01|M1|P|2.5\nPID|||P1||DOE^JOHN\nORC|NW|ORD1\nOBR|1|ORD1||CT^CT head^L\n";

    #[tokio::test]
    async fn an_order_is_kept_until_keep_for_after_its_start_and_reported() {
        let memory = Arc::new(Memory::default());
        let out = sink(&memory).deliver(&[delivery(ORM)]).await;
        assert_eq!(
            out,
            vec![Outcome::Delivered {
                response: Some("worklist: ORD1 scheduled".into())
            }]
        );
        let kept = memory.0.lock().unwrap();
        let (id, entries) = &kept[0];
        assert_eq!(*id, 7);
        let start = jiff::Timestamp::from_second(4_100_054_400).unwrap(); // 2099-12-04 08:00 UTC
        assert_eq!(entries[0].1, start.as_millisecond() + 3_600_000);
    }

    #[tokio::test]
    async fn garbage_is_dead_with_the_reason_and_a_full_store_is_retried() {
        let memory = Arc::new(Memory::default());
        let out = sink(&memory).deliver(&[delivery("not hl7")]).await;
        assert!(
            matches!(&out[0], Outcome::Permanent { error } if error.contains("worklist")),
            "{out:?}"
        );
        *memory.1.lock().unwrap() = true;
        let out = sink(&memory).deliver(&[delivery(ORM)]).await;
        assert!(matches!(&out[0], Outcome::Retryable { .. }), "{out:?}");
        assert!(memory.0.lock().unwrap().is_empty());
    }
}
