use super::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{build_ack, AckContent};
use std::sync::Arc;
use tokio::net::TcpListener;

const ORU: &[u8] = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");

/// How the fake far end answers each message it receives.
#[derive(Clone, Copy)]
enum Answer {
    Code(AckCode),
    WrongControlId,
    Silence,
    Hangup,
    /// Answers, then closes the connection (one message per connection).
    CodeThenClose(AckCode),
    /// `CA` at once, `AA` for the same message a moment later.
    CommitThenApplication,
    /// Answers after this many milliseconds.
    Late(u64),
    /// Noise outside a frame, then the ACK.
    NoiseThenCode(AckCode),
    /// A frame larger than the sender's limit.
    Oversized,
    /// `AR` with an ERR segment about the whole message (no location).
    RefusedWithError,
}

/// A fake far end: what it accepted and received, in order.
struct FarEnd {
    addr: String,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
}

impl FarEnd {
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// A far end that answers from a script (then `AA`), over TLS when given an
/// acceptor.
async fn far_end_with(script: Vec<Answer>, tls: Option<tokio_rustls::TlsAcceptor>) -> FarEnd {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (counter, log) = (accepted.clone(), received.clone());
    tokio::spawn(async move {
        let script = Arc::new(Mutex::new(script.into_iter()));
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (script, log, tls) = (script.clone(), log.clone(), tls.clone());
            tokio::spawn(async move {
                let s: Box<dyn Stream> = match tls {
                    None => Box::new(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => Box::new(s),
                        Err(_) => return,
                    },
                };
                serve(s, script, log).await;
            });
        }
    });
    FarEnd {
        addr,
        accepted,
        received,
    }
}

async fn far_end(script: Vec<Answer>) -> FarEnd {
    far_end_with(script, None).await
}

async fn serve(
    mut s: Box<dyn Stream>,
    script: Arc<Mutex<std::vec::IntoIter<Answer>>>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut decoder = mllp::Decoder::new(64 << 20);
    let mut buf = vec![0u8; 64 * 1024];
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
            log.lock().unwrap().push(msg.identity().control_id.clone());
            let now = jiff::Zoned::now();
            let ack = |code| {
                mllp::encode(&build_ack(
                    &msg,
                    &AckContent {
                        code,
                        control_id: "FAR1",
                        timestamp: &now,
                        text: Some("far end"),
                        error: None,
                    },
                ))
            };
            let written = match answer {
                Answer::Code(code) => s.write_all(&ack(code)).await,
                Answer::RefusedWithError => {
                    let error = ecko_protocol::hl7::AckError {
                        code: ecko_protocol::hl7::ErrorCode::ApplicationInternalError,
                        location: None,
                        message: "disk full".into(),
                    };
                    let refused = mllp::encode(&build_ack(
                        &msg,
                        &AckContent {
                            code: AckCode::AR,
                            control_id: "FAR1",
                            timestamp: &now,
                            text: Some("far end"),
                            error: Some(&error),
                        },
                    ));
                    s.write_all(&refused).await
                }
                Answer::WrongControlId => {
                    let wrong = String::from_utf8(ack(AckCode::AA))
                        .unwrap()
                        .replace(&msg.identity().control_id, "OTHER");
                    s.write_all(wrong.as_bytes()).await
                }
                Answer::Silence => Ok(()),
                Answer::Hangup => return,
                Answer::CodeThenClose(code) => {
                    let _ = s.write_all(&ack(code)).await;
                    let _ = s.shutdown().await;
                    return;
                }
                Answer::CommitThenApplication => {
                    let _ = s.write_all(&ack(AckCode::CA)).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    s.write_all(&ack(AckCode::AA)).await
                }
                Answer::Late(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    s.write_all(&ack(AckCode::AA)).await
                }
                Answer::NoiseThenCode(code) => {
                    let _ = s.write_all(b"\r\nnoise\r\n").await;
                    s.write_all(&ack(code)).await
                }
                Answer::Oversized => {
                    let mut big = b"MSH|^~\\&|".to_vec();
                    big.extend(std::iter::repeat_n(b'x', 8 * 1024));
                    s.write_all(&mllp::encode(&big)).await
                }
            };
            if written.is_err() {
                return;
            }
        }
    }
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
            received_at: 0,
            envelope: ecko_message::Envelope {
                source: "lab".into(),
                dedup_key: None,
                message_type: "ORU^R01".into(),
                content_type: "x-application/hl7-v2+er7".into(),
                control_id: None,
                patient_id: None,
                payload: payload.clone(),
                ack: None,
                hints: Default::default(),
            },
        }),
        payload: ecko_fhir::Payload::Bytes(payload),
    }
}

fn delivered(out: &[Outcome]) -> bool {
    matches!(&out[0], Outcome::Delivered { .. })
}

#[tokio::test]
async fn an_aa_is_delivered_and_the_connection_is_kept_for_the_next_message() {
    let far = far_end(vec![]).await;
    let s = sink(&far.addr, "");
    for id in 1..=3 {
        let out = s.deliver(&[delivery(id)]).await;
        assert!(
            matches!(&out[0], Outcome::Delivered { response: Some(r) } if r.starts_with("AA")),
            "{out:?}"
        );
    }
    assert_eq!(far.accepted(), 1);
}

