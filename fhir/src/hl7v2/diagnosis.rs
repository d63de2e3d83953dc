//! DG1 → Condition, as the HL7 V2-to-FHIR IG's DG1 segment map gives it:
//!
//! | DG1 | Condition |
//! | --- | --- |
//! | 3 diagnosis code (else 4, its description) | `code` |
//! | 5 diagnosis date/time | `onsetDateTime` |
//! | 6 diagnosis type (table 0052: A admitting, W working, F final) | `verificationStatus`: F confirmed, A and W provisional |
//! | 16 diagnosing clinician | `asserter` (display) |
//! | 19 attestation date/time | `recordedDate` |
//! | 20 diagnosis identifier | `identifier` (the key) |
//! | 21 action code D (delete) | `verificationStatus` entered-in-error |
//!
//! `category` is `encounter-diagnosis`, `subject` the Patient, `encounter`
//! the visit of the PV1 before it. Without DG1-20 the key is the patient
//! (its deterministic id), the visit when there is one, and the code, so a
//! diagnosis sent again in a later ADT updates the one resource; a DG1
//! without a code or description makes nothing.
//!
//! The visit's Encounter lists the DG1 that follow its PV1 in
//! `Encounter.diagnosis` ([`encounter_diagnosis`]): the Condition, `use`
//! from DG1-6 (table 0052) and `rank` from DG1-15 (priority, 1 the
//! principal). A diagnosis deleted by DG1-21 is left out of that list.

use super::common::{comp, cwe, ei, get, patient_id, person, some};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const DIAGNOSIS_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0052";

pub(super) struct Context<'a> {
    pub patient: &'a Reference,
    pub patient_key: &'a Identifier,
    pub encounter: Option<&'a (Reference, Identifier)>,
}

impl Context<'_> {
    /// The key of a record of `kind` the segment gives no identifier for:
    /// the patient (its deterministic id), the visit when there is one,
    /// and `what` names it, so the same record sent again updates the one
    /// resource.
    pub fn key_without_id(&self, source: &str, kind: &str, what: &str) -> Identifier {
        let patient = patient_id(self.patient_key);
        let visit = self
            .encounter
            .and_then(|(_, k)| k.value.clone())
            .map(|v| format!("/{v}"))
            .unwrap_or_default();
        Identifier {
            system: Some(local_system(source, kind)),
            value: Some(format!("{patient}{visit}/{what}")),
            ..Default::default()
        }
    }
}

pub(super) fn condition(
    dg1: &Segment<'_>,
    cx: &Context<'_>,
    source: &str,
    tz: &TimeZone,
) -> Option<(Condition, Identifier)> {
    let code = dg1
        .field(3)
        .and_then(|f| f.repetition(1))
        .and_then(|v| cwe(&v, source))
        .or_else(|| {
            some(get(dg1, 4, 1)).map(|text| CodeableConcept {
                coding: Vec::new(),
                text: Some(text),
            })
        })?;
    let what = dg1
        .field(3)
        .and_then(|f| f.repetition(1))
        .map(|v| comp(&v, 1))
        .filter(|c| !c.is_empty())
        .or_else(|| code.text.clone())?;
    let key = ei(
        dg1.field(20).and_then(|f| f.repetition(1)),
        source,
        "diagnosis",
    )
    .unwrap_or_else(|| cx.key_without_id(source, "diagnosis", &what));
    let verification = if get(dg1, 21, 1) == "D" {
        Some(("entered-in-error", "Entered in Error"))
    } else {
        match get(dg1, 6, 1).as_str() {
            "F" => Some(("confirmed", "Confirmed")),
            "A" | "W" => Some(("provisional", "Provisional")),
            _ => None,
        }
    };
    let c = Condition {
        identifier: vec![key.clone()],
        verification_status: verification.map(|(code, display)| CodeableConcept {
            coding: vec![Coding {
                system: Some(VERIFICATION.into()),
                code: Some(code.into()),
                display: Some(display.into()),
            }],
            text: None,
        }),
        category: vec![CodeableConcept {
            coding: vec![Coding {
                system: Some(CATEGORY.into()),
                code: Some("encounter-diagnosis".into()),
                display: Some("Encounter Diagnosis".into()),
            }],
            text: None,
        }],
        code: Some(code),
        subject: cx.patient.clone(),
        encounter: cx.encounter.map(|(r, _)| r.clone()),
        onset_date_time: date_time(&get(dg1, 5, 1), tz),
        recorded_date: date_time(&get(dg1, 19, 1), tz),
        asserter: person(dg1, 16),
        ..Default::default()
    };
    Some((c, key))
}

/// The entry of `Encounter.diagnosis` for `dg1`: its Condition (by the
/// `fullUrl` [`condition`] gives it), use and rank; `None` for a DG1 that
/// makes no Condition or deletes one.
pub(super) fn encounter_diagnosis(
    dg1: &Segment<'_>,
    cx: &Context<'_>,
    source: &str,
    tz: &TimeZone,
) -> Option<EncounterDiagnosis> {
    if get(dg1, 21, 1) == "D" {
        return None;
    }
    let (_, key) = condition(dg1, cx, source, tz)?;
    Some(EncounterDiagnosis {
        condition: reference(&entry_url("Condition", &key)),
        use_: some(get(dg1, 6, 1)).map(|t| {
            let display = match t.as_str() {
                "A" => Some("Admitting"),
                "W" => Some("Working"),
                "F" => Some("Final"),
                _ => None,
            };
            concept(Some(DIAGNOSIS_TYPE), &t, display)
        }),
        rank: get(dg1, 15, 1)
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&r| r > 0),
    })
}
