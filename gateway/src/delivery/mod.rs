//! The delivery engine: one worker per destination endpoint.
//!
//! A worker leases due rows from the journal (FIFO per lane, several lanes in
//! parallel when the destination is partitioned), applies each row's
//! transform, hands the batch to its [`Sink`], and settles every row with the
//! journal: delivered, retry at a time given by the endpoint's policy, or
//! dead. It sleeps until a commit wakes it, a lane finishes, or the earliest
//! backoff ends. On shutdown it stops leasing and lets batches in flight
//! finish (bounded by the endpoint timeout) so their outcomes are recorded;
//! anything still leased when the process dies is delivered again on the
//! next start.
//!
//! A row whose route asked for HL7 application acknowledgements settles
//! together with the acknowledgement for its sender, in one journal
//! transaction ([`application_ack`]).
//!
//! Flood protection (`config::protection`):
//!
//! - `rate_limit`: a lane waits for as many tokens as its batch has
//!   messages before the sink is called, and batches are leased at most
//!   `burst` long. Tokens per message, not per request: what the system
//!   behind a destination feels is messages (a FHIR transaction of 50
//!   Bundles is 50 messages of work), and a batch capped to the burst can
//!   always be paid for, so no batch waits forever. The lanes of one
//!   destination share its bucket. A lane waiting for tokens at shutdown
//!   gives its rows back unattempted.
//! - `circuit_breaker` ([`breaker`]): permanent failures in a row pause the
//!   destination (journalled, so a restart keeps it paused) and their
//!   messages go back to the queue; while paused nothing is leased, and an
//!   operator's resume (`control::endpoints::resume`) starts it again.
//! - `mode = "sandbox"`: each message is captured as the sink would send
//!   it (`Sink::capture`) and settled `captured`, never delivered. With a
//!   `sandbox_url` the sink (built by its endpoint type for that URL)
//!   really sends and a 2xx settles as captured with the answer kept;
//!   failures are retried or refused as live. No application
//!   acknowledgement is sent for a captured message: nothing reached the
//!   system it was meant for.

pub mod application_ack;
pub mod breaker;
pub mod retry;

use crate::config::Endpoint;
use crate::health::Health;
use crate::journal::{Journal, JournalError, Lease, Reply, Settlement};
use crate::rate::Bucket;
use crate::service::{DeliveryCounters, DeliveryOutcome, Heartbeat};
use crate::sinks::capture::Capture;
use crate::sinks::{Delivery, Outcome, Sink};
use crate::site::SiteTimeZone;
use application_ack::Verdict;
use breaker::{Breaker, Refused};
use ecko_fhir::shape::FhirDestination;
use ecko_fhir::template::Templates;
use ecko_fhir::TransformContext;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The longest a worker sleeps without looking at the journal, so work queued
/// by another process (`ecko-gateway retry`) is picked up.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Starts the worker for `endpoint`, delivering through `sink`, with
/// outcomes reported to a registry of its own (nobody reads it).
pub fn spawn<S: Sink>(
    journal: Journal,
    endpoint: &Endpoint,
    sink: S,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    spawn_reporting(
        journal,
        endpoint,
        sink,
        Reports::to(Health::new()),
        Transforms::default(),
        shutdown,
    )
}

/// What the transforms of every worker read besides the message: the site's
/// zone (changed live from the admin page) and the compiled custom
/// templates, shared by all workers.
#[derive(Clone, Default)]
pub struct Transforms {
    pub time_zone: SiteTimeZone,
    pub templates: Arc<Templates>,
    /// Set for a FHIR destination: what its Bundles must look like.
    pub fhir: Option<Arc<FhirDestination>>,
}

impl Transforms {
    /// The context for transforms starting now.
    pub fn context(&self) -> TransformContext {
        TransformContext {
            site_time_zone: self.time_zone.get(),
            templates: self.templates.clone(),
            fhir: self.fhir.clone(),
        }
    }
}

