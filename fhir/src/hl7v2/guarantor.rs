//! GT1 → the guarantors of the patient's Account, as the HL7 V2-to-FHIR
//! IG's GT1 map gives them:
//!
//! | GT1 | FHIR |
//! | --- | --- |
//! | (PID-18 patient account number) | `Account.identifier`, the key; else the patient's deterministic id |
//! | 11 relationship (table 0063) SEL | `guarantor.party` is the Patient |
//! | 21 organization name, when no person is named | `guarantor.party` is an Organization (created when absent) |
//! | 2 guarantor number | `RelatedPerson.identifier` (the key; else the patient and the name) |
//! | 3 name, 5 address, 6/7 home and work phone, 8 birth date, 9 sex | the RelatedPerson's |
//! | 11 relationship | `RelatedPerson.relationship` (v2 table 0063) |
//! | 13 begin, 14 end | `guarantor.period` |
//!
//! Every GT1 after one PID adds a guarantor to the one Account, in order
//! (GT1-15 priority is the order they are sent in). The Account is
//! `active`, its `subject` the Patient. A GT1 naming no one makes nothing.
//! Deliberately not: GT1-10 type, GT1-12 SSN (a realm's identifier with no
//! system here), GT1-16 on (employment, financial and insurance details
//! of the guarantor's own, not of this patient's record).

use super::common::{comp, cx_of, get, human_name, patient_id, some, xad, xtn};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

/// A guarantor's party, as a resource of its own when it is not the patient.
pub(super) enum Party {
    Patient,
    Person(RelatedPerson, Identifier),
    Organization(Organization, Identifier),
}

/// The party and period of `gt1` for the patient `patient`.
pub(super) fn guarantor(
    gt1: &Segment<'_>,
    patient: &Reference,
    patient_key: &Identifier,
    source: &str,
    tz: &TimeZone,
) -> Option<(Party, Option<Period>)> {
    let period = Period {
        start: date_time(&get(gt1, 13, 1), tz),
        end: date_time(&get(gt1, 14, 1), tz),
    };
    let period = (period != Period::default()).then_some(period);
    let relationship = get(gt1, 11, 1);
    if relationship == "SEL" {
        return Some((Party::Patient, period));
    }
    let name = gt1
        .field(3)
        .and_then(|f| f.repetition(1))
        .and_then(|v| human_name(&v));
    let Some(name) = name else {
        let org = gt1
            .field(21)
            .and_then(|f| f.repetition(1))
            .and_then(|v| some(comp(&v, 1)))?;
        let key = Identifier {
            system: Some(local_system(source, "guarantor-organization")),
            value: Some(org.clone()),
            ..Default::default()
        };
        let o = Organization {
            identifier: vec![key.clone()],
            name: Some(org),
            ..Default::default()
        };
        return Some((Party::Organization(o, key), period));
    };
    let number = gt1
        .field(2)
        .and_then(|f| f.repetition(1))
        .and_then(|v| cx_of(&v, source, "guarantor"));
    let key = number.unwrap_or_else(|| Identifier {
        system: Some(local_system(source, "guarantor")),
        value: Some(format!(
            "{}/{}/{}",
            patient_id(patient_key),
            name.family.clone().unwrap_or_default(),
            name.given.join(" ")
        )),
        ..Default::default()
    });
    let telecom = [(6, "home"), (7, "work")]
        .into_iter()
        .flat_map(|(f, default_use)| {
            gt1.field(f)
                .map(|field| {
                    field
                        .repetitions()
                        .filter_map(|r| xtn(&r, Some(default_use)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    let p = RelatedPerson {
        identifier: vec![key.clone()],
        patient: patient.clone(),
        relationship: some(relationship)
            .map(|r| {
                concept(
                    Some("http://terminology.hl7.org/CodeSystem/v2-0063"),
                    &r,
                    None,
                )
            })
            .into_iter()
            .collect(),
        name: vec![name],
        telecom,
        gender: gender(&get(gt1, 9, 1)),
        birth_date: date_time(&get(gt1, 8, 1), tz).map(|d| d.chars().take(10).collect()),
        address: gt1
            .field(5)
            .map(|f| f.repetitions().filter_map(|r| xad(&r)).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    Some((Party::Person(p, key), period))
}

/// The patient's Account, keyed by PID-18 when sent.
pub(super) fn account(
    pid: Option<&Segment<'_>>,
    patient: &Reference,
    patient_key: &Identifier,
    source: &str,
) -> (Account, Identifier) {
    let key = pid
        .and_then(|p| p.field(18))
        .and_then(|f| f.repetition(1))
        .and_then(|v| cx_of(&v, source, "account"))
        .unwrap_or_else(|| Identifier {
            system: Some(local_system(source, "account")),
            value: Some(patient_id(patient_key).to_string()),
            ..Default::default()
        });
    let a = Account {
        identifier: vec![key.clone()],
        status: "active".into(),
        subject: vec![patient.clone()],
        ..Default::default()
    };
    (a, key)
}
