//! The single writer thread and its group commit.

use super::{Clock, JournalError};
use ecko_hal::Storage;
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Runs inside the batch transaction; returns whether its savepoint should be
/// kept, and what to do once the commit's fate is known.
pub(super) type Job = Box<dyn FnOnce(&Connection, &BatchContext) -> (bool, Completion) + Send>;

/// What the writer thread is asked to do.
pub(super) enum Work {
    /// Run in the next group-commit transaction.
    Job(Job),
    /// Commit what came before, then copy the WAL into the database file and
    /// truncate both: the only point where freed pages leave the disk.
    Checkpoint(oneshot::Sender<Result<(), JournalError>>),
    /// Answer at once: the writer's loop is turning (the watchdog asks).
    Ping(oneshot::Sender<()>),
}
type Completion = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

/// What every job in one batch may know.
pub(crate) struct BatchContext {
    pub now: i64,
    /// Why new messages must be refused in this batch, if they must.
    pub refusal: Option<Refusal>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    OverCap { used: u64, cap: u64 },
    DiskLow { available: u64, reserve: u64 },
}

/// Wraps a closure and its reply channel into a job.
pub(super) fn job<T, E, F>(f: F, reply: oneshot::Sender<Result<Result<T, E>, JournalError>>) -> Job
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&Connection, &BatchContext) -> Result<T, E> + Send + 'static,
{
    Box::new(move |conn, cx| {
        let result = f(conn, cx);
        let keep = result.is_ok();
        let completion: Completion = Box::new(move |committed| {
            let _ = reply.send(committed.map(|()| result));
        });
        (keep, completion)
    })
}

/// What the writer has done since the journal was opened: the evidence that
/// group commit groups, and figures for the admin page.
#[derive(Debug)]
pub struct WriterCounters {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Jobs that ran inside those transactions.
    pub jobs: AtomicU64,
    /// Jobs per committed transaction, for the metrics.
    pub batch_sizes: prometheus_client::metrics::histogram::Histogram,
}

impl WriterCounters {
    pub fn new(batch_sizes: prometheus_client::metrics::histogram::Histogram) -> Self {
        Self {
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            batch_sizes,
        }
    }
}

/// Largest number of jobs in one transaction: bounds the time one commit
/// holds every waiter.
const MAX_BATCH: usize = 2048;

/// Measures live size and free disk; the disk is asked at most every
/// `disk_check_every`, since free space changes slowly compared to commits.
pub(super) struct Admission {
    limits: Arc<Limits>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    last_disk_check: Option<Instant>,
    last_available: u64,
    disk_check_every: Duration,
}

/// The admission limits; the running gateway may change them between
/// batches (an edit of the settings).
#[derive(Debug)]
pub(super) struct Limits {
    pub max_size: AtomicU64,
    pub min_free_disk: AtomicU64,
}

impl Admission {
    pub fn new(
        limits: Arc<Limits>,
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        disk_check_every: Duration,
    ) -> Self {
        Self {
            disk_check_every,
            limits,
            storage,
            dir,
            last_disk_check: None,
            last_available: u64::MAX,
        }
    }

    /// Whether the batch of `jobs` about to run may store new messages.
    /// Far from the reserve the disk is asked every `disk_check_every`;
    /// near it, before every batch, and the batch must fit above the
    /// reserve by what it may write, so a flood cannot eat the reserve
    /// between two looks.
    pub(super) fn check(&mut self, conn: &Connection, jobs: usize) -> Option<Refusal> {
        let used = live_bytes(conn).unwrap_or(0);
        let max_size = self.limits.max_size.load(Ordering::Relaxed);
        if used > max_size {
            return Some(Refusal::OverCap {
                used,
                cap: max_size,
            });
        }
        let min_free_disk = self.limits.min_free_disk.load(Ordering::Relaxed);
        let near = self.last_available.saturating_sub(min_free_disk) < NEAR_THE_RESERVE;
        if near
            || self
                .last_disk_check
                .is_none_or(|t| t.elapsed() >= self.disk_check_every)
        {
            self.last_available = match self.storage.available_bytes(&self.dir) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot measure free disk space");
                    u64::MAX
                }
            };
            self.last_disk_check = Some(Instant::now());
        }
        let batch_bytes = (jobs as u64).saturating_mul(BYTES_PER_JOB);
        (self.last_available < min_free_disk.saturating_add(batch_bytes)).then_some(
            Refusal::DiskLow {
                available: self.last_available,
                reserve: min_free_disk,
            },
        )
    }
}

/// What one job may add to the files, at most as measured: a message with
/// its outbox rows, events and indexes writes about 3.6 pages to the WAL.
const BYTES_PER_JOB: u64 = 16 << 10;

/// Closer than this to the reserve, free space is measured before every
/// batch (a statvfs call, far cheaper than the commit it guards).
const NEAR_THE_RESERVE: u64 = 64 << 20;

/// Bytes of pages in use, not counting the free list.
pub(super) fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Why the writes a journal needs at start did not happen.
#[derive(Debug)]
pub(super) enum StartupError {
    /// The disk is full: the journal opens unwritable and tries again.
    DiskFull,
    Other(String),
}

/// What must be written before any job runs: pending migrations, and the
/// leases of a previous run returned to the queue (before this run can
/// take leases of its own).
pub(super) fn startup_writes(conn: &mut Connection, now: i64) -> Result<(), StartupError> {
    let full = |e: &rusqlite::Error| matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull);
    match super::schema::migrate(conn) {
        Err(super::schema::MigrationError::Sqlite(e)) if full(&e) => {
            return Err(StartupError::DiskFull)
        }
        Err(e) => return Err(StartupError::Other(e.to_string())),
        Ok(()) => {}
    }
    match super::outbox::release_all_leases(conn, now) {
        Err(e) if full(&e) => Err(StartupError::DiskFull),
        Err(e) => Err(StartupError::Other(e.to_string())),
        Ok(_) => Ok(()),
    }
}

