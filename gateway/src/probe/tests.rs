use super::*;
use crate::config::{Config, TlsSettings};
use crate::tls::test_pki;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use std::net::SocketAddr;
use tokio::net::TcpListener;

fn endpoint(settings: &str) -> Endpoint {
    // An MLLP sender's endpoint timeout must cover its own three timeouts.
    let sender_timeouts = if settings.contains("type = \"mllp\"") && settings.contains("connect =")
    {
        "connect_timeout = \"500ms\"\nsend_timeout = \"500ms\"\nack_timeout = \"500ms\"\n"
    } else {
        ""
    };
    let text = format!(
        "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"far\"\ntimeout = \"2s\"\n{sender_timeouts}{settings}\n"
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    config.endpoints[0].clone()
}

fn fast() -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_secs(2),
        mllp_round_trip: false,
    }
}

fn names(r: &ProbeReport) -> Vec<(&str, bool)> {
    r.steps.iter().map(|s| (s.name.as_str(), s.ok)).collect()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::test]
async fn an_mllp_sender_is_reached_over_tcp_and_the_report_says_nothing_was_sent() {
    let (l, addr) = listener().await;
    let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
    let e = endpoint(&format!("type = \"mllp\"\nconnect = \"{addr}\""));
    let r = probe(&e, fast()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(names(&r), [("TCP connect", true)]);
    assert!(r.note.unwrap().contains("Only TCP and TLS were checked"));
    accept.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_closed_port_fails_the_tcp_step_with_the_reason() {
    let (l, addr) = listener().await;
    drop(l);
    let e = endpoint(&format!("type = \"mllp\"\nconnect = \"{addr}\""));
    let r = probe(&e, fast()).await;
    assert!(!r.ok);
    assert_eq!(names(&r), [("TCP connect", false)]);
    assert!(r.steps[0].detail.contains("refused"), "{r:?}");
}

fn tls_server(pki: &test_pki::Pki) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(
        crate::tls::server_config(&TlsSettings {
            cert: Some(pki.server_cert.clone()),
            key: Some(pki.server_key.clone()),
            ca: None,
            require_client_cert: false,
            server_name: None,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn a_tls_sender_checks_the_handshake_against_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki::create(dir.path());
    let other = tempfile::tempdir().unwrap();
    let stranger = test_pki::create(other.path());
    let (l, addr) = listener().await;
    let acceptor = tls_server(&pki);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = acceptor.accept(s).await;
        }
    });
    let e = endpoint(&format!(
        "type = \"mllp\"\nconnect = \"127.0.0.1:{}\"\ntls = {{ ca = \"{}\", server_name = \"localhost\" }}",
        addr.port(),
        pki.ca.display()
    ));
    let r = probe(&e, fast()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(names(&r), [("TCP connect", true), ("TLS handshake", true)]);

    let e = endpoint(&format!(
        "type = \"mllp\"\nconnect = \"127.0.0.1:{}\"\ntls = {{ ca = \"{}\", server_name = \"localhost\" }}",
        addr.port(),
        stranger.ca.display()
    ));
    let r = probe(&e, fast()).await;
    assert!(!r.ok);
    assert_eq!(names(&r), [("TCP connect", true), ("TLS handshake", false)]);
    assert!(
        r.steps[1].detail.to_lowercase().contains("certificate"),
        "{r:?}"
    );
}

/// Answers every MLLP frame with an ACK of the given code.
async fn mllp_peer(code: &'static str) -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut decoder = mllp::Decoder::default();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(mllp::Event::Frame(f)) = decoder.next_event() {
                        let text = String::from_utf8_lossy(&f).into_owned();
                        let control = text
                            .split('\r')
                            .next()
                            .unwrap()
                            .split('|')
                            .nth(9)
                            .unwrap()
                            .to_string();
                        let ack = format!("MSH|^~\\&|PEER|X|ECKO-EDGE|GATEWAY|20240101||ACK^N01|A1|T|2.5\rMSA|{code}|{control}|seen\r");
                        let _ = s.write_all(&mllp::encode(ack.as_bytes())).await;
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => decoder.push(&buf[..n], Instant::now()),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_mllp_round_trip_sends_a_test_query_and_reports_the_acknowledgement_code() {
    let addr = mllp_peer("AE").await;
    let e = endpoint(&format!("type = \"mllp\"\nconnect = \"{addr}\""));
    let r = probe(
        &e,
        ProbeOptions {
            mllp_round_trip: true,
            ..fast()
        },
    )
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        names(&r),
        [("TCP connect", true), ("MLLP round trip", true)]
    );
    assert!(r.steps[1].detail.contains("answered AE: seen"), "{r:?}");
    assert!(r.note.is_none());
}

#[tokio::test]
async fn an_mllp_round_trip_to_a_silent_peer_times_out() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let kept = l.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(kept);
    });
    let e = endpoint(&format!("type = \"mllp\"\nconnect = \"{addr}\""));
    let r = probe(
        &e,
        ProbeOptions {
            timeout: Duration::from_millis(300),
            mllp_round_trip: true,
        },
    )
    .await;
    assert!(!r.ok);
    assert_eq!(
        names(&r),
        [("TCP connect", true), ("MLLP round trip", false)]
    );
    assert!(r.steps[1].detail.contains("no answer within"), "{r:?}");
}

