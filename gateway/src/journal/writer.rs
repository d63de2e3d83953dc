//! The single writer thread and its group commit.
//!
//! # One bad job never undoes the others
//!
//! Jobs of one batch share its transaction. A job that fails or panics
//! must leave no trace, and the jobs beside it must commit. Two kinds of
//! job get there two ways:
//!
//! - A job that may run again ([`Rerun`]: an ingest, the hot path) runs
//!   without a savepoint, first in the batch. It checks what can refuse it
//!   before it writes, so a refusal writes nothing. If one fails after
//!   writing (a full disk mid-way, a source's own rows refused) or panics,
//!   the transaction is rolled back and those jobs run again without it:
//!   the rare path, which costs a second run of the batch.
//! - Any other job runs once, after them, inside a savepoint of its own,
//!   rolled back alone when it fails.
//!
//! A savepoint per job copied every page a job touched into the statement
//! journal: about 6 % of the writer's time at full load.

use super::{Clock, JournalError};
use ecko_hal::Storage;
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A job that runs once, inside a savepoint; returns whether its savepoint
/// should be kept, and what to do once the commit's fate is known.
pub(super) type OnceJob = Box<dyn FnOnce(&Connection, &BatchContext) -> (bool, Completion) + Send>;

/// A unit of work for the batch transaction.
pub(super) enum Job {
    Once(OnceJob),
    Rerun(Box<dyn Rerun>),
}

/// A job that may run more than once (see the module's note); only its
/// last run counts.
pub(super) trait Rerun: Send {
    /// Runs inside the batch transaction; whether it succeeded.
    fn run(&mut self, conn: &Connection, cx: &BatchContext) -> bool;
    /// Answers the caller once the commit's fate is known.
    fn complete(self: Box<Self>, committed: Result<(), JournalError>);
}

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
    Job::Once(Box::new(move |conn, cx| {
        let result = f(conn, cx);
        let keep = result.is_ok();
        let completion: Completion = Box::new(move |committed| {
            let _ = reply.send(committed.map(|()| result));
        });
        (keep, completion)
    }))
}

/// Wraps a closure that may run again into a job without a savepoint; it
/// must check what can refuse it before it writes.
pub(super) fn rerunnable<T, E, F>(
    f: F,
    reply: oneshot::Sender<Result<Result<T, E>, JournalError>>,
) -> Job
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnMut(&Connection, &BatchContext) -> Result<T, E> + Send + 'static,
{
    struct Runs<T, E, F> {
        f: F,
        result: Option<Result<T, E>>,
        reply: oneshot::Sender<Result<Result<T, E>, JournalError>>,
    }
    impl<T: Send, E: Send, F> Rerun for Runs<T, E, F>
    where
        F: FnMut(&Connection, &BatchContext) -> Result<T, E> + Send,
    {
        fn run(&mut self, conn: &Connection, cx: &BatchContext) -> bool {
            self.result = None;
            let result = (self.f)(conn, cx);
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        }
        fn complete(self: Box<Self>, committed: Result<(), JournalError>) {
            // A job that panicked has no result: its caller sees the
            // journal as closed for that one request.
            if let Some(result) = self.result {
                let _ = self.reply.send(committed.map(|()| result));
            }
        }
    }
    Job::Rerun(Box::new(Runs {
        f,
        result: None,
        reply,
    }))
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
    // A newer gateway's journal is never written, so never checkpointed.
    let checkpointer = match (newer_schema, conn.path().map(PathBuf::from)) {
        (None, Some(path)) if !path.as_os_str().is_empty() => {
            match super::checkpointer::hand_over(&conn) {
                Ok(()) => super::checkpointer::Checkpointer::start(&path),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoints stay in the writer's commits");
                    None
                }
            }
        }
        _ => None,
    };
    if checkpointer.is_none() && newer_schema.is_none() {
        let _ = super::checkpointer::take_back(&conn);
    }
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
    drop(checkpointer);
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
    let mut reruns: Vec<Box<dyn Rerun>> = Vec::new();
    let mut onces: Vec<OnceJob> = Vec::new();
    for job in batch {
        match job {
            Job::Rerun(job) => reruns.push(job),
            Job::Once(job) => onces.push(job),
        }
    }
    let mut completions: Vec<Completion> = Vec::new();
    let mut began = conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(JournalError::from);
    // Jobs taken out of the batch after failing with writes: their writes
    // were rolled back with the batch, their answer is their own failure.
    let mut failed: Vec<Box<dyn Rerun>> = Vec::new();
    while began.is_ok() {
        let Some(bad) = first_failure(conn, cx, &mut reruns) else {
            break;
        };
        failed.push(reruns.swap_remove(bad));
        let _ = conn.execute_batch("ROLLBACK");
        began = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(JournalError::from);
    }
    if let Err(err) = began {
        // Jobs never ran: completing them with the error is all we can do.
        for job in reruns.into_iter().chain(failed) {
            job.complete(Err(err.clone()));
        }
        for job in onces {
            let (_, completion) = job_not_run(job);
            completion(Err(err.clone()));
        }
        return;
    }
    // Statements are cached: this loop runs once per job.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    for job in onces {
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
    let jobs = (reruns.len() + failed.len() + completions.len()) as u64;
    let committed = conn.execute_batch("COMMIT").map_err(JournalError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    } else {
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.jobs.fetch_add(jobs, Ordering::Relaxed);
        counters.batch_sizes.observe(jobs as f64);
    }
    for job in reruns {
        job.complete(committed.clone());
    }
    // Their own error is the answer, whatever became of the batch: none of
    // their writes is in it.
    for job in failed {
        job.complete(Ok(()));
    }
    for completion in completions {
        completion(committed.clone());
    }
}

