//! The `rest` endpoint type end to end, the real binary against Python's
//! own HTTP client and server (http.client, http.server):
//!
//! - in: `config/examples/rest.toml` as shipped, posted FHIR answered 201
//!   with a `Location` once it is in the journal and then in the archive;
//!   a wrong key 401, a wrong type 415, a repeat under one
//!   `Idempotency-Key` stored once; on a listener with a small cap and
//!   rate, 413 for a large body and 429 with `Retry-After` under a burst;
//! - out: a templated sink to a stand-in API with an API key and with
//!   OAuth client credentials, a 503 with `Retry-After` then success, a 400
//!   that goes dead with the server's answer, and a server down then up
//!   that gets the message exactly once.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::rest_standin::{file_drop_to_rest as outbound, StandIn};
use ecko_tests::{
    default_on_free_ports, eventually, free_port, gateway_binary, python_script, Gateway,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"valueQuantity":{"value":13.2,"unit":"g/dL"}}"#;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/rest.toml")
}

/// Posts `body` `count` times with Python's http.client; one answer each.
fn post(port: u16, path: &str, ty: &str, headers: &[&str], body: &str, count: usize) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(python_script("rest_post.py"))
        .args(["--port", &port.to_string(), "--path", path, "--type", ty])
        .args(["--count", &count.to_string()])
        .arg("--body")
        .arg(&file);
    for h in headers {
        cmd.args(["--header", h]);
    }
    let out = cmd.output().expect("python3 rest_post.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn status(answer: &Value) -> u64 {
    answer["status"].as_u64().unwrap()
}

