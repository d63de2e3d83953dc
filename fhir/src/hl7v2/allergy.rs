//! AL1 → AllergyIntolerance, as the HL7 V2-to-FHIR IG's AL1 segment map
//! gives it:
//!
//! | AL1 | AllergyIntolerance |
//! | --- | --- |
//! | 2 allergen type (table 0127) | `category`: DA drug → medication, FA food → food, EA/AA/PA/LA environment, animal, plant, pollen → environment; MA/MC miscellaneous → none |
//! | 3 allergen | `code` |
//! | 4 severity (table 0128) | `criticality` (SV → high, MO and MI → low, U → unable-to-assess) and `reaction.severity` (severe, moderate, mild) |
//! | 5 reactions | one `reaction` with a `manifestation` per repetition |
//! | 6 identification date | `onsetDateTime` |
//!
//! `clinicalStatus` is `active` (an ADT lists what holds now) and
//! `patient` the message's Patient. AL1 carries no identifier of its own:
//! the key is the patient's (its deterministic id) with the allergen's code
//! (else its text), so the same allergy sent again in a later ADT updates the one
//! resource instead of adding another. An AL1 without an allergen makes
//! nothing.

use super::common::{comp, cwe, get, patient_id};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";

/// The AllergyIntolerance of `al1` for the patient `patient` (keyed by
/// `patient_key`), with its key.
pub(super) fn allergy(
    al1: &Segment<'_>,
    patient: &Reference,
    patient_key: &Identifier,
    source: &str,
    tz: &TimeZone,
) -> Option<(AllergyIntolerance, Identifier)> {
    let allergen = al1.field(3)?.repetition(1)?;
    let code = cwe(&allergen, source)?;
    let what = Some(comp(&allergen, 1))
        .filter(|c| !c.is_empty())
        .or_else(|| code.text.clone())?;
    let key = Identifier {
        system: Some(local_system(source, "allergy")),
        // The Patient's deterministic id stands for its identifier: a `|`
        // in a token value would need escaping in the conditional update's
        // search, which servers read differently.
        value: Some(format!("{}/{what}", patient_id(patient_key))),
        ..Default::default()
    };
    let severity = get(al1, 4, 1);
    let manifestation: Vec<CodeableConcept> = al1
        .field(5)
        .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
        .unwrap_or_default();
    let reaction = (!manifestation.is_empty())
        .then(|| AllergyReaction {
            manifestation,
            severity: match severity.as_str() {
                "SV" => Some("severe".into()),
                "MO" => Some("moderate".into()),
                "MI" => Some("mild".into()),
                _ => None,
            },
        })
        .into_iter()
        .collect();
    let a = AllergyIntolerance {
        identifier: vec![key.clone()],
        clinical_status: Some(CodeableConcept {
            coding: vec![Coding {
                system: Some(CLINICAL.into()),
                code: Some("active".into()),
                display: Some("Active".into()),
            }],
            text: None,
        }),
        category: match get(al1, 2, 1).as_str() {
            "DA" => Some("medication"),
            "FA" => Some("food"),
            "EA" | "AA" | "PA" | "LA" => Some("environment"),
            _ => None,
        }
        .map(str::to_string)
        .into_iter()
        .collect(),
        criticality: match severity.as_str() {
            "SV" => Some("high".into()),
            "MO" | "MI" => Some("low".into()),
            "U" => Some("unable-to-assess".into()),
            _ => None,
        },
        code: Some(code),
        patient: patient.clone(),
        onset_date_time: date_time(&get(al1, 6, 1), tz),
        reaction,
        ..Default::default()
    };
    Some((a, key))
}
