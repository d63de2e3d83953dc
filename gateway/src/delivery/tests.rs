use super::*;
use crate::config::{Direction, EndpointKind, FileSinkConfig, RetryPolicy};
use crate::journal::{Destination, JournalOptions, OutboxState};
use ecko_message::Envelope;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A destination that answers from a script, then accepts everything.
#[derive(Default)]
struct ScriptedSink {
    script: Mutex<VecDeque<Outcome>>,
    seen: Mutex<Vec<(String, Vec<u8>)>>,
    /// Deliveries to this lane hang, as a dead peer would.
    hang_lane: Option<String>,
}

impl Sink for ScriptedSink {
    fn max_batch(&self) -> usize {
        4
    }
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        if batch
            .iter()
            .any(|d| Some(&d.lane) == self.hang_lane.as_ref())
        {
            std::future::pending::<()>().await;
        }
        let mut out = Vec::new();
        for d in batch {
            if matches!(out.last(), Some(o) if !matches!(o, Outcome::Delivered { .. })) {
                out.push(Outcome::NotAttempted);
                continue;
            }
            let o = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Outcome::Delivered { response: None });
            if matches!(o, Outcome::Delivered { .. }) {
                self.seen
                    .lock()
                    .unwrap()
                    .push((d.lane.clone(), d.payload.to_bytes().into_owned()));
            }
            out.push(o);
        }
        out
    }
}

fn endpoint(retry: RetryPolicy, lanes: usize, timeout: Duration) -> Endpoint {
    Endpoint {
        name: "dest".into(),
        direction: Direction::Outbound,
        enabled: true,
        timeout,
        retry,
        partition_by: None,
        lanes,
        protection: crate::config::Protection::destination_default(),
        kind: EndpointKind::File(FileSinkConfig {
            path: "unused".into(),
            extension: "x".into(),
        }),
        line: 1,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(50),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: None,
        max_age: None,
    }
}

async fn ingest(j: &Journal, key: usize, lane: &str) -> i64 {
    let m = Envelope {
        source: "src".into(),
        dedup_key: Some(key.to_string()),
        message_type: "T".into(),
        content_type: "c".into(),
        payload: key.to_string().into_bytes(),
        ..Default::default()
    };
    let d = vec![Destination {
        endpoint: "dest".into(),
        transform: "none".into(),
        lane: lane.into(),
        reply_to: None,
    }];
    j.ingest(m, d).await.unwrap().message_id
}

