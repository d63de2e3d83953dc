//! The admin log page and messages API on a journal of 1,000,000 messages:
//! time to answer the first page, a deep page (keyset `before`), and the
//! filters (endpoint, status, control id, patient id, time range).
//!
//! `cargo bench -p ecko-gateway --bench admin_messages` (set
//! `ECKO_BENCH_MESSAGES` for another size). The journal is filled with
//! plain SQL in one transaction for speed, after the journal created its
//! schema; every query goes through the real router.

use axum::body::Body;
use axum::http::{header, Request};
use ecko_gateway::admin::{router, AdminState};
use ecko_gateway::config::Config;
use ecko_gateway::journal::{Journal, JournalOptions};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn main() {
    let n: i64 = std::env::var("ECKO_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let j = Journal::open(JournalOptions::new(&path)).expect("journal");
        j.close().await;
    });

    let t = Instant::now();
    {
        let mut c = rusqlite::Connection::open(&path).expect("sqlite");
        c.pragma_update(None, "synchronous", "OFF").expect("pragma");
        let tx = c.transaction().expect("tx");
        {
            let mut m = tx
                .prepare("INSERT INTO message (id, source, dedup_key, message_type, content_type, control_id, patient_id, received_at, payload) VALUES (?1, ?2, ?3, 'ORU^R01', 'x-application/hl7-v2+er7', ?3, ?4, ?5, ?6)")
                .expect("prepare");
            let mut o = tx
                .prepare("INSERT INTO outbox (message_id, destination, transform, lane, state, attempts, next_attempt_at, created_at, updated_at, last_error) VALUES (?1, 'archive', 'none', '', ?2, ?3, ?4, ?4, ?4, ?5)")
                .expect("prepare");
            let start = 1_700_000_000_000i64;
            for i in 1..=n {
                let at = start + i * 600; // ~1 week per million
                let control = format!("C{i}");
                let payload = format!("MSH|^~\\&|LAB|H|GW|H|20240101||ORU^R01|{control}|P|2.5\rPID|||P{}\rOBX|1|NM|GLU||5.2|mmol/L\r", i % 5000);
                let source = if i % 2 == 0 { "inbox" } else { "lab" };
                m.execute(rusqlite::params![
                    i,
                    source,
                    control,
                    format!("P{}", i % 5000),
                    at,
                    payload.as_bytes()
                ])
                .expect("insert");
                let (state, attempts, err) = if i % 10_000 == 0 {
                    (3, 5, Some("HTTP 503"))
                } else {
                    (2, 1, None)
                };
                o.execute(rusqlite::params![i, state, attempts, at, err])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    println!("filled {n} messages in {:.1} s", t.elapsed().as_secs_f64());

    let config = Config::parse(
        &format!(
            "[journal]\npath = \"{}\"\n[[endpoint]]\nname = \"inbox\"\ntype = \"file-drop\"\npath = \"/nonexistent\"\n[[endpoint]]\nname = \"lab\"\ntype = \"file-drop\"\npath = \"/nonexistent2\"\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"/nonexistent3\"\n[[route]]\nname = \"r\"\nfrom = [\"inbox\", \"lab\"]\nto = [\"archive\"]\n",
            path.display()
        ),
        "bench.toml",
        |_| None,
    )
    .expect("config");
    rt.block_on(async move {
        let j = Journal::open(JournalOptions::new(&path)).expect("journal");
        let hash = ecko_gateway::admin::hash_password("benchmark password").expect("hash");
        let uid = j
            .admin_create_user("bench", "viewer", &hash, "bench", false)
            .await
            .expect("user");
        j.admin_open_session(uid, &hex_sha256("tok"), "csrf", 3_600_000)
            .await
            .expect("session");
        let app = router(AdminState::new(
            j.clone(),
            Arc::new(config),
            CancellationToken::new(),
        ));
        let cases = [
            ("log page, first page", "/logs".to_string()),
            ("log page, deep page", format!("/logs?before={}", n / 2)),
            (
                "log page, endpoint filter",
                "/logs?endpoint=lab".to_string(),
            ),
            ("log page, dead only", "/logs?status=dead".to_string()),
            (
                "log page, patient filter",
                "/logs?patient_id=P42".to_string(),
            ),
            ("API, first page", "/api/v1/messages".to_string()),
            (
                "API, control id",
                format!("/api/v1/messages?control_id=C{}", n / 3),
            ),
            (
                "API, time range",
                format!(
                    "/api/v1/messages?from={}&to={}",
                    1_700_000_000_000i64 + n * 300,
                    1_700_000_000_000i64 + n * 300 + 3_600_000
                ),
            ),
            ("errors page", "/errors".to_string()),
            ("dashboard", "/".to_string()),
        ];
        for (name, uri) in cases {
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let res = app
                    .clone()
                    .oneshot(
                        Request::get(&uri)
                            .header(header::COOKIE, "ecko_session=tok")
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("response");
                let status = res.status();
                let body = res.into_body().collect().await.expect("body").to_bytes();
                times.push(t.elapsed());
                assert!(
                    status.is_success(),
                    "{uri}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            times.sort();
            println!(
                "{name:<28} p50 {:>8.2} ms  max {:>8.2} ms",
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
        j.close().await;
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