#[tokio::test]
async fn a_refusal_names_its_error_without_an_empty_location() {
    let far = far_end(vec![Answer::RefusedWithError]).await;
    let s = sink(&far.addr, "");
    let out = s.deliver(&[delivery(1)]).await;
    let Outcome::Retryable { error, .. } = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(
        error,
        "AR: far end [ERR 207 Application internal error: disk full]"
    );
}

#[tokio::test]
async fn ar_is_retryable_and_ae_is_permanent_by_default() {
    let far = far_end(vec![Answer::Code(AckCode::AR), Answer::Code(AckCode::AE)]).await;
    let s = sink(&far.addr, "");
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
async fn cr_is_retryable_ce_follows_the_ae_setting_and_ca_is_delivered() {
    let far = far_end(vec![
        Answer::Code(AckCode::CR),
        Answer::Code(AckCode::CE),
        Answer::Code(AckCode::CA),
    ])
    .await;
    let s = sink(&far.addr, "");
    let out = s.deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.starts_with("CR")),
        "{out:?}"
    );
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Permanent { .. }
    ));
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
}

#[tokio::test]
async fn ae_can_be_configured_as_retryable() {
    let far = far_end(vec![Answer::Code(AckCode::AE)]).await;
    let s = sink(&far.addr, "application_error = \"retry\"");
    assert!(matches!(
        s.deliver(&[delivery(1)]).await[0],
        Outcome::Retryable { .. }
    ));
}

