//! Statistics for the dashboard and the statistics page: per endpoint,
//! what arrived, what waits, what failed, and how long deliveries took.
//!
//! Counts over a window come from `stats_minute` and `stats_duration`, per
//! endpoint and minute, folded from the rows every few seconds
//! (`stats_fold.rs`) with the unfolded tail added on each read, so a week on
//! a million-message journal is a few thousand rows to add up rather than a
//! scan of the events. What waits right now (queued,
//! in flight, failing, dead) is counted from the outbox itself.

use super::schema::{DURATION_BUCKETS_MS, LEASED, QUEUED};
use super::{stats_fold, Journal, JournalError};
use rusqlite::{params, Connection, OptionalExtension};

/// Activity of one endpoint, for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointActivity {
    pub name: String,
    pub last_received_at: Option<i64>,
    pub received_since: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub failing: u64,
    pub dead: u64,
    pub delivered_since: u64,
    pub last_delivered_at: Option<i64>,
    /// The error of the oldest row waiting to be retried.
    pub last_error: Option<String>,
    /// The error of the newest dead letter.
    pub dead_error: Option<String>,
}

/// Statistics of one endpoint over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointStats {
    pub name: String,
    pub received: u64,
    pub attempts: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Delivered attempts / all attempts, 0..1; `None` without attempts.
    pub success_rate: Option<f64>,
    /// Time a delivery attempt that succeeded took (the destination's
    /// answer included), in ms: the mean, and the 95th percentile as the
    /// upper bound of its duration bucket.
    pub avg_ms: Option<f64>,
    pub p95_ms: Option<i64>,
    /// The median and the 99th percentile, read the same way as `p95_ms`.
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    /// Inbound transmissions refused as incomplete (ASTM) in the window.
    /// HL7 messages answered `AE`/`AR` are not journalled and not counted.
    pub rejected: u64,
    /// rejected / (received + rejected); `None` without traffic.
    pub rejection_rate: Option<f64>,
    /// Messages (received or delivered) per bucket, oldest first.
    pub buckets: Vec<u64>,
    /// The same buckets per series: received, delivered, failed attempts.
    pub received_buckets: Vec<u64>,
    pub delivered_buckets: Vec<u64>,
    pub failed_buckets: Vec<u64>,
    /// A destination's queue per bucket: the most messages waiting, and the
    /// age of the oldest (seconds), each the peak of the samples taken
    /// every few seconds.
    pub queue_buckets: Vec<u64>,
    pub oldest_age_buckets: Vec<u64>,
}

impl Journal {
    /// Records each destination's queue in the current minute's row, if
    /// anything waits; returns how many did. Called several times a
    /// minute: the row keeps the minute's peak, so a burst that drains
    /// between two calls still shows.
    pub async fn record_queue_depths(&self) -> Result<usize, JournalError> {
        let depths = self.queue_depths().await?;
        let waiting: Vec<_> = depths.into_iter().filter(|d| d.waiting > 0).collect();
        if waiting.is_empty() {
            return Ok(0);
        }
        self.write(move |conn, cx| {
            let minute = cx.now.div_euclid(60_000);
            let mut stmt = conn.prepare_cached(
                "INSERT INTO stats_queue (endpoint, minute, waiting, oldest_age_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (endpoint, minute) DO UPDATE SET
                     waiting = max(waiting, excluded.waiting),
                     oldest_age_ms = max(oldest_age_ms, excluded.oldest_age_ms)",
            )?;
            for d in &waiting {
                stmt.execute(params![
                    d.destination,
                    minute,
                    d.waiting as i64,
                    (cx.now - d.oldest_queued_at).max(0)
                ])?;
            }
            Ok(waiting.len())
        })
        .await
    }

    /// Activity per endpoint since `since` (e.g. the start of today).
    pub async fn endpoint_activity(
        &self,
        names: Vec<String>,
        since: i64,
    ) -> Result<Vec<EndpointActivity>, JournalError> {
        self.read(move |c| {
            let tail = Tail::read(c)?;
            names
                .iter()
                .map(|n| endpoint_activity(c, &tail, n, since))
                .collect()
        })
        .await
    }

    /// Statistics per endpoint since `since`, with `buckets` equal buckets up
    /// to now for the charts.
    pub async fn endpoint_stats(
        &self,
        names: Vec<String>,
        since: i64,
        buckets: usize,
    ) -> Result<Vec<EndpointStats>, JournalError> {
        let now = self.now_ms();
        self.endpoint_stats_between(names, since, now, buckets)
            .await
    }

    /// Like [`Journal::endpoint_stats`] over `[since, until)`.
    pub async fn endpoint_stats_between(
        &self,
        names: Vec<String>,
        since: i64,
        until: i64,
        buckets: usize,
    ) -> Result<Vec<EndpointStats>, JournalError> {
        self.read(move |c| {
            let tail = Tail::read(c)?;
            endpoint_stats(c, &tail, &names, since, until, buckets.max(1))
        })
        .await
    }
}

