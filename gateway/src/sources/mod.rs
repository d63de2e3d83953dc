//! Inbound endpoints: one module per type.
//!
//! A source knows its protocol and the journal's API, nothing of sinks. It
//! decodes what arrives, hands each message to [`SourceContext::ingest`], and
//! acknowledges its sender only once the returned receipt has resolved: the
//! one rule of the gateway.

pub mod astm;
pub mod dicom;
pub mod file_drop;
pub mod mllp;
pub mod rest;
pub mod sftp;

use crate::journal::{IngestError, Journal, Receipt};
use crate::router::Router;
use crate::service::{Heartbeat, SourceCounters};
pub use crate::site::SiteTimeZone;
use ecko_message::Envelope;
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
    /// timestamps of acknowledgements; changed live from the admin page.
    pub time_zone: SiteTimeZone,
    /// Where the source reports whether it is bound, open or connected.
    pub health: crate::health::Health,
    /// What it counts for `/metrics`, resolved for its endpoint.
    pub counters: SourceCounters,
    /// Beaten by its accept or read loop: the watchdog's evidence that it
    /// still turns ([`crate::service::progress`]).
    pub heartbeat: Heartbeat,
}

impl SourceContext {
    /// Routes and durably stores `message`. Resolves after the commit.
    ///
    /// The site's zone at this moment goes with the message (unless the
    /// source set one), so a transform days later reads times without an
    /// offset as they were meant when the message arrived.
    pub async fn ingest(&self, message: Envelope) -> Result<Receipt, IngestError> {
        self.counters.received.inc();
        let stored = self.store(message).await;
        self.count(&stored);
        stored
    }

    /// Like [`SourceContext::ingest`] for a duplicate key the sender
    /// chose ([`crate::journal::Journal::ingest_keyed`]): the same key with
    /// another body is refused.
    pub async fn ingest_keyed(&self, message: Envelope) -> Result<Receipt, IngestError> {
        self.counters.received.inc();
        let stored = match self.route(message) {
            Ok((m, d)) => self.journal.ingest_keyed(m, d).await,
            Err(e) => Err(e),
        };
        self.count(&stored);
        stored
    }

    /// Like [`SourceContext::ingest`] for a stored DICOM object: its study's
    /// state (for the ImagingStudy announced once it is idle) commits in
    /// the same transaction.
    pub async fn ingest_dicom_object(
        &self,
        message: Envelope,
        study_uid: String,
    ) -> Result<Receipt, IngestError> {
        self.counters.received.inc();
        let stored = match self.route(message) {
            Ok((m, d)) => self.journal.ingest_dicom_object(m, d, study_uid).await,
            Err(e) => Err(e),
        };
        self.count(&stored);
        stored
    }

    fn count(&self, stored: &Result<Receipt, IngestError>) {
        match stored {
            Ok(_) => self.counters.acknowledged.inc(),
            Err(_) => self.counters.refused.inc(),
        };
    }

    /// A message that could not be read (and so never reached the journal)
    /// was answered negatively.
    pub fn refused_unreadable(&self) {
        self.counters.received.inc();
        self.counters.refused.inc();
    }

    async fn store(&self, message: Envelope) -> Result<Receipt, IngestError> {
        let (message, destinations) = self.route(message)?;
        self.journal.ingest(message, destinations).await
    }

    /// The message with the site's zone in its hints (unless the source
    /// set one) and the destinations the routes give it; refused while the
    /// endpoint is disabled. For sources whose journal call keeps more
    /// beside the message ([`crate::journal::Journal::ingest_dicom_object`]).
    pub fn route(
        &self,
        mut message: Envelope,
    ) -> Result<(Envelope, Vec<crate::journal::Destination>), IngestError> {
        if message.hints.time_zone.is_none() {
            message.hints.time_zone = self.time_zone.get().iana_name().map(str::to_string);
        }
        if !self.router.is_enabled(&message.source) {
            return Err(IngestError::Disabled(message.source));
        }
        let destinations = self.router.destinations(&message);
        let message = self.checked(message, &destinations)?;
        Ok((message, destinations))
    }

    /// `message` back when every destination can take it
    /// ([`Router::check`]), read as if it arrived now.
    fn checked(
        &self,
        message: Envelope,
        destinations: &[crate::journal::Destination],
    ) -> Result<Envelope, IngestError> {
        if destinations.is_empty() {
            return Ok(message);
        }
        let arriving = ecko_message::StoredMessage {
            id: 0,
            received_at: self.journal.now_ms(),
            envelope: message,
        };
        self.router
            .check(&arriving, destinations, &self.time_zone.get())?;
        Ok(arriving.envelope)
    }
}
