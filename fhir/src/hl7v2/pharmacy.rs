//! Pharmacy orders (RXO in ORM^O01, RXE in RDE^O11) → MedicationRequest.
//!
//! | field | MedicationRequest |
//! | --- | --- |
//! | ORC-1/ORC-5 | status: CA cancelled, DC stopped, HD on-hold, CM completed, otherwise active |
//! | RXO-1 / RXE-2 | medicationCodeableConcept |
//! | RXO-2..4 / RXE-3..5 | dosageInstruction.doseAndRate (dose, or a range when a maximum is given) |
//! | RXO-7 / RXE-7 | dosageInstruction.text (provider's administration instructions) |
//! | RXR-1 | dosageInstruction.route |
//! | TQ1-3, TQ1-7/8 (else ORC-7 / RXE-1) | dosageInstruction.timing (code, bounds) |
//! | RXO-11/12 / RXE-10/11 | dispenseRequest.quantity; RXO-13 / RXE-12 refills |
//! | ORC-9, ORC-12 | authoredOn, requester |
//! | NTE | note |

use super::common::*;
use super::orders::OrderGroup;
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const GTS: &str = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation";

pub(super) fn medication_request(
    g: &OrderGroup<'_>,
    rx: &Segment<'_>,
    identifier: Vec<Identifier>,
    subject: Reference,
    encounter: Option<Reference>,
    source: &str,
    tz: &TimeZone,
) -> MedicationRequest {
    // (medication, min dose, max dose, dose units, instructions,
    //  dispense amount, dispense units, refills, quantity/timing)
    let rxe = rx.id() == "RXE";
    let (med, min, max, units, instr, amount, amount_units, refills) = if rxe {
        (2, 3, 4, 5, 7, 10, 11, 12)
    } else {
        (1, 2, 3, 4, 7, 11, 12, 13)
    };
    let unit = get(rx, units, 1);
    let dose_quantity = quantity(&get(rx, min, 1), &unit);
    let dose_max = quantity(&get(rx, max, 1), &unit);
    let dose = match (dose_quantity, dose_max) {
        (Some(lo), Some(hi)) if lo != hi => DoseAndRate {
            dose_range: Some(Range {
                low: Some(lo),
                high: Some(hi),
            }),
            ..Default::default()
        },
        (lo, hi) => DoseAndRate {
            dose_quantity: lo.or(hi),
            ..Default::default()
        },
    };
    let timing = timing(g, rxe.then_some(rx), tz);
    let text = rx
        .field(instr)
        .and_then(|f| f.repetition(1))
        .and_then(|r| some(comp(&r, 2)).or_else(|| some(comp(&r, 1))));
    let dosage = Dosage {
        text,
        timing,
        route: g
            .rxr
            .as_ref()
            .and_then(|r| r.field(1))
            .and_then(|f| f.repetition(1))
            .and_then(|r| cwe(&r, source)),
        dose_and_rate: Some(dose)
            .filter(|d| *d != DoseAndRate::default())
            .into_iter()
            .collect(),
    };
    let dispense = DispenseRequest {
        quantity: quantity(&get(rx, amount, 1), &get(rx, amount_units, 1)),
        number_of_repeats_allowed: get(rx, refills, 1).parse().ok(),
    };
    let status = match (g.status(), g.control().as_str()) {
        ("revoked", "DC" | "OD" | "DR") => "stopped",
        ("revoked", _) => "cancelled",
        ("on-hold", _) => "on-hold",
        ("completed", _) => "completed",
        ("entered-in-error", _) => "entered-in-error",
        _ => "active",
    };
    MedicationRequest {
        identifier,
        status: status.into(),
        intent: "order".into(),
        priority: g.priority(),
        medication_codeable_concept: rx
            .field(med)
            .and_then(|f| f.repetition(1))
            .and_then(|r| cwe(&r, source)),
        subject,
        encounter,
        authored_on: g.authored(tz),
        requester: g.requester(),
        note: g.notes.clone(),
        dosage_instruction: Some(dosage)
            .filter(|d| *d != Dosage::default())
            .into_iter()
            .collect(),
        dispense_request: Some(dispense).filter(|d| *d != DispenseRequest::default()),
        ..Default::default()
    }
}

/// TQ1 (v2.5+), else the TQ of ORC-7 or RXE-1 (v2.3/2.4):
/// repeat pattern → Timing.code, start/end → repeat.boundsPeriod.
fn timing(g: &OrderGroup<'_>, rxe: Option<&Segment<'_>>, tz: &TimeZone) -> Option<Timing> {
    let (pattern, start, end) = if let Some(tq1) = g.tq1.as_ref() {
        (get(tq1, 3, 1), get(tq1, 7, 1), get(tq1, 8, 1))
    } else {
        let tq = g
            .orc
            .as_ref()
            .filter(|o| !get(o, 7, 2).is_empty() || !get(o, 7, 4).is_empty())
            .map(|o| (o, 7))
            .or_else(|| rxe.map(|r| (r, 1)));
        let (seg, f) = tq?;
        (get(seg, f, 2), get(seg, f, 4), get(seg, f, 5))
    };
    let code = some(pattern).map(|p| match p.as_str() {
        "QD" | "BID" | "TID" | "QID" | "QOD" | "AM" | "PM" | "Q4H" | "Q6H" | "Q8H" | "Q12H"
        | "QHS" | "WK" | "MO" => concept(Some(GTS), &p, None),
        _ => text_concept(&p),
    });
    let bounds = Period {
        start: date_time(&start, tz),
        end: date_time(&end, tz),
    };
    let t = Timing {
        event: Vec::new(),
        repeat: (bounds != Period::default()).then(|| TimingRepeat {
            bounds_period: Some(bounds),
            ..Default::default()
        }),
        code,
    };
    (t != Timing::default()).then_some(t)
}
