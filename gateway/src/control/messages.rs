//! Message actions: view one message with its payload (an audited read of
//! patient data), what one delivery sends (the route's transform made
//! afresh, shaped for its destination) and the message's bytes exported,
//! both audited; retry one message's deliveries, retry every message
//! matching a filter, discard a dead letter with a reason; and the command
//! line's retry of dead deliveries, beside a running gateway or not.

use super::{Actor, Operations, Refusal, Role};
use crate::config::Config;
use crate::journal::external::{retry_dead_at, DeadSelection, Requeued};
use crate::journal::{BulkOutcome, EventRecord, MessageFilter, OutboxRecord, Selection};
use ecko_message::StoredMessage;
use std::collections::BTreeMap;

/// One message as the viewer shows it: the message with its payload and
/// acknowledgement, its deliveries, their history, and which deliveries
/// were discarded (at, by whom, why) by outbox id.
#[derive(Debug)]
pub struct MessageView {
    pub message: StoredMessage,
    pub outbox: Vec<OutboxRecord>,
    pub events: Vec<EventRecord>,
    pub discards: BTreeMap<i64, (i64, String, String)>,
    /// Per outbox row settled in sandbox mode: the JSON of what would have
    /// been sent (`sinks::capture`) and what a sandbox URL answered.
    pub captures: BTreeMap<i64, String>,
}

/// Reads message `id` with everything the viewer shows. Any role; audited
/// as `message.view` with `channel` (`page`, `api`), since it shows
/// patient data. A message that does not exist is not audited.
pub async fn view(
    ops: &Operations,
    actor: &Actor,
    id: i64,
    channel: &str,
) -> Result<MessageView, Refusal> {
    let j = ops.journal();
    let Some(message) = j.message(id).await? else {
        return Err(Refusal::NotFound("no such message".into()));
    };
    let (outbox, events, discards, captures) = tokio::try_join!(
        j.outbox_of(id),
        j.events_of(id),
        j.discards_of(id),
        j.captures_of(id)
    )?;
    j.audit(
        &actor.name,
        "message.view",
        Some(&format!("message {id}")),
        Some(channel),
    )
    .await?;
    Ok(MessageView {
        message,
        outbox,
        events,
        discards,
        captures,
    })
}

/// What one delivery of a message sends: the route's transform run on the
/// message now, shaped for the destination as its worker shapes it. The
/// same as what was sent unless a code map or template changed since.
#[derive(Debug)]
pub struct Rendering {
    pub destination: String,
    pub transform: String,
    /// The content type and the body (JSON pretty-printed), or why the
    /// transform cannot make one.
    pub body: Result<(&'static str, Vec<u8>), String>,
}

/// Renders delivery `outbox_id` of message `id`. Any role; audited as
/// `message.export` with `channel`, since it shows patient data.
pub async fn rendering(
    ops: &Operations,
    actor: &Actor,
    id: i64,
    outbox_id: i64,
    channel: &str,
) -> Result<Rendering, Refusal> {
    let j = ops.journal();
    let Some(message) = j.message(id).await? else {
        return Err(Refusal::NotFound("no such message".into()));
    };
    let Some(row) = j
        .outbox_of(id)
        .await?
        .into_iter()
        .find(|o| o.id == outbox_id)
    else {
        return Err(Refusal::NotFound("no such delivery of this message".into()));
    };
    j.audit(
        &actor.name,
        "message.export",
        Some(&format!("message {id}")),
        Some(&format!("{channel}: delivery to {}", row.destination)),
    )
    .await?;
    let config = ops.config();
    let fhir = match config.endpoint(&row.destination).map(|e| &e.kind) {
        Some(crate::config::EndpointKind::Fhir(c)) => {
            Some(std::sync::Arc::new(crate::endpoints::fhir::shaping(c)))
        }
        _ => None,
    };
    let cx = ecko_fhir::TransformContext {
        site_time_zone: jiff::tz::TimeZone::get(&config.site.time_zone)
            .unwrap_or(jiff::tz::TimeZone::UTC),
        templates: std::sync::Arc::default(),
        fhir,
    };
    let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ecko_fhir::transform(&row.transform, &message, &cx)
    }))
    .map_err(|_| "the transform failed unexpectedly (internal error)".to_string())
    .and_then(|made| made.map_err(|e| e.to_string()))
    .map(|made| match made {
        ecko_fhir::Payload::Bundle(v) => (
            "application/fhir+json",
            serde_json::to_vec_pretty(&v).unwrap_or_default(),
        ),
        ecko_fhir::Payload::Bytes(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(v) => (
                "application/json",
                serde_json::to_vec_pretty(&v).unwrap_or(b),
            ),
            Err(_) => ("application/octet-stream", b),
        },
    });
    Ok(Rendering {
        destination: row.destination,
        transform: row.transform,
        body,
    })
}