/// Where a worker reports: its link's health, its metrics, its progress.
#[derive(Clone)]
pub struct Reports {
    pub health: Health,
    pub counters: DeliveryCounters,
    /// Beaten every time round the worker's loop (at least every
    /// [`IDLE_POLL`]).
    pub heartbeat: Heartbeat,
}

impl Reports {
    /// To `health`, with metrics and progress nobody reads.
    pub fn to(health: Health) -> Self {
        Self {
            health,
            counters: DeliveryCounters::default(),
            heartbeat: Heartbeat::default(),
        }
    }
}

/// Starts the worker for `endpoint`, delivering through `sink` and
/// reporting every outcome (delivered, failing, refusing) to `reports`.
pub fn spawn_reporting<S: Sink>(
    journal: Journal,
    endpoint: &Endpoint,
    sink: S,
    reports: Reports,
    transforms: Transforms,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let bucket = endpoint
        .protection
        .rate_limit
        .map(|r| Arc::new(Bucket::new(r, Instant::now())));
    let breaker = endpoint
        .protection
        .breaker
        .map(|p| Arc::new(Mutex::new(Breaker::new(p))));
    let worker = Worker {
        lane: Lane {
            journal,
            sink: Arc::new(sink),
            endpoint: Arc::new(endpoint.clone()),
            health: reports.health,
            counters: reports.counters,
            bucket,
            breaker,
            shutdown: shutdown.clone(),
        },
        heartbeat: reports.heartbeat,
        transforms,
    };
    tokio::spawn(worker.run(shutdown))
}

/// What every lane of one destination shares.
struct Lane<S> {
    journal: Journal,
    sink: Arc<S>,
    endpoint: Arc<Endpoint>,
    health: Health,
    counters: DeliveryCounters,
    bucket: Option<Arc<Bucket>>,
    breaker: Option<Arc<Mutex<Breaker>>>,
    shutdown: CancellationToken,
}