#[test]
fn the_rest_example_passes_check_config() {
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg(example())
        .env("ECKO_REST_KEY", "k-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let without_key = Command::new(gateway_binary())
        .arg("check-config")
        .arg(example())
        .env_remove("ECKO_REST_KEY")
        .output()
        .unwrap();
    assert!(!without_key.status.success(), "no key, no listener");
}

#[test]
fn fhir_posted_to_the_example_is_journalled_answered_201_and_archived() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = default_on_free_ports(dir.path());
    env.push(("ECKO_REST_PORT", port.to_string()));
    env.push(("ECKO_REST_KEY", "k-secret-1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _gw = Gateway::start(&example(), &dir.path().join("log"), &env);
    let key = "X-API-Key: k-secret-1";

    let a = &post(
        port,
        "/fhir/Observation",
        "application/fhir+json",
        &[key],
        OBSERVATION,
        1,
    )[0];
    assert_eq!(status(a), 201, "{a}");
    let location = a["headers"]["location"].as_str().unwrap();
    let id: i64 = location
        .strip_prefix("/messages/")
        .unwrap()
        .parse()
        .unwrap();
    let db = dir.path().join("var/journal.db");
    let reader = JournalReader::open(&db).unwrap();
    let stored = reader
        .message(id)
        .unwrap()
        .expect("in the journal at the 201");
    assert_eq!(stored.payload, OBSERVATION.as_bytes());
    assert_eq!(stored.message_type, "FHIR^Observation");
    let outbox = dir.path().join("var/outbox");
    assert!(
        eventually(Duration::from_secs(10), || {
            std::fs::read_dir(&outbox)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| std::fs::read(f.path()).is_ok_and(|b| b == OBSERVATION.as_bytes()))
        }),
        "archived"
    );

    let wrong = &post(
        port,
        "/fhir",
        "application/fhir+json",
        &["X-API-Key: nope"],
        OBSERVATION,
        1,
    )[0];
    assert_eq!(status(wrong), 401, "{wrong}");
    let no_key = &post(port, "/fhir", "application/fhir+json", &[], OBSERVATION, 1)[0];
    assert_eq!(status(no_key), 401);
    let xml = &post(
        port,
        "/fhir",
        "application/fhir+xml",
        &[key],
        "<Observation/>",
        1,
    )[0];
    assert_eq!(status(xml), 415, "{xml}");
    let shapeless = &post(
        port,
        "/fhir",
        "application/fhir+json",
        &[key],
        r#"{"entry":[]}"#,
        1,
    )[0];
    assert_eq!(status(shapeless), 400, "{shapeless}");

    let idem = [key, "Idempotency-Key: lis-order-4711"];
    let twice = post(
        port,
        "/fhir",
        "application/fhir+json",
        &idem,
        OBSERVATION,
        2,
    );
    assert_eq!((status(&twice[0]), status(&twice[1])), (201, 201));
    assert_eq!(
        twice[0]["headers"]["location"],
        twice[1]["headers"]["location"]
    );
    assert_eq!(twice[1]["headers"]["idempotent-replayed"], "true");
    let changed = &post(
        port,
        "/fhir",
        "application/fhir+json",
        &idem,
        &OBSERVATION.replace("13.2", "14.1"),
        1,
    )[0];
    assert_eq!(
        status(changed),
        422,
        "another body under the key: {changed}"
    );
    let ids = reader.message_ids().unwrap();
    assert_eq!(
        ids.len(),
        2,
        "the first message and the idempotent one, once: {ids:?}"
    );
}

#[test]
fn a_large_body_gets_413_and_a_burst_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "api"
type = "rest"
listen = "127.0.0.1:{port}"
plain_http = true
max_body_size = "4 KiB"
rate_limit = {{ per_second = 0.5, burst = 5 }}
[[endpoint.paths]]
path = "/fhir"
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"
[[route]]
name = "all"
from = ["api"]
to = ["archive"]
"#
        ),
    )
    .unwrap();
    let _gw = Gateway::start(&config, &dir.path().join("log"), &[]);
    let big = format!(
        r#"{{"resourceType":"Observation","note":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let a = &post(port, "/fhir", "application/fhir+json", &[], &big, 1)[0];
    assert_eq!(status(a), 413, "{a}");
    let burst = post(port, "/fhir", "application/fhir+json", &[], OBSERVATION, 12);
    let statuses: Vec<u64> = burst.iter().map(status).collect();
    // The 413 took a token too: four of the burst are stored, the rest wait.
    assert_eq!(statuses[..4], [201; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    let wait: u64 = burst[4]["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let reader = JournalReader::open(&dir.path().join("journal.db")).unwrap();
    assert_eq!(reader.message_ids().unwrap().len(), 4);
}

#[test]
fn an_opaque_bearer_token_is_judged_by_the_identity_providers_introspection_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (port, idp_port) = (free_port(), free_port());
    let mut idp = Some(StandIn::start(
        dir.path(),
        idp_port,
        &[
            "--introspect",
            "gateway:s3cret",
            "--active",
            "op-writer=lab.write",
            "--active",
            "op-reader=lab.read",
        ],
        "{}",
    ));
    let d = dir.path().display();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "api"
type = "rest"
listen = "127.0.0.1:{port}"
plain_http = true
[endpoint.auth]
type = "bearer"
introspection_url = "http://127.0.0.1:{idp_port}/introspect"
client_id = "gateway"
client_secret = "s3cret"
introspection_cache = "0s"
issuer = "https://idp.example"
audience = "ecko"
scope = "lab.write"
[[endpoint.paths]]
path = "/fhir"
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"
[[route]]
name = "all"
from = ["api"]
to = ["archive"]
"#
        ),
    )
    .unwrap();
    let _gw = Gateway::start(&config, &dir.path().join("log"), &[]);
    let with = |token: &str| {
        let header = format!("Authorization: Bearer {token}");
        post(
            port,
            "/fhir",
            "application/fhir+json",
            &[header.as_str()],
            OBSERVATION,
            1,
        )
        .remove(0)
    };
    assert_eq!(status(&with("op-writer")), 201);
    let reader = with("op-reader");
    assert_eq!(status(&reader), 403, "{reader}");
    assert_eq!(status(&with("made-up")), 401);
    // Revoked at the provider: refused at once (nothing kept with 0s).
    let revoke = Command::new("python3")
        .args(["-c", "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], data=b'token=op-writer')"])
        .arg(format!("http://127.0.0.1:{idp_port}/revoke"))
        .status()
        .unwrap();
    assert!(revoke.success());
    assert_eq!(status(&with("op-writer")), 401);
    // The provider out of reach: not judged, so 503 with Retry-After, and
    // nothing is stored.
    drop(idp.take());
    let unjudged = with("op-reader");
    assert_eq!(status(&unjudged), 503, "{unjudged}");
    assert!(unjudged["headers"]["retry-after"].is_string(), "{unjudged}");
    let reader = JournalReader::open(&dir.path().join("journal.db")).unwrap();
    assert_eq!(reader.message_ids().unwrap().len(), 1);
}

