//! The journal: every message the gateway has accepted, where it must go, and
//! everything that happened to it. Only this module speaks SQL.
//!
//! # Tables
//!
//! - `message`: one row per accepted inbound message: source endpoint,
//!   duplicate key (MSH-10, an ASTM content hash, a file digest) and the
//!   payload's SHA-256, type, the raw payload and the acknowledgement the
//!   sender was given.
//! - `outbox`: one row per (message, destination) chosen by the routes, with
//!   its lane (partition key), state (`queued`, `leased`, `delivered`, `dead`),
//!   attempt count, the time of the next attempt, and the reply endpoint that
//!   gets an application acknowledgement once the row settles.
//! - `event`: the history: received and routed, every delivery attempt (time,
//!   duration, outcome, response or error), delivered, dead, retried and by
//!   whom, purges. The admin page and the hub read only these tables.
//! - `hub_event`: the hub uplink's outbox of events (endpoint down and up,
//!   dead letters, configuration changes, disk low), each row deleted once
//!   the broker acknowledged its publication; `hub_meta` holds the epoch
//!   that makes event ids unique beyond this journal.
//!   It also keeps the failed update seen last (`updates`), so that every
//!   slot, older or newer, opens this journal without a schema change.
//! - `hub_command_seen`: the ids of the hub's commands seen, kept while a
//!   replay of one could still be young enough to run.
//!
//! # Durability: store, then acknowledge
//!
//! The database runs with `journal_mode=WAL` and `synchronous=FULL`: a
//! transaction is on stable storage when `COMMIT` returns. All writes go
//! through one writer thread. It takes every job that is waiting, runs them in
//! one transaction (each inside its own savepoint, so one bad job cannot undo
//! the others), commits, and only then completes each job's future. A source
//! acknowledges its sender only when its [`Receipt`] resolves, so an
//! acknowledged message is always in a committed transaction. Throughput comes
//! from that group commit: while one commit waits for the disk, the next batch
//! gathers.
//!
//! # Admission
//!
//! Before each batch the writer measures the live data in the file and the
//! free space on its filesystem. Above `max_size`, or below `min_free_disk`,
//! new messages are refused with a typed [`IngestError`] that sources turn into
//! a negative acknowledgement: the sender keeps its copy. Queued messages are
//! never evicted to make room; duplicates of stored messages are still
//! answered positively, since they are already safe.
//!
//! # A full disk at start
//!
//! Opening an existing journal writes nothing unless something needs
//! writing: pragmas that would rewrite the header are set only on a new
//! file, and an empty release of leases commits no page. What does need
//! writing at start (migrations, leases of the previous run returned to the
//! queue) may meet a full disk after a crash; the journal then opens all the
//! same, unwritable: the writer refuses every batch (senders hear
//! "disk full", the admin page and `/readyz` say why, reads go on) and
//! retries those start-up writes every second. Until they succeed no job
//! runs, so no new lease can be taken before the old ones are returned;
//! once they do, normal service resumes by itself.
//!
//! # A journal of a newer gateway
//!
//! The journal is on the data partition and both firmware slots use it:
//! after a fallback the older gateway may find a schema it does not know.
//! Migrations are not forward-compatible, so the older one refuses loudly
//! and stays up read-only: it reads `PRAGMA user_version` through a
//! read-only connection before anything else, and when it is newer than
//! [`schema::VERSION`] the writer's connection is read-only too (SQLite
//! refuses any write on it), no migration or start-up write runs, and
//! every job is answered [`JournalError::NewerSchema`]: senders hear why
//! (MLLP `AR` with the reason), `/readyz`, the dashboard and the hub's
//! health say it ([`Journal::unwritable_reason`]), the admin page reads
//! on. The file stays byte for byte as the newer gateway left it.
//!
//! # Delivery
//!
//! Delivery workers lease outbox rows (state `leased`, with a random token) and
//! settle them with that token. A crash leaves rows `leased`; opening the
//! journal returns them to `queued`, so a crash re-delivers and never skips.
//! Settling with a stale token changes nothing, so an outcome is recorded
//! exactly once. Within a lane, only the oldest undelivered row may be in
//! flight: that is the FIFO guarantee. Dead rows step aside (they are kept and
//! can be retried).
//!
//! # Retention
//!
//! Messages whose every outbox row is delivered and that are older than the
//! retention period are deleted in small batches, then pages are returned to
//! the filesystem with `incremental_vacuum` (the file is created with
//! `auto_vacuum=INCREMENTAL`). Dead and queued messages are never purged.

