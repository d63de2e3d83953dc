use super::*;
use crate::config::{Direction, RetryPolicy};
use ecko_fhir::shape::FhirDestination;
use ecko_message::StoredMessage;
use rustls_pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

type Answers = Arc<Mutex<std::vec::IntoIter<(u16, &'static str, String)>>>;

/// Serves one connection: each request gets the next scripted answer.
async fn serve<S>(mut sock: S, log: Arc<Mutex<Vec<Seen>>>, answers: Answers)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
        buf.drain(..end + 4 + len);
        log.lock().unwrap().push(Seen { head, body });
        let (status, headers, text) =
            answers
                .lock()
                .unwrap()
                .next()
                .unwrap_or((500, "", "script ended".into()));
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\n{headers}\r\n{text}",
            text.len()
        );
        if sock.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1:0 that answers each request with the
/// next scripted (status, extra headers, body), and records what it got.
async fn scripted(answers: Vec<(u16, &'static str, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let answers: Answers = Arc::new(Mutex::new(answers.into_iter()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, log.clone(), answers.clone()));
        }
    });
    (url, seen)
}

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    (issued.cert.pem(), issued.signing_key.serialize_pem())
}

/// The scripted server behind a real rustls server with `cert`/`key`.
async fn scripted_tls(
    cert: &str,
    key: &str,
    answers: Vec<(u16, &'static str, String)>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use rustls_pki_types::pem::PemObject;
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let answers: Answers = Arc::new(Mutex::new(answers.into_iter()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, log, answers) = (acceptor.clone(), log.clone(), answers.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                if let Ok(tls) = acceptor.accept(sock).await {
                    serve(tls, log, answers).await;
                }
            });
        }
    });
    (url, seen)
}

fn endpoint() -> Endpoint {
    Endpoint {
        name: "hub".into(),
        direction: Direction::Outbound,
        enabled: true,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy::default(),
        partition_by: None,
        lanes: 1,
        protection: crate::config::Protection::destination_default(),
        kind: crate::config::EndpointKind::Fhir(config("http://unused")),
        line: 1,
    }
}

fn config(url: &str) -> FhirSinkConfig {
    FhirSinkConfig {
        url: url.into(),
        auth: FhirAuth::None,
        ca_file: None,
        pinned_cert: None,
        max_batch: 1,
        max_entries: 50,
        conditional_updates: true,
        code_map: BTreeMap::new(),
        code_map_by_source: BTreeMap::new(),
    }
}

fn bundle(entries: &[(&str, &str)]) -> Vec<u8> {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(url, code)| {
            serde_json::json!({
                "fullUrl": url,
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "urn:ecko-edge:lab:code", "code": code}]}},
                "request": {"method": "PUT", "url": format!("Observation?identifier=x|{url}")}
            })
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )
    .unwrap()
}

/// A delivery of `payload` (a Bundle's JSON) as the delivery worker hands
/// it over for a destination with the default shaping.
fn delivery(id: i64, payload: Vec<u8>) -> Delivery {
    shaped(id, payload, &FhirDestination::default())
}

/// A delivery of `payload` (a Bundle's JSON, routed with transform `none`)
/// shaped by the worker for `destination`.
fn shaped(id: i64, payload: Vec<u8>, destination: &FhirDestination) -> Delivery {
    let mut d = unshaped(id, payload);
    let cx = ecko_fhir::TransformContext {
        fhir: Some(Arc::new(destination.clone())),
        ..Default::default()
    };
    d.payload = ecko_fhir::transform("none", &d.message, &cx).unwrap();
    d
}

fn unshaped(id: i64, payload: Vec<u8>) -> Delivery {
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
                content_type: "x".into(),
                control_id: None,
                patient_id: None,
                payload: payload.clone(),
                ack: None,
                hints: Default::default(),
            },
        }),
        payload: Payload::Bytes(payload),
    }
}

const OUTCOME_400: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant","diagnostics":"Missing required property Observation.code"}]}"#;

#[tokio::test]
async fn a_2xx_answer_is_delivered_with_where_the_entries_went() {
    let ok = r#"{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201","location":"Observation/1"}}]}"#;
    let (url, seen) = scripted(vec![(200, "", ok.into())]).await;
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    assert_eq!(
        out,
        [Outcome::Delivered {
            response: Some("HTTP 200; 201 Observation/1".into())
        }]
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].head.starts_with("POST / HTTP/1.1"),
        "{}",
        seen[0].head
    );
    assert!(seen[0]
        .head
        .to_ascii_lowercase()
        .contains("content-type: application/fhir+json"));
}

