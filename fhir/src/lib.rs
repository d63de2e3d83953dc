//! Ecko Edge's FHIR R4 model and transforms: what a journalled message
//! becomes for a destination.
//!
//! A transform is a pure function of the message and an explicit
//! [`TransformContext`]: the same message and context give the same bytes,
//! whenever and wherever it runs. It runs at delivery time, not at ingest:
//! the journal keeps the original bytes, so a corrected mapping applies to
//! messages still queued, and a transform failure never loses the message.
//!
//! - `none`: the payload as received.
//! - `astm-fhir`: an ASTM result message → a FHIR R4 transaction Bundle
//!   ([`astm`]).
//! - `hl7v2-fhir`: an HL7 v2 message → a FHIR R4 transaction Bundle
//!   ([`hl7v2`]): ORU^R01, OUL^R22, ADT, ORM^O01, OML^O21, RDE^O11,
//!   SIU^S12–S15, DFT^P03.
//! - `dicom-fhir`: what a DICOM store SCP journals for the upstream (the
//!   ImagingStudy of an idle study, MPPS steps as Procedures) → a FHIR R4
//!   transaction Bundle
//!   ([`dicom`]).
//! - `charges-csv`, `charges-json`: the charges of a DFT^P03 as an import
//!   file for accounting software, one row per FT1 ([`charges`]); bytes,
//!   never for a FHIR destination.
//! - `abdm-diagnostic-report`: HL7 v2 results → the FHIR `document` Bundle
//!   of an ABDM DiagnosticReportRecord ([`abdm`]); for a REST destination,
//!   never a FHIR one (it is no transaction).
//! - `template`: a minijinja template file named by the route, for
//!   integrations the built-in maps do not cover ([`template`]); queued as
//!   `template:<path>`.
//!
//! [`livd`] reads LIVD files (vendor analyte code → LOINC per instrument
//! model) for the destinations' code maps.
//!
//! [`r4`] holds the hand-written R4 resources the maps emit (no Rust crate
//! covers R4 well enough), deterministic ids and UCUM units.
//!
//! How the bytes are read is never guessed twice: the character set and the
//! time zone the source assumed travel in the message's decode hints
//! ([`ecko_message::DecodeHints`]); the context's site zone applies only to
//! messages journalled before hints were recorded.

pub mod abdm;
pub mod astm;
pub mod charges;
pub mod coding_systems;
pub mod dicom;
pub mod hl7v2;
pub mod inbound;
pub mod keys;
pub mod livd;
pub mod r4;
pub mod shape;
pub mod template;
pub mod worklist;

use ecko_message::StoredMessage;
use jiff::tz::TimeZone;
use std::sync::Arc;

/// Every transform a route may name (`template` with a `template` file).
pub const NAMES: &[&str] = &[
    "none",
    "astm-fhir",
    "hl7v2-fhir",
    "dicom-fhir",
    charges::CSV,
    charges::JSON,
    abdm::NAME,
    "template",
];

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

/// Everything a transform may read besides the message itself. Cheap to
/// clone: whoever runs transforms keeps one and hands out copies.
#[derive(Clone)]
pub struct TransformContext {
    /// The site's zone now, for messages that carry no zone of their own.
    pub site_time_zone: TimeZone,
    /// Compiled custom templates, shared by every copy of the context.
    pub templates: Arc<template::Templates>,
    /// The FHIR destination the result is for, if it is one: then every
    /// transform's result is a transaction Bundle shaped for it.
    pub fhir: Option<Arc<shape::FhirDestination>>,
}

/// UTC, until the configuration names the site's zone.
impl Default for TransformContext {
    fn default() -> Self {
        Self::new(TimeZone::UTC)
    }
}

impl TransformContext {
    /// A context for the site zone `site_time_zone` with no template
    /// compiled yet.
    pub fn new(site_time_zone: TimeZone) -> Self {
        Self {
            site_time_zone,
            templates: Arc::default(),
            fhir: None,
        }
    }

    /// The zone `message`'s times without an offset are read in: the site's
    /// zone when it arrived, else the site's zone now.
    pub fn time_zone_of(&self, message: &StoredMessage) -> TimeZone {
        match message.hints.time_zone.as_deref() {
            // Nearly every message arrived in the zone the site has now: no
            // look-up in the zone database per message.
            None => self.site_time_zone.clone(),
            Some(name) if self.site_time_zone.iana_name() == Some(name) => {
                self.site_time_zone.clone()
            }
            Some(name) => TimeZone::get(name).unwrap_or_else(|_| self.site_time_zone.clone()),
        }
    }
}

/// What a transform gives a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Bytes delivered as they are.
    Bytes(Vec<u8>),
    /// A transaction Bundle shaped for its FHIR destination
    /// ([`TransformContext::fhir`]), kept as a tree so that merging a batch
    /// needs no second parse.
    Bundle(serde_json::Value),
}

