//! Flood protection and sandbox mode end to end: the real binary, a file
//! drop feeding a `rest` destination, and the stand-in API on Python's own
//! http.server (`tests/python/rest_standin.py`) recording when each request
//! arrived.
//!
//! - `rate_limit`: 30 messages at 10/s with a burst of 5 leave over 2.5 s
//!   (the first 5 at once, then one every 100 ms), timed by the server;
//! - `circuit_breaker`: a server answering 400 to everything gets the
//!   breaker's 5 requests and no more; every message stays queued (none
//!   dead); once the server is fixed, `ecko-gateway resume` delivers all;
//! - `mode = "sandbox"`: nothing reaches the live server; without a
//!   `sandbox_url` the journal keeps the request that would have been sent
//!   (method, URL, headers with the API key masked, body); with one, the
//!   sandbox server gets the request and the live one nothing.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::rest_standin::{file_drop_to_rest, StandIn};
use ecko_tests::{eventually, free_port, gateway_command, Gateway};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// [`file_drop_to_rest`], and the path of its configuration.
fn gateway(dir: &Path, sink: &str) -> (Gateway, PathBuf, PathBuf) {
    let (gw, db) = file_drop_to_rest(dir, sink);
    (gw, db, dir.join("gateway.toml"))
}

/// Drops `n` claims into the inbox at once (renamed in, complete).
fn drop_claims(dir: &Path, n: usize) {
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..n {
        let name = format!("c{i:04}.json");
        std::fs::write(staging.join(&name), format!(r#"{{"claim":"CL-{i}"}}"#)).unwrap();
    }
    for i in 0..n {
        let name = format!("c{i:04}.json");
        std::fs::rename(staging.join(&name), dir.join("inbox").join(&name)).unwrap();
    }
}

/// Every message's outbox row, once there are `n` messages and `done`
/// holds for their rows.
fn rows_when(
    db: &Path,
    n: usize,
    timeout: Duration,
    done: impl Fn(&[ecko_gateway::journal::OutboxRecord]) -> bool,
) -> Vec<ecko_gateway::journal::OutboxRecord> {
    let mut rows = Vec::new();
    let ok = eventually(timeout, || {
        let Ok(r) = JournalReader::open(db) else {
            return false;
        };
        let Ok(ids) = r.message_ids() else {
            return false;
        };
        rows = ids
            .iter()
            .filter_map(|id| r.outbox_of(*id).ok()?.into_iter().next())
            .collect();
        rows.len() == n && done(&rows)
    });
    assert!(ok, "{rows:#?}");
    rows
}

fn all_in(state: OutboxState) -> impl Fn(&[ecko_gateway::journal::OutboxRecord]) -> bool {
    move |rows| rows.iter().all(|r| r.state == state)
}

#[test]
fn thirty_messages_to_a_destination_limited_to_10_per_second_leave_over_two_and_a_half_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = StandIn::start(dir.path(), port, &[], "{}");
    let (_gw, db, _) = gateway(
        dir.path(),
        &format!(
            "url = \"http://127.0.0.1:{port}/claims\"\nrate_limit = {{ per_second = 10, burst = 5 }}"
        ),
    );
    drop_claims(dir.path(), 30);
    rows_when(
        &db,
        30,
        Duration::from_secs(30),
        all_in(OutboxState::Delivered),
    );
    let at: Vec<f64> = api
        .requests()
        .iter()
        .map(|r| r["at"].as_f64().unwrap())
        .collect();
    assert_eq!(at.len(), 30);
    let span = at[29] - at[0];
    // 5 at once, then 25 at 10/s: 2.5 s, and not much more.
    assert!((2.3..=4.0).contains(&span), "30 requests over {span:.2} s");
    // No second holds more than the burst and one second's rate.
    for (i, t) in at.iter().enumerate() {
        let within = at[i..].iter().take_while(|u| **u - t < 1.0).count();
        assert!(within <= 15, "{within} requests within 1 s of request {i}");
    }
}

/// `ecko-gateway resume` of `claims`, beside the running gateway; what it
/// printed.
fn resume(config: &Path) -> String {
    let out = gateway_command()
        .args(["resume", "--config"])
        .arg(config)
        .arg("claims")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_destination_refusing_everything_is_paused_with_its_messages_queued_and_resume_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A mapping the server rejects: 400 to everything.
    let refusals: Vec<String> = (0..100)
        .map(|_| r#"[400, {}, "{\"error\":\"invalid claim\"}"]"#.to_string())
        .collect();
    let broken = StandIn::start(
        dir.path(),
        port,
        &[],
        &format!(r#"{{"/claims": [{}]}}"#, refusals.join(",")),
    );
    let (gw, db, config) = gateway(
        dir.path(),
        &format!(
            "url = \"http://127.0.0.1:{port}/claims\"\ncircuit_breaker = {{ failures = 5, window = \"1m\" }}"
        ),
    );
    drop_claims(dir.path(), 20);
    assert!(
        eventually(Duration::from_secs(20), || std::fs::read_to_string(&gw.log)
            .unwrap_or_default()
            .contains("circuit breaker tripped")),
        "the breaker never tripped"
    );
    // Paused: the breaker's five requests and no more, and nothing dead.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(broken.requests().len(), 5);
    let rows = rows_when(
        &db,
        20,
        Duration::from_secs(10),
        all_in(OutboxState::Queued),
    );
    assert_eq!(
        rows.iter().filter(|r| r.attempts == 1).count(),
        5,
        "the five refused carry their attempt: {rows:#?}"
    );
    // The server is fixed; an operator resumes the destination.
    drop(broken);
    let fixed = StandIn::start(dir.path(), port, &[], "{}");
    assert!(resume(&config).contains("resumed"));
    rows_when(
        &db,
        20,
        Duration::from_secs(20),
        all_in(OutboxState::Delivered),
    );
    let claims: Vec<String> = fixed
        .requests()
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(claims.len(), 20, "each message once: {claims:?}");
    assert!(resume(&config).contains("not paused"));
}

/// The JSON the journal kept of the only message's captured delivery.
fn capture(db: &Path) -> Value {
    let rows = rows_when(
        db,
        1,
        Duration::from_secs(20),
        all_in(OutboxState::Delivered),
    );
    let events = JournalReader::open(db)
        .unwrap()
        .events_of(rows[0].message_id)
        .unwrap();
    let captured = events
        .iter()
        .find(|e| e.kind == "captured")
        .unwrap_or_else(|| panic!("no capture: {events:#?}"));
    assert!(
        !events.iter().any(|e| e.kind == "attempt"),
        "nothing was attempted live: {events:#?}"
    );
    serde_json::from_str(captured.detail.as_deref().unwrap()).unwrap()
}

const SANDBOXED: &str = r#"method = "PUT"
mode = "sandbox"
[endpoint.headers]
X-Source = "{{ msg.source }}"
X-Claim-Token = "t-123"
[endpoint.auth]
type = "api-key"
header = "X-Key"
key = "k-secret-77"
"#;

#[test]
fn a_sandboxed_destination_sends_nothing_and_keeps_the_request_with_its_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let live = StandIn::start(dir.path(), port, &[], "{}");
    let (_gw, db, _) = gateway(
        dir.path(),
        &format!("url = \"http://127.0.0.1:{port}/claims/{{{{ json.claim }}}}\"\n{SANDBOXED}"),
    );
    drop_claims(dir.path(), 1);
    let c = capture(&db);
    assert_eq!(c["sent_to"], "nowhere (captured)");
    let r = &c["request"];
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["url"], format!("http://127.0.0.1:{port}/claims/CL-0"));
    assert_eq!(r["body"], r#"{"claim":"CL-0"}"#);
    let headers: Vec<(String, String)> = serde_json::from_value(r["headers"].clone()).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("X-Source"), Some("inbox"));
    assert_eq!(header("X-Key"), Some("********"));
    assert_eq!(header("X-Claim-Token"), Some("********"));
    let text = c.to_string();
    assert!(
        !text.contains("k-secret-77") && !text.contains("t-123"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(live.requests().is_empty(), "the live API got nothing");
}

#[test]
fn a_sandboxed_destination_with_a_sandbox_url_sends_there_and_never_to_the_live_url() {
    let dir = tempfile::tempdir().unwrap();
    let (live_port, sandbox_port) = (free_port(), free_port());
    let live = StandIn::start(dir.path(), live_port, &[], "{}");
    let sandbox = StandIn::start(
        dir.path(),
        sandbox_port,
        &["--api-key", "X-Key=k-secret-77"],
        "{}",
    );
    let (_gw, db, _) = gateway(
        dir.path(),
        &format!(
            "url = \"http://127.0.0.1:{live_port}/claims/{{{{ json.claim }}}}\"\nsandbox_url = \"http://127.0.0.1:{sandbox_port}/claims/{{{{ json.claim }}}}\"\n{SANDBOXED}"
        ),
    );
    drop_claims(dir.path(), 1);
    let c = capture(&db);
    let seen = sandbox.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["method"], "PUT");
    assert_eq!(seen[0]["path"], "/claims/CL-0");
    // The sandbox authenticates like the live API would.
    assert_eq!(seen[0]["headers"]["x-key"], "k-secret-77");
    assert!(c["response"].as_str().unwrap().contains("HTTP 201"), "{c}");
    assert!(c["sent_to"]
        .as_str()
        .unwrap()
        .contains(&sandbox_port.to_string()));
    assert!(!c.to_string().contains("k-secret-77"), "{c}");
    assert!(live.requests().is_empty(), "the live API got nothing");
}
