//! ADT (admit, discharge, transfer) → Patient and Encounter.
//!
//! PID maps to Patient as in every family ([`super::common::patient`]); PV1
//! with a visit number (PV1-19) maps to Encounter, whose status, period and
//! location depend on the trigger event (MSH-9.2, else EVN-1):
//!
//! | event | Encounter.status | period | PV1-3 location |
//! | --- | --- | --- | --- |
//! | A01 admit, A04 register | in-progress | start PV1-44, else EVN-6 | active |
//! | A02 transfer | in-progress | start PV1-44 | PV1-3 active, prior PV1-6 completed |
//! | A03 discharge | finished | end PV1-45, else EVN-6 | completed |
//! | A05 pre-admit | planned | start PV2-8 (expected admit) | planned |
//! | A08 update | finished when PV1-45 is valued, else in-progress | PV1-44/45 | active |
//! | A11 cancel admit | cancelled | PV1-44 | — |
//! | A13 cancel discharge | in-progress (the end is removed) | start PV1-44 | active |
//!
//! A31 (update person) maps Patient only. A40 (merge) maps each PID/MRG
//! pair to the surviving Patient (`link` type `replaces`) and the merged
//! record (MRG-1 identifiers, `active: false`, `link` type `replaced-by`).
//! The merged record is the same person, so it is sent with the PID's
//! demographics (and MRG-7 as its name when sent): a PUT of identifiers and
//! links alone would erase its name, birth date and address on the server,
//! and FHIR transactions offer no portable partial update short of PATCH.
//!
//! After the PV1 of a visit, DG1 → Condition ([`super::diagnosis`], also
//! listed in `Encounter.diagnosis`), PR1 → Procedure
//! ([`super::procedure`]); after a PID, AL1 → AllergyIntolerance
//! ([`super::allergy`]), IN1 → Coverage and its insurer
//! ([`super::coverage`]), NK1 → the Patient's contacts; ROL and PRT → the
//! visit's participants or the Patient's general practitioners, with PD1's
//! ([`super::roles`]); GT1 → the guarantors of the patient's Account
//! ([`super::guarantor`]).
//!
//! Participants: PV1-7 attender, PV1-8 referrer, PV1-17 admitter (v3
//! ParticipationType). Hospitalization: PV1-5 pre-admission number, PV1-14
//! admit source (table 0023), PV1-36 discharge disposition (table 0112).

use super::super::TransformError;
use super::common::*;
use crate::r4::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{Message, Segment};
use jiff::tz::TimeZone;

const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const V3_ACT_PRIORITY: &str = "http://terminology.hl7.org/CodeSystem/v3-ActPriority";

