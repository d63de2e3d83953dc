//! Feeding the watchdog only while the gateway works.
//!
//! A process that answers signals but whose listener loop is stuck is worse
//! than a crashed one: systemd restarts a crashed one. So the keepalive is
//! not sent from a timer alone: every half of the watchdog's timeout (the
//! interval `sd_watchdog_enabled(3)` advises) [`keep`] asks the
//! [`Progress`] registry whether every long-lived task beat within its
//! deadline, and sends `WATCHDOG=1` only then. One late task is enough to
//! stop the keepalives; the watcher then restarts the service (systemd) or
//! resets the machine (a hardware watchdog). The late task is logged by
//! name when it first misses its deadline.
//!
//! The same loop keeps the status line (`systemctl status`) up to date with
//! the number of messages waiting.

use super::progress::{Heartbeat, Late, Progress, BEAT_EVERY};
use crate::health::Health;
use crate::journal::Journal;
use ecko_hal::Watchdog;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the status line is refreshed when nothing watches.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What the status line says now.
pub type StatusLine = Box<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// The status line of a gateway on `journal`: how many messages wait.
pub fn queue_status(journal: Journal) -> StatusLine {
    Box::new(move || {
        let journal = journal.clone();
        Box::pin(async move {
            match journal.queue_depths().await {
                Ok(depths) => {
                    let waiting: u64 = depths.iter().map(|d| d.waiting).sum();
                    format!("running; {waiting} messages waiting for delivery")
                }
                Err(_) => "running; queue depth unknown".to_string(),
            }
        })
    })
}

/// Feeds `watchdog` if every task of `progress` is on time; returns the
/// late ones otherwise.
pub fn feed_if_on_time(watchdog: &dyn Watchdog, progress: &Progress) -> Vec<Late> {
    let late = progress.late();
    if late.is_empty() {
        if let Err(e) = watchdog.keepalive() {
            tracing::warn!(error = %e, "cannot feed the watchdog");
        }
    }
    late
}

