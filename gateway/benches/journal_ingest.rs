//! Durable ingest throughput and time-to-commit.
//!
//! `cargo bench -p ecko-gateway --bench journal_ingest [-- --quick]`
//! (`ECKO_BENCH_DIR` picks the disk; default: the temp directory)
//!
//! For 1, 8 and 64 concurrent producers, each ingesting 1.5 KB messages and
//! waiting for its receipt (as a source waits before its ACK), prints
//! messages/s and the p50/p99 time from `ingest` to the resolved receipt.
//! For comparison it first measures plain SQLite on the same disk with the
//! same settings (WAL, synchronous=FULL): one message per commit, and
//! batches of 100 per commit, and prints the journal's best rate as a
//! fraction of the batched one; then plain SQLite again with as many rows
//! per commit as the journal's 64-producer run averaged, and the journal's
//! rate as a fraction of that. A temp directory on tmpfs makes fsync free and
//! the figures meaningless for an appliance: the benchmark says so.

use ecko_gateway::journal::{Destination, Journal, JournalOptions};
use ecko_message::Envelope;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGE_BYTES: usize = 1536;

fn message(producer: usize, n: usize) -> Envelope {
    let mut payload =
        format!("MSH|^~\\&|LAB|BENCH|||20261125||ORU^R01|{producer}-{n}|P|2.5.1\r").into_bytes();
    payload.resize(MESSAGE_BYTES, b'x');
    Envelope {
        source: "bench".into(),
        dedup_key: Some(format!("{producer}-{n}")),
        message_type: "ORU^R01".into(),
        content_type: "x-application/hl7-v2+er7".into(),
        control_id: Some(format!("{producer}-{n}")),
        patient_id: Some(format!("P{}", n % 100)),
        payload,
        ack: None,
        ..Default::default()
    }
}

fn destinations() -> Vec<Destination> {
    vec![Destination {
        endpoint: "hub".into(),
        transform: "none".into(),
        lane: String::new(),
        reply_to: None,
    }]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn raw_sqlite(dir: &std::path::Path, per_commit: usize, total: usize) -> f64 {
    let conn =
        rusqlite::Connection::open(dir.join(format!("raw-{per_commit}-{total}.db"))).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE m (id INTEGER PRIMARY KEY, k TEXT UNIQUE, payload BLOB)")
        .unwrap();
    let payload = vec![b'x'; MESSAGE_BYTES];
    let start = Instant::now();
    let mut n = 0;
    while n < total {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..per_commit {
            tx.execute(
                "INSERT INTO m (k, payload) VALUES (?1, ?2)",
                rusqlite::params![n.to_string(), payload],
            )
            .unwrap();
            n += 1;
        }
        tx.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Messages/s, p50, p99, and the average number of jobs per commit.
async fn journal_run(
    dir: &std::path::Path,
    producers: usize,
    total: usize,
) -> (f64, Duration, Duration, f64) {
    let journal = Journal::open(JournalOptions::new(
        dir.join(format!("journal-{producers}.db")),
    ))
    .unwrap();
    let per = total / producers;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..producers {
        let j = journal.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            for n in 0..per {
                let t = Instant::now();
                j.ingest(message(p, n), destinations()).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(l) = tasks.join_next().await {
        all.extend(l.unwrap());
    }
    let elapsed = start.elapsed();
    let (commits, jobs) = journal.commit_counts();
    journal.close().await;
    all.sort();
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        jobs as f64 / commits.max(1) as f64,
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir_in(
        std::env::var_os("ECKO_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .unwrap();
    println!("disk: {}", dir.path().display());
    if let Ok(fs) = nix::sys::statfs::statfs(dir.path()) {
        if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
            println!("WARNING: this directory is on tmpfs; fsync costs nothing here. Set ECKO_BENCH_DIR to a real disk.");
        }
    }
    println!(
        "plain SQLite, 1 message per commit:   {:>9.0} msg/s",
        raw_sqlite(dir.path(), 1, 2_000 / scale)
    );
    let batched = raw_sqlite(dir.path(), 100, 100_000 / scale);
    println!("plain SQLite, 100 messages per commit: {batched:>8.0} msg/s");
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let mut best: f64 = 0.0;
    let mut widest = (0.0, 0.0);
    for (producers, total) in [(1, 2_000), (8, 16_000), (64, 128_000)] {
        let total = total / scale;
        let (rate, p50, p99, batch) = rt.block_on(journal_run(dir.path(), producers, total));
        best = best.max(rate);
        widest = (rate, batch);
        println!(
            "journal, {producers:>2} producers, {total:>6} msgs: {rate:>9.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {batch:>5.1} per commit",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "group commit reaches {:.0}% of the batched plain-SQLite rate",
        100.0 * best / batched
    );
    // The fair comparison for 64 producers: plain rows committed in
    // batches as large as the journal's own were.
    let (rate, batch) = widest;
    let per_commit = (batch.round() as usize).max(1);
    let plain = raw_sqlite(
        dir.path(),
        per_commit,
        (per_commit * 1_000).min(128_000 / scale),
    );
    println!(
        "plain SQLite, {per_commit} messages per commit (the journal's average at 64 producers): {plain:.0} msg/s; the journal reaches {:.0}% of it",
        100.0 * rate / plain
    );
}
