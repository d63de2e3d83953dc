use super::*;
use crate::config::{Config, EndpointKind};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use ecko_fhir::Payload;
use ecko_message::{Envelope, StoredMessage};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// What the stand-in server saw, and what it answers next.
#[derive(Default)]
struct Server {
    seen: Mutex<Vec<(Method, String, HeaderMap, String)>>,
    /// Answered in order; once empty: 200 `{}`.
    answers: Mutex<Vec<Answer>>,
}

async fn stand_in(server: Arc<Server>) -> String {
    async fn any(
        State(s): State<Arc<Server>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        s.seen
            .lock()
            .unwrap()
            .push((method, uri.to_string(), headers, body));
        let next = {
            let mut a = s.answers.lock().unwrap();
            (!a.is_empty()).then(|| a.remove(0))
        };
        let (status, headers, body) = next.unwrap_or((200, vec![], "{}"));
        let mut r = axum::response::IntoResponse::into_response((
            StatusCode::from_u16(status).unwrap(),
            body,
        ));
        for (k, v) in headers {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    }
    let app = axum::Router::new().fallback(any).with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn sink(keys: &str) -> RestSink {
    let text = format!(
        "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"claims\"\ntype = \"rest\"\n{keys}\n"
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let e = &config.endpoints[0];
    let EndpointKind::Rest(c) = &e.kind else {
        unreachable!()
    };
    RestSink::new(e, c).unwrap()
}

fn delivery(payload: &str) -> Delivery {
    Delivery {
        outbox_id: 1,
        attempt: 1,
        lane: String::new(),
        message: Arc::new(StoredMessage {
            id: 42,
            received_at: 0,
            envelope: Envelope {
                source: "lab".into(),
                message_type: "ORU^R01".into(),
                control_id: Some("MSG-7".into()),
                payload: b"MSH|...".to_vec(),
                ..Default::default()
            },
        }),
        payload: Payload::Bytes(payload.as_bytes().to_vec()),
    }
}

#[tokio::test]
async fn method_url_headers_and_body_are_rendered_from_the_message() {
    let server = Arc::new(Server::default());
    let base = stand_in(server.clone()).await;
    let s = sink(&format!(
        r#"url = "{base}/claims/{{{{ msg.control_id }}}}"
method = "{{{{ 'PUT' if json.amount else 'POST' }}}}"
body = '{{{{ {{"claim": json.claim, "from": msg.source}} | tojson }}}}'
[endpoint.headers]
X-Message = "{{{{ msg.id }}}}"
"#
    ));
    let out = s
        .deliver(&[delivery(r#"{"claim":"C-1","amount":12}"#)])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    let seen = server.seen.lock().unwrap();
    let (method, uri, headers, body) = &seen[0];
    assert_eq!(method, Method::PUT);
    assert_eq!(uri, "/claims/MSG-7");
    assert_eq!(headers["x-message"], "42");
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body, serde_json::json!({"claim": "C-1", "from": "lab"}));
}

#[tokio::test]
async fn without_a_body_template_the_transform_output_is_sent_with_the_api_key() {
    let server = Arc::new(Server::default());
    let base = stand_in(server.clone()).await;
    let s = sink(&format!(
        "url = \"{base}/in\"\n[endpoint.auth]\ntype = \"api-key\"\nheader = \"X-Key\"\nkey = \"k1\"\n"
    ));
    s.deliver(&[delivery("as transformed")]).await;
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[0].3, "as transformed");
    assert_eq!(seen[0].2["x-key"], "k1");
}

#[tokio::test]
async fn answers_are_classified_as_for_fhir_with_retry_after_honoured() {
    let server = Arc::new(Server::default());
    let base = stand_in(server.clone()).await;
    let s = sink(&format!("url = \"{base}/x\""));
    *server.answers.lock().unwrap() = vec![
        (503, vec![("retry-after", "7")], "busy"),
        (429, vec![], "slow down"),
        (400, vec![], r#"{"error":"amount missing"}"#),
        (403, vec![], "no"),
        (201, vec![], "{}"),
    ];
    let d = delivery("{}");
    let o = s.deliver(std::slice::from_ref(&d)).await;
    assert_eq!(
        o[0],
        Outcome::Retryable {
            error: "HTTP 503: busy".into(),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(
        s.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Retryable { .. }
    ));
    match &s.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { error } => assert!(error.contains("amount missing"), "{error}"),
        o => panic!("{o:?}"),
    }
    assert!(matches!(
        s.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Retryable { .. }
    ));
    assert!(matches!(
        s.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Delivered { .. }
    ));
}

#[tokio::test]
async fn captured_fields_of_the_answer_are_the_response_kept() {
    let server = Arc::new(Server::default());
    let base = stand_in(server.clone()).await;
    let s = sink(&format!(
        "url = \"{base}/x\"\ncapture = [\"/id\", \"/status/code\", \"/missing\"]"
    ));
    *server.answers.lock().unwrap() = vec![(
        201,
        vec![],
        r#"{"id":"CLM-9","status":{"code":"queued"},"noise":"x"}"#,
    )];
    match &s.deliver(&[delivery("{}")]).await[0] {
        Outcome::Delivered { response: Some(r) } => {
            assert_eq!(
                r,
                r#"HTTP 201; {"/id":"CLM-9","/missing":null,"/status/code":"queued"}"#
            );
        }
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn a_template_that_fails_for_a_message_makes_it_dead_with_the_reason() {
    let s = sink("url = \"http://127.0.0.1:9/{{ msg.source | nosuchfilter }}\"");
    match &s.deliver(&[delivery("{}")]).await[0] {
        Outcome::Permanent { error } => assert!(error.contains("template `url`"), "{error}"),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_retried() {
    let s = sink("url = \"http://127.0.0.1:9/x\"");
    assert!(matches!(
        s.deliver(&[delivery("{}")]).await[0],
        Outcome::Retryable { .. }
    ));
}

#[tokio::test]
async fn a_server_that_never_answers_is_retried_after_the_endpoints_timeout_not_waited_on() {
    // Takes the connection and the request, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let s = sink(&format!("url = \"http://{addr}/slow\"\ntimeout = \"1s\""));
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(15), s.deliver(&[delivery("{}")]))
        .await
        .expect("the delivery hung past its timeout");
    assert!(
        matches!(&out[0], Outcome::Retryable { .. }),
        "a slow server is a reason to try again, never a dead letter: {out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