impl<S> Clone for Lane<S> {
    fn clone(&self) -> Self {
        Self {
            journal: self.journal.clone(),
            sink: self.sink.clone(),
            endpoint: self.endpoint.clone(),
            health: self.health.clone(),
            counters: self.counters.clone(),
            bucket: self.bucket.clone(),
            breaker: self.breaker.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

impl<S> Lane<S> {
    fn breaker(&self) -> Option<std::sync::MutexGuard<'_, Breaker>> {
        self.breaker
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Worker<S> {
    lane: Lane<S>,
    heartbeat: Heartbeat,
    transforms: Transforms,
}

impl<S: Sink> Worker<S> {
    async fn run(self, shutdown: CancellationToken) {
        let Lane {
            journal,
            endpoint,
            health,
            sink,
            ..
        } = &self.lane;
        let name = endpoint.name.clone();
        let wake = journal.wakeup(&name);
        health.started(&name, journal.now_ms());
        // A breaker tripped before the restart holds until it is resumed.
        if let Ok(Some(tripped)) = journal.breaker(&name).await {
            if let Some(mut b) = self.lane.breaker() {
                b.trip();
            }
            health.paused(&name, tripped.tripped_at, tripped.reason);
        }
        // A batch is never longer than the bucket can pay for at once.
        let max_batch = match &self.lane.bucket {
            Some(b) => sink.max_batch().min(b.burst()).max(1),
            None => sink.max_batch(),
        };
        let mut lanes: JoinSet<()> = JoinSet::new();
        let mut lease_failing: Option<String> = None;
        tracing::info!(endpoint = %name, lanes = endpoint.lanes, mode = endpoint.protection.mode.as_str(), "delivery worker started");
        loop {
            self.heartbeat.beat();
            // Paused by its breaker: nothing is leased until the journal
            // says an operator resumed it.
            let mut paused = health.is_paused(&name);
            if paused {
                match journal.breaker(&name).await {
                    Ok(None) => {
                        if let Some(mut b) = self.lane.breaker() {
                            b.resume();
                        }
                        health.resumed(&name, journal.now_ms());
                        tracing::info!(endpoint = %name, "circuit breaker reset; delivering again");
                        paused = false;
                    }
                    Err(JournalError::Closed) => break,
                    _ => {}
                }
            }
            let mut next_due = None;
            let free = endpoint.lanes.saturating_sub(lanes.len());
            if free > 0 && !paused {
                match journal.lease(&name, free, max_batch).await {
                    Ok(found) => {
                        if lease_failing.take().is_some() {
                            tracing::info!(endpoint = %name, "leasing from the journal again");
                        }
                        next_due = found.next_due;
                        for batch in found.lanes {
                            lanes.spawn(deliver_lane(
                                self.lane.clone(),
                                self.transforms.context(),
                                batch,
                            ));
                        }
                    }
                    Err(JournalError::Closed) => break,
                    Err(e) => {
                        // Said once per cause, not every second: a journal
                        // of a newer gateway refuses every lease until the
                        // right firmware runs again.
                        let why = e.to_string();
                        if lease_failing.as_deref() != Some(why.as_str()) {
                            tracing::error!(endpoint = %name, error = %why, "cannot lease from the journal");
                            lease_failing = Some(why);
                        }
                    }
                }
            }
            let now = journal.now_ms();
            let sleep = next_due
                .map(|due| {
                    Duration::from_millis((due - now).clamp(0, IDLE_POLL.as_millis() as i64) as u64)
                })
                .unwrap_or(IDLE_POLL);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = lanes.join_next(), if !lanes.is_empty() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        while lanes.join_next().await.is_some() {}
        tracing::info!(endpoint = %name, "delivery worker stopped");
    }
}

async fn deliver_lane<S: Sink>(lane: Lane<S>, transforms: TransformContext, batch: Vec<Lease>) {
    let Lane {
        journal,
        sink,
        endpoint,
        health,
        counters,
        ..
    } = &lane;
    let mut settlements: Vec<(Lease, Settlement, Option<Reply>)> = Vec::with_capacity(batch.len());
    let mut deliveries = Vec::with_capacity(batch.len());
    let mut delivered_leases = Vec::with_capacity(batch.len());
    for lease in batch {
        // A transform that panics on one message is a defect that must not
        // block its lane: the message goes dead, visible and retryable.
        let transformed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            ecko_fhir::transform(&lease.transform, &lease.message, &transforms)
                .map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| {
            tracing::error!(endpoint = %endpoint.name, outbox = lease.outbox_id, "transform panicked");
            Err("it failed unexpectedly (internal error)".to_string())
        });
        match transformed {
            Ok(payload) => {
                deliveries.push(Delivery {
                    outbox_id: lease.outbox_id,
                    attempt: lease.attempts + 1,
                    lane: lease.lane.clone(),
                    message: lease.message.clone(),
                    payload,
                });
                delivered_leases.push(lease);
            }
            Err(e) => {
                let error = format!("transform failed: {e}");
                let reply = application_ack::reply_for(
                    &lease,
                    Verdict::Failed(&error),
                    journal.now_ms(),
                    &transforms,
                );
                settlements.push((
                    lease,
                    Settlement::Dead {
                        error,
                        duration_ms: 0,
                    },
                    reply,
                ))
            }
        }
    }
    let mut requeue = Vec::new();
    let mut trip_error = None;
    if !deliveries.is_empty() && !tokens_for(&lane, deliveries.len()).await {
        // Shut down while waiting for the rate limit: nothing was sent.
        for lease in delivered_leases.drain(..) {
            settlements.push((lease, Settlement::Release, None));
        }
    } else if !deliveries.is_empty() {
        let sandbox = endpoint.protection.is_sandbox();
        let captures = sandbox.then(|| sink.capture(&deliveries));
        let started = Instant::now();
        let outcomes = match &captures {
            // Sandbox without a URL: what would be sent is the outcome.
            Some(captures) if endpoint.protection.sandbox_url.is_none() => captures
                .iter()
                .map(|c| match c {
                    Ok(_) => Outcome::Delivered { response: None },
                    Err(error) => Outcome::Permanent {
                        error: error.clone(),
                    },
                })
                .collect(),
            _ => send(sink.as_ref(), endpoint, &deliveries).await,
        };
        let took = started.elapsed();
        counters.attempt_took(took);
        let duration_ms = took.as_millis() as i64;
        let now = journal.now_ms();
        let mut outcomes = outcomes.into_iter();
        for (i, lease) in delivered_leases.into_iter().enumerate() {
            let outcome = outcomes.next().unwrap_or(Outcome::NotAttempted);
            let settlement = match outcome {
                Outcome::Delivered { response } if sandbox => {
                    let capture = captures.as_ref().and_then(|c| c.get(i)?.as_ref().ok());
                    Settlement::Captured {
                        request: captured(capture, response.as_deref(), endpoint),
                        duration_ms,
                    }
                }
                Outcome::Delivered { response } => {
                    health.delivered(&endpoint.name, now);
                    if let Some(mut b) = lane.breaker() {
                        b.delivered();
                    }
                    Settlement::Delivered {
                        response,
                        duration_ms,
                    }
                }
                Outcome::Retryable { error, retry_after } => {
                    health.failed(&endpoint.name, now, error.clone());
                    tracing::warn!(endpoint = %endpoint.name, outbox = lease.outbox_id, attempt = lease.attempts + 1, %error, "delivery failed; will retry");
                    retry::after_failure(
                        &endpoint.retry,
                        lease.attempts,
                        lease.queued_at,
                        now,
                        error,
                        duration_ms,
                        retry_after,
                        rand::random::<f64>(),
                    )
                }
                Outcome::Permanent { error } => {
                    health.refused(&endpoint.name, now, error.clone());
                    tracing::warn!(endpoint = %endpoint.name, outbox = lease.outbox_id, %error, "delivery refused; message is dead");
                    match lane.breaker().map(|mut b| b.refused(lease.outbox_id, now)) {
                        None | Some(Refused::Counted) => {}
                        Some(Refused::Tripped(ids)) => {
                            requeue.extend(ids);
                            trip_error = Some(error.clone());
                        }
                        Some(Refused::WhileTripped(id)) => requeue.push(id),
                    }
                    // Marked so the application ACK tells a refusal from a
                    // retry budget that ran out.
                    let reply = application_ack::reply_for(
                        &lease,
                        Verdict::Failed(&error),
                        now,
                        &transforms,
                    );
                    settlements.push((lease, Settlement::Dead { error, duration_ms }, reply));
                    continue;
                }
                Outcome::NotAttempted => Settlement::Release,
            };
            let reply = match &settlement {
                Settlement::Delivered { .. } => {
                    application_ack::reply_for(&lease, Verdict::Delivered, now, &transforms)
                }
                Settlement::Dead { error, .. } => {
                    application_ack::reply_for(&lease, Verdict::GaveUp(error), now, &transforms)
                }
                Settlement::Retry { .. } | Settlement::Release | Settlement::Captured { .. } => {
                    None
                }
            };
            settlements.push((lease, settlement, reply));
        }
    }
    for (_, settlement, _) in &settlements {
        counters.outcome(match settlement {
            Settlement::Delivered { .. } => DeliveryOutcome::Delivered,
            Settlement::Retry { .. } => DeliveryOutcome::Retry,
            Settlement::Dead { .. } => DeliveryOutcome::Dead,
            Settlement::Release => DeliveryOutcome::Released,
            Settlement::Captured { .. } => DeliveryOutcome::Captured,
        });
    }
    settle_until_recorded(journal, &endpoint.name, settlements).await;
    if !requeue.is_empty() {
        trip(&lane, requeue, trip_error).await;
    }
}

/// The batch sent through the sink within the endpoint's timeout; a panic
/// or the timeout makes every message retryable.
async fn send<S: Sink>(sink: &S, endpoint: &Endpoint, deliveries: &[Delivery]) -> Vec<Outcome> {
    let attempt = AssertUnwindSafe(sink.deliver(deliveries)).catch_unwind();
    match tokio::time::timeout(endpoint.timeout, attempt).await {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(_)) => {
            tracing::error!(endpoint = %endpoint.name, "sink panicked; the batch will be retried");
            vec![
                Outcome::Retryable {
                    error: "the sink failed unexpectedly (internal error)".into(),
                    retry_after: None,
                };
                deliveries.len()
            ]
        }
        Err(_) => vec![
            Outcome::Retryable {
                error: format!("no answer within {:?}", endpoint.timeout),
                retry_after: None,
            };
            deliveries.len()
        ],
    }
}

/// Waits until the rate limit allows `n` messages; `false` if the worker
/// is shut down first.
async fn tokens_for<S>(lane: &Lane<S>, n: usize) -> bool {
    let Some(bucket) = &lane.bucket else {
        return true;
    };
    loop {
        match bucket.take_n(n, Instant::now()) {
            Ok(()) => return true,
            Err(wait) => {
                tokio::select! {
                    _ = lane.shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The JSON a captured message keeps: what was (or would have been) sent,
/// and the sandbox's answer when it went to `sandbox_url`.
fn captured(capture: Option<&Capture>, response: Option<&str>, endpoint: &Endpoint) -> String {
    serde_json::json!({
        "mode": "sandbox",
        "sent_to": endpoint.protection.sandbox_url.as_deref().unwrap_or("nowhere (captured)"),
        "request": capture,
        "response": response,
    })
    .to_string()
}

/// Records the breaker's trip (or the rows refused while tripped) and
/// pauses the destination once the journal has it.
async fn trip<S>(lane: &Lane<S>, requeue: Vec<i64>, error: Option<String>) {
    let name = &lane.endpoint.name;
    let Some(policy) = lane.endpoint.protection.breaker else {
        return;
    };
    let reason = format!(
        "{} permanent failures in a row within {}s; the last: {}",
        policy.failures,
        policy.window.as_secs(),
        error.as_deref().unwrap_or("(refused while paused)")
    );
    let mut wait = Duration::from_millis(100);
    for _ in 0..20 {
        match lane
            .journal
            .trip_breaker(name, policy.failures, &reason, requeue.clone())
            .await
        {
            Ok(back) => {
                if error.is_some() {
                    tracing::warn!(endpoint = %name, requeued = back, %reason, "circuit breaker tripped; the destination is paused");
                }
                if let Ok(Some(t)) = lane.journal.breaker(name).await {
                    lane.health.paused(name, t.tripped_at, t.reason);
                }
                return;
            }
            Err(JournalError::Closed) => return,
            Err(e) => {
                tracing::error!(endpoint = %name, error = %e, retry_in = ?wait, "cannot record the circuit breaker's trip");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Outcomes must be recorded before the lane moves on: a delivered row that
/// is not marked would be delivered again, and a row left leased blocks its
/// lane. Journal errors (a full disk) are usually brief, so keep trying; if
/// the journal closes, the rows stay leased and the next start delivers them.
async fn settle_until_recorded(
    journal: &Journal,
    endpoint: &str,
    settlements: Vec<(Lease, Settlement, Option<Reply>)>,
) {
    let mut wait = Duration::from_millis(100);
    loop {
        match journal.settle_with_replies(settlements.clone()).await {
            Ok(_) | Err(JournalError::Closed) => return,
            Err(e) => {
                tracing::error!(%endpoint, error = %e, retry_in = ?wait, "cannot record delivery outcomes");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests;
