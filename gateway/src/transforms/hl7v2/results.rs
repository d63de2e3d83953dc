//! HL7 v2 result messages (ORU^R01, OUL^R22) → a FHIR R4 transaction Bundle,
//! following the HL7 V2-to-FHIR implementation guide's segment maps:
//!
//! | segment | FHIR |
//! | --- | --- |
//! | PID | Patient (PID-3 identifiers, PID-5 names, PID-7 birth, PID-8 gender, PID-11 address, PID-13 phone, PID-29 death) |
//! | PV1 with a visit number (PV1-19) | Encounter |
//! | ORC/OBR | ServiceRequest (placer number) and DiagnosticReport (filler number; `result` = its OBX) |
//! | SPM, or OBR-7 when there is no SPM | Specimen |
//! | OBX | Observation, value[x] by OBX-2: NM → Quantity (UCUM when OBX-6 is UCUM), SN → Quantity with comparator, Range or Ratio, CE/CWE/CNE → CodeableConcept, ST/TX/FT → string, DT/TS/DTM → dateTime; OBX-7 referenceRange, OBX-8 interpretation, OBX-11 status, OBX-14 effective, OBX-16 performer, OBX-18 device |
//! | NTE | `note` of the OBX (Observation) or OBR (ServiceRequest) before it |
//!
//! Blank fields create nothing. Times without an offset get the site's.

use super::super::fhir::*;
use super::super::TransformError;
use super::common::*;
use crate::journal::StoredMessage;
use crate::protocol::hl7::{Message, Segment};
use jiff::tz::TimeZone;

fn obx_status(s: &str) -> &'static str {
    match s.trim() {
        "C" => "corrected",
        "P" | "R" | "S" | "I" => "preliminary",
        "X" | "N" => "cancelled",
        "D" | "W" => "entered-in-error",
        _ => "final",
    }
}

fn report_status(s: &str) -> &'static str {
    match s.trim() {
        "C" => "corrected",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "X" => "cancelled",
        "A" => "partial",
        _ => "final",
    }
}