mod audit;
mod breakers;
mod browse;
mod checkpointer;
mod dicom_studies;
pub mod external;
mod failures;
mod hub_commands;
mod hub_events;
mod hub_orders;
mod ingest;
mod live;
mod mpps;
pub mod orders;
mod outbox;
mod query;
mod references;
mod retention;
mod schema;
mod search_keys;
mod selection;
mod stats;
mod stats_fold;
mod updates;
mod users;
mod worklist;
mod writer;

pub use audit::AuditRecord;
pub use breakers::TrippedBreaker;
pub use browse::{state_name, DeliveryState, MessageFilter, MessagePage, MessageSummary};
pub use dicom_studies::DueStudy;
pub use failures::FailedDelivery;
pub use hub_events::{Backlog, HubEvent, HUB_EVENTS_KEPT};
pub use hub_orders::{HubOrder, HubOrderOutcome};
pub use ingest::{Destination, IngestError, Receipt};
pub use live::{LiveCursor, LiveEvent};
pub use mpps::{MppsChange, MppsOutcome};
pub use orders::{IncompleteTransmission, NewOrder, OrderSelection, OrderState, StoredOrder};
pub use outbox::{Lease, LeaseBatch, Reply, Settlement};
pub use query::{
    DestinationCounts, EventRecord, JournalReader, OutboxRecord, OutboxState, QueueDepth,
};
pub use schema::VERSION as SCHEMA_VERSION;
pub use search_keys::Unindexed;
pub use selection::{BulkOutcome, Selection, BULK_LIMIT};
pub use stats::{EndpointActivity, EndpointStats};
pub use updates::FailedUpdate;
pub use users::{AdminUser, NewToken, OpenSession, SessionRecord, TokenRecord, UserError};
pub use worklist::WorklistEntry;

use ecko_hal::Storage;
use external::open_reader;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};
use writer::{Admission, Limits, Work};

/// What can go wrong inside the journal itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the journal at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("journal storage error: {0}")]
    Storage(String),
    #[error("the disk holding the journal is full")]
    DiskFull,
    #[error("the journal is closed")]
    Closed,
    /// Written by a newer gateway (the other firmware slot): open
    /// read-only, never migrated or written by this one.
    #[error("{}", schema::newer_schema(*found))]
    NewerSchema { found: i64 },
    #[error("no outbox row {0}")]
    UnknownOutboxRow(i64),
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                JournalError::DiskFull
            }
            _ => JournalError::Storage(e.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch, from a source the tests can steer.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How the journal is opened.
pub struct JournalOptions {
    pub path: PathBuf,
    pub max_size: u64,
    pub min_free_disk: u64,
    pub clock: Arc<dyn Clock>,
    pub storage: Arc<dyn Storage>,
    /// How often the writer asks the disk for its free space; free space
    /// changes slowly compared to commits.
    pub disk_check_interval: std::time::Duration,
    /// How far back a resend is recognised as a duplicate (the retention
    /// period); `None` looks at every stored message.
    pub duplicate_window: Option<std::time::Duration>,
    /// Where each commit's number of jobs is recorded (the metrics').
    pub commit_batch_sizes: prometheus_client::metrics::histogram::Histogram,
}

impl JournalOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_size: 8 << 30,
            min_free_disk: 256 << 20,
            clock: Arc::new(SystemClock),
            storage: Arc::new(ecko_hal::storage::LinuxStorage),
            disk_check_interval: std::time::Duration::from_millis(250),
            duplicate_window: None,
            commit_batch_sizes: prometheus_client::metrics::histogram::Histogram::new([]),
        }
    }
}

/// A handle on the open journal; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Work>>>,
    readers: Mutex<Vec<Connection>>,
    clock: Arc<dyn Clock>,
    duplicate_window: Option<std::time::Duration>,
    wakeups: Mutex<HashMap<String, Arc<Notify>>>,
    writer_done: Mutex<Option<oneshot::Receiver<()>>>,
    counters: Arc<writer::WriterCounters>,
    /// Held while open: a second gateway on the same journal would return
    /// this one's leased rows to the queue and deliver them twice.
    lock: Mutex<Option<nix::fcntl::Flock<std::fs::File>>>,
    limits: Arc<Limits>,
    /// Set while the start-up writes wait for disk space, and for good on
    /// a journal of a newer schema.
    unwritable: Arc<AtomicBool>,
    /// The schema version of a journal a newer gateway wrote, opened
    /// read-only.
    newer_schema: Option<i64>,
}