async fn wait_for_state(
    j: &Journal,
    message_id: i64,
    state: OutboxState,
) -> crate::journal::OutboxRecord {
    for _ in 0..500 {
        let row = j.outbox_of(message_id).await.unwrap().remove(0);
        if row.state == state {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("message {message_id} never became {state:?}");
}

fn journal(dir: &tempfile::TempDir) -> Journal {
    Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_is_retried_until_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink::default();
    for _ in 0..2 {
        sink.script.lock().unwrap().push_back(Outcome::Retryable {
            error: "503".into(),
            retry_after: None,
        });
    }
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        sink,
        stop.clone(),
    );
    let id = ingest(&j, 1, "").await;
    let row = wait_for_state(&j, id, OutboxState::Delivered).await;
    assert_eq!(row.attempts, 3);
    let outcomes: Vec<_> = j
        .events_of(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_is_delivered_in_the_order_it_was_received_despite_failures() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = Arc::new(ScriptedSink::default());
    {
        let mut s = sink.script.lock().unwrap();
        for i in 0..30 {
            s.push_back(if i % 7 == 3 {
                Outcome::Retryable {
                    error: "flaky".into(),
                    retry_after: None,
                }
            } else {
                Outcome::Delivered { response: None }
            });
        }
    }
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        SharedSink(sink.clone()),
        stop.clone(),
    );
    let mut last = 0;
    for i in 0..40 {
        last = ingest(&j, i, "").await;
    }
    wait_for_state(&j, last, OutboxState::Delivered).await;
    let seen: Vec<String> = sink
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_lane_times_out_and_does_not_stop_the_other_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink {
        hang_lane: Some("stuck".into()),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let mut ep = endpoint(fast_retry(), 4, Duration::from_millis(200));
    ep.partition_by = Some(crate::config::PartitionBy::Patient);
    let worker = spawn(j.clone(), &ep, sink, stop.clone());
    let stuck = ingest(&j, 1, "stuck").await;
    let ok = ingest(&j, 2, "fine").await;
    wait_for_state(&j, ok, OutboxState::Delivered).await;
    let mut timed_out = None;
    for _ in 0..100 {
        let row = j.outbox_of(stuck).await.unwrap().remove(0);
        if row.attempts >= 1 {
            timed_out = Some(row);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = timed_out.expect("the hung delivery was never timed out");
    assert!(row.last_error.unwrap().contains("no answer within"));
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_allowed_attempt_makes_a_message_dead_and_a_person_can_revive_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink::default();
    for _ in 0..2 {
        sink.script.lock().unwrap().push_back(Outcome::Retryable {
            error: "down".into(),
            retry_after: None,
        });
    }
    let mut policy = fast_retry();
    policy.max_attempts = Some(2);
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(policy, 1, Duration::from_secs(5)),
        sink,
        stop.clone(),
    );
    let id = ingest(&j, 1, "").await;
    let dead = wait_for_state(&j, id, OutboxState::Dead).await;
    assert!(dead
        .last_error
        .unwrap()
        .contains("gave up after 2 attempts"));
    assert!(j.retry(dead.id, "admin").await.unwrap());
    wait_for_state(&j, id, OutboxState::Delivered).await;
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_dead_at_once_and_the_next_message_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink::default();
    sink.script.lock().unwrap().push_back(Outcome::Permanent {
        error: "400 invalid".into(),
    });
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        sink,
        stop.clone(),
    );
    let first = ingest(&j, 1, "").await;
    let second = ingest(&j, 2, "").await;
    let dead = wait_for_state(&j, first, OutboxState::Dead).await;
    assert_eq!(dead.attempts, 1);
    wait_for_state(&j, second, OutboxState::Delivered).await;
    stop.cancel();
    worker.await.unwrap();
}

struct SharedSink(Arc<ScriptedSink>);

impl Sink for SharedSink {
    fn max_batch(&self) -> usize {
        self.0.max_batch()
    }
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        self.0.deliver(batch).await
    }
}

/// A destination whose first call panics, as a defective sink would.
#[derive(Default)]
struct PanickingOnceSink {
    calls: std::sync::atomic::AtomicUsize,
}

impl Sink for PanickingOnceSink {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("a defect in the sink");
        }
        vec![Outcome::Delivered { response: None }; batch.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_panics_does_not_block_its_lane_and_the_message_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        PanickingOnceSink::default(),
        stop.clone(),
    );
    let first = ingest(&j, 1, "").await;
    let second = ingest(&j, 2, "").await;
    let row = wait_for_state(&j, first, OutboxState::Delivered).await;
    assert_eq!(row.attempts, 2, "the panicking attempt counts as a failure");
    wait_for_state(&j, second, OutboxState::Delivered).await;
    let errors: Vec<_> = j
        .events_of(first)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.detail)
        .filter(|d| d.contains("internal error"))
        .collect();
    assert_eq!(errors.len(), 1, "the failure is visible in the history");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reports_failing_since_the_first_failure_then_up_after_a_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink::default();
    sink.script.lock().unwrap().push_back(Outcome::Retryable {
        error: "503 from hub".into(),
        retry_after: None,
    });
    sink.script.lock().unwrap().push_back(Outcome::Retryable {
        error: "503 from hub".into(),
        retry_after: None,
    });
    let health = Health::new();
    let ep = endpoint(
        RetryPolicy {
            initial: Duration::from_millis(300),
            max: Duration::from_millis(300),
            ..fast_retry()
        },
        1,
        Duration::from_secs(5),
    );
    let stop = CancellationToken::new();
    let worker = spawn_reporting(
        j.clone(),
        &ep,
        sink,
        Reports::to(health.clone()),
        Transforms::default(),
        stop.clone(),
    );
    let id = ingest(&j, 1, "").await;
    let mut first = None;
    for _ in 0..200 {
        // Idle from the start, then failing after the first attempt.
        if let Some(s) = health
            .get("dest")
            .filter(|s| s.condition != crate::health::Condition::Idle)
        {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = first.expect("a report after the first attempt");
    assert_eq!(first.condition, crate::health::Condition::Failing);
    assert_eq!(first.detail.as_deref(), Some("503 from hub"));
    wait_for_state(&j, id, OutboxState::Delivered).await;
    let last = health.get("dest").unwrap();
    assert_eq!(last.condition, crate::health::Condition::Up);
    assert!(last.since > first.since, "up since the delivery");
    assert!(last.last_ok_at.is_some());
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reports_a_permanent_refusal_as_refusing() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let sink = ScriptedSink::default();
    sink.script.lock().unwrap().push_back(Outcome::Permanent {
        error: "HTTP 422".into(),
    });
    let health = Health::new();
    let ep = endpoint(fast_retry(), 1, Duration::from_secs(5));
    let stop = CancellationToken::new();
    let worker = spawn_reporting(
        j.clone(),
        &ep,
        sink,
        Reports::to(health.clone()),
        Transforms::default(),
        stop.clone(),
    );
    let id = ingest(&j, 1, "").await;
    wait_for_state(&j, id, OutboxState::Dead).await;
    let s = health.get("dest").unwrap();
    assert_eq!(s.condition, crate::health::Condition::Refusing);
    assert_eq!(s.detail.as_deref(), Some("HTTP 422"));
    stop.cancel();
    worker.await.unwrap();
}

/// A template that fails makes its message dead at once with the error,
/// template name and line included, where the message viewer shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_template_makes_the_message_dead_with_the_template_line() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let template = dir.path().join("bad.json.j2");
    std::fs::write(&template, "{\n  \"a\": {{ msg.nothing.deeper() }}\n}\n").unwrap();
    let stop = CancellationToken::new();
    let worker = spawn(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        ScriptedSink::default(),
        stop.clone(),
    );
    let m = Envelope {
        source: "src".into(),
        dedup_key: Some("t1".into()),
        message_type: "ORU^R01".into(),
        content_type: "c".into(),
        payload: b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r".to_vec(),
        ..Default::default()
    };
    let d = vec![Destination {
        endpoint: "dest".into(),
        transform: format!("template:{}", template.display()),
        lane: String::new(),
        reply_to: None,
    }];
    let id = j.ingest(m, d).await.unwrap().message_id;
    let dead = wait_for_state(&j, id, OutboxState::Dead).await;
    let error = dead.last_error.unwrap();
    assert!(
        error.starts_with("transform failed: template `bad.json.j2` line 2: "),
        "{error}"
    );
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_destination_sends_no_faster_than_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let mut e = endpoint(fast_retry(), 1, Duration::from_secs(5));
    e.protection.rate_limit = Some(crate::config::RateLimit {
        per_second: 20.0,
        burst: 2,
    });
    let sink = Arc::new(ScriptedSink::default());
    let mut last = 0;
    for i in 0..12 {
        last = ingest(&j, i, "").await;
    }
    let stop = CancellationToken::new();
    let started = Instant::now();
    let worker = spawn(j.clone(), &e, SharedSink(sink.clone()), stop.clone());
    wait_for_state(&j, last, OutboxState::Delivered).await;
    let took = started.elapsed();
    // 2 at once, then 10 more at 20/s: at least 0.5 s.
    assert!(took >= Duration::from_millis(480), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(sink.seen.lock().unwrap().len(), 12);
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_a_row_pause_the_destination_with_its_messages_queued_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let mut e = endpoint(fast_retry(), 1, Duration::from_secs(5));
    e.protection.breaker = Some(crate::config::BreakerPolicy {
        failures: 3,
        window: Duration::from_secs(60),
    });
    let sink = Arc::new(ScriptedSink::default());
    for _ in 0..3 {
        sink.script.lock().unwrap().push_back(Outcome::Permanent {
            error: "HTTP 400: mapping".into(),
        });
    }
    let health = Health::new();
    let stop = CancellationToken::new();
    let worker = spawn_reporting(
        j.clone(),
        &e,
        SharedSink(sink.clone()),
        Reports::to(health.clone()),
        Transforms::default(),
        stop.clone(),
    );
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(ingest(&j, i, "").await);
    }
    for _ in 0..500 {
        if health.is_paused("dest") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(health.is_paused("dest"), "the breaker never tripped");
    let tripped = j.breaker("dest").await.unwrap().expect("journalled");
    assert!(tripped.reason.contains("HTTP 400"), "{}", tripped.reason);
    // Paused: nothing is dead, nothing more is sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in &ids {
        let row = j.outbox_of(*id).await.unwrap().remove(0);
        assert_eq!(row.state, OutboxState::Queued, "message {id}");
    }
    assert!(sink.seen.lock().unwrap().is_empty());
    assert!(j.resume_breaker("dest", "tester").await.unwrap());
    for id in &ids {
        wait_for_state(&j, *id, OutboxState::Delivered).await;
    }
    assert!(!health.is_paused("dest"));
    assert_eq!(sink.seen.lock().unwrap().len(), 8);
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_destination_captures_what_it_would_send_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let mut e = endpoint(fast_retry(), 1, Duration::from_secs(5));
    e.protection.mode = crate::config::Mode::Sandbox;
    let sink = Arc::new(ScriptedSink::default());
    let stop = CancellationToken::new();
    let worker = spawn(j.clone(), &e, SharedSink(sink.clone()), stop.clone());
    let id = ingest(&j, 42, "").await;
    wait_for_state(&j, id, OutboxState::Delivered).await;
    let captures = j.captures_of(id).await.unwrap();
    let capture: serde_json::Value =
        serde_json::from_str(captures.values().next().expect("captured")).unwrap();
    assert_eq!(capture["request"]["body"], "42");
    assert_eq!(capture["sent_to"], "nowhere (captured)");
    assert!(sink.seen.lock().unwrap().is_empty(), "nothing is sent");
    let kinds: Vec<_> = j
        .events_of(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"captured".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"attempt".to_string()), "{kinds:?}");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_tripped_before_a_restart_keeps_the_destination_paused() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let id = ingest(&j, 1, "").await;
    j.trip_breaker("dest", 20, "20 refusals before the restart", vec![])
        .await
        .unwrap();
    let health = Health::new();
    let sink = Arc::new(ScriptedSink::default());
    let stop = CancellationToken::new();
    let worker = spawn_reporting(
        j.clone(),
        &endpoint(fast_retry(), 1, Duration::from_secs(5)),
        SharedSink(sink.clone()),
        Reports::to(health.clone()),
        Transforms::default(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(health.is_paused("dest"));
    assert!(sink.seen.lock().unwrap().is_empty());
    assert_eq!(j.outbox_of(id).await.unwrap()[0].state, OutboxState::Queued);
    assert!(j.resume_breaker("dest", "tester").await.unwrap());
    wait_for_state(&j, id, OutboxState::Delivered).await;
    stop.cancel();
    worker.await.unwrap();
}
