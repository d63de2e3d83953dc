//! ASTM E1394 (LIS02-A2) result messages → a FHIR R4 transaction Bundle.
//!
//! The shape follows the HL7 ORU map so that the hub sees one model:
//!
//! | ASTM | FHIR |
//! | --- | --- |
//! | H-5 sender (name, version, serial) | Device (the analyzer) |
//! | P-3/P-4/P-5 id, P-6 name, P-8 birth, P-9 sex | Patient |
//! | O-3 specimen id, O-8 collected, O-16 type | Specimen |
//! | O (one per order) | DiagnosticReport, `result` = its Observations |
//! | R-3 test, R-4 value, R-5 unit, R-6 range, R-7 flags, R-9 status, R-11 operator, R-13 completed | Observation |
//! | C under P/O/R | `note` |
//!
//! Codes are the analyzer's own, under the source endpoint's local system
//! (`urn:ecko-edge:<source>:code`); a FHIR endpoint's `code_map` adds LOINC.
//! ASTM times carry no offset: they are read in the site time zone.

use crate::r4::*;
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use ecko_protocol::astm::message::format_timestamp;
use ecko_protocol::astm::message::{CommentExt, Message, ParseOptions, ResultRecord};
use jiff::tz::TimeZone;

/// The records of a stored ASTM message (one per line; CR, LF or CRLF).
fn records(payload: &[u8]) -> Vec<Vec<u8>> {
    payload
        .split(|b| *b == b'\r' || *b == b'\n')
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn notes(comments: &[ecko_protocol::astm::records::Record]) -> Vec<Annotation> {
    comments
        .iter()
        .map(|c| c.comment_text())
        .filter(|t| !t.trim().is_empty())
        .map(|text| Annotation { text, time: None })
        .collect()
}

fn stamp(r: Result<Option<jiff::Zoned>, impl std::fmt::Display>, tz: &TimeZone) -> Option<String> {
    r.ok()
        .flatten()
        .and_then(|z| date_time(&format_timestamp(&z), tz))
}

fn status(r: &ResultRecord) -> &'static str {
    match r.status().trim() {
        "C" => "corrected",
        "P" | "I" | "S" | "Q" => "preliminary",
        "X" => "cancelled",
        _ => "final",
    }
}