/// Runs every job that may run again; the index of the first that failed
/// after writing or panicked (the batch must then be rolled back), or
/// `None` when every write they made may stand.
fn first_failure(
    conn: &Connection,
    cx: &BatchContext,
    reruns: &mut [Box<dyn Rerun>],
) -> Option<usize> {
    for (index, job) in reruns.iter_mut().enumerate() {
        let before = conn.total_changes();
        match std::panic::catch_unwind(AssertUnwindSafe(|| job.run(conn, cx))) {
            Ok(true) => {}
            // Refused before it wrote: nothing to undo.
            Ok(false) if conn.total_changes() == before => {}
            Ok(false) => return Some(index),
            Err(_) => {
                tracing::error!("a journal job panicked; the batch runs again without it");
                return Some(index);
            }
        }
    }
    None
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
    let mut reruns: Vec<Box<dyn Rerun>> = Vec::new();
    for job in batch {
        match job {
            Job::Once(job) if !began => completions.push(job_not_run(job).1),
            Job::Once(job) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn, &refused))) {
                    Ok((_, completion)) => completions.push(completion),
                    Err(_) => {
                        tracing::error!("a journal job panicked; its changes are rolled back")
                    }
                }
            }
            Job::Rerun(mut job) => {
                if began
                    && std::panic::catch_unwind(AssertUnwindSafe(|| job.run(conn, &refused)))
                        .is_err()
                {
                    tracing::error!("a journal job panicked; its changes are rolled back");
                }
                reruns.push(job);
            }
        }
    }
    if began {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for completion in completions {
        completion(Err(refused_with.clone()));
    }
    for job in reruns {
        job.complete(Err(refused_with.clone()));
    }
}

