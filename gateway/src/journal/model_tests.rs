//! The journal against a simple in-memory model: any interleaving of ingest,
//! lease, settle, retry, purge, clock movement, disk refusals, graceful
//! restarts and crashes must leave the same visible state in both.
//!
//! A crash is a copy of the database and its write-ahead log taken while the
//! journal is open, without a checkpoint, opened as the next journal: what a
//! power cut after the last commit leaves on disk.

use super::*;
use ecko_hal::storage::SimStorage;
use ecko_message::Envelope;
use proptest::prelude::*;

const DESTS: [&str; 2] = ["a", "b"];
/// Partition keys: `""` is the unpartitioned lane.
const LANES: [&str; 3] = ["", "p1", "p2"];

#[derive(Debug, Clone)]
enum Op {
    Ingest {
        key: u8,
        dests: Vec<usize>,
        lane: usize,
    },
    Lease {
        dest: usize,
        lanes: usize,
        batch: usize,
    },
    Settle {
        held: usize,
        how: How,
    },
    Advance {
        ms: i64,
    },
    RetryDead {
        pick: usize,
    },
    Purge {
        age_ms: i64,
    },
    Restart,
    Crash,
    DiskLow(bool),
}

#[derive(Debug, Clone, Copy)]
enum How {
    Delivered,
    Retry { delay: i64 },
    Dead,
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, prop::sample::subsequence(vec![0usize, 1], 1..=2), 0usize..3)
            .prop_map(|(key, dests, lane)| Op::Ingest { key, dests, lane }),
        3 => (0usize..2, 1usize..3, 1usize..4)
            .prop_map(|(dest, lanes, batch)| Op::Lease { dest, lanes, batch }),
        3 => (0usize..4, prop_oneof![
            Just(How::Delivered),
            (1i64..3000).prop_map(|delay| How::Retry { delay }),
            Just(How::Dead),
            Just(How::Release),
        ]).prop_map(|(held, how)| Op::Settle { held, how }),
        1 => (0i64..5000).prop_map(|ms| Op::Advance { ms }),
        1 => (0usize..4).prop_map(|pick| Op::RetryDead { pick }),
        1 => (0i64..6000).prop_map(|age_ms| Op::Purge { age_ms }),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
        1 => any::<bool>().prop_map(Op::DiskLow),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    outbox_id: Option<i64>,
    dest: usize,
    lane: usize,
    state: OutboxState,
    attempts: u32,
    next_at: i64,
}

#[derive(Debug, Clone)]
struct Msg {
    id: i64,
    key: u8,
    received_at: i64,
    rows: Vec<Row>,
}

#[derive(Default)]
struct Model {
    msgs: Vec<Msg>,
    /// Leases the "worker" holds: (message index, row index, token era).
    held: Vec<(Lease, usize, usize, u64)>,
    era: u64,
    disk_low: bool,
}

impl Model {
    /// Rows of `dest` in `lane`, FIFO, that are neither delivered nor dead.
    fn pending(&self, dest: usize, lane: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (mi, m) in self.msgs.iter().enumerate() {
            for (ri, r) in m.rows.iter().enumerate() {
                if r.dest == dest
                    && r.lane == lane
                    && matches!(r.state, OutboxState::Queued | OutboxState::Leased)
                {
                    out.push((mi, ri));
                }
            }
        }
        out
    }

    /// Lanes in name order; a lane with a row in flight is skipped; each due
    /// lane gives its queued rows from the head until one is not yet due.
    fn expected_lease(
        &self,
        dest: usize,
        max_lanes: usize,
        batch: usize,
        now: i64,
    ) -> Vec<(usize, usize)> {
        let mut lanes: Vec<usize> = (0..LANES.len()).collect();
        lanes.sort_by_key(|&l| LANES[l]);
        let mut out = Vec::new();
        let mut due_lanes = 0;
        for lane in lanes {
            if due_lanes == max_lanes {
                break;
            }
            let pending = self.pending(dest, lane);
            let in_flight = pending
                .iter()
                .any(|&(mi, ri)| self.msgs[mi].rows[ri].state == OutboxState::Leased);
            let Some(&(hm, hr)) = pending.first() else {
                continue;
            };
            if in_flight || self.msgs[hm].rows[hr].next_at > now {
                continue;
            }
            due_lanes += 1;
            for (taken, (mi, ri)) in pending.into_iter().enumerate() {
                if taken == batch || self.msgs[mi].rows[ri].next_at > now {
                    break;
                }
                out.push((mi, ri));
            }
        }
        out
    }
}

