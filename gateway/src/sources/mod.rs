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
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// What every source is given.
#[derive(Clone)]
pub struct SourceContext {
    pub journal: Journal,
    pub router: Arc<Router>,
    /// Cancelled on shutdown: stop accepting, finish what is in flight.
    pub shutdown: CancellationToken,
    /// The site's time zone, for times that carry no offset and for the
    /// timestamps of acknowledgements; changed live from the admin page.
    pub time_zone: SiteTimeZone,
    /// Where the source reports whether it is bound, open or connected.
    pub health: crate::health::Health,
}

/// The site's time zone, shared by every source and replaceable while they
/// run.
#[derive(Clone, Debug)]
pub struct SiteTimeZone(Arc<RwLock<jiff::tz::TimeZone>>);

impl SiteTimeZone {
    pub fn new(tz: jiff::tz::TimeZone) -> Self {
        Self(Arc::new(RwLock::new(tz)))
    }

    pub fn get(&self) -> jiff::tz::TimeZone {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, tz: jiff::tz::TimeZone) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tz;
    }
}

impl From<jiff::tz::TimeZone> for SiteTimeZone {
    fn from(tz: jiff::tz::TimeZone) -> Self {
        Self::new(tz)
    }
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