/// Runs until `stop`: feeds the watchdog at half its timeout while every
/// task makes progress, and refreshes the status line.
pub async fn keep(
    watchdog: Arc<dyn Watchdog>,
    progress: Progress,
    status: StatusLine,
    stop: CancellationToken,
) {
    let every = watchdog
        .timeout()
        .map_or(STATUS_EVERY, |t| (t / 2).max(Duration::from_millis(10)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    let mut were_late: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if watchdog.timeout().is_some() {
            let late = feed_if_on_time(watchdog.as_ref(), &progress);
            let names: Vec<String> = late.iter().map(|l| l.task.clone()).collect();
            for l in late.iter().filter(|l| !were_late.contains(&l.task)) {
                tracing::error!(
                    task = %l.task,
                    silent_for = ?l.silent_for,
                    deadline = ?l.deadline,
                    "a task shows no progress; the watchdog is no longer fed"
                );
            }
            if late.is_empty() && !were_late.is_empty() {
                tracing::info!("every task makes progress again; feeding the watchdog");
            }
            were_late = names;
        }
        let mut line = tokio::time::timeout(every, status())
            .await
            .unwrap_or_else(|_| "running; queue depth unknown".to_string());
        if !were_late.is_empty() {
            line = format!("{line}; no progress: {}", were_late.join(", "));
        }
        if line != last_status {
            if let Err(e) = watchdog.status(&line) {
                tracing::debug!(error = %e, "cannot send the status line");
            }
            last_status = line;
        }
    }
}

/// Waits until each of `sources` has reported its link once (bound or
/// not, open or not: it has started), or `timeout` passes; returns the
/// ones still silent then.
///
/// An MLLP listener is bound before its task starts, an ASTM server binds
/// in its task: `READY=1` waits for both.
pub async fn sources_reported(
    health: &Health,
    sources: &[String],
    timeout: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let silent: Vec<String> = sources
            .iter()
            .filter(|s| health.get(s).is_none())
            .cloned()
            .collect();
        if silent.is_empty() || tokio::time::Instant::now() >= deadline {
            return silent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Beats `heartbeat` each time the journal writer answers a ping: the
/// writer is a thread of its own, blocked on its queue when idle, so it is
/// asked rather than left to beat.
pub async fn probe_journal_writer(journal: Journal, heartbeat: Heartbeat, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            answered = journal.ping() => match answered {
                Ok(()) => heartbeat.beat(),
                Err(crate::journal::JournalError::Closed) => return,
                Err(_) => {}
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(BEAT_EVERY) => {}
        }
    }
}

/// How long each extension of the start-up timeout asks for, and how
/// often it is sent again while the step runs.
pub const EXTEND_BY: Duration = Duration::from_secs(30);
const EXTEND_EVERY: Duration = Duration::from_secs(10);

/// Runs `step` (a start-up that migrates the journal's schema), telling the
/// service manager every [`EXTEND_EVERY`] to wait [`EXTEND_BY`] more
/// (`EXTEND_TIMEOUT_USEC`) until it is done, so a long migration on a large
/// journal is not killed as a start that hangs. At most `limit` in all: a
/// start that never ends still times out.
pub async fn extend_start_during<T>(
    watchdog: &dyn Watchdog,
    limit: Duration,
    step: impl std::future::Future<Output = T>,
) -> T {
    let until = tokio::time::Instant::now() + limit;
    let mut step = std::pin::pin!(step);
    loop {
        if tokio::time::Instant::now() < until {
            if let Err(e) = watchdog.extend_timeout(EXTEND_BY) {
                tracing::debug!(error = %e, "cannot extend the start-up timeout");
            }
        }
        tokio::select! {
            out = &mut step => return out,
            _ = tokio::time::sleep(EXTEND_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_hal::{SimWatchdog, WatchdogEvent};
    use std::future::pending;

    fn fixed_status() -> StatusLine {
        Box::new(|| Box::pin(async { "running; 0 messages waiting for delivery".to_string() }))
    }

    /// A task that beats every second, and after `hang_after` (if given)
    /// stops looping without ending.
    fn task(heartbeat: Heartbeat, hang_after: Option<Duration>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                if hang_after.is_some_and(|h| started.elapsed() >= h) {
                    pending::<()>().await;
                }
                heartbeat.beat();
                tokio::time::sleep(BEAT_EVERY).await;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_hung_source_stops_the_keepalives_while_the_other_tasks_keep_running() {
        let progress = Progress::new();
        let deadline = Duration::from_secs(3);
        let _worker = task(progress.register("hub", deadline), None);
        let _writer = task(progress.register("journal writer", deadline), None);
        let _source = task(
            progress.register("mllp-in", deadline),
            Some(Duration::from_secs(5)),
        );
        let watchdog = SimWatchdog::new(Some(Duration::from_secs(2)));
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep(
            Arc::new(watchdog.clone()),
            progress.clone(),
            fixed_status(),
            stop.clone(),
        ));

        // Fed every second (half of 2 s) while the source loops.
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        let early = watchdog.keepalives();
        assert!((4..=6).contains(&early), "{early} keepalives in 4.5 s");

        // The source stopped at 5 s; 3 s later it is late and the
        // keepalives stop, for good.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let at_hang = watchdog.keepalives();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(watchdog.keepalives(), at_hang, "fed with a hung task");
        assert!(at_hang >= early + 2, "not fed until the deadline passed");

        let late: Vec<String> = progress.late().into_iter().map(|l| l.task).collect();
        assert_eq!(late, ["mllp-in"], "the others keep beating");
        let said_so = watchdog
            .events()
            .into_iter()
            .any(|e| matches!(e, WatchdogEvent::Status(s) if s.ends_with("no progress: mllp-in")));
        assert!(said_so, "{:?}", watchdog.events());
        stop.cancel();
        keeper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_start_keeps_extending_its_timeout_until_it_is_done_and_no_longer() {
        let watchdog = SimWatchdog::new(None);
        let out = extend_start_during(&watchdog, Duration::from_secs(600), async {
            tokio::time::sleep(Duration::from_secs(35)).await;
            7
        })
        .await;
        assert_eq!(out, 7);
        let extensions = watchdog.events();
        assert_eq!(
            extensions,
            vec![WatchdogEvent::ExtendTimeout(EXTEND_BY); 4],
            "at 0, 10, 20 and 30 s"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(watchdog.events().len(), 4, "none after the step");
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_that_never_ends_stops_being_extended_at_the_limit() {
        let watchdog = SimWatchdog::new(None);
        let never = extend_start_during(&watchdog, Duration::from_secs(60), pending::<()>());
        let _ = tokio::time::timeout(Duration::from_secs(600), never).await;
        assert_eq!(
            watchdog.events().len(),
            6,
            "at 0, 10, ... 50 s, then no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watchdog_timeout_only_the_status_line_is_kept() {
        let watchdog = SimWatchdog::new(None);
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep(
            Arc::new(watchdog.clone()),
            Progress::new(),
            fixed_status(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        stop.cancel();
        keeper.await.unwrap();
        assert_eq!(watchdog.keepalives(), 0);
        assert_eq!(
            watchdog.events(),
            [WatchdogEvent::Status(
                "running; 0 messages waiting for delivery".into()
            )],
            "the same line is sent once"
        );
    }
}