#[tokio::test]
async fn busy_and_server_errors_are_retried_after_the_servers_wish() {
    let (url, _) = scripted(vec![
        (503, "retry-after: 7\r\n", "down".into()),
        (429, "", "slow".into()),
        (408, "", "".into()),
    ])
    .await;
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let d = [delivery(1, bundle(&[("urn:uuid:a", "GLU")]))];
    assert_eq!(
        sink.deliver(&d).await,
        [Outcome::Retryable {
            error: "HTTP 503: down".into(),
            retry_after: Some(Duration::from_secs(7))
        }]
    );
    assert!(
        matches!(&sink.deliver(&d).await[0], Outcome::Retryable { error, retry_after: None } if error == "HTTP 429: slow")
    );
    assert!(matches!(
        &sink.deliver(&d).await[0],
        Outcome::Retryable { .. }
    ));
}

#[tokio::test]
async fn a_refused_bundle_is_permanent_and_keeps_the_operation_outcome() {
    let (url, _) = scripted(vec![(400, "", OUTCOME_400.into())]).await;
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    assert_eq!(
        out,
        [Outcome::Permanent {
            error: format!("HTTP 400: {OUTCOME_400}")
        }]
    );
}

#[tokio::test]
async fn nobody_listening_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    assert!(matches!(&out[0], Outcome::Retryable { .. }), "{out:?}");
}

#[tokio::test]
async fn queued_messages_merge_into_one_transaction_and_the_same_resource_appears_once() {
    let (url, seen) = scripted(vec![(200, "", "{}".into())]).await;
    let mut c = config(&url);
    c.max_batch = 10;
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    assert_eq!(sink.max_batch(), 10);
    let out = sink
        .deliver(&[
            delivery(1, bundle(&[("urn:uuid:p", "P1"), ("urn:uuid:a", "GLU")])),
            delivery(2, bundle(&[("urn:uuid:p", "P2"), ("urn:uuid:b", "NA")])),
        ])
        .await;
    assert!(out.iter().all(|o| matches!(o, Outcome::Delivered { .. })));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let sent: Value = serde_json::from_str(&seen[0].body).unwrap();
    let urls: Vec<_> = sent["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(urls, ["urn:uuid:p", "urn:uuid:a", "urn:uuid:b"]);
    // The later message's content wins.
    assert_eq!(
        sent["entry"][0]["resource"]["code"]["coding"][0]["code"],
        "P2"
    );
}

#[tokio::test]
async fn a_refused_merge_is_split_so_only_the_bad_message_goes_dead() {
    let (url, seen) = scripted(vec![
        (400, "", OUTCOME_400.into()),
        (200, "", "{}".into()),
        (400, "", OUTCOME_400.into()),
        (200, "", "{}".into()),
    ])
    .await;
    let mut c = config(&url);
    c.max_batch = 10;
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let out = sink
        .deliver(&[
            delivery(1, bundle(&[("urn:uuid:a", "A")])),
            delivery(2, bundle(&[("urn:uuid:b", "B")])),
            delivery(3, bundle(&[("urn:uuid:c", "C")])),
        ])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }));
    assert!(matches!(out[1], Outcome::Permanent { .. }));
    assert!(matches!(out[2], Outcome::Delivered { .. }));
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_payload_not_shaped_into_a_bundle_is_permanent_after_the_ones_before_it() {
    let (url, _) = scripted(vec![(200, "", "{}".into())]).await;
    let mut c = config(&url);
    c.max_batch = 10;
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let out = sink
        .deliver(&[
            delivery(1, bundle(&[("urn:uuid:a", "A")])),
            unshaped(2, b"MSH|^~\\&|".to_vec()),
            delivery(3, bundle(&[("urn:uuid:c", "C")])),
        ])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }));
    assert!(matches!(out[1], Outcome::Permanent { .. }));
    assert_eq!(out[2], Outcome::NotAttempted);
}

