//! HL7 v2 → a FHIR R4 transaction Bundle, one module per message family,
//! following the HL7 V2-to-FHIR implementation guide's segment maps:
//!
//! | message | module | resources |
//! | --- | --- | --- |
//! | ORU^R01, OUL^R22 | [`results`] | Patient, Encounter, Specimen, ServiceRequest, DiagnosticReport, Observation |
//! | ADT^A01/A02/A03/A04/A05/A08/A11/A13/A31/A40 | [`adt`] | Patient, Encounter (status and period per event), Patient.link for merges, AllergyIntolerance per AL1 or IAM ([`allergy`]), Condition per DG1 ([`diagnosis`], listed in Encounter.diagnosis), Procedure per PR1 ([`procedure`]), Coverage and its insurer per IN1 ([`coverage`]), the Account's guarantors per GT1 ([`guarantor`]), participants and doctors per ROL/PRT/PD1 ([`roles`]) |
//! | ORM^O01, OML^O21, RDE^O11 | [`orders`] | ServiceRequest (status by ORC-1/ORC-5), Specimen, MedicationRequest ([`pharmacy`]) |
//! | SIU^S12–S15 | [`scheduling`] | Appointment with participants |
//! | DFT^P03 | [`financial`] | ChargeItem |
//!
//! Every map shares [`common`]: PID → Patient (the fields past name,
//! address and telecom in [`pid`], with what is deliberately not mapped), CWE → CodeableConcept, EI/CX →
//! Identifier, NTE → note, and the Provenance that closes every Bundle.
//! Blank fields create nothing. Times without an offset get the site's.

mod adt;
mod allergy;
mod attachment;
pub(crate) mod common;
mod coverage;
mod diagnosis;
mod financial;
mod guarantor;
mod orders;
mod pharmacy;
mod pid;
mod procedure;
mod results;
mod roles;
mod scheduling;
pub mod worklist;

use crate::r4::Bundle;
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{Charset, Message, ParseOptions};

/// The message codes (MSH-9.1) this transform maps.
pub const MESSAGE_CODES: &[&str] = &["ORU", "OUL", "ADT", "ORM", "OML", "RDE", "SIU", "DFT"];

/// Maps one stored HL7 v2 message by its type (MSH-9), reading its bytes
/// in the character set the source read them in.
pub fn to_bundle(message: &StoredMessage, cx: &TransformContext) -> Result<Bundle, TransformError> {
    let parsed = Message::parse(&message.payload, &parse_options(message))
        .map_err(|e| TransformError::Unreadable(e.to_string()))?;
    let tz = &cx.time_zone_of(message);
    let id = parsed.identity();
    match id.message_code.as_str() {
        "ORU" | "OUL" => results::to_bundle(&parsed, message, tz),
        "ADT" => adt::to_bundle(&parsed, message, tz),
        "ORM" | "OML" | "RDE" => orders::to_bundle(&parsed, message, tz),
        "SIU" => scheduling::to_bundle(&parsed, message, tz),
        "DFT" => financial::to_bundle(&parsed, message, tz),
        other => Err(TransformError::Unreadable(format!(
            "no FHIR map for HL7 v2 {other}^{} (mapped: {})",
            id.trigger_event,
            MESSAGE_CODES.join(", ")
        ))),
    }
}

/// How the source parsed `message`: its recorded fallback character set,
/// else the parser's default (messages journalled before hints existed).
pub fn parse_options(message: &StoredMessage) -> ParseOptions {
    let mut options = ParseOptions::default();
    if let Some(charset) = message
        .hints
        .charset
        .as_deref()
        .and_then(Charset::from_hl7_name)
    {
        options.fallback_charset = charset;
    }
    options
}

#[cfg(test)]
mod tests;
