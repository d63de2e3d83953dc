use crate::config::{Config, EndpointKind};
use crate::journal::{Journal, JournalOptions};
use crate::router::Router;
use crate::sources::rest::Listener;
use crate::sources::SourceContext;
use ecko_hal::storage::SimStorage;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Harness {
    _dir: tempfile::TempDir,
    journal: Journal,
    addr: SocketAddr,
    disk: SimStorage,
    counters: crate::service::SourceCounters,
    _stop: tokio_util::sync::DropGuard,
    http: reqwest::Client,
}

const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","code":{"text":"Hb"}}"#;

/// A plain-HTTP listener on loopback with `settings` after its `listen`,
/// routing everything to a file sink.
async fn harness(settings: &str) -> Harness {
    harness_with(settings, "").await
}

/// Like [`harness`], with `more` (endpoints, routes) at the end.
async fn harness_with(settings: &str, more: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[journal]
path = "{d}/j.db"
[[endpoint]]
name = "api"
type = "rest"
listen = "127.0.0.1:0"
{plain}
{settings}
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"
[[route]]
name = "all"
from = ["api"]
to = ["archive"]
{more}
"#,
        d = dir.path().display(),
        plain = if settings.contains("[endpoint.tls]") {
            ""
        } else {
            "plain_http = true"
        },
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let disk = SimStorage::new(u64::MAX);
    let mut options = JournalOptions::new(dir.path().join("j.db"));
    options.storage = Arc::new(disk.clone());
    options.min_free_disk = 1000;
    let journal = Journal::open(options).unwrap();
    let stop = CancellationToken::new();
    let counters = crate::service::SourceCounters::default();
    let cx = SourceContext {
        journal: journal.clone(),
        router: Arc::new(Router::new(&config)),
        shutdown: stop.clone(),
        time_zone: jiff::tz::TimeZone::UTC.into(),
        health: crate::health::Health::new(),
        counters: counters.clone(),
        heartbeat: Default::default(),
    };
    let endpoint = config.endpoint("api").unwrap();
    let EndpointKind::Rest(rest) = &endpoint.kind else {
        unreachable!()
    };
    let listener = Listener::bind(endpoint, rest, cx).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(listener.serve());
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(
            crate::tls::https_client_config(&crate::tls::HttpsTrust {
                ca_file: None,
                pinned_cert: None,
                identity: None,
            })
            .unwrap(),
        )
        .build()
        .unwrap();
    Harness {
        _dir: dir,
        journal,
        addr,
        disk,
        counters,
        _stop: stop.drop_guard(),
        http,
    }
}