#[tokio::test]
async fn an_ack_for_another_message_fails_the_attempt_without_sending_again() {
    let far = far_end(vec![Answer::WrongControlId]).await;
    let s = sink(&far.addr, "");
    let out = s.deliver(&[delivery(1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("not the message sent")),
        "{out:?}"
    );
    assert_eq!(far.received(), ["OUT1"], "written once in that attempt");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    assert_eq!(far.accepted(), 2, "a fresh connection after the mismatch");
}

#[tokio::test]
async fn silence_past_the_ack_timeout_and_a_hangup_are_retryable() {
    let far = far_end(vec![Answer::Silence, Answer::Hangup]).await;
    let s = sink(&far.addr, "");
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
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
}

#[tokio::test]
async fn an_ack_timeout_on_a_kept_connection_is_not_followed_by_a_resend() {
    let far = far_end(vec![Answer::Code(AckCode::AA), Answer::Late(600)]).await;
    let s = sink(&far.addr, "");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    let out = s.deliver(&[delivery(2)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("no acknowledgement")),
        "{out:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(far.received(), ["OUT1", "OUT2"], "OUT2 was sent once");
    assert_eq!(far.accepted(), 1);
}

#[tokio::test]
async fn a_kept_connection_the_far_end_closed_is_replaced_before_anything_is_sent() {
    let far = far_end(vec![
        Answer::CodeThenClose(AckCode::AA),
        Answer::CodeThenClose(AckCode::AA),
        Answer::CodeThenClose(AckCode::AA),
    ])
    .await;
    let s = sink(&far.addr, "");
    for id in 1..=3 {
        assert!(delivered(&s.deliver(&[delivery(id)]).await), "message {id}");
        // Let the far end's close arrive, as it would between messages.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(far.received(), ["OUT1", "OUT2", "OUT3"], "each sent once");
    assert_eq!(far.accepted(), 3);
}

#[tokio::test]
async fn a_kept_connection_closed_before_any_answer_is_retried_once_on_a_fresh_one() {
    // The far end takes one message per connection and drops the kept
    // connection unanswered: the second message goes out again at once.
    let far = far_end(vec![Answer::Code(AckCode::AA), Answer::Hangup]).await;
    let s = sink(&far.addr, "");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    assert!(delivered(&s.deliver(&[delivery(2)]).await));
    assert_eq!(far.received(), ["OUT1", "OUT2", "OUT2"]);
    assert_eq!(far.accepted(), 2);
}

#[tokio::test]
async fn a_late_second_ack_for_the_previous_message_is_skipped() {
    let far = far_end(vec![Answer::CommitThenApplication]).await;
    let s = sink(&far.addr, "");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = s.deliver(&[delivery(2)]).await;
    assert!(
        matches!(&out[0], Outcome::Delivered { response: Some(r) } if r.starts_with("AA")),
        "{out:?}"
    );
    // The stale AA may also arrive while OUT2 waits: still skipped.
    let far = far_end(vec![Answer::CommitThenApplication]).await;
    let s = sink(&far.addr, "");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    assert!(delivered(&s.deliver(&[delivery(2)]).await));
    assert_eq!(far.received(), ["OUT1", "OUT2"]);
    assert_eq!(far.accepted(), 1);
}

#[tokio::test]
async fn noise_outside_frames_is_dropped_and_an_oversized_answer_fails_the_attempt() {
    let far = far_end(vec![Answer::NoiseThenCode(AckCode::AA), Answer::Oversized]).await;
    let s = sink(&far.addr, "max_message_size = \"4 KiB\"");
    assert!(delivered(&s.deliver(&[delivery(1)]).await));
    let out = s.deliver(&[delivery(2)]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("exceeds the limit")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_far_end_that_stops_reading_hits_the_send_timeout() {
    // Accepts and never reads: the kernel buffers fill and the write stalls.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let s = sink(&addr, "send_timeout = \"300ms\"");
    let mut d = delivery(1);
    let mut big = d.payload.to_bytes().into_owned();
    big.extend_from_slice(b"NTE|1||");
    big.extend(std::iter::repeat_n(b'x', 64 << 20));
    big.push(b'\r');
    d.payload = ecko_fhir::Payload::Bytes(big);
    let started = std::time::Instant::now();
    let out = s.deliver(&[d]).await;
    assert!(
        matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("sending did not finish within 300ms")),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn messages_reach_the_far_end_in_the_order_sent_on_one_connection() {
    let far = far_end(vec![]).await;
    let s = sink(&far.addr, "");
    for id in 1..=20 {
        assert!(delivered(&s.deliver(&[delivery(id)]).await));
    }
    let expected: Vec<String> = (1..=20).map(|i| format!("OUT{i}")).collect();
    assert_eq!(far.received(), expected);
    assert_eq!(far.accepted(), 1);
}

#[tokio::test]
async fn after_a_failure_the_rest_of_a_batch_is_not_attempted() {
    let far = far_end(vec![Answer::Code(AckCode::AA), Answer::Code(AckCode::AR)]).await;
    let s = sink(&far.addr, "");
    let out = s.deliver(&[delivery(1), delivery(2), delivery(3)]).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }));
    assert!(matches!(out[1], Outcome::Retryable { .. }));
    assert_eq!(out[2], Outcome::NotAttempted);
    assert_eq!(far.received(), ["OUT1", "OUT2"]);
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
    let far = far_end(vec![]).await;
    let mut d = delivery(1);
    d.payload = ecko_fhir::Payload::Bytes(b"not hl7".to_vec());
    assert!(matches!(
        sink(&far.addr, "").deliver(&[d]).await[0],
        Outcome::Permanent { .. }
    ));
}

mod tls {
    use super::*;
    use crate::config::TlsSettings;
    use crate::tls::test_pki;

    fn acceptor(pki: &test_pki::Pki, require_client_cert: bool) -> tokio_rustls::TlsAcceptor {
        let settings = TlsSettings {
            cert: Some(pki.server_cert.clone()),
            key: Some(pki.server_key.clone()),
            ca: Some(pki.ca.clone()),
            require_client_cert,
            server_name: None,
        };
        tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&settings).unwrap())
    }

    fn tls_sink(far: &FarEnd, pki: &test_pki::Pki, with_cert: bool) -> MllpSink {
        let port = far.addr.rsplit_once(':').unwrap().1;
        let mut settings = format!(
            "[tls]\nca = \"{}\"\nserver_name = \"localhost\"\n",
            pki.ca.display()
        );
        if with_cert {
            settings.push_str(&format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                pki.client_cert.display(),
                pki.client_key.display()
            ));
        }
        sink(&format!("127.0.0.1:{port}"), &settings)
    }

    #[tokio::test]
    async fn the_sender_delivers_over_tls_and_keeps_the_connection() {
        let certs = tempfile::tempdir().unwrap();
        let pki = test_pki::create(certs.path());
        let far = far_end_with(vec![], Some(acceptor(&pki, false))).await;
        let s = tls_sink(&far, &pki, false);
        for id in 1..=3 {
            assert!(delivered(&s.deliver(&[delivery(id)]).await));
        }
        assert_eq!(far.received(), ["OUT1", "OUT2", "OUT3"]);
        assert_eq!(far.accepted(), 1);
    }

    #[tokio::test]
    async fn mutual_tls_delivers_with_a_client_certificate_and_fails_retryably_without() {
        let certs = tempfile::tempdir().unwrap();
        let pki = test_pki::create(certs.path());
        let far = far_end_with(vec![], Some(acceptor(&pki, true))).await;
        assert!(delivered(
            &tls_sink(&far, &pki, true).deliver(&[delivery(1)]).await
        ));
        let out = tls_sink(&far, &pki, false).deliver(&[delivery(2)]).await;
        assert!(matches!(&out[0], Outcome::Retryable { .. }), "{out:?}");
        assert_eq!(
            far.received(),
            ["OUT1"],
            "nothing reached the far end without a certificate"
        );
    }

    #[tokio::test]
    async fn a_far_end_with_a_certificate_from_another_ca_is_refused() {
        let certs = tempfile::tempdir().unwrap();
        let pki = test_pki::create(certs.path());
        let other = tempfile::tempdir().unwrap();
        let stranger = test_pki::create(other.path());
        let far = far_end_with(vec![], Some(acceptor(&stranger, false))).await;
        let out = tls_sink(&far, &pki, false).deliver(&[delivery(1)]).await;
        assert!(
            matches!(&out[0], Outcome::Retryable { error, .. } if error.contains("TLS handshake")),
            "{out:?}"
        );
        assert!(far.received().is_empty());
    }
}