fn endpoint_activity(
    c: &Connection,
    tail: &Tail,
    name: &str,
    since: i64,
) -> Result<EndpointActivity, JournalError> {
    let mut a = EndpointActivity {
        name: name.to_string(),
        ..Default::default()
    };
    a.last_received_at = c
        .prepare_cached(
            "SELECT received_at FROM message WHERE source = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let (received, delivered, last_delivered): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT coalesce(sum(received), 0), coalesce(sum(delivered), 0),
                    (SELECT coalesce(max(last_delivered_at), 0) FROM stats_minute WHERE endpoint = ?1)
             FROM stats_minute WHERE endpoint = ?1 AND minute >= ?2",
        )?
        .query_row(params![name, since.div_euclid(60_000)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let since_minute = since.div_euclid(60_000);
    let mut received = received;
    let mut delivered = delivered;
    let mut last_delivered = last_delivered;
    for t in tail.minutes.iter().filter(|t| t.endpoint == name) {
        if t.minute >= since_minute {
            received += t.counts[0];
            delivered += t.counts[3];
        }
        last_delivered = last_delivered.max(t.last_delivered_at);
    }
    a.received_since = received as u64;
    a.delivered_since = delivered as u64;
    a.last_delivered_at = (last_delivered > 0).then_some(last_delivered);
    let mut s = c.prepare_cached(
        "SELECT state, attempts > 0, count(*) FROM outbox WHERE destination = ?1 AND state IN (0, 1, 3) GROUP BY state, attempts > 0",
    )?;
    let rows = s.query_map([name], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (state, tried, n) = row?;
        let n = n as u64;
        match state {
            QUEUED if tried => {
                a.queued += n;
                a.failing += n;
            }
            QUEUED => a.queued += n,
            LEASED => a.in_flight += n,
            _ => a.dead += n,
        }
    }
    if a.dead > 0 {
        // Discarded rows are dead too, but nobody needs to look at them.
        a.dead -= c
            .prepare_cached(
                "SELECT count(*) FROM outbox o JOIN outbox_discard d ON d.outbox_id = o.id WHERE o.destination = ?1 AND o.state = 3",
            )?
            .query_row([name], |r| r.get::<_, i64>(0))? as u64;
    }
    if a.failing > 0 {
        a.last_error = c
            .prepare_cached(
                "SELECT last_error FROM outbox WHERE destination = ?1 AND state = 0 AND attempts > 0 ORDER BY id LIMIT 1",
            )?
            .query_row([name], |r| r.get(0))
            .optional()?
            .flatten();
    }
    if a.dead > 0 {
        a.dead_error = c
            .prepare_cached(
                "SELECT o.last_error FROM outbox o WHERE o.destination = ?1 AND o.state = 3
                 AND NOT EXISTS (SELECT 1 FROM outbox_discard d WHERE d.outbox_id = o.id) ORDER BY o.id DESC LIMIT 1",
            )?
            .query_row([name], |r| r.get(0))
            .optional()?
            .flatten();
    }
    Ok(a)
}

fn endpoint_stats(
    c: &Connection,
    tail: &Tail,
    names: &[String],
    since: i64,
    now: i64,
    buckets: usize,
) -> Result<Vec<EndpointStats>, JournalError> {
    let first_minute = since.div_euclid(60_000);
    // The minute holding the range's last instant: for a window ending
    // now, the minute under way.
    let last_minute = (now - 1).div_euclid(60_000);
    let minutes = ((now - since).max(60_000) / 60_000).max(1) as f64;
    let bucket = |minute: i64| -> usize {
        ((((minute - first_minute).max(0) as f64) * buckets as f64 / minutes) as usize)
            .min(buckets - 1)
    };
    let mut rows = c.prepare_cached(
        "SELECT minute, received, rejected, attempts, delivered, failed, duration_sum, duration_max
         FROM stats_minute WHERE endpoint = ?1 AND minute >= ?2 AND minute <= ?3",
    )?;
    let mut queues = c.prepare_cached(
        "SELECT minute, waiting, oldest_age_ms FROM stats_queue WHERE endpoint = ?1 AND minute >= ?2 AND minute <= ?3",
    )?;
    let mut durations = c.prepare_cached(
        "SELECT bucket, sum(n) FROM stats_duration WHERE endpoint = ?1 AND minute >= ?2 AND minute <= ?3 GROUP BY bucket ORDER BY bucket",
    )?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut s = EndpointStats {
            name: name.clone(),
            buckets: vec![0; buckets],
            received_buckets: vec![0; buckets],
            delivered_buckets: vec![0; buckets],
            failed_buckets: vec![0; buckets],
            queue_buckets: vec![0; buckets],
            oldest_age_buckets: vec![0; buckets],
            ..Default::default()
        };
        let mut duration_sum = 0i64;
        let mut duration_max = 0i64;
        let mut rejected = 0u64;
        let found = rows.query_map(params![name, first_minute, last_minute], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                [
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ],
            ))
        })?;
        let unfolded = tail
            .minutes
            .iter()
            .filter(|t| t.endpoint == *name && (first_minute..=last_minute).contains(&t.minute))
            .map(|t| Ok((t.minute, t.counts)));
        for row in found.chain(unfolded) {
            let (minute, [received, refused, attempts, delivered, failed, sum, max]) = row?;
            s.received += received as u64;
            rejected += refused as u64;
            s.attempts += attempts as u64;
            s.delivered += delivered as u64;
            s.failed += failed as u64;
            duration_sum += sum;
            duration_max = duration_max.max(max);
            let b = bucket(minute);
            s.buckets[b] += (received + delivered) as u64;
            s.received_buckets[b] += received as u64;
            s.delivered_buckets[b] += delivered as u64;
            s.failed_buckets[b] += failed as u64;
        }
        let queue = queues.query_map(params![name, first_minute, last_minute], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in queue {
            let (minute, waiting, age_ms) = row?;
            let b = bucket(minute);
            s.queue_buckets[b] = s.queue_buckets[b].max(waiting.max(0) as u64);
            s.oldest_age_buckets[b] = s.oldest_age_buckets[b].max((age_ms.max(0) / 1000) as u64);
        }
        if s.attempts > 0 {
            s.success_rate = Some(s.delivered as f64 / s.attempts as f64);
        }
        if s.delivered > 0 {
            s.avg_ms = Some(duration_sum as f64 / s.delivered as f64);
            let mut counts: Vec<(usize, i64)> = durations
                .query_map(params![name, first_minute, last_minute], |r| {
                    Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)?))
                })?
                .collect::<Result<_, _>>()?;
            for t in tail
                .durations
                .iter()
                .filter(|t| t.endpoint == *name && (first_minute..=last_minute).contains(&t.minute))
            {
                match counts.iter_mut().find(|(b, _)| *b == t.bucket) {
                    Some((_, n)) => *n += t.n,
                    None => counts.push((t.bucket, t.n)),
                }
            }
            counts.sort_unstable();
            s.p50_ms = Some(percentile(&counts, 0.50, duration_max));
            s.p95_ms = Some(percentile(&counts, 0.95, duration_max));
            s.p99_ms = Some(percentile(&counts, 0.99, duration_max));
        }
        if s.received + rejected > 0 {
            s.rejected = rejected;
            s.rejection_rate = Some(rejected as f64 / (s.received + rejected) as f64);
        }
        out.push(s);
    }
    Ok(out)
}

