//! HL7 v2 application acknowledgements (enhanced mode, MSH-16) built when a
//! delivery settles.
//!
//! A route with `application_ack = "<reply endpoint>"` gives its outbox rows
//! a `reply_to`. When such a row reaches a final state, the worker asks
//! [`reply_for`] what the sender should hear:
//!
//! - delivered → `AA`;
//! - refused for good by the destination (a permanent error, an `AE` taken
//!   as permanent, a transform that cannot read the message) → `AE`;
//! - never taken before the retry budget ran out (`AR`/`CR` answers,
//!   timeouts, an unreachable destination) → `AR`.
//!
//! The destination's last error goes into MSA-3 (cut to 80 characters, the
//! field's length in v2.5) and ERR-8. Whether an acknowledgement is sent at
//! all is the message's own MSH-16 ([`application_ack_code`]): `AL` always,
//! `ER` only for `AE`/`AR`, `SU` only for `AA`, `NE`, empty or original mode
//! never. The acknowledgement is returned, not sent: the journal stores it
//! in the same transaction as the settlement and the reply endpoint's worker
//! delivers it, so it survives a restart and is sent once the outcome is on
//! disk, never before.

use crate::journal::{Lease, Reply};
use ecko_fhir::TransformContext;
use ecko_protocol::hl7::{
    application_ack_code, build_application_ack, fresh_control_id, AckContent, AckError, ErrorCode,
    Message, Outcome,
};

