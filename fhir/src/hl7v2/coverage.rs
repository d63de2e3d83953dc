//! IN1 → Coverage, and its insurer as an Organization, as the HL7
//! V2-to-FHIR IG's IN1 segment map gives them:
//!
//! | IN1 | Coverage |
//! | --- | --- |
//! | 2 insurance plan id | `class` plan (value and name) |
//! | 3 company id, 4 company name, 5 address, 7 phone | `payor`: an Organization with those |
//! | 8 group number, 9 group name | `class` group |
//! | 12 plan effective, 13 plan expiration date | `period` |
//! | 15 plan type (table 0086) | `type` |
//! | 17 insured's relationship to the patient (table 0063) | `relationship` (subscriber-relationship: SEL self, SPO spouse, CHD child, PAR parent, else other) |
//! | 22 coordination of benefits priority | `order` |
//! | 36 policy number | `identifier` (the key) |
//! | 49 insured's id number (else 36) | `subscriberId` |
//!
//! The insurer is created when the server does not have it yet (a
//! conditional create on its identifier) and never overwritten: an ADT is
//! not the insurer's record, and another IN1 may name it with less.
//! `beneficiary` is the Patient, and so is `subscriber` when the insured is
//! the patient (IN1-17 SEL, or blank with no other insured named in
//! IN1-16); another insured is not sent as a RelatedPerson (the IG's
//! IN1-16/18/19), so `subscriber` is then left out and `subscriberId`
//! names them. `status` is `active`: an ADT lists the coverage that holds.
//! Without a policy number the key is the patient (its deterministic id),
//! the insurer and the plan. An IN1 naming no insurer (neither IN1-3 nor
//! IN1-4) makes nothing, because R4 requires a payor. IN2 and IN3 are not
//! mapped: their IG maps are employment, billing and certification
//! details of the payer's, not of the patient's record.

use super::common::{comp, cx_of, get, patient_id, some, xad, xtn};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const CLASS: &str = "http://terminology.hl7.org/CodeSystem/coverage-class";
const RELATIONSHIP: &str = "http://terminology.hl7.org/CodeSystem/subscriber-relationship";
const PLAN_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0086";

/// The Coverage of `in1` for `patient` (keyed by `patient_key`) with its
/// key, and the insurer's Organization with its key.
pub(super) fn coverage(
    in1: &Segment<'_>,
    patient: &Reference,
    patient_key: &Identifier,
    source: &str,
    tz: &TimeZone,
) -> Option<((Coverage, Identifier), (Organization, Identifier))> {
    let insurer = insurer(in1, source)?;
    let plan = in1.field(2).and_then(|f| f.repetition(1));
    let plan_id = plan.as_ref().map(|v| comp(v, 1)).filter(|c| !c.is_empty());
    let plan_name = plan.as_ref().and_then(|v| some(comp(v, 2)));
    let policy = some(get(in1, 36, 1));
    let key = match &policy {
        Some(number) => Identifier {
            system: Some(local_system(source, "policy")),
            value: Some(number.clone()),
            ..Default::default()
        },
        None => Identifier {
            system: Some(local_system(source, "coverage")),
            value: Some(format!(
                "{}/{}/{}",
                patient_id(patient_key),
                insurer.1.value.clone().unwrap_or_default(),
                plan_id.clone().unwrap_or_default()
            )),
            ..Default::default()
        },
    };
    let mut class = Vec::new();
    if let Some(id) = plan_id {
        class.push(CoverageClass {
            type_: concept(Some(CLASS), "plan", Some("Plan")),
            value: id,
            name: plan_name,
        });
    }
    if let Some(group) = some(get(in1, 8, 1)) {
        class.push(CoverageClass {
            type_: concept(Some(CLASS), "group", Some("Group")),
            value: group,
            name: some(get(in1, 9, 1)),
        });
    }
    let relationship_code = get(in1, 17, 1);
    let insured_named = some(get(in1, 16, 1)).is_some();
    let is_self = relationship_code == "SEL" || (relationship_code.is_empty() && !insured_named);
    let relationship = match relationship_code.as_str() {
        "SEL" => Some(("self", "Self")),
        "SPO" | "DOM" => Some(("spouse", "Spouse")),
        "CHD" | "FCH" | "SCH" => Some(("child", "Child")),
        "PAR" | "MTH" | "FTH" => Some(("parent", "Parent")),
        "" => None,
        _ => Some(("other", "Other")),
    }
    .map(|(code, display)| concept(Some(RELATIONSHIP), code, Some(display)));
    let period = Period {
        start: date_time(&get(in1, 12, 1), tz),
        end: date_time(&get(in1, 13, 1), tz),
    };
    let subscriber_id = in1
        .field(49)
        .and_then(|f| f.repetition(1))
        .map(|v| comp(&v, 1))
        .filter(|c| !c.is_empty())
        .or_else(|| policy.clone());
    let c = Coverage {
        identifier: vec![key.clone()],
        status: "active".into(),
        type_: some(get(in1, 15, 1)).map(|t| concept(Some(PLAN_TYPE), &t, None)),
        subscriber: is_self.then(|| patient.clone()),
        subscriber_id,
        beneficiary: patient.clone(),
        relationship,
        period: (period != Period::default()).then_some(period),
        payor: vec![reference(&entry_url("Organization", &insurer.1))],
        class,
        order: get(in1, 22, 1)
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&o| o > 0),
        ..Default::default()
    };
    Some(((c, key), insurer))
}

/// The insurer of IN1-3/4/5/7, keyed by its id (else its name).
fn insurer(in1: &Segment<'_>, source: &str) -> Option<(Organization, Identifier)> {
    let ids: Vec<Identifier> = in1
        .field(3)
        .map(|f| {
            f.repetitions()
                .filter_map(|r| cx_of(&r, source, "insurer"))
                .collect()
        })
        .unwrap_or_default();
    let name = in1
        .field(4)
        .and_then(|f| f.repetition(1))
        .map(|v| comp(&v, 1))
        .filter(|n| !n.is_empty());
    let key = ids.first().cloned().or_else(|| {
        name.as_ref().map(|n| Identifier {
            system: Some(local_system(source, "insurer")),
            value: Some(n.clone()),
            ..Default::default()
        })
    })?;
    let o = Organization {
        identifier: if ids.is_empty() {
            vec![key.clone()]
        } else {
            ids
        },
        name,
        address: in1
            .field(5)
            .map(|f| f.repetitions().filter_map(|r| xad(&r)).collect())
            .unwrap_or_default(),
        telecom: in1
            .field(7)
            .map(|f| {
                f.repetitions()
                    .filter_map(|r| xtn(&r, Some("work")))
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    Some((o, key))
}