impl Payload {
    /// The bytes a sink writes (a Bundle as compact JSON).
    pub fn to_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Payload::Bytes(b) => std::borrow::Cow::Borrowed(b),
            // A JSON tree always serialises: its keys are strings.
            Payload::Bundle(v) => {
                std::borrow::Cow::Owned(serde_json::to_vec(v).unwrap_or_default())
            }
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Payload::Bytes(b) => b,
            Payload::Bundle(v) => serde_json::to_vec(&v).unwrap_or_default(),
        }
    }
}

/// Applies the named transform for the destination the context names.
///
/// For a FHIR destination every result is a transaction Bundle: the built-in
/// maps' and templates' output, or the payload itself for `none` (which must
/// then be one), shaped with the destination's code map and update mode.
pub fn transform(
    name: &str,
    message: &StoredMessage,
    cx: &TransformContext,
) -> Result<Payload, TransformError> {
    let Some(destination) = cx.fhir.as_deref() else {
        return apply(name, message, cx).map(Payload::Bytes);
    };
    let mut bundle = match name {
        "none" => {
            let v: serde_json::Value = serde_json::from_slice(&message.payload)
                .map_err(|e| TransformError::Unreadable(format!("the payload is not JSON: {e}")))?;
            if !shape::is_transaction(&v) {
                return Err(TransformError::Unreadable(
                    "the payload is not a transaction Bundle (route it through a FHIR transform)"
                        .into(),
                ));
            }
            v
        }
        "hl7v2-fhir" => to_value(&hl7v2::to_bundle(message, cx)?)?,
        "astm-fhir" => to_value(&astm::to_bundle(message, cx)?)?,
        dicom::NAME => dicom::to_bundle(message, cx)?,
        charges::CSV | charges::JSON => {
            return Err(TransformError::Unreadable(format!(
                "`{name}` makes an accounting file, not FHIR: route it to a file, sftp or rest destination"
            )))
        }
        abdm::NAME => {
            return Err(TransformError::Unreadable(format!(
                "`{name}` makes a FHIR document, not a transaction: route it to a rest destination"
            )))
        }
        other => match other.strip_prefix(template::PREFIX) {
            Some(path) => template::render(std::path::Path::new(path), message, cx)?,
            None => return Err(TransformError::Unknown(other.to_string())),
        },
    };
    destination.shape(&mut bundle, &message.source);
    Ok(Payload::Bundle(bundle))
}

/// Whether [`transform`] would succeed on `message`, without making the
/// JSON: the mapping runs, its output is dropped unserialised. For the
/// check before a message is acknowledged, where only the verdict counts.
/// `for_fhir` asks what [`transform`] asks of a FHIR destination's input.
pub fn check(
    name: &str,
    message: &StoredMessage,
    cx: &TransformContext,
    for_fhir: bool,
) -> Result<(), TransformError> {
    match name {
        "none" if !for_fhir => Ok(()),
        "hl7v2-fhir" => hl7v2::to_bundle(message, cx).map(drop),
        "astm-fhir" => astm::to_bundle(message, cx).map(drop),
        dicom::NAME => dicom::to_bundle(message, cx).map(drop),
        // A FHIR destination's payload as received, and custom templates,
        // are checked by making them.
        _ if for_fhir => transform(name, message, cx).map(drop),
        _ => apply(name, message, cx).map(drop),
    }
}

fn to_value(bundle: &r4::Bundle) -> Result<serde_json::Value, TransformError> {
    serde_json::to_value(bundle).map_err(|e| TransformError::Unreadable(e.to_string()))
}

/// Applies the named transform: the bytes as the transform made them, for
/// no destination in particular.
pub fn apply(
    name: &str,
    message: &StoredMessage,
    cx: &TransformContext,
) -> Result<Vec<u8>, TransformError> {
    match name {
        "none" => Ok(message.payload.clone()),
        "hl7v2-fhir" => to_json(&hl7v2::to_bundle(message, cx)?),
        "astm-fhir" => to_json(&astm::to_bundle(message, cx)?),
        dicom::NAME => serde_json::to_vec(&dicom::to_bundle(message, cx)?)
            .map_err(|e| TransformError::Unreadable(e.to_string())),
        charges::CSV => charges::to_csv(message, cx),
        charges::JSON => charges::to_json(message, cx),
        abdm::NAME => serde_json::to_vec(&abdm::to_document(message, cx)?)
            .map_err(|e| TransformError::Unreadable(e.to_string())),
        other => match other.strip_prefix(template::PREFIX) {
            Some(path) => template::apply(std::path::Path::new(path), message, cx),
            None => Err(TransformError::Unknown(other.to_string())),
        },
    }
}

fn to_json(bundle: &r4::Bundle) -> Result<Vec<u8>, TransformError> {
    serde_json::to_vec(bundle).map_err(|e| TransformError::Unreadable(e.to_string()))
}