/// What the rows past the fold's watermarks add (`stats_fold.rs`), read
/// once per request.
struct Tail {
    minutes: Vec<TailMinute>,
    durations: Vec<TailDuration>,
}

struct TailMinute {
    endpoint: String,
    minute: i64,
    /// received, rejected, attempts, delivered, failed, duration_sum,
    /// duration_max: the columns of `stats_minute`, in its order.
    counts: [i64; 7],
    last_delivered_at: i64,
}

struct TailDuration {
    endpoint: String,
    minute: i64,
    bucket: usize,
    n: i64,
}

impl Tail {
    fn read(c: &Connection) -> Result<Tail, JournalError> {
        let minutes = c
            .prepare_cached(stats_fold::TAIL_MINUTES)?
            .query_map([i64::MAX; 3], |r| {
                Ok(TailMinute {
                    endpoint: r.get(0)?,
                    minute: r.get(1)?,
                    counts: [
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ],
                    last_delivered_at: r.get(10)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let durations = c
            .prepare_cached(&stats_fold::tail_durations())?
            .query_map([i64::MAX], |r| {
                Ok(TailDuration {
                    endpoint: r.get(0)?,
                    minute: r.get(1)?,
                    bucket: r.get::<_, i64>(2)? as usize,
                    n: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Tail { minutes, durations })
    }
}

/// The `q` quantile of durations counted per bucket of
/// [`DURATION_BUCKETS_MS`]: the upper bound of the bucket holding it, or the
/// longest duration seen when that is shorter (or the bucket is unbounded).
fn percentile(counts: &[(usize, i64)], q: f64, max: i64) -> i64 {
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let rank = ((total as f64) * q).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (bucket, n) in counts {
        seen += n;
        if seen >= rank {
            return DURATION_BUCKETS_MS
                .get(*bucket)
                .map_or(max, |bound| (*bound).min(max));
        }
    }
    max
}
