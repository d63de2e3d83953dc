//! Lab results (HL7 v2 ORU^R01, OUL^R22) as an ABDM health information
//! record: `abdm-diagnostic-report`, a FHIR R4 `document` Bundle of the
//! health information type DiagnosticReportRecord (NRCeS's ABDM FHIR
//! profiles), for a health information provider's push to the ABDM
//! gateway.
//!
//! The resources are those the `hl7v2-fhir` map makes of the message
//! (Patient, Encounter, Specimen, ServiceRequest, DiagnosticReport, one
//! Observation per OBX, the analyzer as Device; [`crate::hl7v2`]), each
//! with its deterministic id and `urn:uuid:` full URL, without the
//! transaction's requests or the Provenance. In front of them:
//!
//! - a Composition (profile `DiagnosticReportRecord`): status `final`,
//!   type SNOMED CT 721981007 "Diagnostic studies report", the Patient as
//!   subject, the Encounter when PV1-19 names one, the date of the first
//!   report (else the time the message arrived), the sending facility
//!   (MSH-4, else the source endpoint) as author, one section listing every
//!   DiagnosticReport;
//! - the Bundle (profile `DocumentBundle`): an identifier and id made from
//!   the message (a redelivery is the same document), `timestamp` the time
//!   the message arrived.
//!
//! A message without a patient (PID-3) or without a report is refused: a
//! health record belongs to a patient and holds a report.

use crate::r4::{local_system, resource_id};
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use serde_json::{json, Value};

/// The transform's name.
pub const NAME: &str = "abdm-diagnostic-report";

const PROFILES: &str = "https://nrces.in/ndhm/fhir/r4/StructureDefinition";

/// SNOMED CT "Diagnostic studies report", the record's type.
fn report_type() -> Value {
    json!({
        "coding": [{"system": "http://snomed.info/sct", "code": "721981007", "display": "Diagnostic studies report"}],
        "text": "Diagnostic Report"
    })
}

/// The document Bundle of `message`'s results.
pub fn to_document(
    message: &StoredMessage,
    cx: &TransformContext,
) -> Result<Value, TransformError> {
    if !message.message_type.starts_with("ORU") && !message.message_type.starts_with("OUL") {
        return Err(TransformError::Unreadable(format!(
            "{} is no result message: a DiagnosticReportRecord is made of ORU^R01 or OUL^R22",
            message.message_type
        )));
    }
    let bundle = crate::hl7v2::to_bundle(message, cx)?;
    let bundle =
        serde_json::to_value(&bundle).map_err(|e| TransformError::Unreadable(e.to_string()))?;
    let mut entries: Vec<Value> = Vec::new();
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let mut resource = e["resource"].clone();
        if resource["resourceType"] == "Provenance" {
            continue;
        }
        let url = e["fullUrl"].as_str().unwrap_or_default().to_string();
        if let Some(id) = url.strip_prefix("urn:uuid:") {
            resource["id"] = json!(id);
        }
        entries.push(json!({ "fullUrl": url, "resource": resource }));
    }
    let url_of = |ty: &str| {
        entries
            .iter()
            .filter(|e| e["resource"]["resourceType"] == ty)
            .map(|e| e["fullUrl"].clone())
            .collect::<Vec<_>>()
    };
    let Some(patient) = url_of("Patient").into_iter().next() else {
        return Err(TransformError::Empty(
            "an ABDM health record needs the patient (PID-3)".into(),
        ));
    };
    let reports = url_of("DiagnosticReport");
    if reports.is_empty() {
        return Err(TransformError::Empty("the message holds no report".into()));
    }
    let received = jiff::Timestamp::from_millisecond(message.received_at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let first_report = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DiagnosticReport")
        .map(|e| &e["resource"]);
    let date = first_report
        .and_then(|r| r["issued"].as_str().or(r["effectiveDateTime"].as_str()))
        .map_or_else(|| received.clone(), str::to_string);
    let key = message
        .dedup_key
        .clone()
        .or_else(|| message.control_id.clone())
        .unwrap_or_else(|| message.id.to_string());
    let system = local_system(&message.source, "abdm-record");
    let composition_id = resource_id("Composition", &system, &key).to_string();
    let bundle_id = resource_id("Bundle", &system, &key).to_string();
    let mut composition = json!({
        "resourceType": "Composition",
        "id": composition_id,
        "meta": {"profile": [format!("{PROFILES}/DiagnosticReportRecord")]},
        "identifier": {"system": system, "value": key},
        "status": "final",
        "type": report_type(),
        "subject": {"reference": patient},
        "date": date,
        "author": [{"display": author(message)}],
        "title": "Diagnostic Report",
        "section": [{
            "title": "Diagnostic Report",
            "code": report_type(),
            "entry": reports.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
        }],
    });
    if let Some(encounter) = url_of("Encounter").into_iter().next() {
        composition["encounter"] = json!({ "reference": encounter });
    }
    let mut all = vec![json!({
        "fullUrl": format!("urn:uuid:{composition_id}"),
        "resource": composition,
    })];
    all.extend(entries);
    Ok(json!({
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [format!("{PROFILES}/DocumentBundle")], "lastUpdated": received},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{bundle_id}")},
        "type": "document",
        "timestamp": received,
        "entry": all,
    }))
}