/// Sets value[x] from OBX-2/OBX-5/OBX-6.
fn set_value(obs: &mut Observation, obx: &Segment<'_>, source: &str, tz: &TimeZone) {
    let ty = get(obx, 2, 1);
    let Some(field) = obx.field(5).filter(|f| !f.is_empty()) else {
        return;
    };
    let unit_field = obx.field(6);
    let unit_code = unit_field.map(|u| comp(&u, 1)).unwrap_or_default();
    let unit_is_ucum = unit_field.map(|u| comp(&u, 3)).as_deref() == Some("UCUM");
    let quantity_of = |v: &str| {
        let mut q = quantity(v, &unit_code)?;
        if unit_is_ucum && !unit_code.is_empty() {
            q.system = Some(UCUM.into());
            q.code = Some(unit_code.clone());
        }
        Some(q)
    };
    match ty.as_str() {
        "NM" => {
            let v = field.value().trim().to_string();
            match quantity_of(&v) {
                Some(q) => obs.value_quantity = Some(q),
                None => obs.value_string = Some(v),
            }
        }
        "SN" => {
            let Some(first) = field.repetition(1) else {
                return;
            };
            let (cmp, n1, sep, n2) = (
                comp(&first, 1),
                comp(&first, 2),
                comp(&first, 3),
                comp(&first, 4),
            );
            match sep.as_str() {
                "-" => {
                    obs.value_range = Some(Range {
                        low: quantity_of(&n1),
                        high: quantity_of(&n2),
                    });
                }
                ":" | "/" => {
                    obs.value_ratio = Some(Ratio {
                        numerator: quantity(&n1, ""),
                        denominator: quantity(&n2, ""),
                    });
                }
                _ => {
                    if let Some(mut q) = quantity_of(&n1) {
                        if matches!(cmp.as_str(), "<" | ">" | "<=" | ">=") {
                            q.comparator = Some(cmp);
                        }
                        obs.value_quantity = Some(q);
                    } else {
                        obs.value_string =
                            Some(field.value().trim().to_string()).filter(|s| !s.is_empty());
                    }
                }
            }
        }
        "CE" | "CWE" | "CNE" => {
            obs.value_codeable_concept = field.repetition(1).and_then(|r| cwe(&r, source));
        }
        "DT" | "TS" | "DTM" => {
            obs.value_date_time = date_time(&comp(&field, 1), tz);
        }
        _ => {
            let text: Vec<String> = field
                .repetitions()
                .map(|r| r.value().trim_end().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if !text.is_empty() {
                obs.value_string = Some(text.join("\n"));
            }
        }
    }
}

/// What is being built for the current OBR.
struct Order {
    report: DiagnosticReport,
    report_key: Identifier,
    request: Option<(ServiceRequest, Identifier)>,
    observations: Vec<(Observation, Identifier)>,
}

/// Maps one stored ORU^R01 or OUL^R22 message.
pub(super) fn to_bundle(
    parsed: &Message,
    message: &StoredMessage,
    tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    let source = message.source.as_str();
    let mut b = BundleBuilder::new();
    let mut subject: Option<Reference> = None;
    let mut encounter: Option<Reference> = None;
    let mut specimen: Option<Reference> = None;
    let mut orders: Vec<Order> = Vec::new();
    let mut orc: Option<Segment<'_>> = None;
    // Where an NTE goes: 1 = the last OBX, 2 = the current OBR.
    let mut note_target = 0;

    for seg in parsed.segments() {
        match seg.id() {
            "PID" => {
                if let Some((p, key)) = patient(&seg, source, tz) {
                    subject = Some(reference(&b.put(Resource::Patient(p), &key)));
                }
                note_target = 0;
            }
            "PV1" => {
                if let Some(key) = visit_number(&seg, source) {
                    let class = match get(&seg, 2, 1).as_str() {
                        "I" => ("IMP", "inpatient encounter"),
                        "E" => ("EMER", "emergency"),
                        "P" => ("PRENC", "pre-admission"),
                        _ => ("AMB", "ambulatory"),
                    };
                    let e = Encounter {
                        identifier: vec![key.clone()],
                        status: if get(&seg, 45, 1).is_empty() {
                            "in-progress"
                        } else {
                            "finished"
                        }
                        .into(),
                        class: Coding {
                            system: Some(V3_ACT_CODE.into()),
                            code: Some(class.0.into()),
                            display: Some(class.1.into()),
                        },
                        subject: subject.clone(),
                        period: {
                            let p = Period {
                                start: date_time(&get(&seg, 44, 1), tz),
                                end: date_time(&get(&seg, 45, 1), tz),
                            };
                            (p != Period::default()).then_some(p)
                        },
                        ..Default::default()
                    };
                    encounter = Some(reference(&b.put(Resource::Encounter(e), &key)));
                }
            }
            "ORC" => orc = Some(seg),
            "SPM" => {
                if let Some((s, key)) = spm(&seg, source, subject.clone(), tz) {
                    specimen = Some(reference(&b.put(Resource::Specimen(s), &key)));
                }
            }
            "OBR" => {
                let placer = ei(seg.field(2), source, "placer")
                    .or_else(|| orc.as_ref().and_then(|o| ei(o.field(2), source, "placer")));
                let filler = ei(seg.field(3), source, "filler")
                    .or_else(|| orc.as_ref().and_then(|o| ei(o.field(3), source, "filler")));
                let Some(report_key) = filler.clone().or_else(|| placer.clone()) else {
                    note_target = 0;
                    continue;
                };
                let code = seg
                    .field(4)
                    .and_then(|f| f.repetition(1))
                    .and_then(|r| cwe(&r, source));
                let observed = date_time(&get(&seg, 7, 1), tz);
                if specimen.is_none() {
                    if let (Some(f), Some(t)) = (&filler, &observed) {
                        let key = identifier(
                            local_system(source, "specimen"),
                            f.value.clone().unwrap_or_default(),
                        );
                        let s = Specimen {
                            identifier: vec![key.clone()],
                            subject: subject.clone(),
                            collection: Some(SpecimenCollection {
                                collected_date_time: Some(t.clone()),
                                body_site: None,
                            }),
                            ..Default::default()
                        };
                        specimen = Some(reference(&b.put(Resource::Specimen(s), &key)));
                    }
                }
                let status = report_status(&get(&seg, 25, 1));
                let request = placer.map(|key| {
                    let sr = ServiceRequest {
                        identifier: vec![key.clone()],
                        status: if matches!(status, "final" | "corrected") {
                            "completed"
                        } else {
                            "active"
                        }
                        .into(),
                        intent: "order".into(),
                        priority: match get(&seg, 5, 1).as_str() {
                            "S" => Some("stat".into()),
                            "A" => Some("asap".into()),
                            _ => None,
                        },
                        code: code.clone(),
                        subject: subject.clone().unwrap_or_default(),
                        encounter: encounter.clone(),
                        authored_on: orc.as_ref().and_then(|o| date_time(&get(o, 9, 1), tz)),
                        requester: Some(get(&seg, 16, 2))
                            .filter(|s| !s.is_empty())
                            .map(|family| {
                                let given = get(&seg, 16, 3);
                                display_reference(format!("{given} {family}").trim())
                            }),
                        specimen: specimen.clone().into_iter().collect(),
                        ..Default::default()
                    };
                    (sr, key)
                });
                orders.push(Order {
                    report: DiagnosticReport {
                        identifier: vec![report_key.clone()],
                        status: status.into(),
                        category: vec![concept(Some(V2_0074), "LAB", Some("Laboratory"))],
                        code: code.unwrap_or_else(|| {
                            concept(Some(LOINC), "11502-2", Some("Laboratory report"))
                        }),
                        subject: subject.clone(),
                        effective_date_time: observed,
                        issued: instant(&get(&seg, 22, 1), tz),
                        specimen: specimen.clone().into_iter().collect(),
                        ..Default::default()
                    },
                    report_key,
                    request,
                    observations: Vec::new(),
                });
                note_target = 2;
            }
            "OBX" => {
                let Some(order) = orders.last_mut() else {
                    continue;
                };
                let Some(code) = seg
                    .field(3)
                    .and_then(|f| f.repetition(1))
                    .and_then(|r| cwe(&r, source))
                else {
                    continue;
                };
                let code_key = code
                    .coding
                    .first()
                    .and_then(|c| c.code.clone())
                    .or_else(|| code.text.clone())
                    .unwrap_or_default();
                let key = ei(seg.field(21), source, "observation").unwrap_or_else(|| {
                    let sub = get(&seg, 4, 1);
                    identifier(
                        local_system(source, "observation"),
                        format!(
                            "{}/{}{}",
                            order.report_key.value.clone().unwrap_or_default(),
                            code_key,
                            if sub.is_empty() {
                                String::new()
                            } else {
                                format!("/{sub}")
                            }
                        ),
                    )
                });
                let unit = seg.field(6).map(|u| comp(&u, 1)).unwrap_or_default();
                let mut obs = Observation {
                    identifier: vec![key.clone()],
                    status: obx_status(&get(&seg, 11, 1)).into(),
                    category: vec![laboratory()],
                    code,
                    subject: subject.clone(),
                    effective_date_time: date_time(&get(&seg, 14, 1), tz)
                        .or_else(|| order.report.effective_date_time.clone()),
                    interpretation: seg
                        .field(8)
                        .map(|f| {
                            f.repetitions()
                                .filter_map(|r| interpretation(&comp(&r, 1)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    performer: seg
                        .field(16)
                        .map(|f| {
                            f.repetitions()
                                .filter_map(|r| {
                                    let name = format!("{} {}", comp(&r, 3), comp(&r, 2))
                                        .trim()
                                        .to_string();
                                    let name = if name.is_empty() { comp(&r, 1) } else { name };
                                    (!name.is_empty()).then(|| display_reference(&name))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    specimen: specimen.clone(),
                    reference_range: reference_range(&get(&seg, 7, 1), &unit)
                        .into_iter()
                        .collect(),
                    ..Default::default()
                };
                set_value(&mut obs, &seg, source, tz);
                if let Some(dev_key) = ei(seg.field(18), source, "device") {
                    let d = Device {
                        identifier: vec![dev_key.clone()],
                        ..Default::default()
                    };
                    obs.device = Some(reference(&b.put(Resource::Device(d), &dev_key)));
                }
                order.observations.push((obs, key));
                note_target = 1;
            }
            "NTE" => {
                let Some(note) = nte(&seg) else {
                    continue;
                };
                match (note_target, orders.last_mut()) {
                    (1, Some(o)) => {
                        if let Some((obs, _)) = o.observations.last_mut() {
                            obs.note.push(note);
                        }
                    }
                    (2, Some(o)) => {
                        if let Some((sr, _)) = o.request.as_mut() {
                            sr.note.push(note);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    let mut results = 0;
    for order in orders {
        let based_on = order
            .request
            .map(|(sr, key)| reference(&b.put(Resource::ServiceRequest(sr), &key)));
        let mut report = order.report;
        for (mut obs, key) in order.observations {
            obs.based_on = based_on.clone().into_iter().collect();
            report
                .result
                .push(reference(&b.put(Resource::Observation(obs), &key)));
            results += 1;
        }
        report.based_on = based_on.into_iter().collect();
        b.put(Resource::DiagnosticReport(report), &order.report_key);
    }
    if results == 0 && b.is_empty() {
        return Err(TransformError::Empty("no PID, OBR or OBX to map".into()));
    }
    Ok(finish(b, parsed.identity(), message))
}