/// Maps one stored ASTM message.
pub fn to_bundle(message: &StoredMessage, cx: &TransformContext) -> Result<Bundle, TransformError> {
    let tz = &cx.time_zone_of(message);
    let parsed = Message::parse(
        &records(&message.payload),
        &ParseOptions {
            check_sequence: false,
        },
    )
    .map_err(|e| TransformError::Unreadable(e.to_string()))?;
    let source = message.source.as_str();
    let code_system = local_system(source, "code");
    let mut b = BundleBuilder::new();

    let sender = parsed.header.sender();
    let device_ref = if sender.name.trim().is_empty() && sender.serial_number.trim().is_empty() {
        None
    } else {
        let key_value = if sender.serial_number.trim().is_empty() {
            sender.name.trim().to_string()
        } else {
            format!("{} {}", sender.name.trim(), sender.serial_number.trim())
                .trim()
                .to_string()
        };
        let key = identifier(local_system(source, "device"), key_value);
        let device = Device {
            identifier: vec![key.clone()],
            serial_number: Some(sender.serial_number.trim().to_string()).filter(|s| !s.is_empty()),
            device_name: Some(sender.name.trim())
                .filter(|s| !s.is_empty())
                .map(|n| DeviceName {
                    name: n.to_string(),
                    type_: "manufacturer-name".into(),
                })
                .into_iter()
                .collect(),
            version: Some(sender.software_version.trim())
                .filter(|s| !s.is_empty())
                .map(|v| DeviceVersion {
                    value: v.to_string(),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        Some(b.put(Resource::Device(device), &key))
    };

    let mut results = 0usize;
    for patient in &parsed.patients {
        let pid = [
            patient.practice_patient_id(),
            patient.laboratory_patient_id(),
            patient.patient_id_3(),
        ]
        .into_iter()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty());
        let subject = pid.map(|pid| {
            let key = identifier(local_system(source, "patient"), pid);
            let name = patient.name();
            let part = |i: usize| {
                name.get(i)
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            let human = HumanName {
                family: part(0),
                given: [part(1), part(2)].into_iter().flatten().collect(),
                ..Default::default()
            };
            let p = Patient {
                identifier: vec![key.clone()],
                name: if human == HumanName::default() {
                    vec![]
                } else {
                    vec![human]
                },
                gender: gender(&patient.sex()),
                birth_date: date_time(&patient.birthdate(), tz).filter(|d| d.len() == 10),
                ..Default::default()
            };
            reference(&b.put(Resource::Patient(p), &key))
        });

        for order in &patient.orders {
            let specimen_id = order.specimen_id().trim().to_string();
            let order_key = if specimen_id.is_empty() {
                ecko_protocol::astm::message::content_hash(&[order
                    .record
                    .text()
                    .as_bytes()
                    .to_vec()])
            } else {
                specimen_id.clone()
            };
            let specimen_ref = (!specimen_id.is_empty()).then(|| {
                let key = identifier(local_system(source, "specimen"), specimen_id.clone());
                let s = Specimen {
                    identifier: vec![key.clone()],
                    type_: Some(order.specimen_descriptor().trim().to_string())
                        .filter(|s| !s.is_empty())
                        .map(|t| text_concept(&t)),
                    subject: subject.clone(),
                    collection: stamp(order.collected_at(tz), tz).map(|t| SpecimenCollection {
                        collected_date_time: Some(t),
                        body_site: None,
                    }),
                    ..Default::default()
                };
                reference(&b.put(Resource::Specimen(s), &key))
            });

            let mut result_refs = Vec::new();
            let mut statuses = Vec::new();
            let mut last_time = None;
            for r in &order.results {
                let test = r.universal_test_id();
                let code = test.code().trim().to_string();
                if code.is_empty() {
                    continue;
                }
                let key = identifier(
                    local_system(source, "observation"),
                    format!("{order_key}/{code}"),
                );
                let value = r.value();
                let units = r.units();
                let (value_quantity, value_string) = match comparator_quantity(&value, &units) {
                    Some(q) => (Some(q), None),
                    None => (
                        None,
                        Some(value.trim().to_string()).filter(|s| !s.is_empty()),
                    ),
                };
                let effective = stamp(r.completed_at(tz), tz)
                    .or_else(|| stamp(r.started_at(tz), tz))
                    .or_else(|| stamp(order.collected_at(tz), tz));
                let st = status(r);
                statuses.push(st);
                let obs = Observation {
                    identifier: vec![key.clone()],
                    status: st.into(),
                    category: vec![laboratory()],
                    code: concept(Some(&code_system), &code, Some(test.name.trim())),
                    subject: subject.clone(),
                    effective_date_time: effective.clone(),
                    issued: effective.clone().filter(|e| e.len() >= 20),
                    performer: Some(r.operator().trim().to_string())
                        .filter(|s| !s.is_empty())
                        .map(|o| display_reference(&o))
                        .into_iter()
                        .collect(),
                    data_absent_reason: (value_quantity.is_none() && value_string.is_none()).then(
                        || {
                            concept(
                                Some("http://terminology.hl7.org/CodeSystem/data-absent-reason"),
                                "unknown",
                                Some("Unknown"),
                            )
                        },
                    ),
                    value_quantity,
                    value_string,
                    interpretation: r
                        .abnormal_flags()
                        .iter()
                        .filter_map(|f| interpretation(f))
                        .collect(),
                    note: notes(&r.comments),
                    specimen: specimen_ref.clone(),
                    device: device_ref.as_deref().map(reference),
                    reference_range: reference_range(&r.reference_range(), &units)
                        .into_iter()
                        .collect(),
                    ..Default::default()
                };
                if effective.is_some() {
                    last_time = effective;
                }
                result_refs.push(reference(&b.put(Resource::Observation(obs), &key)));
                results += 1;
            }
            if result_refs.is_empty() {
                continue;
            }
            let tests = order.universal_test_ids();
            let report_code = match tests.as_slice() {
                [one] if !one.code().trim().is_empty() => {
                    concept(Some(&code_system), one.code().trim(), Some(one.name.trim()))
                }
                _ => concept(Some(LOINC), "11502-2", Some("Laboratory report")),
            };
            let key = identifier(local_system(source, "report"), order_key.clone());
            let report = DiagnosticReport {
                identifier: vec![key.clone()],
                status: if statuses.contains(&"corrected") {
                    "corrected"
                } else if statuses.iter().all(|s| *s == "final" || *s == "cancelled") {
                    "final"
                } else {
                    "preliminary"
                }
                .into(),
                category: vec![concept(Some(V2_0074), "LAB", Some("Laboratory"))],
                code: report_code,
                subject: subject.clone(),
                effective_date_time: stamp(order.collected_at(tz), tz).or(last_time.clone()),
                issued: last_time.filter(|e| e.len() >= 20),
                specimen: specimen_ref.into_iter().collect(),
                result: result_refs,
                ..Default::default()
            };
            b.put(Resource::DiagnosticReport(report), &key);
        }
    }
    if results == 0 {
        return Err(TransformError::Empty("no result records".into()));
    }
    let key = message
        .dedup_key
        .clone()
        .unwrap_or_else(|| message.id.to_string());
    let label = format!(
        "ASTM message {} from {}",
        parsed.header.message_control_id().trim(),
        if sender.name.trim().is_empty() {
            source
        } else {
            sender.name.trim()
        }
    );
    add_provenance(&mut b, source, &key, label.trim(), message.received_at);
    Ok(b.finish())
}

/// A numeric result, also `<0.5` / `>1000` with a comparator.
fn comparator_quantity(value: &str, unit: &str) -> Option<Quantity> {
    let v = value.trim();
    for op in ["<=", ">=", "<", ">"] {
        if let Some(rest) = v.strip_prefix(op) {
            let mut q = quantity(rest, unit)?;
            q.comparator = Some(op.to_string());
            return Some(q);
        }
    }
    quantity(v, unit)
}

#[cfg(test)]
mod tests;