/// The sending facility (MSH-4), else the source endpoint.
fn author(message: &StoredMessage) -> String {
    let text = String::from_utf8_lossy(&message.payload);
    let msh = text.split(['\r', '\n']).next().unwrap_or("");
    let facility = msh
        .chars()
        .nth(3)
        .and_then(|sep| msh.split(sep).nth(3))
        .map(|f| f.split('^').next().unwrap_or("").trim().to_string())
        .filter(|f| !f.is_empty());
    facility.unwrap_or_else(|| format!("{} (via Ecko Edge)", message.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(message_type: &str, payload: &str) -> StoredMessage {
        StoredMessage {
            id: 3,
            received_at: 1_773_477_015_000,
            envelope: ecko_message::Envelope {
                source: "lis".into(),
                dedup_key: None,
                message_type: message_type.into(),
                content_type: "application/hl7-v2".into(),
                control_id: Some("R-1".into()),
                patient_id: None,
                payload: payload.replace('\n', "\r").into_bytes(),
                ack: None,
                hints: Default::default(),
            },
        }
    }

    const ORU: &str = "MSH|^~\\&|LAB|CITYLAB|ECKO|H|20260405100000||ORU^R01|R-1|P|2.5\n\
        PID|||P-77^^^H||Sharma^Asha\n\
        PV1|1|O|OPD||||||||||||||||V-9\n\
        OBR|1|PL-1|FL-1|GLU^Glucose^L|||20260405093000\n\
        OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|3.9-6.1|N|||F\n";

    #[test]
    fn a_result_becomes_a_document_with_its_composition_first_naming_patient_and_report() {
        let doc = to_document(&stored("ORU^R01", ORU), &TransformContext::default()).unwrap();
        assert_eq!(doc["type"], "document");
        assert_eq!(doc["timestamp"], "2026-03-14T08:30:15.000Z");
        let entries = doc["entry"].as_array().unwrap();
        let composition = &entries[0]["resource"];
        assert_eq!(composition["resourceType"], "Composition");
        assert_eq!(composition["type"]["coding"][0]["code"], "721981007");
        assert_eq!(composition["author"][0]["display"], "CITYLAB");
        let url = |ty: &str| {
            entries
                .iter()
                .find(|e| e["resource"]["resourceType"] == ty)
                .map(|e| e["fullUrl"].clone())
                .unwrap()
        };
        assert_eq!(composition["subject"]["reference"], url("Patient"));
        assert_eq!(composition["encounter"]["reference"], url("Encounter"));
        assert_eq!(
            composition["section"][0]["entry"][0]["reference"],
            url("DiagnosticReport")
        );
        for e in entries {
            assert!(e.get("request").is_none(), "{e}");
            assert_ne!(e["resource"]["resourceType"], "Provenance");
            let id = e["resource"]["id"].as_str().unwrap();
            assert_eq!(e["fullUrl"], format!("urn:uuid:{id}"));
        }
        // A redelivery is the same document.
        let again = to_document(&stored("ORU^R01", ORU), &TransformContext::default()).unwrap();
        assert_eq!(doc, again);
    }

    #[test]
    fn a_result_without_a_patient_or_a_message_that_is_no_result_is_refused() {
        let no_pid = ORU.replace("PID|||P-77^^^H||Sharma^Asha\n", "");
        let e = to_document(&stored("ORU^R01", &no_pid), &TransformContext::default()).unwrap_err();
        assert!(e.to_string().contains("needs the patient"), "{e}");
        let adt = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A01|9|P|2.5\nPID|||77\n";
        let e = to_document(&stored("ADT^A01", adt), &TransformContext::default()).unwrap_err();
        assert!(e.to_string().contains("no result message"), "{e}");
    }
}
