use super::*;
use ecko_hal::storage::SimStorage;
use ecko_message::Envelope;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    clock: Arc<ManualClock>,
    disk: SimStorage,
    journal: Journal,
}

fn open_at(path: &Path, clock: Arc<ManualClock>, disk: SimStorage, max_size: u64) -> Journal {
    let mut o = JournalOptions::new(path);
    o.clock = clock;
    o.storage = Arc::new(disk);
    o.max_size = max_size;
    o.min_free_disk = 1000;
    Journal::open(o).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let disk = SimStorage::new(u64::MAX);
    let journal = open_at(&path, clock.clone(), disk.clone(), 1 << 30);
    Fixture {
        _dir: dir,
        path,
        clock,
        disk,
        journal,
    }
}

fn msg(key: &str) -> Envelope {
    Envelope {
        source: "lab".into(),
        dedup_key: Some(key.into()),
        message_type: "ORU^R01".into(),
        content_type: "x-application/hl7-v2+er7".into(),
        payload: format!("MSH|^~\\&|{key}").into_bytes(),
        ..Default::default()
    }
}

fn to(names: &[&str]) -> Vec<Destination> {
    names
        .iter()
        .map(|n| Destination {
            endpoint: n.to_string(),
            transform: "none".into(),
            lane: String::new(),
            reply_to: None,
        })
        .collect()
}

fn delivered() -> Settlement {
    Settlement::Delivered {
        response: Some("ok".into()),
        duration_ms: 3,
    }
}

#[tokio::test]
async fn an_ingested_message_is_readable_with_one_outbox_row_per_destination() {
    let f = fixture();
    let r = f.journal.ingest(msg("1"), to(&["a", "b"])).await.unwrap();
    assert!(!r.duplicate);
    assert_eq!(r.destinations, 2);
    let stored = f.journal.message(r.message_id).await.unwrap().unwrap();
    assert_eq!(stored.payload, b"MSH|^~\\&|1");
    let rows = f.journal.outbox_of(r.message_id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.state == OutboxState::Queued));
    let events = f.journal.events_of(r.message_id).await.unwrap();
    assert_eq!(events[0].kind, "received");
    assert!(events[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("routed to a, b"));
    let routed: Vec<_> = events.iter().filter(|e| e.kind == "routed").collect();
    assert_eq!(
        routed.len(),
        2,
        "one routing record per destination: {events:?}"
    );
    assert!(routed[0].detail.as_deref().unwrap().starts_with("to a "));
}

