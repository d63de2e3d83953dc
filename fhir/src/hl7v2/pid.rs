//! The PID fields beyond identity, name, address and telecom, as the HL7
//! V2-to-FHIR IG's PID segment map gives them:
//!
//! | PID | Patient |
//! | --- | --- |
//! | 6 mother's maiden name | extension `patient-mothersMaidenName` (XPN-1) |
//! | 7 birth date and time | `birthDate`; a time of day also as `_birthDate` extension `patient-birthTime` |
//! | 15 primary language | `communication.language`, `preferred` (BCP-47 when CWE-3 is blank or ISO 639 / table 0296) |
//! | 16 marital status | `maritalStatus`: the v2 code (table 0002) and, where the meaning is the same, the v3 `MaritalStatus` code R4 binds |
//! | 17 religion | extension `patient-religion` (table 0006) |
//! | 23 birth place | extension `patient-birthPlace` (an Address with the text) |
//! | 24 multiple birth indicator, 25 birth order | `multipleBirthBoolean`, or `multipleBirthInteger` when the order is given |
//! | 30 death indicator | `deceasedBoolean` when PID-29 gives no date |
//!
//! An NK1 after the PID is one of the Patient's `contact`s ([`contact`]):
//! NK1-2 name, NK1-3 relationship (table 0063) and NK1-7 contact role
//! (table 0131) as `relationship`, NK1-4 address, NK1-5/6 home and work
//! telecom, NK1-8/9 period, NK1-13 organization, NK1-15 gender. The IG's
//! other choice, a RelatedPerson, would need an identity of its own that
//! NK1 seldom carries.
//!
//! Deliberately not mapped: PID-10 race and PID-22 ethnic group (the IG
//! maps them to US Core's realm extensions, which would be wrong outside
//! the US realm), PID-26 citizenship, PID-27 veteran status and PID-28
//! nationality (no core element), PID-33/34 last update (the Provenance
//! carries when and from whom).

use super::common::{comp, cwe, get, some};
use crate::r4::*;
use ecko_protocol::hl7::{Segment, Value};
use jiff::tz::TimeZone;

const EXT: &str = "http://hl7.org/fhir/StructureDefinition/";
const V2_0002: &str = "http://terminology.hl7.org/CodeSystem/v2-0002";
const V2_0006: &str = "http://terminology.hl7.org/CodeSystem/v2-0006";
const V2_0063: &str = "http://terminology.hl7.org/CodeSystem/v2-0063";
const V2_0131: &str = "http://terminology.hl7.org/CodeSystem/v2-0131";
const V3_MARITAL: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
const V3_NULL: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
const BCP47: &str = "urn:ietf:bcp:47";