/// How often an unwritable journal tries its start-up writes again.
const STARTUP_RETRY: Duration = Duration::from_secs(1);

pub(super) fn run(
    mut conn: Connection,
    mut jobs: mpsc::Receiver<Work>,
    mut admission: Admission,
    clock: Arc<dyn Clock>,
    counters: Arc<WriterCounters>,
    unwritable: Arc<AtomicBool>,
    newer_schema: Option<i64>,
) {
    // A newer gateway's journal is never written: no start-up writes, no
    // checkpoint (the connection is read-only as well), every job refused.
    let refused_with = match newer_schema {
        Some(found) => JournalError::NewerSchema { found },
        None => JournalError::DiskFull,
    };
    let mut last_startup_try = Instant::now();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        let mut checkpoint = None;
        let mut next = Some(first);
        while let Some(work) = next.take() {
            match work {
                Work::Job(job) => batch.push(job),
                Work::Checkpoint(reply) => {
                    checkpoint = Some(reply);
                    break;
                }
                Work::Ping(reply) => {
                    let _ = reply.send(());
                }
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if newer_schema.is_none()
            && unwritable.load(Ordering::Relaxed)
            && last_startup_try.elapsed() >= STARTUP_RETRY
        {
            last_startup_try = Instant::now();
            match startup_writes(&mut conn, clock.now_ms()) {
                Ok(()) => {
                    tracing::info!("the journal is writable again: normal service resumes");
                    unwritable.store(false, Ordering::Relaxed);
                }
                Err(StartupError::DiskFull) => {}
                Err(StartupError::Other(reason)) => {
                    tracing::error!(reason, "the journal's start-up writes failed");
                }
            }
        }
        if !batch.is_empty() {
            let cx = BatchContext {
                now: clock.now_ms(),
                refusal: admission.check(&conn, batch.len()),
            };
            if unwritable.load(Ordering::Relaxed) {
                refuse_batch(&conn, &cx, batch.drain(..), &refused_with);
            } else {
                commit_batch(&conn, &cx, batch.drain(..), &counters);
            }
        }
        if let Some(reply) = checkpoint {
            let result = match newer_schema {
                Some(found) => Err(JournalError::NewerSchema { found }),
                None => conn
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(JournalError::from),
            };
            let _ = reply.send(result);
        }
    }
    if newer_schema.is_some() {
        // Nothing was written: nothing to checkpoint.
    } else if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "final checkpoint failed; the WAL will be replayed on next open");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the journal failed");
    }
}

fn commit_batch(
    conn: &Connection,
    cx: &BatchContext,
    batch: impl Iterator<Item = Job>,
    counters: &WriterCounters,
) {
    let mut completions: Vec<Completion> = Vec::new();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = JournalError::from(e);
        for job in batch {
            // Jobs never ran: completing them with the error is all we can do.
            let (_, completion) = job_not_run(job);
            completion(Err(err.clone()));
        }
        return;
    }
    // Statements are cached: this loop runs once per message at full load.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    for job in batch {
        if run("SAVEPOINT job").is_err() {
            completions.push(job_not_run(job).1);
            continue;
        }
        // A job that panics must not take the writer (and with it every
        // later ACK) down: its savepoint is rolled back and its caller sees
        // the journal as closed for that one request.
        let (keep, completion) = match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn, cx)))
        {
            Ok(ran) => ran,
            Err(_) => {
                tracing::error!("a journal job panicked; its changes are rolled back");
                (false, Box::new(|_| {}) as Completion)
            }
        };
        let ended = if keep {
            run("RELEASE job")
        } else {
            run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
        };
        if let Err(e) = ended {
            tracing::error!(error = %e, "savepoint handling failed");
        }
        completions.push(completion);
    }
    let jobs = completions.len() as u64;
    let committed = conn.execute_batch("COMMIT").map_err(JournalError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    } else {
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.jobs.fetch_add(jobs, Ordering::Relaxed);
        counters.batch_sizes.observe(jobs as f64);
    }
    for completion in completions {
        completion(committed.clone());
    }
}

/// Runs `batch` in a transaction that is rolled back, and answers every job
/// `refused_with` ("disk full", a newer schema): what an unwritable journal
/// does with all work, since a job gives its caller an answer only by
/// running.
fn refuse_batch(
    conn: &Connection,
    cx: &BatchContext,
    batch: impl Iterator<Item = Job>,
    refused_with: &JournalError,
) {
    let refused = BatchContext {
        now: cx.now,
        refusal: Some(cx.refusal.unwrap_or(Refusal::DiskLow {
            available: 0,
            reserve: 0,
        })),
    };
    let began = conn.execute_batch("BEGIN").is_ok();
    let mut completions: Vec<Completion> = Vec::new();
    for job in batch {
        if !began {
            completions.push(job_not_run(job).1);
            continue;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn, &refused))) {
            Ok((_, completion)) => completions.push(completion),
            Err(_) => tracing::error!("a journal job panicked; its changes are rolled back"),
        }
    }
    if began {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for completion in completions {
        completion(Err(refused_with.clone()));
    }
}

/// A job that could not be run still owes its caller an answer; its closure
/// is dropped unrun, which drops its reply channel and surfaces as `Closed`.
fn job_not_run(job: Job) -> (bool, Completion) {
    drop(job);
    (false, Box::new(|_| {}))
}