pub(super) fn to_bundle(
    parsed: &Message,
    message: &StoredMessage,
    tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    let source = message.source.as_str();
    let id = parsed.identity();
    let evn = parsed.segment("EVN");
    let event = if id.trigger_event.is_empty() {
        evn.as_ref().map(|e| get(e, 1, 1)).unwrap_or_default()
    } else {
        id.trigger_event.clone()
    };
    let event_time = evn
        .as_ref()
        .and_then(|e| date_time(&get(e, 6, 1), tz).or_else(|| date_time(&get(e, 2, 1), tz)));
    let mut b = BundleBuilder::new();
    let mut subject: Option<(Patient, Identifier)> = None;
    let mut subject_ref: Option<Reference> = None;
    let mut subject_key: Option<Identifier> = None;
    // The visit the DG1 that follow a PV1 belong to.
    let mut visit: Option<(Reference, Identifier)> = None;
    let mut pv2: Option<Segment<'_>> = None;
    // Whether a PV1 came since the PID: a ROL or PRT before it is the
    // patient's, after it the visit's.
    let mut after_pv1 = false;
    // The patient's PID (its account number) and the Account its GT1 fill.
    let mut pid_segment: Option<Segment<'_>> = None;
    let mut account: Option<(Account, Identifier)> = None;
    let segments: Vec<Segment<'_>> = parsed.segments().collect();
    for (i, seg) in segments.iter().enumerate() {
        match seg.id() {
            "PID" => {
                flush_patient(&mut b, &mut subject);
                flush_account(&mut b, &mut account);
                pid_segment = Some(*seg);
                subject_ref = None;
                subject_key = None;
                visit = None;
                after_pv1 = false;
                if let Some((p, key)) = patient(seg, source, tz) {
                    subject_ref = Some(reference(&patient_url(&key)));
                    subject_key = Some(key.clone());
                    subject = Some((p, key));
                }
            }
            "AL1" | "IAM" => {
                let (Some(patient), Some(key)) = (subject_ref.clone(), subject_key.clone()) else {
                    continue;
                };
                if let Some((a, akey)) = super::allergy::allergy(seg, &patient, &key, source, tz) {
                    flush_patient(&mut b, &mut subject);
                    b.put(Resource::AllergyIntolerance(a), &akey);
                }
            }
            "DG1" | "PR1" => {
                let (Some(patient), Some(patient_key)) =
                    (subject_ref.as_ref(), subject_key.as_ref())
                else {
                    continue;
                };
                let cx = super::diagnosis::Context {
                    patient,
                    patient_key,
                    encounter: visit.as_ref(),
                };
                let found = if seg.id() == "DG1" {
                    super::diagnosis::condition(seg, &cx, source, tz)
                        .map(|(c, key)| (Resource::Condition(c), key))
                } else {
                    super::procedure::procedure(seg, &cx, source, tz)
                        .map(|(p, key)| (Resource::Procedure(p), key))
                };
                if let Some((resource, key)) = found {
                    flush_patient(&mut b, &mut subject);
                    b.put(resource, &key);
                }
            }
            "IN1" => {
                let (Some(patient), Some(patient_key)) =
                    (subject_ref.as_ref(), subject_key.as_ref())
                else {
                    continue;
                };
                if let Some(((c, key), (insurer, insurer_key))) =
                    super::coverage::coverage(seg, patient, patient_key, source, tz)
                {
                    flush_patient(&mut b, &mut subject);
                    b.ensure(Resource::Organization(insurer), &insurer_key);
                    b.put(Resource::Coverage(c), &key);
                }
            }
            "PD1" | "ROL" | "PRT" if !after_pv1 => {
                let Some((p, _)) = subject.as_mut() else {
                    continue;
                };
                let named = if seg.id() == "PD1" {
                    super::roles::care_providers(seg)
                } else {
                    super::roles::general_practitioner(seg, tz)
                        .into_iter()
                        .collect()
                };
                // PD1-4 and a ROL often name the same doctor.
                for r in named {
                    if !p.general_practitioner.contains(&r) {
                        p.general_practitioner.push(r);
                    }
                }
            }
            "GT1" => {
                let (Some(patient), Some(patient_key)) =
                    (subject_ref.as_ref(), subject_key.as_ref())
                else {
                    continue;
                };
                let Some((party, period)) =
                    super::guarantor::guarantor(seg, patient, patient_key, source, tz)
                else {
                    continue;
                };
                flush_patient(&mut b, &mut subject);
                let party = match party {
                    super::guarantor::Party::Patient => patient.clone(),
                    super::guarantor::Party::Person(p, key) => {
                        reference(&b.put(Resource::RelatedPerson(p), &key))
                    }
                    super::guarantor::Party::Organization(o, key) => {
                        reference(&b.ensure(Resource::Organization(o), &key))
                    }
                };
                let (a, _) = account.get_or_insert_with(|| {
                    super::guarantor::account(pid_segment.as_ref(), patient, patient_key, source)
                });
                a.guarantor.push(AccountGuarantor { party, period });
            }
            "NK1" => {
                if let Some((p, _)) = subject.as_mut() {
                    p.contact.extend(super::pid::contact(seg, source, tz));
                }
            }
            "MRG" => {
                let Some((surviving, surviving_key)) = subject.as_mut() else {
                    continue;
                };
                let prior_ids: Vec<Identifier> = seg
                    .field(1)
                    .map(|f| f.repetitions().filter_map(|r| cx(&r, source)).collect())
                    .unwrap_or_default();
                let Some(prior_key) = prior_ids.first().cloned() else {
                    continue;
                };
                if prior_key == *surviving_key {
                    continue;
                }
                surviving.link.push(PatientLink {
                    other: reference(&patient_url(&prior_key)),
                    type_: "replaces".into(),
                });
                // The merged record is the same person: it keeps the
                // demographics (a PUT of identifiers alone would erase them
                // on the server), under its own identifiers and, when MRG-7
                // gives one, its own name.
                let prior_names: Vec<HumanName> = seg
                    .field(7)
                    .map(|f| f.repetitions().filter_map(|r| human_name(&r)).collect())
                    .unwrap_or_default();
                let prior = Patient {
                    identifier: prior_ids,
                    active: Some(false),
                    name: if prior_names.is_empty() {
                        surviving.name.clone()
                    } else {
                        prior_names
                    },
                    link: vec![PatientLink {
                        other: reference(&patient_url(surviving_key)),
                        type_: "replaced-by".into(),
                    }],
                    ..surviving.clone()
                };
                b.put(Resource::Patient(prior), &prior_key);
            }
            "PV2" => pv2 = Some(*seg),
            "PV1" => {
                after_pv1 = true;
                if event == "A31" || event == "A40" {
                    continue;
                }
                // PV2 follows PV1: look ahead for the one of this visit.
                let next_pv2 = segments[i + 1..]
                    .iter()
                    .take_while(|s| !matches!(s.id(), "PV1" | "PID"))
                    .find(|s| s.id() == "PV2")
                    .copied()
                    .or(pv2);
                if let Some((mut e, key)) = encounter(
                    seg,
                    next_pv2.as_ref(),
                    &event,
                    event_time.as_deref(),
                    subject_ref.clone(),
                    source,
                    tz,
                ) {
                    let this_visit_segments = segments[i + 1..]
                        .iter()
                        .take_while(|s| !matches!(s.id(), "PV1" | "PID"));
                    e.participant.extend(
                        this_visit_segments
                            .clone()
                            .filter(|s| matches!(s.id(), "ROL" | "PRT"))
                            .filter_map(|r| super::roles::participant(r, tz)),
                    );
                    // The DG1 of this visit follow its PV1: the Encounter
                    // names their Conditions, put after it.
                    if let (Some(patient), Some(patient_key)) =
                        (subject_ref.as_ref(), subject_key.as_ref())
                    {
                        let this_visit = (reference(&entry_url("Encounter", &key)), key.clone());
                        let cx = super::diagnosis::Context {
                            patient,
                            patient_key,
                            encounter: Some(&this_visit),
                        };
                        e.diagnosis = this_visit_segments
                            .filter(|s| s.id() == "DG1")
                            .filter_map(|dg1| {
                                super::diagnosis::encounter_diagnosis(dg1, &cx, source, tz)
                            })
                            .collect();
                    }
                    flush_patient(&mut b, &mut subject);
                    let url = b.put(Resource::Encounter(e), &key);
                    visit = Some((reference(&url), key));
                }
            }
            _ => {}
        }
    }
    flush_patient(&mut b, &mut subject);
    flush_account(&mut b, &mut account);
    if b.is_empty() {
        return Err(TransformError::Empty(format!(
            "ADT^{event} without a patient identifier (PID-3)"
        )));
    }
    Ok(finish(b, id, message))
}

