//! Inbound endpoints: one module per type.
//!
//! A source knows its protocol and the journal's API, nothing of sinks. It
//! decodes what arrives, hands each message to [`SourceContext::ingest`], and
//! acknowledges its sender only once the returned receipt has resolved: the
//! one rule of the gateway.

pub mod astm;
pub mod file_drop;
pub mod mllp;

use crate::journal::{IngestError, Journal, NewMessage, Receipt};
use crate::router::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every source is given.
#[derive(Clone)]
pub struct SourceContext {
    pub journal: Journal,
    pub router: Arc<Router>,
    /// Cancelled on shutdown: stop accepting, finish what is in flight.
    pub shutdown: CancellationToken,
    /// The site's time zone, for times that carry no offset and for the
    /// timestamps of acknowledgements.
    pub time_zone: jiff::tz::TimeZone,
    /// Where the source reports whether it is bound, open or connected.
    pub health: crate::health::Health,
}

impl SourceContext {
    /// Routes and durably stores `message`. Resolves after the commit.
    pub async fn ingest(&self, message: NewMessage) -> Result<Receipt, IngestError> {
        if !self.router.is_enabled(&message.source) {
            return Err(IngestError::Disabled(message.source));
        }
        let destinations = self.router.destinations(&message);
        self.journal.ingest(message, destinations).await
    }
}