/// Per message, per destination: state and attempts.
type Visible = Vec<(i64, Vec<(String, OutboxState, u32)>)>;

async fn visible(j: &Journal) -> Visible {
    let mut out = Vec::new();
    for id in j.message_ids().await.unwrap() {
        let rows = j
            .outbox_of(id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.destination, r.state, r.attempts))
            .collect();
        out.push((id, rows));
    }
    out
}

fn model_visible(m: &Model) -> Visible {
    m.msgs
        .iter()
        .map(|msg| {
            (
                msg.id,
                msg.rows
                    .iter()
                    .map(|r| (DESTS[r.dest].to_string(), r.state, r.attempts))
                    .collect(),
            )
        })
        .collect()
}

fn open(path: &Path, clock: Arc<ManualClock>, disk: &SimStorage) -> Journal {
    let mut o = JournalOptions::new(path);
    o.clock = clock;
    o.storage = Arc::new(disk.clone());
    o.min_free_disk = 1000;
    o.disk_check_interval = std::time::Duration::ZERO;
    Journal::open(o).unwrap()
}

/// What a power cut leaves: the database file and its write-ahead log as
/// they are on disk now, with nothing checkpointed.
fn copy_as_after_a_crash(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let wal = |p: &Path| PathBuf::from(format!("{}-wal", p.display()));
    if wal(from).exists() {
        std::fs::copy(wal(from), wal(to)).unwrap();
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut path = dir.path().join("j0.db");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let disk = SimStorage::new(u64::MAX);
    let mut j = open(&path, clock.clone(), &disk);
    let mut m = Model::default();
    let mut crashes = 0;

    for op in ops {
        let described = format!("{op:?}");
        let now = clock.now_ms();
        match op {
            Op::Ingest { key, dests, lane } => {
                let message = Envelope {
                    source: "s".into(),
                    dedup_key: Some(key.to_string()),
                    message_type: "T".into(),
                    content_type: "c".into(),
                    payload: vec![key],
                    ..Default::default()
                };
                let d = dests
                    .iter()
                    .map(|&i| Destination {
                        endpoint: DESTS[i].into(),
                        transform: "none".into(),
                        lane: LANES[lane].into(),
                        reply_to: None,
                    })
                    .collect();
                let known = m.msgs.iter().any(|x| x.key == key);
                if m.disk_low && !known {
                    let refused = j.ingest(message, d).await.unwrap_err();
                    assert!(matches!(refused, IngestError::DiskFull { .. }), "{refused}");
                    continue;
                }
                let r = j.ingest(message, d).await.unwrap();
                match m.msgs.iter().find(|x| x.key == key) {
                    Some(existing) => {
                        assert!(r.duplicate);
                        assert_eq!(r.message_id, existing.id);
                    }
                    None => {
                        assert!(!r.duplicate);
                        m.msgs.push(Msg {
                            id: r.message_id,
                            key,
                            received_at: now,
                            rows: dests
                                .iter()
                                .map(|&dest| Row {
                                    outbox_id: None,
                                    dest,
                                    lane,
                                    state: OutboxState::Queued,
                                    attempts: 0,
                                    next_at: now,
                                })
                                .collect(),
                        });
                    }
                }
            }
            Op::Lease { dest, lanes, batch } => {
                let expected = m.expected_lease(dest, lanes, batch, now);
                let found = j.lease(DESTS[dest], lanes, batch).await.unwrap();
                let got: Vec<Lease> = found.lanes.into_iter().flatten().collect();
                let got_ids: Vec<i64> = got.iter().map(|l| l.message.id).collect();
                let want_ids: Vec<i64> = expected.iter().map(|&(mi, _)| m.msgs[mi].id).collect();
                assert_eq!(got_ids, want_ids, "lease of {} at {now}", DESTS[dest]);
                for (lease, (mi, ri)) in got.into_iter().zip(expected) {
                    let row = &mut m.msgs[mi].rows[ri];
                    row.state = OutboxState::Leased;
                    row.outbox_id = Some(lease.outbox_id);
                    assert_eq!(lease.attempts, row.attempts);
                    m.held.push((lease, mi, ri, m.era));
                }
            }
            Op::Settle { held, how } => {
                if m.held.is_empty() {
                    continue;
                }
                let (lease, mi, ri, era) = m.held.remove(held % m.held.len());
                let settlement = match how {
                    How::Delivered => Settlement::Delivered {
                        response: None,
                        duration_ms: 1,
                    },
                    How::Retry { delay } => Settlement::Retry {
                        error: "e".into(),
                        duration_ms: 1,
                        retry_at: now + delay,
                    },
                    How::Dead => Settlement::Dead {
                        error: "e".into(),
                        duration_ms: 1,
                    },
                    How::Release => Settlement::Release,
                };
                let recorded = j.settle(vec![(lease, settlement)]).await.unwrap();
                // A lease from before a restart is stale and must change nothing.
                let row = &mut m.msgs[mi].rows[ri];
                let live = era == m.era && row.state == OutboxState::Leased;
                assert_eq!(recorded, usize::from(live));
                if live {
                    match how {
                        How::Delivered => {
                            row.state = OutboxState::Delivered;
                            row.attempts += 1;
                        }
                        How::Retry { delay } => {
                            row.state = OutboxState::Queued;
                            row.attempts += 1;
                            row.next_at = now + delay;
                        }
                        How::Dead => {
                            row.state = OutboxState::Dead;
                            row.attempts += 1;
                        }
                        How::Release => row.state = OutboxState::Queued,
                    }
                }
            }
            Op::Advance { ms } => clock.advance(ms),
            Op::RetryDead { pick } => {
                let dead: Vec<(usize, usize)> = m
                    .msgs
                    .iter()
                    .enumerate()
                    .flat_map(|(mi, msg)| {
                        msg.rows
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| r.state == OutboxState::Dead)
                            .map(move |(ri, _)| (mi, ri))
                    })
                    .collect();
                if dead.is_empty() {
                    continue;
                }
                let (mi, ri) = dead[pick % dead.len()];
                let row = &mut m.msgs[mi].rows[ri];
                let Some(id) = row.outbox_id else { continue };
                assert!(j.retry(id, "model").await.unwrap());
                row.state = OutboxState::Queued;
                row.attempts = 0;
                row.next_at = now;
            }
            Op::Purge { age_ms } => {
                let cutoff = now - age_ms;
                let purged = j.purge_delivered_before(cutoff).await.unwrap();
                let before = m.msgs.len();
                let purgeable = |msg: &Msg| {
                    msg.received_at < cutoff
                        && msg.rows.iter().all(|r| r.state == OutboxState::Delivered)
                };
                // Leases from before a restart are stale: their rows may be
                // delivered by now and purged; the worker holding them is gone.
                let era = m.era;
                let msgs = &m.msgs;
                m.held.retain(|h| h.3 == era || !purgeable(&msgs[h.1]));
                let gone: Vec<(usize, usize)> = m
                    .held
                    .iter()
                    .map(|h| (h.1, h.2))
                    .filter(|&(mi, _)| purgeable(&m.msgs[mi]))
                    .collect();
                assert!(gone.is_empty(), "purge removed a message still leased");
                let keep: Vec<bool> = m.msgs.iter().map(|msg| !purgeable(msg)).collect();
                // Re-index held leases after removal.
                let mut new_index = Vec::new();
                let mut n = 0;
                for &k in &keep {
                    new_index.push(n);
                    if k {
                        n += 1;
                    }
                }
                for h in &mut m.held {
                    h.1 = new_index[h.1];
                }
                let mut it = keep.iter();
                m.msgs.retain(|_| *it.next().unwrap());
                assert_eq!(purged as usize, before - m.msgs.len());
            }
            Op::Restart | Op::Crash => {
                if matches!(op, Op::Restart) {
                    j.close().await;
                } else {
                    crashes += 1;
                    let next = dir.path().join(format!("j{crashes}.db"));
                    copy_as_after_a_crash(&path, &next);
                    // The old process is gone; its file is never used again.
                    drop(j);
                    path = next;
                }
                j = open(&path, clock.clone(), &disk);
                m.era += 1;
                for msg in &mut m.msgs {
                    for r in &mut msg.rows {
                        if r.state == OutboxState::Leased {
                            r.state = OutboxState::Queued;
                            r.next_at = r.next_at.min(now);
                        }
                    }
                }
            }
            Op::DiskLow(low) => {
                disk.set_available(if low { 0 } else { u64::MAX });
                m.disk_low = low;
            }
        }
        assert_eq!(visible(&j).await, model_visible(&m), "after {described}");
    }
    j.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn the_journal_behaves_like_its_model_under_any_interleaving(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