fn patient_url(key: &Identifier) -> String {
    format!("urn:uuid:{}", patient_id(key))
}

/// Puts the Account the GT1 of one patient filled.
fn flush_account(b: &mut BundleBuilder, pending: &mut Option<(Account, Identifier)>) {
    if let Some((a, key)) = pending.take() {
        b.put(Resource::Account(a), &key);
    }
}

/// Puts the pending Patient (before what refers to it, so it comes first).
fn flush_patient(b: &mut BundleBuilder, pending: &mut Option<(Patient, Identifier)>) {
    if let Some((p, key)) = pending.take() {
        b.put(Resource::Patient(p), &key);
    }
}

pub(super) fn encounter(
    pv1: &Segment<'_>,
    pv2: Option<&Segment<'_>>,
    event: &str,
    event_time: Option<&str>,
    subject: Option<Reference>,
    source: &str,
    tz: &TimeZone,
) -> Option<(Encounter, Identifier)> {
    let key = visit_number(pv1, source)?;
    let admitted = date_time(&get(pv1, 44, 1), tz);
    let discharged = date_time(&get(pv1, 45, 1), tz);
    let (status, start, end, location_status) = match event {
        "A01" | "A04" => (
            "in-progress",
            admitted.or(event_time.map(str::to_string)),
            None,
            Some("active"),
        ),
        "A02" => ("in-progress", admitted, None, Some("active")),
        "A03" => (
            "finished",
            admitted,
            discharged.or(event_time.map(str::to_string)),
            Some("completed"),
        ),
        "A05" => (
            "planned",
            admitted.or_else(|| pv2.and_then(|p| date_time(&get(p, 8, 1), tz))),
            None,
            Some("planned"),
        ),
        "A11" => ("cancelled", admitted, None, None),
        "A13" => ("in-progress", admitted, None, Some("active")),
        _ => {
            let status = if discharged.is_some() {
                "finished"
            } else {
                "in-progress"
            };
            let loc = if discharged.is_some() {
                "completed"
            } else {
                "active"
            };
            (status, admitted, discharged, Some(loc))
        }
    };
    let class = match get(pv1, 2, 1).as_str() {
        "I" => ("IMP", "inpatient encounter"),
        "E" => ("EMER", "emergency"),
        "P" => ("PRENC", "pre-admission"),
        "R" | "B" | "C" | "O" => ("AMB", "ambulatory"),
        _ => ("AMB", "ambulatory"),
    };
    let mut location = Vec::new();
    if let (Some(status), Some(text)) = (
        location_status,
        pv1.field(3)
            .and_then(|f| f.repetition(1))
            .and_then(|v| location_text(&v)),
    ) {
        location.push(EncounterLocation {
            location: display_reference(&text),
            status: Some(status.into()),
        });
    }
    if event == "A02" {
        if let Some(text) = pv1
            .field(6)
            .and_then(|f| f.repetition(1))
            .and_then(|v| location_text(&v))
        {
            location.push(EncounterLocation {
                location: display_reference(&text),
                status: Some("completed".into()),
            });
        }
    }
    let participant = [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
    ]
    .into_iter()
    .flat_map(|(f, code, display)| {
        // PV1-7, 8, 9 and 17 repeat: each person is a participant.
        pv1.field(f)
            .map(|field| {
                field
                    .repetitions()
                    .filter_map(|r| xcn(&r))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .map(move |individual| EncounterParticipant {
                type_: vec![concept(Some(PARTICIPATION), code, Some(display))],
                individual: Some(individual),
                ..Default::default()
            })
    })
    .collect();
    let coded = |seg: &Segment<'_>, f: usize, table: &str| {
        some(get(seg, f, 1)).map(|c| {
            concept(
                Some(&format!("http://terminology.hl7.org/CodeSystem/v2-{table}")),
                &c,
                None,
            )
        })
    };
    let type_ = [coded(pv1, 4, "0007"), coded(pv1, 18, "0018")]
        .into_iter()
        .flatten()
        .collect();
    let mut identifier = vec![key.clone()];
    identifier.extend(
        pv1.field(50)
            .and_then(|f| f.repetition(1))
            .and_then(|v| cx_of(&v, source, "alternate-visit"))
            .filter(|alt| *alt != key),
    );
    let reason_code = pv2
        .and_then(|p| p.field(3))
        .and_then(|f| f.repetition(1))
        .and_then(|v| cwe(&v, source))
        .into_iter()
        .collect();
    let length = pv2
        .map(|p| get(p, 11, 1))
        .and_then(|days| number(&days))
        .map(|value| Quantity {
            value: Some(value),
            unit: Some("days".into()),
            system: Some(UCUM.into()),
            code: Some("d".into()),
            ..Default::default()
        });
    let priority = pv2
        .map(|p| get(p, 25, 1))
        .and_then(|p| match p.as_str() {
            "1" => Some(("EM", "emergency")),
            "2" => Some(("UR", "urgent")),
            "3" => Some(("EL", "elective")),
            _ => None,
        })
        .map(|(code, display)| concept(Some(V3_ACT_PRIORITY), code, Some(display)));
    let hospitalization = EncounterHospitalization {
        pre_admission_identifier: ei(pv1.field(5), source, "preadmit"),
        admit_source: some(get(pv1, 14, 1)).map(|c| {
            concept(
                Some("http://terminology.hl7.org/CodeSystem/v2-0023"),
                &c,
                None,
            )
        }),
        discharge_disposition: some(get(pv1, 36, 1)).map(|c| {
            concept(
                Some("http://terminology.hl7.org/CodeSystem/v2-0112"),
                &c,
                None,
            )
        }),
        re_admission: coded(pv1, 13, "0092"),
        special_courtesy: coded(pv1, 16, "0099").into_iter().collect(),
        diet_preference: pv1
            .field(38)
            .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
            .unwrap_or_default(),
    };
    let period = Period { start, end };
    let e = Encounter {
        identifier,
        status: status.into(),
        class: Coding {
            system: Some(V3_ACT_CODE.into()),
            code: Some(class.0.into()),
            display: Some(class.1.into()),
        },
        type_,
        service_type: coded(pv1, 10, "0069"),
        priority,
        length,
        reason_code,
        service_provider: some(get(pv1, 39, 1)).map(|f| display_reference(&f)),
        subject,
        period: (period != Period::default()).then_some(period),
        location,
        participant,
        hospitalization: (hospitalization != EncounterHospitalization::default())
            .then_some(hospitalization),
        ..Default::default()
    };
    Some((e, key))
}