const FHIR_PATH: &str = r#"
[[endpoint.paths]]
path = "/fhir"
"#;

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, ty: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", ty)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_resource_is_in_the_journal_before_its_201_arrives() {
    let h = harness(FHIR_PATH).await;
    let r = h
        .post("/fhir/Observation", "application/fhir+json", OBSERVATION)
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id: i64 = location
        .strip_prefix("/messages/")
        .unwrap()
        .parse()
        .unwrap();
    let stored = h
        .journal
        .message(id)
        .await
        .unwrap()
        .expect("stored before 201");
    assert_eq!(stored.payload, OBSERVATION.as_bytes());
    assert_eq!(stored.message_type, "FHIR^Observation");
    assert_eq!(stored.source, "api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_method_type_or_shape_is_refused_and_nothing_is_stored() {
    let h = harness(FHIR_PATH).await;
    assert_eq!(
        h.post("/other", "application/fhir+json", OBSERVATION)
            .await
            .status(),
        404
    );
    let get = h.http.get(h.url("/fhir")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(
        h.post("/fhir", "text/plain", OBSERVATION).await.status(),
        415
    );
    let r = h
        .post("/fhir", "application/fhir+json", r#"{"status":"final"}"#)
        .await;
    assert_eq!(r.status(), 400);
    let outcome: serde_json::Value = r.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("resourceType"));
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_api_key_is_let_in() {
    let h = harness(&format!(
        "{FHIR_PATH}[endpoint.auth]\ntype = \"api-key\"\nkey = \"k-123\"\n"
    ))
    .await;
    let post = |key: Option<&str>| {
        let mut r = h
            .http
            .post(h.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .body(OBSERVATION);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("k-12")).await.unwrap().status(), 401);
    assert_eq!(post(Some("k-123")).await.unwrap().status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_refused_whether_declared_or_streamed() {
    let h = harness(&format!("max_body_size = \"1 KiB\"\n{FHIR_PATH}")).await;
    let big = format!(
        r#"{{"resourceType":"Observation","note":"{}"}}"#,
        "x".repeat(2000)
    );
    assert_eq!(
        h.post("/fhir", "application/fhir+json", &big)
            .await
            .status(),
        413
    );
    // Chunked: no Content-Length, refused once the bytes pass the cap.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(300).map(|c| Ok(c.to_vec())).collect();
    let r = h
        .http
        .post(h.url("/fhir"))
        .header("content-type", "application/fhir+json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    assert_eq!(
        (h.counters.received.get(), h.counters.refused.get()),
        (2, 2),
        "each counted as a message refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_with_the_same_idempotency_key_answers_the_same_id_and_stores_once() {
    let h = harness(FHIR_PATH).await;
    let post = || {
        h.http
            .post(h.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .header("idempotency-key", "order-77")
            .body(OBSERVATION)
            .send()
    };
    let first = post().await.unwrap();
    let second = post().await.unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    assert_eq!(first.headers()["location"], second.headers()["location"]);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_body_under_a_known_idempotency_key_is_422_and_stores_nothing() {
    let h = harness(FHIR_PATH).await;
    let post = |body: String| {
        h.http
            .post(h.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .header("idempotency-key", "order-78")
            .body(body)
            .send()
    };
    assert_eq!(post(OBSERVATION.into()).await.unwrap().status(), 201);
    let refused = post(OBSERVATION.replace("Hb", "Hgb")).await.unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("order-78") && text.contains("different body"),
        "{text}"
    );
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
    // Without the header the journal's rule holds: a different body under
    // the same Bundle identifier is stored anew.
    let bundle = |value: &str| {
        format!(
            r#"{{"resourceType":"Bundle","type":"collection","identifier":{{"system":"urn:lab","value":"b-1"}},"entry":[{{"resource":{{"resourceType":"Patient","id":"{value}"}}}}]}}"#
        )
    };
    assert_eq!(
        h.post("/fhir", "application/fhir+json", &bundle("p1"))
            .await
            .status(),
        201
    );
    assert_eq!(
        h.post("/fhir", "application/fhir+json", &bundle("p2"))
            .await
            .status(),
        201
    );
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_transaction_becomes_one_message_per_entry_keyed_by_the_bundle_identifier() {
    let h = harness("[[endpoint.paths]]\npath = \"/fhir\"\nbundles = \"split\"\n").await;
    let bundle = r#"{"resourceType":"Bundle","type":"transaction",
        "identifier":{"system":"urn:lab","value":"b-9"},
        "entry":[{"resource":{"resourceType":"Patient","id":"p"}},
                 {"resource":{"resourceType":"Observation","id":"o"}}]}"#;
    let r = h.post("/fhir", "application/fhir+json", bundle).await;
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<i64> = serde_json::from_value(body["message_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    let second = h.journal.message(ids[1]).await.unwrap().unwrap();
    assert_eq!(second.message_type, "FHIR^Observation");
    assert_eq!(second.dedup_key.as_deref(), Some("urn:lab|b-9#1"));
    // The same Bundle again: the same ids, nothing new.
    let again: serde_json::Value = h
        .post("/fhir", "application/fhir+json", bundle)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["message_ids"], body["message_ids"]);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_limit_get_429_with_retry_after() {
    let h = harness(&format!(
        "rate_limit = {{ per_second = 1, burst = 3 }}\n{FHIR_PATH}"
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = h.post("/fhir", "application/fhir+json", OBSERVATION).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_with_retry_after_and_the_client_keeps_its_copy() {
    let h = harness(FHIR_PATH).await;
    h.disk.set_available(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.post("/fhir", "application/fhir+json", OBSERVATION).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    h.disk.set_available(u64::MAX);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.post("/fhir", "application/fhir+json", OBSERVATION).await;
    assert_eq!(r.status(), 201, "taken once the disk has room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_text_paths_take_their_own_bodies_with_their_message_types() {
    let h = harness(
        "[[endpoint.paths]]\npath = \"/lab\"\naccept = \"json\"\nmessage_type = \"LAB\"\n\
         [[endpoint.paths]]\npath = \"/notes\"\naccept = \"text\"\n",
    )
    .await;
    let r = h.post("/lab", "application/json", r#"{"a":1}"#).await;
    assert_eq!(r.status(), 201);
    let id: i64 = r.headers()["x-message-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        h.journal.message(id).await.unwrap().unwrap().message_type,
        "LAB"
    );
    assert_eq!(
        h.post("/lab", "application/json", "{nope").await.status(),
        400
    );
    assert_eq!(h.post("/notes", "text/plain", "hello").await.status(), 201);
    assert_eq!(
        h.post("/notes", "application/json", "{}").await.status(),
        415
    );
}

fn https_client(pki: &crate::tls::test_pki::Pki, with_cert: bool) -> reqwest::Client {
    let tls = crate::tls::https_client_config(&crate::tls::HttpsTrust {
        ca_file: Some(pki.ca.clone()),
        pinned_cert: None,
        identity: with_cert.then(|| (pki.client_cert.clone(), pki.client_key.clone())),
    })
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_only_a_client_with_one_from_the_ca_is_served() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = crate::tls::test_pki::create(pki_dir.path());
    let h = harness(&format!(
        "[endpoint.tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\nrequire_client_cert = true\n\
         [endpoint.auth]\ntype = \"client-certificate\"\n{FHIR_PATH}",
        pki.server_cert, pki.server_key, pki.ca
    ))
    .await;
    let url = format!("https://localhost:{}/fhir", h.addr.port());
    let post = |c: reqwest::Client| {
        let url = url.clone();
        async move {
            c.post(url)
                .header("content-type", "application/fhir+json")
                .body(OBSERVATION)
                .send()
                .await
        }
    };
    assert!(
        post(https_client(&pki, false)).await.is_err(),
        "no certificate, no TLS"
    );
    let r = post(https_client(&pki, true)).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness(&format!("body_timeout = \"1s\"\n{FHIR_PATH}")).await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{\"resourceType\"",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .expect("answered, not left hanging")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_headers_is_cut_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness(&format!("header_timeout = \"1s\"\n{FHIR_PATH}")).await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"POST /fhir HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_from_the_jwks_lets_a_post_in_and_its_absence_is_401() {
    use crate::sources::rest::auth::tests::{claims, key_pair, token};
    let (key, jwk) = key_pair("k1");
    let jwks = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        jwks.path(),
        serde_json::json!({ "keys": [jwk] }).to_string(),
    )
    .unwrap();
    let h = harness(&format!(
        "{FHIR_PATH}[endpoint.auth]\ntype = \"bearer\"\njwks_file = {:?}\nissuer = \"https://idp.example\"\naudience = \"ecko\"\nscope = \"results.write\"\n",
        jwks.path()
    ))
    .await;
    let post = |bearer: Option<String>| {
        let mut r = h
            .http
            .post(h.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .body(OBSERVATION);
        if let Some(t) = bearer {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send()
    };
    let none = post(None).await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let read_only = token(&key, "k1", claims(300, "results.read"));
    assert_eq!(post(Some(read_only)).await.unwrap().status(), 403);
    let writer = token(&key, "k1", claims(300, "results.write"));
    assert_eq!(post(Some(writer)).await.unwrap().status(), 201);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_a_fhir_destination_cannot_take_gets_422_naming_it_and_nothing_is_stored() {
    let hub = r#"
[[endpoint]]
name = "hub"
type = "fhir"
url = "http://127.0.0.1:9/fhir"
[[route]]
name = "to-hub"
from = ["api"]
to = ["hub"]
"#;
    let h = harness_with(FHIR_PATH, hub).await;
    // Without a transform the hub takes transaction Bundles only.
    let r = h
        .post("/fhir/Observation", "application/fhir+json", OBSERVATION)
        .await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("destination `hub` cannot take the message"),
        "{text}"
    );
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#;
    assert_eq!(
        h.post("/fhir", "application/fhir+json", bundle)
            .await
            .status(),
        201
    );
}
