//! The admin page on a journal of 1,000,000 messages with their event
//! history (an `attempt` event per delivery, as the gateway writes them):
//! the log page (first page, a deep page, filters by a rare destination, a
//! source, a rare patient with a status, a control id indexed and one in the
//! unindexed tail, a narrow and a wide time range), the messages API, the
//! errors page, the statistics page and API, and the dashboard. Prints p50
//! and p95 of 20 requests per case and exits non-zero when a log page case
//! has a p50 over 100 ms.
//!
//! `cargo bench -p ecko-gateway --bench admin_messages` (set
//! `ECKO_BENCH_MESSAGES` for another size, `ECKO_BENCH_UNINDEXED` for the
//! tail the search indexer has not reached, default 20,000). The journal is
//! filled with plain SQL in one transaction for speed, after the journal
//! created its schema; the statistics are then folded as the running
//! gateway folds them, and the search keys written up to the tail; every
//! query goes through the real router.

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

/// The log page must answer within this (p50).
const LOG_PAGE_BUDGET: Duration = Duration::from_millis(100);
/// One message in this many is also routed to the rare destination.
const RARE_EVERY: i64 = 10_000;
/// One message in this many belongs to the rare patient.
const RARE_PATIENT_EVERY: i64 = 50_000;

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

    // The messages span the last 7 days up to a few minutes ago.
    let now = jiff::Timestamp::now().as_millisecond();
    let step = (7 * 86_400_000 - 600_000) / n.max(1);
    let start = now - 7 * 86_400_000;
    let unindexed: i64 = std::env::var("ECKO_BENCH_UNINDEXED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .min(n);
    let t = Instant::now();
    fill(&path, n, start, step, n - unindexed);
    println!(
        "filled {n} messages, {} outbox rows and as many events in {:.1} s; the last {unindexed} not yet indexed for search",
        n + n / RARE_EVERY,
        t.elapsed().as_secs_f64()
    );
    rt.block_on(async {
        let j = Journal::open(JournalOptions::new(&path)).expect("journal");
        let t = Instant::now();
        j.fold_stats().await.expect("fold");
        println!("statistics folded in {:.1} s", t.elapsed().as_secs_f64());
        j.close().await;
    });

    let config = Config::parse(
        &format!(
            "[journal]\npath = \"{}\"\n[[endpoint]]\nname = \"inbox\"\ntype = \"file-drop\"\npath = \"/nonexistent\"\n[[endpoint]]\nname = \"lab\"\ntype = \"file-drop\"\npath = \"/nonexistent2\"\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"/nonexistent3\"\n[[endpoint]]\nname = \"rare-hub\"\ntype = \"file\"\npath = \"/nonexistent4\"\n[[route]]\nname = \"r\"\nfrom = [\"inbox\", \"lab\"]\nto = [\"archive\"]\n",
            path.display()
        ),
        "bench.toml",
        |_| None,
    )
    .expect("config");
    let over_budget = rt.block_on(async move {
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
        let hour_ago = now - 3_600_000;
        let cases = [
            ("log page, first page", "/logs".to_string()),
            ("log page, deep page", format!("/logs?before={}", n / 2)),
            (
                "log page, rare endpoint",
                "/logs?endpoint=rare-hub".to_string(),
            ),
            (
                "log page, source endpoint",
                "/logs?endpoint=lab".to_string(),
            ),
            (
                "log page, rare patient + status",
                "/logs?patient_id=RARE-P&status=dead".to_string(),
            ),
            ("log page, patient", "/logs?patient_id=P42".to_string()),
            (
                "log page, control id",
                format!("/logs?control_id=C{}", n / 3),
            ),
            (
                "log page, control id not indexed yet",
                format!("/logs?control_id=C{}", n - 5),
            ),
            ("log page, dead only", "/logs?status=dead".to_string()),
            (
                "log page, last hour",
                format!("/logs?from={hour_ago}&to={now}"),
            ),
            (
                "log page, 3 days",
                format!(
                    "/logs?from={}&to={}",
                    now - 5 * 86_400_000,
                    now - 2 * 86_400_000
                ),
            ),
            ("API messages, first page", "/api/v1/messages".to_string()),
            (
                "API messages, control id",
                format!("/api/v1/messages?control_id=C{}", n / 3),
            ),
            (
                "API messages, rare endpoint",
                "/api/v1/messages?endpoint=rare-hub&limit=100".to_string(),
            ),
            ("errors page", "/errors".to_string()),
            ("stats page (1h, 24h, 7d)", "/stats?window=7d".to_string()),
            ("API stats, 7d", "/api/v1/stats?window=7d".to_string()),
            ("dashboard", "/".to_string()),
        ];
        let mut over = Vec::new();
        for (name, uri) in cases {
            let mut times = Vec::new();
            let mut rows = 0;
            let mut bytes = 0;
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
                bytes = body.len();
                let text = String::from_utf8_lossy(&body);
                rows = text.matches("<tr class=\"message").count()
                    + text.matches("\"id\":").count()
                        * usize::from(uri.starts_with("/api/v1/messages"));
                assert!(
                    status.is_success(),
                    "{uri}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            times.sort();
            let p50 = times[times.len() / 2];
            let p95 = times[(times.len() * 95).div_ceil(100) - 1];
            println!(
                "{name:<34} p50 {:>8.2} ms  p95 {:>8.2} ms  ({bytes} bytes, {rows} message rows)",
                ms(p50),
                ms(p95)
            );
            if name.starts_with("log page") && p50 > LOG_PAGE_BUDGET {
                over.push(format!("{name}: p50 {:.1} ms", ms(p50)));
            }
        }
        j.close().await;
        over
    });
    if !over_budget.is_empty() {
        eprintln!(
            "FAIL: the log page must answer within {LOG_PAGE_BUDGET:?} (p50): {}",
            over_budget.join("; ")
        );
        std::process::exit(1);
    }
}

/// Messages from `inbox` and `lab`, each routed to `archive` (and one in
/// [`RARE_EVERY`] also to `rare-hub`), each with one `attempt` event per
/// outbox row; one in 10,000 dead. Control and patient ids are in the
/// search keys up to `indexed_to`, as the search indexer leaves them.
fn fill(path: &std::path::Path, n: i64, start: i64, step: i64, indexed_to: i64) {
    let mut c = rusqlite::Connection::open(path).expect("sqlite");
    c.pragma_update(None, "synchronous", "OFF").expect("pragma");
    c.pragma_update(None, "journal_mode", "WAL")
        .expect("pragma");
    let tx = c.transaction().expect("tx");
    {
        let mut m = tx
            .prepare("INSERT INTO message (id, source, dedup_key, message_type, content_type, control_id, patient_id, received_at, payload) VALUES (?1, ?2, ?3, 'ORU^R01', 'x-application/hl7-v2+er7', ?3, ?4, ?5, ?6)")
            .expect("prepare");
        let mut o = tx
            .prepare("INSERT INTO outbox (message_id, destination, transform, lane, state, attempts, next_attempt_at, created_at, updated_at, last_error) VALUES (?1, ?2, 'none', '', ?3, ?4, ?5, ?5, ?6, ?7)")
            .expect("prepare");
        let mut key = tx
            .prepare(
                "INSERT OR IGNORE INTO search_key (value, message_id) VALUES (char(1) || ?1, ?2)",
            )
            .expect("prepare");
        let mut attempt = tx
            .prepare("INSERT INTO event (at, message_id, outbox_id, kind, outcome, duration_ms, detail) VALUES (?1, ?2, ?3, 'attempt', ?4, ?5, ?6)")
            .expect("prepare");
        for i in 1..=n {
            let at = start + i * step;
            let control = format!("C{i}");
            let patient = if i % RARE_PATIENT_EVERY == 0 {
                "RARE-P".to_string()
            } else {
                format!("P{}", i % 5000)
            };
            let payload = format!("MSH|^~\\&|LAB|H|GW|H|20240101||ORU^R01|{control}|P|2.5\rPID|||{patient}\rOBX|1|NM|GLU||5.2|mmol/L\r");
            let source = if i % 2 == 0 { "inbox" } else { "lab" };
            m.execute(rusqlite::params![
                i,
                source,
                control,
                patient,
                at,
                payload.as_bytes()
            ])
            .expect("insert");
            if i <= indexed_to {
                key.execute(rusqlite::params![format!("c{control}"), i])
                    .expect("insert");
                key.execute(rusqlite::params![format!("p{patient}"), i])
                    .expect("insert");
            }
            let mut destinations = vec!["archive"];
            if i % RARE_EVERY == 0 {
                destinations.push("rare-hub");
            }
            for (k, d) in destinations.into_iter().enumerate() {
                let dead = (i + k as i64) % 10_000 == 0 || (i % RARE_PATIENT_EVERY == 0 && k == 0);
                let (state, attempts, err, outcome) = if dead {
                    (3, 5, Some("HTTP 503"), "dead")
                } else {
                    (2, 1, None, "delivered")
                };
                let done = at + 20 + (i % 7) * 15;
                o.execute(rusqlite::params![i, d, state, attempts, at, done, err])
                    .expect("insert");
                let outbox_id = tx.last_insert_rowid();
                attempt
                    .execute(rusqlite::params![
                        done,
                        i,
                        outbox_id,
                        outcome,
                        5 + (i % 40),
                        err
                    ])
                    .expect("insert");
            }
        }
    }
    tx.execute(
        "UPDATE search_key_progress SET indexed_to = ?1 WHERE id = 1",
        [indexed_to],
    )
    .expect("watermark");
    tx.commit().expect("commit");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
