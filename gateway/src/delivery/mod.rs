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

pub mod application_ack;
pub mod retry;

use crate::config::Endpoint;
use crate::health::Health;
use crate::journal::{Journal, JournalError, Lease, Reply, Settlement};
use crate::service::{DeliveryCounters, DeliveryOutcome, Heartbeat};
use crate::sinks::{Delivery, Outcome, Sink};
use crate::site::SiteTimeZone;
use application_ack::Verdict;
use ecko_fhir::shape::FhirDestination;
use ecko_fhir::template::Templates;
use ecko_fhir::TransformContext;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
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
    let worker = Worker {
        journal,
        sink: Arc::new(sink),
        endpoint: Arc::new(endpoint.clone()),
        health: reports.health,
        counters: reports.counters,
        heartbeat: reports.heartbeat,
        transforms,
    };
    tokio::spawn(worker.run(shutdown))
}

struct Worker<S> {
    journal: Journal,
    sink: Arc<S>,
    endpoint: Arc<Endpoint>,
    health: Health,
    counters: DeliveryCounters,
    heartbeat: Heartbeat,
    transforms: Transforms,
}

impl<S: Sink> Worker<S> {
    async fn run(self, shutdown: CancellationToken) {
        let name = self.endpoint.name.clone();
        let wake = self.journal.wakeup(&name);
        self.health.started(&name, self.journal.now_ms());
        let mut lanes: JoinSet<()> = JoinSet::new();
        tracing::info!(endpoint = %name, lanes = self.endpoint.lanes, "delivery worker started");
        loop {
            self.heartbeat.beat();
            let mut next_due = None;
            let free = self.endpoint.lanes.saturating_sub(lanes.len());
            if free > 0 {
                match self.journal.lease(&name, free, self.sink.max_batch()).await {
                    Ok(found) => {
                        next_due = found.next_due;
                        for batch in found.lanes {
                            lanes.spawn(deliver_lane(
                                self.journal.clone(),
                                self.sink.clone(),
                                self.endpoint.clone(),
                                self.health.clone(),
                                self.counters.clone(),
                                self.transforms.context(),
                                batch,
                            ));
                        }
                    }
                    Err(JournalError::Closed) => break,
                    Err(e) => {
                        tracing::error!(endpoint = %name, error = %e, "cannot lease from the journal")
                    }
                }
            }
            let now = self.journal.now_ms();
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

async fn deliver_lane<S: Sink>(
    journal: Journal,
    sink: Arc<S>,
    endpoint: Arc<Endpoint>,
    health: Health,
    counters: DeliveryCounters,
    transforms: TransformContext,
    batch: Vec<Lease>,
) {
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
    if !deliveries.is_empty() {
        let started = Instant::now();
        let attempt = AssertUnwindSafe(sink.deliver(&deliveries)).catch_unwind();
        let outcomes = match tokio::time::timeout(endpoint.timeout, attempt).await {
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
        };
        let took = started.elapsed();
        counters.attempt_took(took);
        let duration_ms = took.as_millis() as i64;
        let now = journal.now_ms();
        let mut outcomes = outcomes.into_iter();
        for lease in delivered_leases {
            let outcome = outcomes.next().unwrap_or(Outcome::NotAttempted);
            let settlement = match outcome {
                Outcome::Delivered { response } => {
                    health.delivered(&endpoint.name, now);
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
                Settlement::Retry { .. } | Settlement::Release => None,
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
        });
    }
    settle_until_recorded(&journal, &endpoint.name, settlements).await;
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
