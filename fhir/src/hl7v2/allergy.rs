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
//!
//! IAM (the patient adverse reaction segment of ADT^A60, and of other ADT
//! from v2.4) maps its fields 2–5 as AL1's, and also, as the IG's IAM map
//! gives them:
//!
//! | IAM | AllergyIntolerance |
//! | --- | --- |
//! | 6 action code (table 0323) D delete | `verificationStatus` entered-in-error, no `clinicalStatus` |
//! | 7 allergy unique identifier | `identifier` (the key, instead of patient and allergen) |
//! | 9 sensitivity to causative agent (table 0436) | `type`: AL allergy, IN intolerance |
//! | 11 onset date, 12 onset text | `onsetDateTime`, else `onsetString` |
//! | 13 reported date/time | `recordedDate` |
//! | 14 reported by | `asserter` (display) |
//! | 17 clinical status (table 0438) | `verificationStatus`: C confirmed, I confirmed and `clinicalStatus` inactive, U/P/S/D unconfirmed, E entered-in-error |
//!
//! R4 forbids a `clinicalStatus` beside entered-in-error and asks for one
//! otherwise: both rules hold for every combination of IAM-6 and IAM-17.

use super::common::{comp, cwe, ei, get, human_name, patient_id, some};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

/// The AllergyIntolerance of `al1` (an AL1 or an IAM) for the patient
/// `patient` (keyed by `patient_key`), with its key.
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
    if al1.id() == "IAM" {
        return Some(adverse_reaction(al1, a, key, source, tz));
    }
    Some((a, key))
}

/// What an IAM adds to the allergy its fields 2–5 give.
fn adverse_reaction(
    iam: &Segment<'_>,
    mut a: AllergyIntolerance,
    key: Identifier,
    source: &str,
    tz: &TimeZone,
) -> (AllergyIntolerance, Identifier) {
    let key = ei(
        iam.field(7).and_then(|f| f.repetition(1)),
        source,
        "allergy",
    )
    .unwrap_or(key);
    a.identifier = vec![key.clone()];
    a.type_ = match get(iam, 9, 1).as_str() {
        "AL" => Some("allergy".into()),
        "IN" => Some("intolerance".into()),
        _ => None,
    };
    a.onset_date_time = date_time(&get(iam, 11, 1), tz);
    a.onset_string = a
        .onset_date_time
        .is_none()
        .then(|| some(get(iam, 12, 1)))
        .flatten();
    a.recorded_date = date_time(&get(iam, 13, 1), tz);
    a.asserter = iam
        .field(14)
        .and_then(|f| f.repetition(1))
        .and_then(|v| human_name(&v))
        .map(|n| {
            let name = n
                .given
                .iter()
                .chain(n.family.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            display_reference(&name)
        });
    let status = get(iam, 17, 1);
    let verification = if get(iam, 6, 1) == "D" || status == "E" {
        Some(("entered-in-error", "Entered in Error"))
    } else {
        match status.as_str() {
            "C" | "I" => Some(("confirmed", "Confirmed")),
            "U" | "P" | "S" | "D" => Some(("unconfirmed", "Unconfirmed")),
            _ => None,
        }
    };
    a.verification_status =
        verification.map(|(code, display)| concept(Some(VERIFICATION), code, Some(display)));
    a.clinical_status = match verification {
        Some(("entered-in-error", _)) => None,
        _ if status == "I" => Some(concept(Some(CLINICAL), "inactive", Some("Inactive"))),
        _ => a.clinical_status,
    };
    (a, key)
}