#[tokio::test]
async fn a_resend_with_the_same_key_returns_the_original_receipt_and_queues_nothing() {
    let f = fixture();
    let first = f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    let again = f.journal.ingest(msg("1"), to(&["a", "b"])).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(f.journal.message_ids().await.unwrap().len(), 1);
    assert_eq!(
        f.journal.outbox_of(first.message_id).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn the_same_key_from_another_source_is_a_different_message() {
    let f = fixture();
    f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    let mut other = msg("1");
    other.source = "other".into();
    assert!(!f.journal.ingest(other, to(&["a"])).await.unwrap().duplicate);
}

#[tokio::test]
async fn a_message_without_destinations_is_refused_as_unroutable() {
    let f = fixture();
    let err = f.journal.ingest(msg("1"), vec![]).await.unwrap_err();
    assert!(matches!(err, IngestError::NoRoute { .. }));
}

#[tokio::test]
async fn concurrent_ingests_all_commit_and_get_distinct_ids() {
    let f = fixture();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let j = f.journal.clone();
        tasks.spawn(async move { j.ingest(msg(&i.to_string()), to(&["a"])).await.unwrap() });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.unwrap().message_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_share_commits() {
    let f = fixture();
    let (commits_before, _) = f.journal.commit_counts();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let j = f.journal.clone();
        tasks.spawn(async move { j.ingest(msg(&i.to_string()), to(&["a"])).await.unwrap() });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let (commits, jobs) = f.journal.commit_counts();
    let commits = commits - commits_before;
    assert!(jobs >= 400);
    // One fsync'd commit per message would be 400.
    assert!(
        commits <= 100,
        "{commits} commits for 400 concurrent ingests: group commit is not grouping"
    );
}

#[tokio::test]
async fn a_failing_job_is_rolled_back_alone_and_the_rest_of_its_batch_commits() {
    let f = fixture();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let j = f.journal.clone();
        tasks.spawn(async move { (i, j.ingest(msg(&i.to_string()), to(&["a"])).await) });
    }
    let failing = f.journal.clone();
    let failed = tokio::spawn(async move {
        failing
            .write_with(|conn, _| -> Result<(), rusqlite::Error> {
                conn.execute(
                    "INSERT INTO event (at, kind, detail, actor) VALUES (0, 'x', 'rolled back', 't')",
                    [],
                )?;
                conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                Ok(())
            })
            .await
    });
    while let Some(r) = tasks.join_next().await {
        let (i, receipt) = r.unwrap();
        assert!(receipt.is_ok(), "message {i}: {receipt:?}");
    }
    assert!(matches!(failed.await.unwrap(), Ok(Err(_))));
    let kept = f
        .journal
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM event WHERE detail = 'rolled back'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        kept, 0,
        "the failing job's first insert must be rolled back"
    );
    let stored = f
        .journal
        .read(|c| Ok(c.query_row("SELECT count(*) FROM message", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(stored, 50);
}

#[tokio::test]
async fn a_panicking_job_does_not_take_the_writer_down() {
    let f = fixture();
    let panicked = f
        .journal
        .write_with(|_, _| -> Result<(), JournalError> { panic!("a defect in one job") })
        .await;
    assert!(
        matches!(panicked, Err(JournalError::Closed)),
        "{panicked:?}"
    );
    let receipt = f.journal.ingest(msg("after"), to(&["a"])).await.unwrap();
    assert!(!receipt.duplicate);
}

#[tokio::test]
async fn a_low_disk_refuses_new_messages_but_still_answers_resends() {
    let f = fixture();
    f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    f.disk.set_available(10);
    // The writer looks at the disk at most every 250 ms.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let err = f.journal.ingest(msg("2"), to(&["a"])).await.unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::DiskFull {
                available: 10,
                reserve: 1000
            }
        ),
        "{err}"
    );
    assert!(err.is_temporary());
    assert!(
        f.journal
            .ingest(msg("1"), to(&["a"]))
            .await
            .unwrap()
            .duplicate
    );
    f.disk.set_available(u64::MAX);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    f.journal.ingest(msg("2"), to(&["a"])).await.unwrap();
}

#[tokio::test]
async fn a_journal_over_its_size_cap_refuses_new_messages_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let j = open_at(
        &dir.path().join("j.db"),
        clock,
        SimStorage::new(u64::MAX),
        1 << 20,
    );
    let mut accepted = 0;
    let refusal = loop {
        let mut m = msg(&accepted.to_string());
        m.payload = vec![b'x'; 16 * 1024];
        match j.ingest(m, to(&["a"])).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "the cap never applied");
    };
    assert!(
        matches!(refusal, IngestError::JournalFull { cap, .. } if cap == 1 << 20),
        "{refusal}"
    );
    assert_eq!(j.message_ids().await.unwrap().len(), accepted);
}

#[tokio::test]
async fn a_lease_hands_out_only_the_head_of_a_lane_and_waits_for_it() {
    let f = fixture();
    for i in 0..3 {
        f.journal
            .ingest(msg(&i.to_string()), to(&["a"]))
            .await
            .unwrap();
    }
    let first = f.journal.lease("a", 1, 1).await.unwrap();
    assert_eq!(first.lanes.len(), 1);
    assert_eq!(first.lanes[0][0].message.dedup_key.as_deref(), Some("0"));
    let blocked = f.journal.lease("a", 1, 1).await.unwrap();
    assert!(
        blocked.lanes.is_empty(),
        "the second message overtook the first"
    );
}

#[tokio::test]
async fn a_failed_head_blocks_its_lane_until_its_retry_time() {
    let f = fixture();
    f.journal.ingest(msg("0"), to(&["a"])).await.unwrap();
    f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    let lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    let retry_at = f.clock.now_ms() + 5_000;
    f.journal
        .settle(vec![(
            lease,
            Settlement::Retry {
                error: "down".into(),
                duration_ms: 1,
                retry_at,
            },
        )])
        .await
        .unwrap();
    let waiting = f.journal.lease("a", 1, 1).await.unwrap();
    assert!(waiting.lanes.is_empty());
    assert_eq!(waiting.next_due, Some(retry_at));
    f.clock.advance(5_000);
    let again = f.journal.lease("a", 1, 1).await.unwrap();
    assert_eq!(again.lanes[0][0].message.dedup_key.as_deref(), Some("0"));
    assert_eq!(again.lanes[0][0].attempts, 1);
}