fn fhir_app() -> axum::Router {
    axum::Router::new().route(
        "/fhir/metadata",
        get(|headers: HeaderMap| async move {
            if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("right") {
                return (StatusCode::UNAUTHORIZED, "{}".to_string());
            }
            (
                StatusCode::OK,
                r#"{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","software":{"name":"Tiny FHIR"}}"#.to_string(),
            )
        }),
    )
}

#[tokio::test]
async fn a_fhir_endpoint_gets_its_capability_statement_with_its_api_key() {
    let (l, addr) = listener().await;
    tokio::spawn(async move { axum::serve(l, fhir_app()).await });
    let fhir = |key: &str| {
        endpoint(&format!(
            "type = \"fhir\"\nurl = \"http://{addr}/fhir\"\nauth = {{ type = \"api-key\", key = \"{key}\" }}"
        ))
    };
    let r = probe(&fhir("right"), fast()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(names(&r), [("TCP connect", true), ("GET metadata", true)]);
    assert!(
        r.steps[1]
            .detail
            .contains("HTTP 200: CapabilityStatement, FHIR 4.0.1, Tiny FHIR"),
        "{r:?}"
    );
    let r = probe(&fhir("wrong"), fast()).await;
    assert!(!r.ok);
    assert!(r.steps[1].detail.contains("HTTP 401"), "{r:?}");
    assert!(
        r.steps[1].detail.contains("authentication refused"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_fhir_endpoint_over_https_checks_the_handshake_then_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki::create(dir.path());
    let (l, addr) = listener().await;
    let acceptor = tls_server(&pki);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(fhir_app());
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    let e = endpoint(&format!(
        "type = \"fhir\"\nurl = \"https://localhost:{}/fhir\"\nca_file = \"{}\"\nauth = {{ type = \"api-key\", key = \"right\" }}",
        addr.port(),
        pki.ca.display()
    ));
    let r = probe(&e, fast()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        names(&r),
        [
            ("TCP connect", true),
            ("TLS handshake", true),
            ("GET metadata", true)
        ]
    );
}

#[tokio::test]
async fn a_file_destination_checks_that_its_directory_can_take_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = endpoint(&format!(
        "type = \"file\"\npath = \"{}/out\"",
        dir.path().display()
    ));
    let r = probe(&e, fast()).await;
    assert!(r.ok, "{r:?}");
    assert!(r.steps[0].detail.contains("was created"));
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let e = endpoint(&format!(
        "type = \"file\"\npath = \"{}/blocker/out\"",
        dir.path().display()
    ));
    assert!(!probe(&e, fast()).await.ok);
}
