//! Turning a journalled message into what a destination takes.
//!
//! A transform runs at delivery time, not at ingest: the journal keeps the
//! original bytes, so a corrected mapping applies to messages still queued,
//! and a message's transform failure never loses the message.
//!
//! - `none`: the payload as received.
//! - `astm-fhir`: an ASTM result message → a FHIR R4 transaction Bundle
//!   ([`astm`]).
//! - `hl7v2-fhir`: an HL7 v2 message → a FHIR R4 transaction Bundle
//!   ([`hl7v2`]): ORU^R01, OUL^R22, ADT, ORM^O01, OML^O21, RDE^O11,
//!   SIU^S12–S15, DFT^P03.
//! - `template`: a minijinja template file named by the route, for
//!   integrations the built-in maps do not cover ([`template`]); queued as
//!   `template:<path>`.
//!
//! Times without an offset are read in the site's time zone, which
//! [`configure`] sets from `[site] time_zone` when the gateway starts.

pub mod astm;
pub mod fhir;
pub mod hl7v2;
pub mod template;

use crate::journal::StoredMessage;
use std::sync::RwLock;

/// Every transform a route may name (`template` with a `template` file).
pub const NAMES: &[&str] = &["none", "astm-fhir", "hl7v2-fhir", "template"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransformError {
    #[error("unknown transform `{0}`")]
    Unknown(String),
    #[error("cannot read the message: {0}")]
    Unreadable(String),
    #[error("the message holds nothing to map: {0}")]
    Empty(String),
    /// A custom template failed or produced something that cannot be sent.
    #[error("{0}")]
    Template(String),
}

static SITE_TIME_ZONE: RwLock<Option<jiff::tz::TimeZone>> = RwLock::new(None);

/// Sets the site time zone (an IANA name, already validated by the
/// configuration); unknown names leave UTC.
pub fn configure(time_zone: &str) {
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    if let Ok(mut slot) = SITE_TIME_ZONE.write() {
        *slot = Some(tz);
    }
}

/// The site time zone (UTC until [`configure`] is called).
pub fn site_time_zone() -> jiff::tz::TimeZone {
    SITE_TIME_ZONE
        .read()
        .ok()
        .and_then(|tz| tz.clone())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Applies the named transform; the result is the payload a sink delivers.
pub fn apply(name: &str, message: &StoredMessage) -> Result<Vec<u8>, TransformError> {
    match name {
        "none" => Ok(message.payload.clone()),
        "hl7v2-fhir" => to_json(&hl7v2::to_bundle(message, &site_time_zone())?),
        "astm-fhir" => to_json(&astm::to_bundle(message, &site_time_zone())?),
        other => match other.strip_prefix(template::PREFIX) {
            Some(path) => template::apply(std::path::Path::new(path), message),
            None => Err(TransformError::Unknown(other.to_string())),
        },
    }
}

fn to_json(bundle: &fhir::Bundle) -> Result<Vec<u8>, TransformError> {
    serde_json::to_vec(bundle).map_err(|e| TransformError::Unreadable(e.to_string()))
}