/// The final outcome of one delivery, as the sender's application ACK sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    Delivered,
    /// The destination refused the message for good.
    Failed(&'a str),
    /// The destination never took it; the retry budget ran out.
    GaveUp(&'a str),
}

const HL7_CONTENT_TYPE: &str = "x-application/hl7-v2+er7";
/// MSA-3 is 80 characters in v2.5.
const MSA3_MAX: usize = 80;
const ERR8_MAX: usize = 250;

/// The application acknowledgement to queue for `lease`'s sender, if its
/// route asked for one and its message's MSH-16 wants one for `verdict`.
pub fn reply_for(
    lease: &Lease,
    verdict: Verdict<'_>,
    now_ms: i64,
    cx: &TransformContext,
) -> Option<Reply> {
    let endpoint = lease.reply_to.as_ref()?;
    if lease.message.content_type != HL7_CONTENT_TYPE {
        return None;
    }
    let options = ecko_fhir::hl7v2::parse_options(&lease.message);
    let original = match Message::parse(&lease.message.payload, &options) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(message_id = lease.message.id, error = %e, "cannot read the message to build its application acknowledgement");
            return None;
        }
    };
    let (outcome, error) = match verdict {
        Verdict::Delivered => (Outcome::Accepted, None),
        Verdict::Failed(e) => (Outcome::Error, Some(e)),
        Verdict::GaveUp(e) => (Outcome::Rejected, Some(e)),
    };
    let code = application_ack_code(original.identity(), outcome)?;
    let control_id = fresh_control_id(now_ms);
    let timestamp = jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_zoned(cx.time_zone_of(&lease.message));
    let text = error.map(|e| cut(e, MSA3_MAX));
    let err = error.map(|e| AckError {
        code: ErrorCode::ApplicationInternalError,
        location: None,
        message: cut(e, ERR8_MAX),
    });
    let payload = build_application_ack(
        &original,
        &AckContent {
            code,
            control_id: &control_id,
            timestamp: &timestamp,
            text: text.as_deref(),
            error: err.as_ref(),
        },
    );
    let trigger = &original.identity().trigger_event;
    Some(Reply {
        endpoint: endpoint.clone(),
        message_type: if trigger.is_empty() {
            "ACK".into()
        } else {
            format!("ACK^{trigger}")
        },
        content_type: HL7_CONTENT_TYPE.into(),
        control_id,
        payload,
        summary: code.as_str().into(),
    })
}

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::{Envelope, StoredMessage};
    use ecko_protocol::hl7::{AckCode, ReceivedAck};
    use std::sync::Arc;

    const ORU: &[u8] = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");

    fn lease(msh15_16: &str, reply_to: Option<&str>) -> Lease {
        let payload = String::from_utf8(ORU.to_vec())
            .unwrap()
            .replacen("|P|2.5.1", &format!("|P|2.5.1|||{msh15_16}"), 1)
            .into_bytes();
        Lease {
            outbox_id: 7,
            token: 1,
            destination: "lis".into(),
            transform: "none".into(),
            lane: String::new(),
            attempts: 0,
            queued_at: 0,
            reply_to: reply_to.map(String::from),
            message: Arc::new(StoredMessage {
                id: 3,
                received_at: 0,
                envelope: ecko_message::Envelope {
                    source: "lab".into(),
                    dedup_key: None,
                    message_type: "ORU^R01".into(),
                    content_type: HL7_CONTENT_TYPE.into(),
                    control_id: None,
                    patient_id: None,
                    payload,
                    ack: None,
                    hints: Default::default(),
                },
            }),
        }
    }

    fn read(reply: &Reply) -> ReceivedAck {
        ReceivedAck::parse(&reply.payload, &ecko_protocol::hl7::ParseOptions::default()).unwrap()
    }

    #[test]
    fn a_delivered_message_that_asked_al_gets_aa_naming_it_with_a_new_control_id() {
        let r = reply_for(
            &lease("AL|AL", Some("his")),
            Verdict::Delivered,
            1_700_000_000_000,
            &TransformContext::default(),
        )
        .unwrap();
        assert_eq!(r.endpoint, "his");
        assert_eq!(r.message_type, "ACK^R01");
        let ack = read(&r);
        assert_eq!(ack.code, AckCode::AA);
        assert_eq!(ack.control_id, "XN20260314093015001");
        assert_eq!(ack.identity.control_id, r.control_id);
        assert_ne!(ack.identity.control_id, "XN20260314093015001");
        assert_eq!(ack.identity.message_code, "ACK");
        assert_eq!(ack.identity.trigger_event, "R01");
        assert_eq!(ack.identity.structure, "ACK");
        assert_eq!(
            (
                ack.identity.accept_ack_type.as_str(),
                ack.identity.application_ack_type.as_str()
            ),
            ("AL", "NE")
        );
        let text = String::from_utf8(r.payload).unwrap();
        assert!(
            text.starts_with("MSH|^~\\&|LIS|ST-MARY|XN-1000^SYSMEX^L|HEMA-LAB|"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_message_gets_ae_and_one_never_taken_gets_ar_with_the_destinations_error() {
        let r = reply_for(
            &lease("AL|AL", Some("his")),
            Verdict::Failed("AE: unknown patient"),
            0,
            &TransformContext::default(),
        )
        .unwrap();
        let ack = read(&r);
        assert_eq!(ack.code, AckCode::AE);
        assert_eq!(ack.text, "AE: unknown patient");
        assert_eq!(ack.errors[0].code, "207");
        assert_eq!(ack.errors[0].message, "AE: unknown patient");
        let r = reply_for(
            &lease("AL|AL", Some("his")),
            Verdict::GaveUp("no acknowledgement within 30s"),
            0,
            &TransformContext::default(),
        )
        .unwrap();
        assert_eq!(read(&r).code, AckCode::AR);
        assert_eq!(r.summary, "AR");
    }

    #[test]
    fn msh_16_decides_whether_there_is_an_application_ack_at_all() {
        let none = |msh: &str, v: Verdict<'_>| {
            reply_for(&lease(msh, Some("his")), v, 0, &TransformContext::default()).is_none()
        };
        assert!(none("AL|NE", Verdict::Delivered));
        assert!(none("AL|", Verdict::Delivered), "empty MSH-16 reads as NE");
        assert!(
            none("|", Verdict::Delivered),
            "original mode: the ACK was the answer"
        );
        assert!(none("AL|ER", Verdict::Delivered));
        assert!(!none("AL|ER", Verdict::Failed("x")));
        assert!(none("AL|SU", Verdict::GaveUp("x")));
        assert!(!none("AL|SU", Verdict::Delivered));
        assert!(
            reply_for(
                &lease("AL|AL", None),
                Verdict::Delivered,
                0,
                &TransformContext::default()
            )
            .is_none(),
            "no reply endpoint, no reply"
        );
    }

    #[test]
    fn a_long_or_multiline_error_is_cut_to_fit_msa_3() {
        let long = format!("line one\r\nline two {}", "x".repeat(300));
        let r = reply_for(
            &lease("AL|AL", Some("his")),
            Verdict::Failed(&long),
            0,
            &TransformContext::default(),
        )
        .unwrap();
        let ack = read(&r);
        assert_eq!(ack.text.chars().count(), MSA3_MAX);
        assert!(!ack.text.contains('\r'));
    }

    /// The delivery engine end to end: the verdict each kind of final
    /// outcome gives, queued for the reply endpoint with the settlement.
    mod engine {
        use super::*;
        use crate::config::{Direction, Endpoint, EndpointKind, FileSinkConfig, RetryPolicy};
        use crate::journal::{Destination, Journal, JournalOptions, OutboxState};
        use crate::sinks::{Delivery, Outcome as SinkOutcome, Sink};
        use std::time::Duration;
        use tokio_util::sync::CancellationToken;

        struct Answers(std::sync::Mutex<Vec<SinkOutcome>>);

        impl Sink for Answers {
            async fn deliver(&self, batch: &[Delivery]) -> Vec<SinkOutcome> {
                let mut script = self.0.lock().unwrap();
                batch
                    .iter()
                    .map(|_| {
                        if script.is_empty() {
                            SinkOutcome::Delivered { response: None }
                        } else {
                            script.remove(0)
                        }
                    })
                    .collect()
            }
        }

        fn endpoint() -> Endpoint {
            Endpoint {
                name: "lis".into(),
                direction: Direction::Outbound,
                enabled: true,
                timeout: Duration::from_secs(5),
                retry: RetryPolicy {
                    initial: Duration::from_millis(10),
                    max: Duration::from_millis(10),
                    multiplier: 1.0,
                    jitter: 0.0,
                    max_attempts: Some(2),
                    max_age: None,
                },
                partition_by: None,
                lanes: 1,
                protection: crate::config::Protection::destination_default(),
                kind: EndpointKind::File(FileSinkConfig {
                    path: "unused".into(),
                    extension: "x".into(),
                }),
                line: 1,
            }
        }

        /// Delivers one AL/AL message through `answers` and returns the
        /// application ACK queued for `his`.
        async fn application_ack_after(answers: Vec<SinkOutcome>) -> ReceivedAck {
            let dir = tempfile::tempdir().unwrap();
            let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
            let stop = CancellationToken::new();
            let worker = crate::delivery::spawn(
                j.clone(),
                &endpoint(),
                Answers(std::sync::Mutex::new(answers)),
                stop.clone(),
            );
            let message = Envelope {
                source: "lab".into(),
                dedup_key: Some("1".into()),
                message_type: "ORU^R01".into(),
                content_type: HL7_CONTENT_TYPE.into(),
                payload: lease("AL|AL", None).message.payload.clone(),
                ..Default::default()
            };
            let d = vec![Destination {
                endpoint: "lis".into(),
                transform: "none".into(),
                lane: String::new(),
                reply_to: Some("his".into()),
            }];
            j.ingest(message, d).await.unwrap();
            let mut found = None;
            for _ in 0..300 {
                let ids = j.message_ids().await.unwrap();
                if ids.len() == 2 {
                    found = Some(ids[1]);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
            worker.await.unwrap();
            let id = found.expect("an application ACK was queued");
            let rows = j.outbox_of(id).await.unwrap();
            assert_eq!(
                (rows[0].destination.as_str(), rows[0].state),
                ("his", OutboxState::Queued)
            );
            let ack = j.message(id).await.unwrap().unwrap();
            j.close().await;
            ReceivedAck::parse(&ack.payload, &ecko_protocol::hl7::ParseOptions::default()).unwrap()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn delivered_gives_aa() {
            let ack = application_ack_after(vec![]).await;
            assert_eq!(ack.code, AckCode::AA);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_permanent_refusal_gives_ae_with_the_destinations_words() {
            let ack = application_ack_after(vec![SinkOutcome::Permanent {
                error: "AE: unknown test code".into(),
            }])
            .await;
            assert_eq!(
                (ack.code, ack.text.as_str()),
                (AckCode::AE, "AE: unknown test code")
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_retry_budget_that_runs_out_gives_ar() {
            let busy = || SinkOutcome::Retryable {
                error: "AR: busy".into(),
                retry_after: None,
            };
            let ack = application_ack_after(vec![busy(), busy()]).await;
            assert_eq!(ack.code, AckCode::AR);
            assert!(ack.text.contains("AR: busy"), "{}", ack.text);
        }
    }
}
