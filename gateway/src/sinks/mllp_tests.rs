use super::*;
use crate::journal::StoredMessage;
use crate::protocol::hl7::{build_ack, AckContent};
use std::sync::Arc;
use tokio::net::TcpListener;

const ORU: &[u8] = include_bytes!("../protocol/hl7/testdata/oru_r01_v251.hl7");

/// How the fake far end answers each message it receives.
#[derive(Clone, Copy)]
enum Answer {
    Code(AckCode),
    WrongControlId,
    Silence,
    Hangup,
}

/// A far end that answers from a script; returns its address and how many
/// connections it accepted.
async fn far_end(script: Vec<Answer>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let script = Arc::new(Mutex::new(script.into_iter()));
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let mut decoder = mllp::Decoder::default();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    decoder.push(&buf[..n], std::time::Instant::now());
                    while let Some(mllp::Event::Frame(f)) = decoder.next_event() {
                        let answer = script
                            .lock()
                            .unwrap()
                            .next()
                            .unwrap_or(Answer::Code(AckCode::AA));
                        let msg = Message::parse(&f, &ParseOptions::default()).unwrap();
                        let now = jiff::Zoned::now();
                        let ack = |code| {
                            build_ack(
                                &msg,
                                &AckContent {
                                    code,
                                    control_id: "FAR1",
                                    timestamp: &now,
                                    text: Some("far end"),
                                    error: None,
                                },
                            )
                        };
                        match answer {
                            Answer::Code(code) => {
                                s.write_all(&mllp::encode(&ack(code))).await.unwrap()
                            }
                            Answer::WrongControlId => {
                                let wrong = String::from_utf8(ack(AckCode::AA))
                                    .unwrap()
                                    .replace(&msg.identity().control_id, "OTHER");
                                s.write_all(&mllp::encode(wrong.as_bytes())).await.unwrap()
                            }
                            Answer::Silence => {}
                            Answer::Hangup => return,
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn sink(addr: &str, settings: &str) -> MllpSink {
    let text = format!("connect = \"{addr}\"\nack_timeout = \"300ms\"\n{settings}");
    let config: MllpConfig = toml::from_str(&text).unwrap();
    MllpSink::new("far", &config).unwrap()
}

fn delivery(id: i64) -> Delivery {
    let payload = String::from_utf8(ORU.to_vec())
        .unwrap()
        .replace("XN20260314093015001", &format!("OUT{id}"))
        .into_bytes();
    Delivery {
        outbox_id: id,
        attempt: 1,
        lane: String::new(),
        message: Arc::new(StoredMessage {
            id,
            source: "lab".into(),
            dedup_key: None,
            message_type: "ORU^R01".into(),
            content_type: "x-application/hl7-v2+er7".into(),
            control_id: None,
            patient_id: None,
            received_at: 0,
            payload: payload.clone(),
            ack: None,
        }),
        payload,
    }
}

#[tokio::test]
async fn an_aa_is_delivered_and_the_connection_is_kept_for_the_next_message() {
    let (addr, accepted) = far_end(vec![]).await;
    let s = sink(&addr, "");
    for id in 1..=3 {
        let out = s.deliver(&[delivery(id)]).await;
        assert!(
            matches!(&out[0], Outcome::Delivered { response: Some(r) } if r.starts_with("AA")),
            "{out:?}"
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ar_is_retryable_and_ae_is_permanent_by_default() {
    let (addr, _) = far_end(vec![Answer::Code(AckCode::AR), Answer::Code(AckCode::AE)]).await;
    let s = sink(&addr, "");
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Retryable { .. }
    ));
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Permanent { .. }
    ));
}

#[tokio::test]
async fn ae_can_be_configured_as_retryable() {
    let (addr, _) = far_end(vec![Answer::Code(AckCode::AE)]).await;
    let s = sink(&addr, "application_error = \"retry\"");
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Retryable { .. }
    ));
}

#[tokio::test]
async fn an_ack_for_another_message_is_not_taken_as_delivery() {
    let (addr, accepted) = far_end(vec![Answer::WrongControlId]).await;
    let s = sink(&addr, "");
    let out = s.deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("not the message sent")),
        "{out:?}"
    );
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Delivered { .. }
    ));
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a fresh connection after the mismatch"
    );
}

#[tokio::test]
async fn silence_past_the_ack_timeout_and_a_hangup_are_retryable() {
    let (addr, _) = far_end(vec![Answer::Silence, Answer::Hangup]).await;
    let s = sink(&addr, "");
    let out = s.deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("no acknowledgement")),
        "{out:?}"
    );
    let out = s.deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("closed")),
        "{out:?}"
    );
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Delivered { .. }
    ));
}

#[tokio::test]
async fn an_unreachable_far_end_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = sink(&addr, "").deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("cannot connect")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_payload_that_is_not_hl7_is_permanent() {
    let (addr, _) = far_end(vec![]).await;
    let mut d = delivery(1);
    d.payload = b"not hl7".to_vec();
    assert!(matches!(
        sink(&addr, "").deliver(&[d]).await[0],
        Outcome::Permanent { .. }
    ));
}