#[tokio::test]
async fn the_api_key_travels_in_its_header() {
    let (url, seen) = scripted(vec![(200, "", "{}".into())]).await;
    let mut c = config(&url);
    c.auth = FhirAuth::ApiKey {
        header: "X-Hub-Key".into(),
        key: "s3cret".into(),
    };
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    sink.deliver(&[delivery(1, bundle(&[("urn:uuid:a", "A")]))])
        .await;
    assert!(seen.lock().unwrap()[0]
        .head
        .to_ascii_lowercase()
        .contains("x-hub-key: s3cret"));
}

#[tokio::test]
async fn an_oauth_token_is_cached_and_refreshed_once_after_a_401() {
    let token =
        |t: &str| format!(r#"{{"access_token":"{t}","token_type":"Bearer","expires_in":3600}}"#);
    let (url, seen) = scripted(vec![
        (200, "", token("T1")),      // token
        (200, "", "{}".into()),      // bundle 1 with T1
        (200, "", "{}".into()),      // bundle 2 with cached T1
        (401, "", "expired".into()), // bundle 3 with T1: refused
        (200, "", token("T2")),      // new token
        (200, "", "{}".into()),      // bundle 3 again with T2
    ])
    .await;
    let mut c = config(&format!("{url}/fhir"));
    c.auth = FhirAuth::OAuth2 {
        token_url: format!("{url}/token"),
        client_id: "gw".into(),
        client_secret: "pw".into(),
        scope: Some("system/*.write".into()),
    };
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    for i in 1..=3 {
        let out = sink
            .deliver(&[delivery(i, bundle(&[("urn:uuid:a", "A")]))])
            .await;
        assert!(matches!(out[0], Outcome::Delivered { .. }), "{i}: {out:?}");
    }
    let seen = seen.lock().unwrap();
    let heads: Vec<_> = seen
        .iter()
        .map(|s| s.head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        heads,
        [
            "POST /token HTTP/1.1",
            "POST /fhir HTTP/1.1",
            "POST /fhir HTTP/1.1",
            "POST /fhir HTTP/1.1",
            "POST /token HTTP/1.1",
            "POST /fhir HTTP/1.1"
        ]
    );
    assert!(
        seen[0].body.contains("grant_type=client_credentials")
            && seen[0].body.contains("scope=system%2F*.write"),
        "{}",
        seen[0].body
    );
    assert!(seen[2].head.contains("Bearer T1"));
    assert!(seen[5].head.contains("Bearer T2"));
}

/// `code_map` and `code_map_by_source`, read from the configuration file,
/// reach the server in what the sink POSTs: ASTM results through the real
/// transform get LOINC in front of the analyzer's code; the per-source table
/// applies to its source only; codes nobody mapped stay local.
#[tokio::test]
async fn the_code_map_from_the_configuration_reaches_the_server_for_local_codes_only() {
    let (url, seen) = scripted(vec![(200, "", "{}".into()), (200, "", "{}".into())]).await;
    let toml = format!(
        r#"
[journal]
path = "j.db"
[[endpoint]]
name = "c311"
type = "file-drop"
path = "in"
[[endpoint]]
name = "other"
type = "file-drop"
path = "in2"
[[endpoint]]
name = "hub"
type = "fhir"
url = "{url}"
[endpoint.code_map]
NA = "2951-2"
[endpoint.code_map_by_source.c311]
GLU = {{ code = "2345-7", display = "Glucose" }}
[[route]]
name = "r"
from = ["c311", "other"]
transform = "astm-fhir"
to = ["hub"]
"#
    );
    let config = crate::config::Config::parse(&toml, "gw.toml", |_| None).unwrap();
    let hub = config.endpoint("hub").unwrap();
    let crate::config::EndpointKind::Fhir(c) = &hub.kind else {
        panic!()
    };
    let sink = FhirSink::new(hub, c).unwrap();
    let cx = ecko_fhir::TransformContext {
        fhir: Some(Arc::new(crate::endpoints::fhir::shaping(c))),
        ..Default::default()
    };
    let astm = include_bytes!("../../../../protocol/src/astm/testdata/chemistry_results.astm");
    let from = |source: &str| {
        let message = StoredMessage {
            id: 1,
            received_at: 0,
            envelope: ecko_message::Envelope {
                source: source.into(),
                dedup_key: Some("k".into()),
                message_type: "ASTM".into(),
                content_type: "application/x-astm".into(),
                control_id: None,
                patient_id: None,
                payload: astm.to_vec(),
                ack: None,
                hints: Default::default(),
            },
        };
        let payload = ecko_fhir::transform("astm-fhir", &message, &cx).unwrap();
        Delivery {
            outbox_id: 1,
            attempt: 1,
            lane: String::new(),
            message: Arc::new(message),
            payload,
        }
    };
    for source in ["c311", "other"] {
        let out = sink.deliver(&[from(source)]).await;
        assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    }
    let seen = seen.lock().unwrap();
    let codings_of = |body: &str, local: &str| -> Vec<(String, String)> {
        let sent: Value = serde_json::from_str(body).unwrap();
        let obs = sent["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| {
                r["resourceType"] == "Observation"
                    && r["code"]["coding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["code"] == local)
            })
            .unwrap()
            .clone();
        obs["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["system"].as_str().unwrap().to_string(),
                    c["code"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let loinc = |code: &str| ("http://loinc.org".to_string(), code.to_string());
    let local =
        |source: &str, code: &str| (format!("urn:ecko-edge:{source}:code"), code.to_string());
    assert_eq!(
        codings_of(&seen[0].body, "GLU"),
        [loinc("2345-7"), local("c311", "GLU")]
    );
    assert_eq!(
        codings_of(&seen[0].body, "NA"),
        [loinc("2951-2"), local("c311", "NA")]
    );
    assert_eq!(codings_of(&seen[0].body, "K"), [local("c311", "K")]);
    assert!(seen[0].body.contains(r#""display":"Glucose""#));
    // From another analyzer: the c311 table does not apply, the shared one does.
    assert_eq!(codings_of(&seen[1].body, "GLU"), [local("other", "GLU")]);
    assert_eq!(
        codings_of(&seen[1].body, "NA"),
        [loinc("2951-2"), local("other", "NA")]
    );
}

#[test]
fn retry_after_is_read_as_seconds_or_a_date() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon"), None);
}

/// A pinned server certificate is the only one accepted: the server that
/// presents it gets the Bundle; another server, with a certificate that is
/// just as valid but not the pinned one, gets nothing, and the message waits.
#[tokio::test]
async fn a_pinned_certificate_is_accepted_and_any_other_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pinned_cert, pinned_key) = self_signed();
    let (other_cert, other_key) = self_signed();
    let pin = dir.path().join("pinned.pem");
    std::fs::write(&pin, &pinned_cert).unwrap();
    let (url, seen) = scripted_tls(&pinned_cert, &pinned_key, vec![(200, "", "{}".into())]).await;
    let mut c = config(&url);
    c.pinned_cert = Some(pin.clone());
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    let (url, seen) = scripted_tls(&other_cert, &other_key, vec![(200, "", "{}".into())]).await;
    let mut c = config(&url);
    c.pinned_cert = Some(pin);
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    match &out[0] {
        Outcome::Retryable { error, .. } => {
            assert!(error.contains("not the pinned one"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");

    // Without a pin, the same self-signed server is not trusted either.
    let (url, _) = scripted_tls(&other_cert, &other_key, vec![(200, "", "{}".into())]).await;
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let out = sink
        .deliver(&[delivery(1, bundle(&[("urn:uuid:a", "GLU")]))])
        .await;
    assert!(matches!(out[0], Outcome::Retryable { .. }), "{out:?}");
}

/// A token is used until shortly before the server said it expires, then
/// fetched again before the next request, without a 401 in between.
#[tokio::test]
async fn an_oauth_token_that_expires_is_renewed_before_the_next_request() {
    let token =
        |t: &str| format!(r#"{{"access_token":"{t}","token_type":"Bearer","expires_in":2}}"#);
    let (url, seen) = scripted(vec![
        (200, "", token("T1")),
        (200, "", "{}".into()),
        (200, "", "{}".into()),
        (200, "", token("T2")),
        (200, "", "{}".into()),
    ])
    .await;
    let mut c = config(&format!("{url}/fhir"));
    c.auth = FhirAuth::OAuth2 {
        token_url: format!("{url}/token"),
        client_id: "gw".into(),
        client_secret: "pw".into(),
        scope: None,
    };
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let d = [delivery(1, bundle(&[("urn:uuid:a", "A")]))];
    assert!(matches!(
        sink.deliver(&d).await[0],
        Outcome::Delivered { .. }
    ));
    assert!(matches!(
        sink.deliver(&d).await[0],
        Outcome::Delivered { .. }
    ));
    // Granted for 2 s, used for 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        sink.deliver(&d).await[0],
        Outcome::Delivered { .. }
    ));
    let seen = seen.lock().unwrap();
    let lines: Vec<_> = seen
        .iter()
        .map(|s| s.head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "POST /token HTTP/1.1",
            "POST /fhir HTTP/1.1",
            "POST /fhir HTTP/1.1",
            "POST /token HTTP/1.1",
            "POST /fhir HTTP/1.1"
        ]
    );
    assert!(seen[2].head.contains("Bearer T1"));
    assert!(seen[4].head.contains("Bearer T2"));
}

/// A 401 that a fresh token does not cure, and a 403, keep the message
/// queued (they are about the endpoint's credentials, not the message) with
/// an error that says what to fix.
#[tokio::test]
async fn refused_credentials_keep_messages_waiting_with_a_reason() {
    let token = r#"{"access_token":"T","token_type":"Bearer","expires_in":3600}"#;
    let (url, seen) = scripted(vec![
        (200, "", token.into()),
        (401, "", "bad token".into()),
        (200, "", token.into()),
        (401, "", "still bad".into()),
        (403, "", "forbidden".into()),
    ])
    .await;
    let mut c = config(&format!("{url}/fhir"));
    c.auth = FhirAuth::OAuth2 {
        token_url: format!("{url}/token"),
        client_id: "gw".into(),
        client_secret: "pw".into(),
        scope: None,
    };
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let d = [delivery(1, bundle(&[("urn:uuid:a", "A")]))];
    match &sink.deliver(&d).await[0] {
        Outcome::Retryable { error, .. } => {
            assert!(
                error.starts_with("HTTP 401 even with fresh credentials"),
                "{error}"
            );
            assert!(
                error.contains("[endpoint.auth]") && error.contains("still bad"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 4, "one refresh, not more");
    match &sink.deliver(&d).await[0] {
        Outcome::Retryable { error, .. } => {
            assert!(error.starts_with("HTTP 403: the server forbids"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

/// By default a FHIR destination gets conditional entries as PUTs on their
/// deterministic ids; with `conditional_updates` they go as made.
#[tokio::test]
async fn entries_go_by_id_unless_conditional_updates_are_asked_for() {
    let (url, seen) = scripted(vec![(200, "", "{}".into()), (200, "", "{}".into())]).await;
    let payload = bundle(&[("urn:uuid:6f1c2a8e-4b7d-4e0a-9c35-1d2e8f60a7b4", "A")]);
    let sink = FhirSink::new(&endpoint(), &config(&url)).unwrap();
    let mut destination = FhirDestination::default();
    sink.deliver(&[shaped(1, payload.clone(), &destination)])
        .await;
    destination.conditional_updates = true;
    sink.deliver(&[shaped(1, payload, &destination)]).await;
    let seen = seen.lock().unwrap();
    let sent: Vec<Value> = seen
        .iter()
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(
        sent[0]["entry"][0]["request"]["url"],
        "Observation/6f1c2a8e-4b7d-4e0a-9c35-1d2e8f60a7b4"
    );
    assert_eq!(
        sent[1]["entry"][0]["request"]["url"],
        "Observation?identifier=x|urn:uuid:6f1c2a8e-4b7d-4e0a-9c35-1d2e8f60a7b4"
    );
}

#[test]
fn a_capture_is_the_post_of_the_bundle_with_the_api_key_masked_and_nothing_sent() {
    let mut c = config("http://127.0.0.1:9/fhir");
    c.auth = FhirAuth::ApiKey {
        header: "X-Hub-Access".into(),
        key: "hub-key-123".into(),
    };
    let sink = FhirSink::new(&endpoint(), &c).unwrap();
    let captures = sink.capture(&[
        delivery(1, bundle(&[("urn:uuid:a", "GLU")])),
        unshaped(2, b"not a bundle".to_vec()),
    ]);
    let first = captures[0].as_ref().unwrap();
    assert_eq!(first.method.as_deref(), Some("POST"));
    assert_eq!(first.url.as_deref(), Some("http://127.0.0.1:9/fhir"));
    assert!(first.headers.contains(&(
        "X-Hub-Access".to_string(),
        crate::sinks::capture::MASK.to_string()
    )));
    assert!(first.body.contains("\"GLU\""), "{}", first.body);
    assert!(!first.to_json().contains("hub-key-123"));
    assert!(captures[1].is_err(), "bytes are not a Bundle");
}