const JOB_QUEUE: usize = 16 * 1024;

impl Journal {
    /// Opens (creating if needed) and migrates the journal, returns leased
    /// rows of a previous run to the queue and starts the writer thread.
    pub fn open(options: JournalOptions) -> Result<Journal, JournalError> {
        let open_err = |reason: String| JournalError::Open {
            path: options.path.display().to_string(),
            reason,
        };
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let lock = lock_exclusively(&options.path).map_err(open_err)?;
        let newer_schema =
            schema::newer_on_disk(&options.path).map_err(|e| open_err(e.to_string()))?;
        let unwritable = Arc::new(AtomicBool::new(false));
        let conn = match newer_schema {
            Some(found) => {
                tracing::error!(
                    path = %options.path.display(),
                    found,
                    supported = schema::VERSION,
                    "{}", schema::newer_schema(found)
                );
                unwritable.store(true, Ordering::Relaxed);
                open_reader(&options.path).map_err(|e| open_err(e.to_string()))?
            }
            None => {
                let mut conn =
                    Connection::open(&options.path).map_err(|e| open_err(e.to_string()))?;
                configure(&conn, true).map_err(|e| open_err(e.to_string()))?;
                match writer::startup_writes(&mut conn, options.clock.now_ms()) {
                    Ok(()) => {}
                    Err(writer::StartupError::DiskFull) => {
                        tracing::error!(
                            path = %options.path.display(),
                            "the disk holding the journal is full: every message is refused until space is freed"
                        );
                        unwritable.store(true, Ordering::Relaxed);
                    }
                    Err(writer::StartupError::Other(reason)) => return Err(open_err(reason)),
                }
                conn
            }
        };

        let dir = options
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let limits = Arc::new(Limits {
            max_size: AtomicU64::new(options.max_size),
            min_free_disk: AtomicU64::new(options.min_free_disk),
        });
        let admission = Admission::new(
            limits.clone(),
            options.storage,
            dir,
            options.disk_check_interval,
        );
        let (tx, rx) = mpsc::channel(JOB_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let clock = options.clock.clone();
        let counters = Arc::new(writer::WriterCounters::new(options.commit_batch_sizes));
        let writer_counters = counters.clone();
        let writer_unwritable = unwritable.clone();
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    writer::run(
                        conn,
                        rx,
                        admission,
                        clock,
                        writer_counters,
                        writer_unwritable,
                        newer_schema,
                    )
                }));
                if ran.is_err() {
                    // Without its writer the gateway could only refuse every
                    // message; exiting lets the service manager restart it on
                    // a journal that is consistent as of its last commit.
                    tracing::error!("the journal writer failed; exiting so the service restarts");
                    std::process::exit(70);
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;

        Ok(Journal {
            inner: Arc::new(Inner {
                path: options.path,
                jobs: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                clock: options.clock,
                duplicate_window: options.duplicate_window,
                wakeups: Mutex::new(HashMap::new()),
                writer_done: Mutex::new(Some(done_rx)),
                counters,
                lock: Mutex::new(Some(lock)),
                limits,
                unwritable,
                newer_schema,
            }),
        })
    }

    /// Whether the journal refuses every write: it could not do its
    /// start-up writes for want of disk space (until it can), or a newer
    /// gateway wrote it (for as long as this one runs).
    pub fn unwritable(&self) -> bool {
        self.inner.unwritable.load(Ordering::Relaxed)
    }

    /// Why [`Journal::unwritable`], in words for `/readyz`, the dashboard
    /// and the hub's health.
    pub fn unwritable_reason(&self) -> Option<String> {
        if let Some(found) = self.inner.newer_schema {
            return Some(schema::newer_schema(found));
        }
        self.unwritable().then(|| {
            "cannot write: the disk is full; every message is refused until space is freed".into()
        })
    }

    /// The schema version of a journal a newer gateway wrote, which this
    /// one opened read-only.
    pub fn newer_schema(&self) -> Option<i64> {
        self.inner.newer_schema
    }

    /// What a full disk at start leaves, for the tests of those who show it.
    #[cfg(test)]
    pub(crate) fn mark_unwritable(&self) {
        self.inner.unwritable.store(true, Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Transactions committed and jobs run in them since the journal opened.
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.inner.counters.commits.load(Ordering::Relaxed),
            self.inner.counters.jobs.load(Ordering::Relaxed),
        )
    }

    /// Changes the size cap and the free-disk reserve; the next batch is
    /// admitted against the new values.
    pub fn set_limits(&self, max_size: u64, min_free_disk: u64) {
        self.inner
            .limits
            .max_size
            .store(max_size, Ordering::Relaxed);
        self.inner
            .limits
            .min_free_disk
            .store(min_free_disk, Ordering::Relaxed);
    }

    /// The size cap and the free-disk reserve now in force.
    pub fn limits(&self) -> (u64, u64) {
        (
            self.inner.limits.max_size.load(Ordering::Relaxed),
            self.inner.limits.min_free_disk.load(Ordering::Relaxed),
        )
    }

    /// Finishes every job already submitted, checkpoints the WAL and closes
    /// the file. Later calls on any clone fail with [`JournalError::Closed`].
    pub async fn close(&self) {
        let sender = lock(&self.inner.jobs).take();
        drop(sender);
        let done = lock(&self.inner.writer_done).take();
        if let Some(done) = done {
            let _ = done.await;
        }
        lock(&self.inner.readers).clear();
        lock(&self.inner.lock).take();
    }

    /// The notifier a delivery worker waits on; woken when a commit queues
    /// work for `destination`.
    pub fn wakeup(&self, destination: &str) -> Arc<Notify> {
        lock(&self.inner.wakeups)
            .entry(destination.to_string())
            .or_default()
            .clone()
    }

    fn wake(&self, destinations: impl IntoIterator<Item = String>) {
        let wakeups = lock(&self.inner.wakeups);
        for d in destinations {
            if let Some(n) = wakeups.get(&d) {
                n.notify_one();
            }
        }
    }

    /// Runs `f` in the next group-commit transaction and resolves after the
    /// commit (or with the error that prevented it).
    async fn write<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &writer::BatchContext) -> Result<T, JournalError> + Send + 'static,
    {
        self.write_with(f).await?
    }

    /// Like [`Journal::write`] for jobs with their own error type; the outer
    /// result is the commit's.
    async fn write_with<T, E, F>(&self, f: F) -> Result<Result<T, E>, JournalError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection, &writer::BatchContext) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(writer::job(f, reply), answer).await
    }

    /// Like [`Journal::write_with`] for a job that may run more than once
    /// and so needs no savepoint (`writer.rs`): it must check what can
    /// refuse it before it writes.
    async fn write_rerunnable<T, E, F>(&self, f: F) -> Result<Result<T, E>, JournalError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnMut(&Connection, &writer::BatchContext) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(writer::rerunnable(f, reply), answer).await
    }

    /// Hands `job` to the writer and waits for its answer.
    async fn submit<T>(
        &self,
        job: writer::Job,
        answer: oneshot::Receiver<Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        let sender = lock(&self.inner.jobs).clone().ok_or(JournalError::Closed)?;
        sender
            .send(Work::Job(job))
            .await
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Commits everything submitted so far, then checkpoints and truncates
    /// the WAL.
    pub async fn checkpoint(&self) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        let sender = lock(&self.inner.jobs).clone().ok_or(JournalError::Closed)?;
        sender
            .send(Work::Checkpoint(reply))
            .await
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Resolves once the writer thread has taken this from its queue: it is
    /// alive and not stuck in a commit.
    pub async fn ping(&self) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        let sender = lock(&self.inner.jobs).clone().ok_or(JournalError::Closed)?;
        sender
            .send(Work::Ping(reply))
            .await
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)
    }

    /// Runs a read on a pooled read-only connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match lock(&inner.readers).pop() {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let result = f(&conn);
            lock(&inner.readers).push(conn);
            result
        })
        .await
        .map_err(|e| JournalError::Storage(format!("read task failed: {e}")))?
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn lock_exclusively(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open lock file: {e}"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                "another gateway process has this journal open".to_string()
            } else {
                format!("cannot lock the journal: {errno}")
            }
        },
    )
}

fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if writer {
        // auto_vacuum only takes effect on a new, empty database file; on
        // an existing one setting it rewrites the header, which a full disk
        // refuses.
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each job runs in a savepoint; its undo pages (the statement journal)
    // need not reach the disk: a crash discards the whole uncommitted
    // transaction anyway. On a file they cost a write per touched page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if writer {
        // The pages every commit touches (index leaves spread by control id
        // and patient) stay cached instead of being read back from the file.
        conn.pragma_update(None, "cache_size", -16384)?;
        // Ingest, lease, settle, retention and admin jobs share the writer:
        // room for all their statements, so none is prepared again per job.
        conn.set_prepared_statement_cache_capacity(128);
    }
    Ok(())
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