/// A job that could not be run still owes its caller an answer; its closure
/// is dropped unrun, which drops its reply channel and surfaces as `Closed`.
fn job_not_run(job: OnceJob) -> (bool, Completion) {
    drop(job);
    (false, Box::new(|_| {}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT NOT NULL)")
            .unwrap();
        conn
    }

    fn counters() -> WriterCounters {
        WriterCounters::new(prometheus_client::metrics::histogram::Histogram::new([]))
    }

    fn context() -> BatchContext {
        BatchContext {
            now: 0,
            refusal: None,
        }
    }

    type Answer = oneshot::Receiver<Result<Result<(), String>, JournalError>>;

    /// A job inserting `value`, counting its runs; `fail` decides, from the
    /// run's number, whether it then fails.
    fn insert(
        value: &'static str,
        runs: Arc<AtomicUsize>,
        fail: fn(usize) -> bool,
    ) -> (Job, Answer) {
        let (reply, answer) = oneshot::channel();
        let job = rerunnable(
            move |conn: &Connection, _: &BatchContext| -> Result<(), String> {
                let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
                conn.execute("INSERT INTO t (v) VALUES (?1)", [value])
                    .map_err(|e| e.to_string())?;
                if fail(run) {
                    return Err(format!("{value} refused after writing"));
                }
                Ok(())
            },
            reply,
        );
        (job, answer)
    }

    fn values(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT v FROM t ORDER BY v")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_job_failing_after_its_writes_leaves_none_and_the_batch_commits_without_it() {
        let conn = db();
        let runs: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let (a, mut a_answer) = insert("a", runs[0].clone(), |_| false);
        let (bad, mut bad_answer) = insert("bad", runs[1].clone(), |_| true);
        let (c, mut c_answer) = insert("c", runs[2].clone(), |_| false);
        commit_batch(&conn, &context(), [a, bad, c].into_iter(), &counters());
        assert_eq!(values(&conn), ["a", "c"]);
        assert_eq!(a_answer.try_recv().unwrap().unwrap(), Ok(()));
        assert_eq!(c_answer.try_recv().unwrap().unwrap(), Ok(()));
        assert_eq!(
            bad_answer.try_recv().unwrap().unwrap(),
            Err("bad refused after writing".to_string())
        );
        // The batch ran again without the failing job: only the job before
        // it ran twice, and the failing one once.
        let counts: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, [2, 1, 1]);
    }

    #[test]
    fn a_job_refused_before_it_writes_costs_the_batch_no_second_run() {
        let conn = db();
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, _a_answer) = insert("a", runs.clone(), |_| false);
        let (reply, mut refused) = oneshot::channel();
        let refuse = rerunnable(
            |_: &Connection, _: &BatchContext| -> Result<(), String> { Err("full".into()) },
            reply,
        );
        commit_batch(&conn, &context(), [a, refuse].into_iter(), &counters());
        assert_eq!(values(&conn), ["a"]);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert_eq!(
            refused.try_recv().unwrap().unwrap(),
            Err("full".to_string())
        );
    }

    #[test]
    fn a_job_that_panics_is_left_out_and_its_caller_sees_the_journal_closed() {
        let conn = db();
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, mut a_answer) = insert("a", runs.clone(), |_| false);
        let (reply, mut panicked) = oneshot::channel::<Result<Result<(), String>, JournalError>>();
        let panics = rerunnable(
            |conn: &Connection, _: &BatchContext| -> Result<(), String> {
                conn.execute("INSERT INTO t (v) VALUES ('half')", [])
                    .unwrap();
                panic!("a bug in a job");
            },
            reply,
        );
        let (once_reply, mut once_answer) = oneshot::channel();
        let once = job(
            |conn: &Connection, _: &BatchContext| -> Result<(), String> {
                conn.execute("INSERT INTO t (v) VALUES ('once')", [])
                    .map_err(|e| e.to_string())?;
                Ok(())
            },
            once_reply,
        );
        commit_batch(
            &conn,
            &context(),
            [a, panics, once].into_iter(),
            &counters(),
        );
        assert_eq!(values(&conn), ["a", "once"]);
        assert_eq!(a_answer.try_recv().unwrap().unwrap(), Ok(()));
        assert_eq!(once_answer.try_recv().unwrap().unwrap(), Ok(()));
        assert!(matches!(
            panicked.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