/// Fills `p` from the PID fields above.
pub(super) fn details(pid: &Segment<'_>, source: &str, tz: &TimeZone, p: &mut Patient) {
    if let Some(family) = some(get(pid, 6, 1)) {
        p.extension.push(Extension {
            url: format!("{EXT}patient-mothersMaidenName"),
            value_string: Some(family),
            ..Default::default()
        });
    }
    let birth = get(pid, 7, 1);
    if birth.len() > 8 && p.birth_date.is_some() {
        if let Some(at) = date_time(&birth, tz) {
            p.birth_date_extensions = Some(PrimitiveExtensions {
                extension: vec![Extension {
                    url: format!("{EXT}patient-birthTime"),
                    value_date_time: Some(at),
                    ..Default::default()
                }],
            });
        }
    }
    if let Some(language) = first(pid, 15).and_then(|v| language(&v, source)) {
        p.communication.push(PatientCommunication {
            language,
            preferred: Some(true),
        });
    }
    p.marital_status = first(pid, 16).and_then(|v| marital_status(&v, source));
    if let Some(religion) = first(pid, 17).and_then(|v| in_table(&v, source, V2_0006)) {
        p.extension.push(Extension {
            url: format!("{EXT}patient-religion"),
            value_codeable_concept: Some(religion),
            ..Default::default()
        });
    }
    if let Some(place) = some(get(pid, 23, 1)) {
        p.extension.push(Extension {
            url: format!("{EXT}patient-birthPlace"),
            value_address: Some(Address {
                text: Some(place),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    match (yes_no(&get(pid, 24, 1)), get(pid, 25, 1).parse::<u32>()) {
        (Some(false), _) => p.multiple_birth_boolean = Some(false),
        (_, Ok(order)) if order > 0 => p.multiple_birth_integer = Some(order),
        (Some(true), _) => p.multiple_birth_boolean = Some(true),
        _ => {}
    }
    if p.deceased_date_time.is_none() {
        p.deceased_boolean = yes_no(&get(pid, 30, 1));
    }
}

/// An NK1 as a contact of the Patient; `None` when it names nobody and
/// nothing to reach.
pub(super) fn contact(nk1: &Segment<'_>, source: &str, tz: &TimeZone) -> Option<PatientContact> {
    let relationship = [(3, V2_0063), (7, V2_0131)]
        .into_iter()
        .filter_map(|(f, table)| first(nk1, f).and_then(|v| in_table(&v, source, table)))
        .collect();
    let telecom = [(5, Some("home")), (6, Some("work"))]
        .into_iter()
        .flat_map(|(f, default_use)| {
            nk1.field(f)
                .map(|f| {
                    f.repetitions()
                        .filter_map(|r| super::common::xtn(&r, default_use))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    let start = date_time(&get(nk1, 8, 1), tz);
    let end = date_time(&get(nk1, 9, 1), tz);
    let c = PatientContact {
        relationship,
        name: nk1
            .field(2)
            .and_then(|f| f.repetitions().find_map(|r| super::common::human_name(&r))),
        telecom,
        address: nk1
            .field(4)
            .and_then(|f| f.repetitions().find_map(|r| super::common::xad(&r))),
        gender: gender(&get(nk1, 15, 1)),
        organization: some(get(nk1, 13, 1)).map(|o| display_reference(&o)),
        period: (start.is_some() || end.is_some()).then_some(Period { start, end }),
    };
    let reachable = c.name.is_some()
        || !c.telecom.is_empty()
        || c.address.is_some()
        || c.organization.is_some();
    reachable.then_some(c)
}

fn first<'a>(pid: &Segment<'a>, f: usize) -> Option<Value<'a>> {
    pid.field(f)?.repetition(1)
}

/// HL7 table 0136.
fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Y" => Some(true),
        "N" => Some(false),
        _ => None,
    }
}

/// A CWE whose field names its table: a code without CWE-3 is a code of
/// that table, not a local one.
fn in_table(v: &Value<'_>, source: &str, table: &str) -> Option<CodeableConcept> {
    let mut cc = cwe(v, source)?;
    if comp(v, 3).is_empty() {
        if let Some(c) = cc.coding.first_mut() {
            c.system = Some(table.into());
        }
    }
    Some(cc)
}

fn language(v: &Value<'_>, source: &str) -> Option<CodeableConcept> {
    let named = comp(v, 3).to_ascii_uppercase();
    let mut cc = cwe(v, source)?;
    if matches!(named.as_str(), "" | "ISO639" | "ISO6391" | "HL70296") {
        if let Some(c) = cc.coding.first_mut() {
            c.system = Some(BCP47.into());
            c.code = c.code.as_ref().map(|code| code.to_ascii_lowercase());
        }
    }
    Some(cc)
}

/// Table 0002 and, where the meaning is the same, the v3 code R4 binds
/// `maritalStatus` to (extensible).
fn marital_status(v: &Value<'_>, source: &str) -> Option<CodeableConcept> {
    let mut cc = in_table(v, source, V2_0002)?;
    let v2 = cc
        .coding
        .first()
        .filter(|c| c.system.as_deref() == Some(V2_0002));
    let v3 = v2.and_then(|c| match c.code.as_deref()? {
        "A" | "E" => Some((V3_MARITAL, "L", "Legally Separated")),
        "B" => Some((V3_MARITAL, "U", "unmarried")),
        "C" => Some((V3_MARITAL, "C", "Common Law")),
        "D" => Some((V3_MARITAL, "D", "Divorced")),
        "I" => Some((V3_MARITAL, "I", "Interlocutory")),
        "M" => Some((V3_MARITAL, "M", "Married")),
        "N" => Some((V3_MARITAL, "A", "Annulled")),
        "P" | "R" => Some((V3_MARITAL, "T", "Domestic partner")),
        "S" => Some((V3_MARITAL, "S", "Never Married")),
        "W" => Some((V3_MARITAL, "W", "Widowed")),
        "U" => Some((V3_NULL, "UNK", "unknown")),
        _ => None,
    });
    if let Some((system, code, display)) = v3 {
        cc.coding.push(Coding {
            system: Some(system.into()),
            code: Some(code.into()),
            display: Some(display.into()),
        });
    }
    Some(cc)
}
