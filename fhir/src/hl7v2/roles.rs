//! ROL (v2.3–2.6) and PRT (v2.7 on), the people in a role for a visit or a
//! patient, and PD1's care providers, as the HL7 V2-to-FHIR IG maps them.
//!
//! After a PV1 (up to the next PV1 or PID), each ROL or PRT is one of the
//! visit's `Encounter.participant`s: the person (ROL-4, PRT-5), the period
//! (ROL-5/6, PRT-11/12) and the role (ROL-3 table 0443, PRT-4 table 0912)
//! as a v3 ParticipationType where one means the same — AD admitter,
//! AT attender, CP consultant, RP referrer, RT referred to, DP discharger —
//! else as the v2 code. After the PID and before any PV1, a role of primary
//! care provider (PP) or family health care professional (FHCP) is one of
//! the Patient's `generalPractitioner`s, as are PD1-3 (primary facility)
//! and PD1-4 (primary care provider). A role deleted by its action code
//! (ROL-2, PRT-2 `D`) is left out; a role without a person makes nothing.
//! Deliberately not: ROL-7 to ROL-12 and PRT's devices, organisations and
//! locations (R4's participant names only a person), and PD1's other
//! fields (living arrangement, student, handicap, organ donor, publicity,
//! protection, place of worship, advance directives, military), which have
//! no core element or need a realm's extension.

use super::common::{comp, get, some, xcn};
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The role code, person and period of a ROL or PRT; `None` when deleted
/// or without a person.
fn role(seg: &Segment<'_>, tz: &TimeZone) -> Option<(String, Reference, Period)> {
    let (code_field, person_field, begin, end) = match seg.id() {
        "ROL" => (3, 4, 5, 6),
        "PRT" => (4, 5, 11, 12),
        _ => return None,
    };
    if get(seg, 2, 1) == "D" {
        return None;
    }
    let person = seg
        .field(person_field)?
        .repetitions()
        .find_map(|r| xcn(&r))?;
    let period = Period {
        start: date_time(&get(seg, begin, 1), tz),
        end: date_time(&get(seg, end, 1), tz),
    };
    Some((get(seg, code_field, 1), person, period))
}

/// A visit's participant from a ROL or PRT after its PV1.
pub(super) fn participant(seg: &Segment<'_>, tz: &TimeZone) -> Option<EncounterParticipant> {
    let (code, individual, period) = role(seg, tz)?;
    let table = if seg.id() == "ROL" { "0443" } else { "0912" };
    let type_ = match code.as_str() {
        "AD" => Some(concept(Some(PARTICIPATION), "ADM", Some("admitter"))),
        "AT" => Some(concept(Some(PARTICIPATION), "ATND", Some("attender"))),
        "CP" => Some(concept(Some(PARTICIPATION), "CON", Some("consultant"))),
        "RP" => Some(concept(Some(PARTICIPATION), "REF", Some("referrer"))),
        "RT" => Some(concept(Some(PARTICIPATION), "REFT", Some("referred to"))),
        "DP" => Some(concept(Some(PARTICIPATION), "DIS", Some("discharger"))),
        "" => None,
        other => Some(concept(
            Some(&format!("http://terminology.hl7.org/CodeSystem/v2-{table}")),
            other,
            None,
        )),
    };
    Some(EncounterParticipant {
        type_: type_.into_iter().collect(),
        period: (period != Period::default()).then_some(period),
        individual: Some(individual),
    })
}

/// A patient's general practitioner from a ROL or PRT before any PV1.
pub(super) fn general_practitioner(seg: &Segment<'_>, tz: &TimeZone) -> Option<Reference> {
    let (code, person, _) = role(seg, tz)?;
    matches!(code.as_str(), "PP" | "FHCP").then_some(person)
}

/// PD1-3 (the facility, XON) and PD1-4 (the providers, XCN).
pub(super) fn care_providers(pd1: &Segment<'_>) -> Vec<Reference> {
    let facilities = pd1.field(3).into_iter().flat_map(|f| {
        f.repetitions()
            .filter_map(|r| some(comp(&r, 1)).map(|name| display_reference(&name)))
            .collect::<Vec<_>>()
    });
    let people = pd1
        .field(4)
        .into_iter()
        .flat_map(|f| f.repetitions().filter_map(|r| xcn(&r)).collect::<Vec<_>>());
    facilities.chain(people).collect()
}