#[tokio::test]
async fn partitioned_lanes_are_leased_in_parallel_and_stay_fifo_inside() {
    let f = fixture();
    for (key, lane) in [("p1-a", "p1"), ("p2-a", "p2"), ("p1-b", "p1")] {
        let d = vec![Destination {
            endpoint: "a".into(),
            transform: "none".into(),
            lane: lane.into(),
            reply_to: None,
        }];
        f.journal.ingest(msg(key), d).await.unwrap();
    }
    let found = f.journal.lease("a", 8, 10).await.unwrap();
    let keys: Vec<Vec<String>> = found
        .lanes
        .iter()
        .map(|l| {
            l.iter()
                .map(|l| l.message.dedup_key.clone().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(keys, vec![vec!["p1-a", "p1-b"], vec!["p2-a"]]);
}

#[tokio::test]
async fn a_settlement_with_a_stale_token_is_ignored() {
    let f = fixture();
    f.journal.ingest(msg("0"), to(&["a"])).await.unwrap();
    let mut lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    lease.token ^= 1;
    assert_eq!(
        f.journal.settle(vec![(lease, delivered())]).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_delivered_row_is_recorded_exactly_once() {
    let f = fixture();
    let r = f.journal.ingest(msg("0"), to(&["a"])).await.unwrap();
    let lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    assert_eq!(
        f.journal
            .settle(vec![(lease.clone(), delivered())])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.journal.settle(vec![(lease, delivered())]).await.unwrap(),
        0
    );
    let attempts: Vec<_> = f
        .journal
        .events_of(r.message_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "attempt")
        .collect();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("delivered"));
    assert_eq!(attempts[0].duration_ms, Some(3));
}

#[tokio::test]
async fn reopening_after_a_crash_returns_leased_rows_to_the_queue() {
    let f = fixture();
    f.journal.ingest(msg("0"), to(&["a"])).await.unwrap();
    let _lost = f.journal.lease("a", 1, 1).await.unwrap();
    f.journal.close().await;
    let j = open_at(&f.path, f.clock.clone(), f.disk.clone(), 1 << 30);
    let again = j.lease("a", 1, 1).await.unwrap();
    assert_eq!(again.lanes.len(), 1, "a crash must re-deliver, never skip");
    let message_id = again.lanes[0][0].message.id;
    let events = j.events_of(message_id).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "requeued"),
        "the redelivery is explained in the history: {events:?}"
    );
}

#[tokio::test]
async fn a_dead_row_steps_aside_and_can_be_retried_by_a_person() {
    let f = fixture();
    let r = f.journal.ingest(msg("0"), to(&["a"])).await.unwrap();
    f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    let lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    let outbox_id = lease.outbox_id;
    f.journal
        .settle(vec![(
            lease,
            Settlement::Dead {
                error: "rejected".into(),
                duration_ms: 2,
            },
        )])
        .await
        .unwrap();
    let next = f.journal.lease("a", 1, 1).await.unwrap();
    assert_eq!(next.lanes[0][0].message.dedup_key.as_deref(), Some("1"));
    assert!(f.journal.retry(outbox_id, "operator:anna").await.unwrap());
    let row = f.journal.outbox_row(outbox_id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Queued);
    let events = f.journal.events_of(r.message_id).await.unwrap();
    let retried = events.iter().find(|e| e.kind == "retried").unwrap();
    assert_eq!(retried.actor.as_deref(), Some("operator:anna"));
    assert!(matches!(
        f.journal.retry(9999, "x").await,
        Err(JournalError::UnknownOutboxRow(9999))
    ));
}

#[tokio::test]
async fn retention_purges_only_old_fully_delivered_messages_and_the_file_shrinks() {
    let f = fixture();
    let day = 86_400_000;
    let big = |k: &str| {
        let mut m = msg(k);
        m.payload = vec![b'x'; 64 * 1024];
        m
    };
    let mut delivered_ids = Vec::new();
    for i in 0..64 {
        let r = f
            .journal
            .ingest(big(&format!("old{i}")), to(&["a"]))
            .await
            .unwrap();
        delivered_ids.push(r.message_id);
    }
    let dead = f.journal.ingest(big("dead"), to(&["a"])).await.unwrap();
    let queued = f.journal.ingest(big("queued"), to(&["b"])).await.unwrap();
    loop {
        let found = f.journal.lease("a", 1, 100).await.unwrap();
        let Some(lane) = found.lanes.into_iter().next() else {
            break;
        };
        let outcomes = lane
            .into_iter()
            .map(|l| {
                let s = if l.message.id == dead.message_id {
                    Settlement::Dead {
                        error: "no".into(),
                        duration_ms: 1,
                    }
                } else {
                    delivered()
                };
                (l, s)
            })
            .collect();
        f.journal.settle(outcomes).await.unwrap();
    }
    f.journal.checkpoint().await.unwrap();
    let before = f.journal.file_bytes();
    f.clock.advance(91 * day);
    let fresh = f.journal.ingest(big("fresh"), to(&["a"])).await.unwrap();
    let purged = f
        .journal
        .purge_delivered_before(f.clock.now_ms() - 90 * day)
        .await
        .unwrap();
    assert_eq!(purged, 64);
    let left = f.journal.message_ids().await.unwrap();
    assert_eq!(
        left,
        vec![dead.message_id, queued.message_id, fresh.message_id]
    );
    let after = f.journal.file_bytes();
    assert!(
        after < before / 2,
        "file did not shrink: {before} -> {after}"
    );
}

#[tokio::test]
async fn retention_takes_old_incomplete_transmissions_and_sent_orders_but_keeps_pending_orders() {
    let f = fixture();
    let day = 86_400_000;
    let order = |specimen: &str| orders::NewOrder {
        analyzer: "lab".into(),
        specimen_id: specimen.into(),
        tests: vec!["GLU".into()],
        priority: "R".into(),
        ..Default::default()
    };
    let j = &f.journal;
    j.record_incomplete("lab", "no L record", &[b"H|\\^&".to_vec()], Vec::new())
        .await
        .unwrap();
    let old_sent = j.add_order(order("S1")).await.unwrap();
    let old_pending = j.add_order(order("S2")).await.unwrap();
    j.mark_orders_sent(vec![old_sent]).await.unwrap();
    f.clock.advance(60 * day);
    let recent_sent = j.add_order(order("S3")).await.unwrap();
    j.mark_orders_sent(vec![recent_sent]).await.unwrap();
    j.record_incomplete("lab", "receive timer", &[b"H|\\^&".to_vec()], Vec::new())
        .await
        .unwrap();
    f.clock.advance(31 * day);
    j.purge_delivered_before(f.clock.now_ms() - 90 * day)
        .await
        .unwrap();
    let kept: Vec<i64> = j.orders(None).await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(kept, vec![old_pending, recent_sent]);
    let incomplete = j.incomplete_transmissions("lab").await.unwrap();
    assert_eq!(incomplete.len(), 1);
    assert_eq!(incomplete[0].reason, "receive timer");
}

#[tokio::test]
async fn closing_finishes_submitted_work_and_later_calls_fail_cleanly() {
    let f = fixture();
    let j = f.journal.clone();
    let pending = tokio::spawn(async move { j.ingest(msg("late"), to(&["a"])).await });
    tokio::task::yield_now().await;
    f.journal.close().await;
    let result = pending.await.unwrap();
    if let Ok(r) = &result {
        let reader = JournalReader::open(&f.path).unwrap();
        assert!(reader.message(r.message_id).unwrap().is_some());
    }
    assert!(matches!(
        f.journal.ingest(msg("x"), to(&["a"])).await,
        Err(IngestError::Journal(JournalError::Closed))
    ));
}

#[tokio::test]
async fn a_journal_from_a_newer_gateway_opens_read_only_refuses_every_write_and_is_left_unchanged()
{
    let f = fixture();
    f.journal.ingest(msg("kept"), to(&["a"])).await.unwrap();
    f.journal.close().await;
    {
        let c = Connection::open(&f.path).unwrap();
        c.pragma_update(None, "user_version", super::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&f.path).unwrap();
    let j = Journal::open(JournalOptions::new(&f.path)).unwrap();
    assert_eq!(j.newer_schema(), Some(super::SCHEMA_VERSION + 1));
    assert!(j.unwritable());
    let reason = j.unwritable_reason().unwrap();
    assert!(
        reason.contains("newer gateway") && reason.contains("read-only"),
        "{reason}"
    );
    let refused = j.ingest(msg("new"), to(&["a"])).await.unwrap_err();
    assert!(
        matches!(
            refused,
            IngestError::Journal(JournalError::NewerSchema { .. })
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("newer gateway"), "{refused}");
    assert!(
        j.checkpoint().await.is_err(),
        "not even a checkpoint is written"
    );
    let backlog = j.backlogs().await.unwrap();
    assert_eq!(
        backlog.iter().map(|b| b.pending).sum::<u64>(),
        1,
        "reads go on"
    );
    j.close().await;
    assert!(
        std::fs::read(&f.path).unwrap() == before,
        "the file was written"
    );
}

#[test]
fn the_journal_runs_in_wal_mode_with_full_sync() {
    let f = fixture();
    let c = Connection::open(&f.path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let auto: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(auto, 2, "incremental auto_vacuum");
}

#[tokio::test]
async fn the_writer_commits_with_full_sync() {
    let f = fixture();
    // synchronous is per connection: ask the writer's own.
    let sync = f
        .journal
        .write(|conn, _| Ok(conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}

#[tokio::test]
async fn shrinking_a_file_without_incremental_vacuum_ends() {
    let f = fixture();
    for i in 0..200 {
        f.journal
            .ingest(msg(&i.to_string()), to(&["a"]))
            .await
            .unwrap();
    }
    // A file whose auto_vacuum was switched off elsewhere keeps its free
    // pages; shrink must give up rather than loop.
    f.journal
        .write(|conn, _| {
            conn.execute_batch("DELETE FROM event; DELETE FROM outbox; DELETE FROM message;")?;
            Ok(())
        })
        .await
        .unwrap();
    f.journal.close().await;
    {
        let c = Connection::open(&f.path).unwrap();
        c.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;")
            .unwrap();
    }
    let journal = open_at(&f.path, f.clock.clone(), f.disk.clone(), 1 << 30);
    journal
        .write(|conn, _| {
            conn.execute_batch("CREATE TABLE filler(x); INSERT INTO filler SELECT zeroblob(4000) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) SELECT i FROM n); DROP TABLE filler;")?;
            Ok(())
        })
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), journal.shrink())
        .await
        .expect("shrink must end")
        .unwrap();
    journal.close().await;
}

#[tokio::test]
async fn a_second_writer_on_the_same_journal_is_refused_until_the_first_closes() {
    let f = fixture();
    let err = Journal::open(JournalOptions::new(&f.path)).err().unwrap();
    assert!(err.to_string().contains("another gateway process"), "{err}");
    f.journal.close().await;
    Journal::open(JournalOptions::new(&f.path))
        .unwrap()
        .close()
        .await;
}

fn with_payload(key: &str, payload: &str) -> Envelope {
    Envelope {
        payload: payload.as_bytes().to_vec(),
        ..msg(key)
    }
}

#[tokio::test]
async fn the_same_key_with_different_content_is_stored_as_a_new_message_and_says_so() {
    let f = fixture();
    let first = f
        .journal
        .ingest(with_payload("1", "MSH|first"), to(&["a"]))
        .await
        .unwrap();
    // An analyzer whose counter restarted: same MSH-10, another result.
    let reused = f
        .journal
        .ingest(with_payload("1", "MSH|second"), to(&["a"]))
        .await
        .unwrap();
    assert!(!reused.duplicate);
    assert_ne!(reused.message_id, first.message_id);
    assert_eq!(
        f.journal.outbox_of(reused.message_id).await.unwrap().len(),
        1
    );
    let history = f.journal.events_of(reused.message_id).await.unwrap();
    let said = history
        .iter()
        .find(|e| e.kind == "key reused")
        .unwrap_or_else(|| panic!("no `key reused` entry: {history:?}"));
    assert!(
        said.detail
            .as_deref()
            .unwrap()
            .contains(&format!("already used by message {}", first.message_id)),
        "{said:?}"
    );
    // A resend of either is recognised as that one.
    for (payload, id) in [
        ("MSH|first", first.message_id),
        ("MSH|second", reused.message_id),
    ] {
        let again = f
            .journal
            .ingest(with_payload("1", payload), to(&["a"]))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message_id, id);
    }
    assert_eq!(f.journal.message_ids().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_resend_after_the_duplicate_window_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut o = JournalOptions::new(dir.path().join("j.db"));
    o.clock = clock.clone();
    o.storage = Arc::new(SimStorage::new(u64::MAX));
    o.min_free_disk = 1000;
    o.duplicate_window = Some(std::time::Duration::from_secs(3600));
    let j = Journal::open(o).unwrap();
    let first = j.ingest(msg("1"), to(&["a"])).await.unwrap();
    clock.advance(3_599_000);
    assert!(j.ingest(msg("1"), to(&["a"])).await.unwrap().duplicate);
    clock.advance(2_000);
    let later = j.ingest(msg("1"), to(&["a"])).await.unwrap();
    assert!(!later.duplicate, "outside the window it is a new message");
    assert_ne!(later.message_id, first.message_id);
}

#[tokio::test]
async fn a_message_stored_before_content_hashes_is_still_recognised_by_its_bytes() {
    let f = fixture();
    let first = f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    f.journal
        .write(move |conn, _| {
            conn.execute("UPDATE message SET payload_hash = NULL", [])?;
            Ok(())
        })
        .await
        .unwrap();
    let again = f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    assert_eq!(
        (again.duplicate, again.message_id),
        (true, first.message_id)
    );
    let other = f
        .journal
        .ingest(with_payload("1", "MSH|other"), to(&["a"]))
        .await
        .unwrap();
    assert!(!other.duplicate);
}

fn reply(endpoint: &str) -> Reply {
    Reply {
        endpoint: endpoint.into(),
        message_type: "ACK^R01".into(),
        content_type: "x-application/hl7-v2+er7".into(),
        control_id: "ACK1".into(),
        payload: b"MSH|^~\\&|ACK\rMSA|AA|1\r".to_vec(),
        summary: "AA".into(),
    }
}

#[tokio::test]
async fn a_settlement_with_a_reply_queues_the_reply_in_the_same_transaction() {
    let f = fixture();
    let mut d = to(&["a"]);
    d[0].reply_to = Some("his".into());
    let r = f.journal.ingest(msg("1"), d).await.unwrap();
    let lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    assert_eq!(lease.reply_to.as_deref(), Some("his"));
    let wake = f.journal.wakeup("his");
    let n = f
        .journal
        .settle_with_replies(vec![(lease.clone(), delivered(), Some(reply("his")))])
        .await
        .unwrap();
    assert_eq!(n, 1);
    tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
        .await
        .expect("the reply endpoint's worker is woken");
    let ids = f.journal.message_ids().await.unwrap();
    assert_eq!(ids.len(), 2);
    let ack = f.journal.message(ids[1]).await.unwrap().unwrap();
    assert_eq!(ack.message_type, "ACK^R01");
    assert_eq!(ack.control_id.as_deref(), Some("ACK1"));
    assert_eq!(ack.source, "lab");
    let rows = f.journal.outbox_of(ids[1]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].destination.as_str(), rows[0].state),
        ("his", OutboxState::Queued)
    );
    let history = f.journal.events_of(r.message_id).await.unwrap();
    assert!(
        history.iter().any(
            |e| e.kind == "reply" && e.detail.as_deref().unwrap().contains("AA queued for his")
        ),
        "{history:?}"
    );
    // Settling the same lease again records nothing and queues nothing.
    let n = f
        .journal
        .settle_with_replies(vec![(lease, delivered(), Some(reply("his")))])
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(f.journal.message_ids().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_reply_queued_before_a_crash_is_there_after_reopening() {
    let f = fixture();
    f.journal.ingest(msg("1"), to(&["a"])).await.unwrap();
    let lease = f
        .journal
        .lease("a", 1, 1)
        .await
        .unwrap()
        .lanes
        .remove(0)
        .remove(0);
    f.journal
        .settle_with_replies(vec![(lease, delivered(), Some(reply("his")))])
        .await
        .unwrap();
    f.journal.close().await;
    let j = open_at(&f.path, f.clock.clone(), f.disk.clone(), 1 << 30);
    let due = j.lease("his", 1, 1).await.unwrap();
    assert_eq!(due.lanes.len(), 1);
    assert_eq!(due.lanes[0][0].message.payload, reply("his").payload);
}

fn admission(disk: &SimStorage, reserve: u64, every: std::time::Duration) -> writer::Admission {
    let limits = Arc::new(writer::Limits {
        max_size: AtomicU64::new(u64::MAX),
        min_free_disk: AtomicU64::new(reserve),
    });
    writer::Admission::new(limits, Arc::new(disk.clone()), PathBuf::from("."), every)
}

#[test]
fn a_batch_is_refused_when_what_it_may_write_would_reach_into_the_reserve() {
    let conn = Connection::open_in_memory().unwrap();
    let reserve = 1 << 20;
    let disk = SimStorage::new(reserve + (20 << 10));
    let mut a = admission(&disk, reserve, std::time::Duration::ZERO);
    assert!(
        a.check(&conn, 1).is_none(),
        "one message fits above the reserve"
    );
    assert!(
        matches!(a.check(&conn, 2), Some(writer::Refusal::DiskLow { .. })),
        "two may not"
    );
}

#[test]
fn near_the_reserve_free_space_is_measured_before_every_batch() {
    let conn = Connection::open_in_memory().unwrap();
    let reserve = 1 << 20;
    let hour = std::time::Duration::from_secs(3600);
    let disk = SimStorage::new(reserve + (1 << 20));
    let mut a = admission(&disk, reserve, hour);
    assert!(a.check(&conn, 1).is_none());
    disk.set_available(reserve - 1);
    assert!(
        a.check(&conn, 1).is_some(),
        "a flood near the reserve is seen at the next batch, not an hour later"
    );

    let far = SimStorage::new(reserve + (1 << 30));
    let mut a = admission(&far, reserve, hour);
    assert!(a.check(&conn, 1).is_none());
    far.set_available(reserve + (512 << 20));
    assert!(a.check(&conn, 1).is_none());
}

#[tokio::test]
async fn opening_an_existing_journal_writes_nothing_when_nothing_needs_writing() {
    let f = fixture();
    f.journal.ingest(msg("a"), to(&["hub"])).await.unwrap();
    f.journal.close().await;
    let wal = {
        let mut p = f.path.as_os_str().to_owned();
        p.push("-wal");
        PathBuf::from(p)
    };
    let before = std::fs::read(&f.path).unwrap();
    let again = open_at(&f.path, f.clock.clone(), f.disk.clone(), 1 << 30);
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "a write at open would need space a full disk does not have"
    );
    assert_eq!(std::fs::read(&f.path).unwrap(), before);
    drop(again);
}

fn entry(key: &str, state: &str, start: &str, expires_at: i64) -> WorklistEntry {
    WorklistEntry {
        key: key.into(),
        state: state.into(),
        start: start.into(),
        expires_at,
        item: format!("{{\"key\":\"{key}\"}}"),
    }
}

#[tokio::test]
async fn a_later_message_about_an_order_replaces_its_worklist_entry_and_cancelled_ones_are_not_offered(
) {
    let f = fixture();
    let j = &f.journal;
    j.apply_worklist(
        "wl",
        1,
        vec![
            entry("B", "scheduled", "20991204100000", i64::MAX),
            entry("A", "scheduled", "20991204090000", i64::MAX),
            entry("C", "started", "", i64::MAX),
        ],
    )
    .await
    .unwrap();
    j.apply_worklist(
        "other",
        2,
        vec![entry("A", "scheduled", "20991204090000", i64::MAX)],
    )
    .await
    .unwrap();
    let all = j
        .find_worklist("wl", None, 10, |i: &str| Some(i.to_string()))
        .await
        .unwrap();
    assert_eq!(
        all,
        [r#"{"key":"C"}"#, r#"{"key":"A"}"#, r#"{"key":"B"}"#],
        "soonest first, undated first"
    );
    let dated = j
        .find_worklist(
            "wl",
            Some(("20991204".into(), "20991204235959".into())),
            10,
            |i: &str| Some(i.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(dated.len(), 2, "a date range leaves undated steps out");
    let one = j
        .find_worklist("wl", None, 1, |i: &str| {
            i.contains('B').then(|| i.to_string())
        })
        .await
        .unwrap();
    assert_eq!(one, [r#"{"key":"B"}"#]);

    j.apply_worklist(
        "wl",
        3,
        vec![entry("A", "cancelled", "20991204090000", i64::MAX)],
    )
    .await
    .unwrap();
    let offered = j
        .find_worklist("wl", None, 10, |i: &str| Some(i.to_string()))
        .await
        .unwrap();
    assert_eq!(offered, [r#"{"key":"C"}"#, r#"{"key":"B"}"#]);
    let entries = j.worklist_entries("wl").await.unwrap();
    assert_eq!(entries.len(), 3, "one entry per key, replaced in place");
}

#[tokio::test]
async fn worklist_entries_go_with_retention_once_they_expire() {
    let f = fixture();
    let now = 1_000_000;
    f.journal
        .apply_worklist(
            "wl",
            1,
            vec![
                entry("old", "scheduled", "20000101000000", now + 1000),
                entry("new", "scheduled", "20991204000000", now + 10_000_000),
            ],
        )
        .await
        .unwrap();
    f.clock.advance(5_000);
    f.journal.purge_delivered_before(0).await.unwrap();
    let left: Vec<String> = f
        .journal
        .worklist_entries("wl")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(left, ["new"]);
}

#[tokio::test]
async fn the_queue_of_a_destination_is_recorded_each_minute_while_anything_waits() {
    let f = fixture();
    let j = &f.journal;
    assert_eq!(
        j.record_queue_depths().await.unwrap(),
        0,
        "nothing waits: nothing written"
    );
    for n in 0..3 {
        j.ingest(msg(&format!("Q{n}")), to(&["hub"])).await.unwrap();
    }
    f.clock.advance(90_000);
    assert_eq!(j.record_queue_depths().await.unwrap(), 1);
    let stats = j
        .endpoint_stats(vec!["hub".into()], 1_000_000 - 60_000, 4)
        .await
        .unwrap();
    assert_eq!(
        stats[0].queue_buckets.iter().max(),
        Some(&3),
        "{:?}",
        stats[0].queue_buckets
    );
    assert_eq!(stats[0].oldest_age_buckets.iter().max(), Some(&90));
}

#[tokio::test]
async fn a_minute_keeps_the_peak_of_its_queue_samples_when_the_backlog_drains_within_it() {
    let f = fixture();
    let j = &f.journal;
    // Aligned to a minute so that both samples below fall in it.
    f.clock.advance(60_000 - 1_000_000 % 60_000);
    let minute_start = j.now_ms();
    for n in 0..4 {
        j.ingest(msg(&format!("P{n}")), to(&["hub"])).await.unwrap();
    }
    f.clock.advance(10_000);
    assert_eq!(j.record_queue_depths().await.unwrap(), 1);
    // Three are delivered; a later sample in the same minute sees one.
    let batch = j.lease("hub", 1, 3).await.unwrap();
    let leased: Vec<_> = batch.lanes.into_iter().flatten().collect();
    assert_eq!(leased.len(), 3);
    j.settle(leased.into_iter().map(|l| (l, delivered())).collect())
        .await
        .unwrap();
    f.clock.advance(10_000);
    assert_eq!(j.record_queue_depths().await.unwrap(), 1);
    let stats = j
        .endpoint_stats(vec!["hub".into()], minute_start, 1)
        .await
        .unwrap();
    assert_eq!(stats[0].queue_buckets, [4], "the peak, not the last sample");
    assert_eq!(stats[0].oldest_age_buckets, [20]);
}

#[tokio::test]
async fn statistics_are_exact_before_a_fold_after_it_and_after_a_crash_between_folds() {
    let mut f = fixture();
    let since = f.journal.now_ms() - 60_000;
    let received_and_delivered = |j: Journal| async move {
        let lab = j
            .endpoint_stats(vec!["lab".into(), "hub".into()], since, 1)
            .await
            .unwrap();
        let activity = j
            .endpoint_activity(vec!["lab".into(), "hub".into()], since)
            .await
            .unwrap();
        assert_eq!(lab[0].received, activity[0].received_since);
        assert_eq!(lab[1].delivered, activity[1].delivered_since);
        (lab[0].received, lab[1].delivered, lab[1].p99_ms)
    };
    for n in 0..5 {
        f.journal
            .ingest(msg(&format!("S{n}")), to(&["hub"]))
            .await
            .unwrap();
    }
    let batch = f.journal.lease("hub", 1, 2).await.unwrap();
    let leased: Vec<_> = batch.lanes.into_iter().flatten().collect();
    f.journal
        .settle(leased.into_iter().map(|l| (l, delivered())).collect())
        .await
        .unwrap();
    // Nothing folded yet: the rows themselves are counted.
    assert_eq!(
        received_and_delivered(f.journal.clone()).await,
        (5, 2, Some(3))
    );
    f.journal.fold_stats().await.unwrap();
    assert_eq!(
        received_and_delivered(f.journal.clone()).await,
        (5, 2, Some(3))
    );
    f.journal.fold_stats().await.unwrap();
    assert_eq!(
        received_and_delivered(f.journal.clone()).await,
        (5, 2, Some(3)),
        "a second fold counts nothing twice"
    );
    // More rows, then a crash before they are folded: reopened, they count.
    for n in 5..8 {
        f.journal
            .ingest(msg(&format!("S{n}")), to(&["hub"]))
            .await
            .unwrap();
    }
    f.journal.close().await;
    f.journal = open_at(&f.path, f.clock.clone(), f.disk.clone(), 1 << 30);
    assert_eq!(
        received_and_delivered(f.journal.clone()).await,
        (8, 2, Some(3))
    );
    f.journal.fold_stats().await.unwrap();
    assert_eq!(
        received_and_delivered(f.journal.clone()).await,
        (8, 2, Some(3))
    );
}

#[tokio::test]
async fn ids_given_out_again_after_a_purge_are_counted_once() {
    let f = fixture();
    let j = &f.journal;
    let since = j.now_ms() - 60_000;
    for n in 0..3 {
        j.ingest(msg(&format!("R{n}")), to(&["hub"])).await.unwrap();
    }
    let batch = j.lease("hub", 1, 3).await.unwrap();
    let leased: Vec<_> = batch.lanes.into_iter().flatten().collect();
    j.settle(leased.into_iter().map(|l| (l, delivered())).collect())
        .await
        .unwrap();
    // Everything is purged: the ids are free again, and the three counted.
    f.clock.advance(10);
    assert_eq!(j.purge_delivered_before(j.now_ms()).await.unwrap(), 3);
    j.ingest(msg("R-new"), to(&["hub"])).await.unwrap();
    let stats = j
        .endpoint_stats(vec!["lab".into()], since, 1)
        .await
        .unwrap();
    assert_eq!(stats[0].received, 4);
    j.fold_stats().await.unwrap();
    let stats = j
        .endpoint_stats(vec!["lab".into()], since, 1)
        .await
        .unwrap();
    assert_eq!(stats[0].received, 4);
}