/// Message `id` as it was received, for a download. Any role; audited as
/// `message.export` with `channel`.
pub async fn export(
    ops: &Operations,
    actor: &Actor,
    id: i64,
    channel: &str,
) -> Result<StoredMessage, Refusal> {
    let j = ops.journal();
    let Some(message) = j.message(id).await? else {
        return Err(Refusal::NotFound("no such message".into()));
    };
    j.audit(
        &actor.name,
        "message.export",
        Some(&format!("message {id}")),
        Some(&format!("{channel}: as received")),
    )
    .await?;
    Ok(message)
}

/// The role retrying and discarding need.
pub const RETRY_ROLE: Role = Role::Operator;

/// Longest discard reason, in bytes.
pub const REASON_MAX: usize = 500;

async fn must_exist(ops: &Operations, id: i64) -> Result<(), Refusal> {
    match ops.journal().message(id).await? {
        Some(_) => Ok(()),
        None => Err(Refusal::NotFound("no such message".into())),
    }
}

/// Puts message `id`'s failed and dead deliveries back in the queue, due
/// now. Needs operator; audited as `message.retry`.
pub async fn retry_one(ops: &Operations, actor: &Actor, id: i64) -> Result<BulkOutcome, Refusal> {
    actor.require(RETRY_ROLE)?;
    must_exist(ops, id).await?;
    Ok(ops
        .journal()
        .admin_retry(Selection::Message(id), &actor.name)
        .await?)
}

/// Retries every message matching `filter` (at most
/// [`BULK_LIMIT`](crate::journal::BULK_LIMIT), newest first). Needs
/// operator; audited as `message.retry`.
pub async fn retry_matching(
    ops: &Operations,
    actor: &Actor,
    filter: MessageFilter,
) -> Result<BulkOutcome, Refusal> {
    actor.require(RETRY_ROLE)?;
    Ok(ops
        .journal()
        .admin_retry(Selection::Matching(filter), &actor.name)
        .await?)
}

/// A discard reason, trimmed; it must say something and stay short.
pub fn check_reason(reason: &str) -> Result<String, Refusal> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(Refusal::invalid(
            "reason",
            "say why the message is discarded",
        ));
    }
    if r.len() > REASON_MAX {
        return Err(Refusal::invalid("reason", "at most 500 characters"));
    }
    Ok(r.to_string())
}

/// Discards message `id`'s dead deliveries, giving up on them for `reason`;
/// returns how many. Needs operator; audited as `message.discard`.
pub async fn discard(
    ops: &Operations,
    actor: &Actor,
    id: i64,
    reason: &str,
) -> Result<usize, Refusal> {
    actor.require(RETRY_ROLE)?;
    let reason = check_reason(reason)?;
    must_exist(ops, id).await?;
    Ok(ops
        .journal()
        .admin_discard(Selection::Message(id), &reason, &actor.name)
        .await?)
}

/// Which dead deliveries the command line puts back.
#[derive(Debug, Clone, Default)]
pub struct RetryDead {
    /// Only this destination endpoint.
    pub destination: Option<String>,
    /// Only this message's deliveries.
    pub message_id: Option<i64>,
    /// Only say what would be requeued.
    pub dry_run: bool,
}

/// Puts dead deliveries back in the queue through the journal's file,
/// beside a running gateway or not (`ecko-gateway retry`). Needs operator;
/// each requeued delivery gets an event naming the actor.
pub fn retry_dead(
    config: &Config,
    actor: &Actor,
    input: &RetryDead,
) -> Result<Vec<Requeued>, Refusal> {
    actor.require(Role::Operator)?;
    if let Some(d) = &input.destination {
        if !config.endpoint(d).is_some_and(|e| e.direction.sends()) {
            return Err(Refusal::invalid(
                "destination",
                format!("`{d}` is not a destination endpoint of this configuration"),
            ));
        }
    }
    let selection = DeadSelection {
        destination: input.destination.clone(),
        message_id: input.message_id,
    };
    let path = crate::config::resolve(&config.journal.path);
    Ok(retry_dead_at(
        &path,
        &selection,
        &actor.name,
        input.dry_run,
    )?)
}
