//! Which long-lived tasks still make progress: the evidence the watchdog
//! is fed on.
//!
//! Each long-lived task (a source's accept or read loop, a delivery worker,
//! the journal writer, the admin server) registers once and gets a
//! [`Heartbeat`]; it beats every time round its loop, and a loop that waits
//! for the network or the disk also beats on a timer ([`BEAT_EVERY`]) from
//! the same `select!`, so an idle task is not taken for a hung one. A task
//! whose loop stops (a deadlock, a blocking call on an async thread, an
//! endless retry inside one iteration) stops beating, and once it has been
//! silent for longer than its deadline [`Progress::late`] names it.
//!
//! A beat is one relaxed atomic store of a monotonic time: cheap enough for
//! every iteration. When every clone of a heartbeat is dropped (the task
//! ended: its endpoint was removed or changed) the registration goes with
//! it. A task that panicked drops its heartbeat too, so whoever awaits it
//! reports that with [`Progress::panicked`]: it then counts as late until a
//! task of the same name registers again, because a source that died is no
//! better than a hung one. Time is tokio's, so tests run it paused and move
//! it by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often a waiting task beats on its timer.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// How long a task may stay silent by default before it counts as hung:
/// many beats, and well inside systemd's `WatchdogSec=30` so that the
/// missing keepalives are noticed before the next one is due.
pub const DEADLINE: Duration = Duration::from_secs(15);

struct Beat {
    /// Milliseconds since the registry's epoch at the last beat.
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Beat {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A task's proof of progress; clones beat for the same task.
#[derive(Clone)]
pub struct Heartbeat {
    beat: Arc<Beat>,
}

impl Heartbeat {
    /// The task made progress now.
    pub fn beat(&self) {
        self.beat
            .last_ms
            .store(self.beat.now_ms(), Ordering::Relaxed);
    }

    /// Sleeps `duration`, beating every [`BEAT_EVERY`]: a task waiting on
    /// purpose (a backoff, a poll interval) is not a hung one.
    pub async fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        loop {
            self.beat();
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep_until(until.min(now + BEAT_EVERY)).await;
        }
    }
}

impl Default for Heartbeat {
    /// A heartbeat nobody watches (tests of a single task).
    fn default() -> Self {
        Progress::default().register("unwatched", DEADLINE)
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat").finish_non_exhaustive()
    }
}

struct Registered {
    name: String,
    deadline: Duration,
    beat: Weak<Beat>,
}

/// A task silent for longer than its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    pub task: String,
    pub silent_for: Duration,
    pub deadline: Duration,
}

/// Every registered task; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    tasks: Arc<Mutex<Vec<Registered>>>,
    /// Tasks that panicked, and when.
    died: Arc<Mutex<Vec<(String, Instant)>>>,
    epoch: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            tasks: Arc::default(),
            died: Arc::default(),
            epoch: Instant::now(),
        }
    }
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a task that must beat at least every `deadline`; it counts
    /// as having beaten now.
    pub fn register(&self, task: impl Into<String>, deadline: Duration) -> Heartbeat {
        let beat = Arc::new(Beat {
            last_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        let heartbeat = Heartbeat { beat };
        heartbeat.beat();
        let name: String = task.into();
        lock(&self.died).retain(|(task, _)| *task != name);
        self.lock().push(Registered {
            name,
            deadline,
            beat: Arc::downgrade(&heartbeat.beat),
        });
        heartbeat
    }

    /// Task `task` ended in a panic: it counts as late (with no deadline)
    /// until a task of that name registers again.
    pub fn panicked(&self, task: &str) {
        lock(&self.died).push((task.to_string(), Instant::now()));
    }

    /// The tasks silent for longer than their deadline now, in the order
    /// they registered, then those that panicked; forgets tasks that ended.
    pub fn late(&self) -> Vec<Late> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let died: Vec<Late> = lock(&self.died)
            .iter()
            .map(|(task, at)| Late {
                task: task.clone(),
                silent_for: at.elapsed(),
                deadline: Duration::ZERO,
            })
            .collect();
        let mut tasks = self.lock();
        tasks.retain(|t| t.beat.strong_count() > 0);
        tasks
            .iter()
            .filter_map(|t| {
                let beat = t.beat.upgrade()?;
                let silent_for =
                    Duration::from_millis(now.saturating_sub(beat.last_ms.load(Ordering::Relaxed)));
                (silent_for > t.deadline).then(|| Late {
                    task: t.name.clone(),
                    silent_for,
                    deadline: t.deadline,
                })
            })
            .chain(died)
            .collect()
    }

    /// The names of the tasks registered and still running.
    pub fn tasks(&self) -> Vec<String> {
        let mut tasks = self.lock();
        tasks.retain(|t| t.beat.strong_count() > 0);
        tasks.iter().map(|t| t.name.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Registered>> {
        lock(&self.tasks)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_is_late_only_once_it_was_silent_for_longer_than_its_deadline() {
        let progress = Progress::new();
        let source = progress.register("mllp-in", Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(progress.late().is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let late = progress.late();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].task, "mllp-in");
        assert_eq!(late[0].silent_for, Duration::from_secs(11));
        source.beat();
        assert!(progress.late().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panicked_is_late_until_one_of_its_name_registers_again() {
        let progress = Progress::new();
        let heartbeat = progress.register("mllp-in", DEADLINE);
        let task = tokio::spawn(async move {
            heartbeat.beat();
            panic!("a bug in a source");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(progress.tasks().is_empty(), "its heartbeat went with it");
        progress.panicked("mllp-in");
        tokio::time::advance(Duration::from_secs(1)).await;
        let late = progress.late();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].task, "mllp-in");
        assert_eq!(late[0].silent_for, Duration::from_secs(1));

        let _again = progress.register("mllp-in", DEADLINE);
        assert!(progress.late().is_empty(), "restarted, it is watched anew");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_sleeping_through_its_heartbeat_is_never_late() {
        let progress = Progress::new();
        let file_drop = progress.register("inbox", Duration::from_secs(2));
        let sleeper = tokio::spawn(async move { file_drop.sleep(Duration::from_secs(60)).await });
        for _ in 0..59 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(progress.late().is_empty());
        }
        sleeper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_whose_heartbeats_are_all_dropped_is_forgotten() {
        let progress = Progress::new();
        let worker = progress.register("hub", Duration::from_secs(1));
        let clone = worker.clone();
        drop(worker);
        assert_eq!(progress.tasks(), ["hub"]);
        drop(clone);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(progress.tasks().is_empty());
        assert!(progress.late().is_empty());
    }
}
