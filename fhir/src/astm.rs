//! ASTM E1394 (LIS02-A2) result messages → a FHIR R4 transaction Bundle.
//!
//! The shape follows the HL7 ORU map so that the hub sees one model:
//!
//! | ASTM | FHIR |
//! | --- | --- |
//! | H-5 sender (name, version, serial) | Device (the analyzer) |
//! | P-3/P-4/P-5 id, P-6 name, P-8 birth, P-9 sex | Patient |
//! | O-3 specimen id, O-8 collected, O-16 type | Specimen (`request` = the ServiceRequest) |
//! | O-3 (key), O-5 tests, O-6 priority, O-7 requested | ServiceRequest (with a patient id only: `subject` is required) |
//! | O (one per order with results) | DiagnosticReport, `basedOn` = the ServiceRequest, `result` = its Observations |
//! | R-3 test, R-4 value, R-5 unit, R-6 range, R-7 flags, R-9 status, R-11 operator, R-13 completed | Observation, `basedOn` = the ServiceRequest |
//! | C after R | that Observation's `note` |
//! | C after O | the ServiceRequest's `note` |
//! | C after P | the `note` of each ServiceRequest of that patient |
//!
//! R4's Patient has no `note`, and the V2-to-FHIR IG's ORU_R01 map leaves
//! NTE after PID without a target; a C after P is about the patient's
//! specimens as the analyzer or LIS saw them, so it goes with each of that
//! patient's requests. Without a patient id there is no ServiceRequest,
//! and C after O and after P go to each Observation of the order instead:
//! a comment is never dropped.
//!
//! # Where the test code is
//!
//! Every R record becomes an Observation; a message with R records never
//! ends as "no result records". The code is taken from R-3 (and O-5) where
//! the source endpoint's `test_id_component` says (recorded with the
//! message as the content type parameter `test-id-component=N`, so a
//! message is read as it was when it arrived): `auto` (no parameter) takes
//! the first non-empty of components 4, 5 and 6, else component 1; `4`,
//! `5` or `6` that component only (see
//! [`ecko_protocol::astm::message::TestIdComponent`] for why the first and
//! not the last). Where that place is empty the whole field as sent
//! (`^^^^^GLU`, `GLU`) is the code, so an unusual shape still arrives with
//! its raw test id. The same code twice in one order (a rerun, another
//! dilution) gives two Observations: the second and later get `/2`, `/3`
//! after the code in their identifier.
//!
//! Codes are the analyzer's own, under the source endpoint's local system
//! (`urn:ecko-edge:<source>:code`); a FHIR endpoint's `code_map` adds LOINC.
//! ASTM times carry no offset: they are read in the site time zone.

use crate::r4::*;
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use ecko_protocol::astm::message::format_timestamp;
use ecko_protocol::astm::message::{
    test_id_component_of, CommentExt, Message, ParseOptions, ResultRecord, TestIdComponent,
    UniversalTestId,
};
use jiff::tz::TimeZone;