#[test]
fn a_transaction_split_into_one_transaction_per_entry_keeps_each_entrys_conditional_request() {
    let server = ecko_tests::fhir::FhirServer::start(0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "api"
type = "rest"
listen = "127.0.0.1:{port}"
plain_http = true
[[endpoint.paths]]
path = "/fhir"
bundles = "split-transactions"
[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"
[[route]]
name = "all"
from = ["api"]
transform = "none"
to = ["hub"]
"#,
            base = server.base
        ),
    )
    .unwrap();
    let _gw = Gateway::start(&config, &dir.path().join("log"), &[]);
    let bundle = |family: &str| {
        format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[
            {{"fullUrl":"urn:uuid:7d0c2f4e-0001-4c1e-9a55-1b0d8f2e7a01","resource":{{"resourceType":"Patient","identifier":[{{"system":"urn:lis:mrn","value":"M-17"}}],"name":[{{"family":"{family}"}}]}},
             "request":{{"method":"PUT","url":"Patient?identifier=urn:lis:mrn|M-17"}}}},
            {{"resource":{{"resourceType":"Observation","status":"final","identifier":[{{"system":"urn:lis:obs","value":"O-1"}}],"code":{{"text":"Hb"}}}},
             "request":{{"method":"PUT","url":"Observation?identifier=urn:lis:obs|O-1"}}}}]}}"#
        )
    };
    for family in ["Meyer", "Meier"] {
        let answer = &post(
            port,
            "/fhir",
            "application/fhir+json",
            &[],
            &bundle(family),
            1,
        )[0];
        assert_eq!(status(answer), 202, "{answer}");
    }
    let reader = JournalReader::open(&dir.path().join("journal.db")).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || reader
            .counts()
            .map(|c| c.iter().map(|d| d.delivered).sum::<u64>() == 4)
            .unwrap_or(false)),
        "{:?}",
        reader.counts()
    );
    // Each conditional PUT found what the one before created.
    assert_eq!(
        ecko_tests::fhir::count(&server.base, "Patient?identifier=urn:lis:mrn|M-17"),
        1
    );
    assert_eq!(
        ecko_tests::fhir::count(&server.base, "Patient?family=Meier"),
        1
    );
    assert_eq!(
        ecko_tests::fhir::count(&server.base, "Observation?identifier=urn:lis:obs|O-1"),
        1
    );
    // Entries that refer to each other cannot travel apart: refused whole.
    let linked = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:7d0c2f4e-0002-4c1e-9a55-1b0d8f2e7a01","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Observation","status":"final","code":{"text":"Hb"},"subject":{"reference":"urn:uuid:7d0c2f4e-0002-4c1e-9a55-1b0d8f2e7a01"}},"request":{"method":"POST","url":"Observation"}}]}"#;
    let refused = &post(port, "/fhir", "application/fhir+json", &[], linked, 1)[0];
    assert_eq!(status(refused), 400, "{refused}");
    assert!(
        refused["body"].as_str().unwrap().contains("entry[0]"),
        "{refused}"
    );
    assert_eq!(reader.message_ids().unwrap().len(), 4);
}

fn drop_file(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join("inbox").join(name)).unwrap();
}

/// The outbox row of the only message, once it is in `state`.
fn settled(db: &Path, state: OutboxState) -> ecko_gateway::journal::OutboxRecord {
    let mut found = None;
    let ok = eventually(Duration::from_secs(20), || {
        let Ok(r) = JournalReader::open(db) else {
            return false;
        };
        let Some(id) = r.message_ids().ok().and_then(|ids| ids.first().copied()) else {
            return false;
        };
        found = r.outbox_of(id).ok().and_then(|o| o.into_iter().next());
        found.as_ref().is_some_and(|o| o.state == state)
    });
    assert!(ok, "not {state:?}: {found:?}");
    found.unwrap()
}

