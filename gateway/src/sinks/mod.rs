//! Outbound endpoints: one module per type, each behind the [`Sink`] trait.
//!
//! A sink knows its protocol and nothing of the journal: the delivery worker
//! leases rows, applies the route's transform, hands the sink a batch, and
//! records what the sink reports.

pub mod capture;
pub mod dicom;
pub mod dicomweb;
pub mod fhir;
pub mod file;
pub mod mllp;
pub mod rest;
pub mod sftp;
pub mod template;
pub mod worklist;

use ecko_fhir::Payload;
use ecko_message::StoredMessage;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// One message to deliver, already transformed.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outbox_id: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub lane: String,
    pub message: Arc<StoredMessage>,
    /// What the route's transform made of the message for this
    /// destination.
    pub payload: Payload,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The destination has it. `response` is kept for the message viewer.
    Delivered { response: Option<String> },
    /// Worth trying again later (timeout, connection lost, busy, 5xx).
    Retryable {
        error: String,
        /// The destination's own wish, e.g. HTTP `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help (rejected as invalid): the message goes dead.
    Permanent { error: String },
    /// Not attempted because an earlier message of the batch failed.
    NotAttempted,
}

/// An outbound endpoint.
pub trait Sink: Send + Sync + 'static {
    /// How many messages of one lane this sink takes in one call.
    fn max_batch(&self) -> usize {
        1
    }

    /// Delivers `batch` (consecutive messages of one lane, oldest first) and
    /// returns one outcome per message, in order. A sink that stops at a
    /// failure reports the rest as [`Outcome::NotAttempted`] to keep order.
    fn deliver(&self, batch: &[Delivery]) -> impl Future<Output = Vec<Outcome>> + Send;

    /// What [`Sink::deliver`] would send for each message of `batch`, sent
    /// nowhere (sandbox mode without a `sandbox_url`): one capture, or why
    /// the message could not be sent, per message. By default the payload
    /// bytes; an HTTP sink adds the method, URL and headers (secrets
    /// masked), without fetching a token.
    fn capture(&self, batch: &[Delivery]) -> Vec<Result<capture::Capture, String>> {
        batch
            .iter()
            .map(|d| Ok(capture::Capture::bytes(&d.payload.to_bytes())))
            .collect()
    }
}