/// The records of a stored ASTM message (one per line; CR, LF or CRLF).
pub(crate) fn records(payload: &[u8]) -> Vec<Vec<u8>> {
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
    let at = test_id_component_of(&message.content_type);
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

        // C after P: R4's Patient has no `note`, and the V2-to-FHIR IG
        // leaves NTE after PID unmapped; the comment is about this
        // patient's specimens, so it goes with each of their requests.
        let patient_notes = notes(&patient.comments);
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
            if order.results.is_empty() {
                continue;
            }
            let statuses: Vec<&str> = order.results.iter().map(status).collect();
            let tests = order.universal_test_ids();
            let order_code = match tests.as_slice() {
                [] => None,
                [one] => Some(test_concept(one, at, &code_system)),
                many => Some(text_concept(
                    &many
                        .iter()
                        .map(|t| test_label(t, at))
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            };
            let order_notes: Vec<Annotation> = notes(&order.comments)
                .into_iter()
                .chain(patient_notes.iter().cloned())
                .collect();
            // ServiceRequest.subject is required in R4: without a patient
            // the order is not sent, and its comments (and the patient's)
            // go with each of its results instead.
            let request_key = identifier(local_system(source, "request"), order_key.clone());
            let request_url = subject.as_ref().map(|subject| {
                let sr = ServiceRequest {
                    identifier: vec![request_key.clone()],
                    status: if statuses
                        .iter()
                        .all(|s| matches!(*s, "final" | "corrected" | "cancelled"))
                    {
                        "completed"
                    } else {
                        "active"
                    }
                    .into(),
                    intent: "order".into(),
                    priority: match order.priority().trim() {
                        "S" => Some("stat".into()),
                        "A" => Some("asap".into()),
                        "R" => Some("routine".into()),
                        _ => None,
                    },
                    code: order_code.clone(),
                    subject: subject.clone(),
                    authored_on: stamp(order.requested_at(tz), tz),
                    note: order_notes.clone(),
                    ..Default::default()
                };
                b.put(Resource::ServiceRequest(sr), &request_key)
            });
            let based_on: Vec<Reference> = request_url.iter().map(|u| reference(u)).collect();
            let specimen_ref = (!specimen_id.is_empty()).then(|| {
                let key = identifier(local_system(source, "specimen"), specimen_id.clone());
                let s = Specimen {
                    identifier: vec![key.clone()],
                    type_: Some(order.specimen_descriptor().trim().to_string())
                        .filter(|s| !s.is_empty())
                        .map(|t| text_concept(&t)),
                    subject: subject.clone(),
                    request: based_on.clone(),
                    collection: stamp(order.collected_at(tz), tz).map(|t| SpecimenCollection {
                        collected_date_time: Some(t),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                reference(&b.put(Resource::Specimen(s), &key))
            });

            let mut result_refs = Vec::new();
            let mut last_time = None;
            let mut seen: Vec<String> = Vec::new();
            for (position, (r, st)) in order.results.iter().zip(&statuses).enumerate() {
                let test = r.universal_test_id();
                // Every R record becomes an Observation: a test id in no
                // place the profile names is kept whole, as sent, and one
                // with nothing in it is known by its place in the order.
                let label = match test_label(&test, at) {
                    l if l.is_empty() => format!("#r{}", position + 1),
                    l => l,
                };
                // The same test twice in one order (a rerun, another
                // dilution) is two results, not one overwritten.
                let repeat = seen.iter().filter(|c| **c == label).count();
                seen.push(label.clone());
                let key_value = if repeat == 0 {
                    format!("{order_key}/{label}")
                } else {
                    format!("{order_key}/{label}/{}", repeat + 1)
                };
                let key = identifier(local_system(source, "observation"), key_value);
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
                let mut note = notes(&r.comments);
                if request_url.is_none() {
                    note.extend(order_notes.iter().cloned());
                }
                let obs = Observation {
                    identifier: vec![key.clone()],
                    based_on: based_on.clone(),
                    status: (*st).into(),
                    category: vec![laboratory()],
                    code: test_concept(&test, at, &code_system),
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
                    note,
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
            let report_code = match (tests.as_slice(), &order_code) {
                ([_], Some(code)) => code.clone(),
                _ => concept(Some(LOINC), "11502-2", Some("Laboratory report")),
            };
            let key = identifier(local_system(source, "report"), order_key.clone());
            let report = DiagnosticReport {
                identifier: vec![key.clone()],
                based_on: based_on.clone(),
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

/// The code of a test id where `at` says it is; the whole field as sent
/// (whitespace runs made one space) when that place is empty; empty only
/// when every component is.
fn test_label(test: &UniversalTestId, at: TestIdComponent) -> String {
    if test.is_blank() {
        return String::new();
    }
    let code = test.code_at(at);
    if code.is_empty() {
        test.raw.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        code.to_string()
    }
}

/// A test id as a concept in the source's local code system, its name
/// (component 2) as the display, and the field as sent as the text when
/// it carries more than the code (`^^^GLU^^5`: the dilution); a field with
/// nothing in it as text only.
fn test_concept(test: &UniversalTestId, at: TestIdComponent, system: &str) -> CodeableConcept {
    let label = test_label(test, at);
    if label.is_empty() {
        return text_concept("no test id (R-3 empty)");
    }
    let mut c = concept(Some(system), &label, Some(test.name.trim()));
    if test.code_position(at).is_some() && test.has_qualifiers(at) {
        c.text = Some(test.raw.trim().to_string());
    }
    c
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