#[test]
fn the_sink_renders_its_templates_and_presents_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = StandIn::start(dir.path(), port, &["--api-key", "X-Key=k-77"], "{}");
    let sink = format!(
        r#"url = "http://127.0.0.1:{port}/claims/{{{{ json.claim }}}}"
method = "PUT"
body = '{{{{ {{"claim": json.claim, "amount": json.amount, "message": msg.id}} | tojson }}}}'
capture = ["/id", "/status"]
[endpoint.headers]
X-Source = "{{{{ msg.source }}}}"
[endpoint.auth]
type = "api-key"
header = "X-Key"
key = "k-77"
"#
    );
    let (_gw, db) = outbound(dir.path(), &sink);
    drop_file(dir.path(), "c1.json", r#"{"claim":"CL-9","amount":120}"#);
    let row = settled(&db, OutboxState::Delivered);
    let seen = api.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["method"], "PUT");
    assert_eq!(seen[0]["path"], "/claims/CL-9");
    assert_eq!(seen[0]["headers"]["x-source"], "inbox");
    let body: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["claim"], "CL-9");
    assert_eq!(body["amount"], 120);
    let events = JournalReader::open(&db)
        .unwrap()
        .events_of(row.message_id)
        .unwrap();
    let kept = events
        .iter()
        .filter_map(|e| e.detail.clone())
        .find(|o| o.contains("R-1"))
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        kept.contains(r#""/id":"R-1""#) && kept.contains(r#""/status":"queued""#),
        "{kept}"
    );
}

#[test]
fn the_sink_fetches_an_oauth_token_and_retries_a_503_after_its_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = r#"{"/claims": [[503, {"Retry-After": "2"}, "{\"error\":\"busy\"}"]]}"#;
    let api = StandIn::start(dir.path(), port, &["--client", "gw:s3cret"], script);
    let sink = format!(
        r#"url = "http://127.0.0.1:{port}/claims"
[endpoint.auth]
type = "oauth2"
token_url = "http://127.0.0.1:{port}/token"
client_id = "gw"
client_secret = "s3cret"
"#
    );
    let (_gw, db) = outbound(dir.path(), &sink);
    drop_file(dir.path(), "c1.json", r#"{"claim":"CL-1"}"#);
    let row = settled(&db, OutboxState::Delivered);
    let seen = api.requests();
    assert_eq!(seen.len(), 2, "a 503, then the delivery: {seen:?}");
    for r in &seen {
        assert_eq!(r["headers"]["authorization"], "Bearer tok-1");
    }
    let gap = seen[1]["at"].as_f64().unwrap() - seen[0]["at"].as_f64().unwrap();
    assert!(
        gap >= 1.9,
        "Retry-After: 2 honoured, not the 200ms backoff: {gap}"
    );
    assert_eq!(row.attempts, 2);
}

#[test]
fn a_400_goes_dead_with_the_servers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = r#"{"/claims": [[400, {}, "{\"error\":\"policy number missing\"}"]]}"#;
    let api = StandIn::start(dir.path(), port, &[], script);
    let (_gw, db) = outbound(
        dir.path(),
        &format!("url = \"http://127.0.0.1:{port}/claims\""),
    );
    drop_file(dir.path(), "c1.json", r#"{"claim":"CL-2"}"#);
    let row = settled(&db, OutboxState::Dead);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("HTTP 400") && error.contains("policy number missing"),
        "{error}"
    );
    assert_eq!(api.requests().len(), 1, "not retried");
}

#[test]
fn a_server_down_then_up_gets_the_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_gw, db) = outbound(
        dir.path(),
        &format!("url = \"http://127.0.0.1:{port}/claims\""),
    );
    drop_file(dir.path(), "c1.json", r#"{"claim":"CL-3"}"#);
    assert!(
        eventually(Duration::from_secs(10), || {
            JournalReader::open(&db)
                .ok()
                .and_then(|r| {
                    let id = *r.message_ids().ok()?.first()?;
                    r.outbox_of(id).ok()?.into_iter().next()
                })
                .is_some_and(|o| o.attempts >= 2 && o.state != OutboxState::Delivered)
        }),
        "attempts failed while the server is down"
    );
    let api = StandIn::start(dir.path(), port, &[], "{}");
    settled(&db, OutboxState::Delivered);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(api.requests().len(), 1, "delivered once");
}
