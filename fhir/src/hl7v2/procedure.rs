//! PR1 → Procedure, as the HL7 V2-to-FHIR IG's PR1 segment map gives it:
//!
//! | PR1 | Procedure |
//! | --- | --- |
//! | 3 procedure code (else 4, its description) | `code` |
//! | 5 date/time, 7 minutes | `performedDateTime`; with minutes, `performedPeriod` from the start to start + minutes |
//! | 6 functional type (table 0230) | `category` |
//! | 8 anesthesiologist, 11 surgeon, 12 procedure practitioner | `performer` (display), `function` from table 0133 (AN, PR) where the field names it |
//! | 15 associated diagnosis | `reasonCode` |
//! | 19 procedure identifier | `identifier` (the key) |
//! | 20 action code D (delete) | `status` entered-in-error |
//!
//! `status` is otherwise `completed`: an ADT reports a procedure done (the
//! IG leaves it to the implementer, "unknown" when unclear; a PR1 in an
//! ADT is always past). `subject` is the Patient and `encounter` the visit
//! of the PV1 before it. Without PR1-19 the key is the patient (its
//! deterministic id), the visit when there is one, the code and the date,
//! so the procedure sent again in a later ADT updates the one resource. A
//! PR1 without code or description makes nothing. Deliberately not:
//! PR1-9/10 anesthesia code and minutes, PR1-13 consent, PR1-14 priority,
//! PR1-16 code modifiers, PR1-17 DRG type and PR1-18 tissue type, which
//! have no element in R4's Procedure.

use super::common::{comp, cwe, ei, get, person, some};
use super::diagnosis::Context;
use crate::r4::*;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

const FUNCTIONAL_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0230";
const PRACTITIONER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0133";

pub(super) fn procedure(
    pr1: &Segment<'_>,
    cx: &Context<'_>,
    source: &str,
    tz: &TimeZone,
) -> Option<(Procedure, Identifier)> {
    let coded = pr1.field(3).and_then(|f| f.repetition(1));
    let code = coded
        .as_ref()
        .and_then(|v| cwe(v, source))
        .or_else(|| some(get(pr1, 4, 1)).map(|text| text_concept(&text)))?;
    let what = coded
        .as_ref()
        .map(|v| comp(v, 1))
        .filter(|c| !c.is_empty())
        .or_else(|| code.text.clone())?;
    let raw_start = get(pr1, 5, 1);
    let start = date_time(&raw_start, tz);
    let key = ei(
        pr1.field(19).and_then(|f| f.repetition(1)),
        source,
        "procedure",
    )
    .unwrap_or_else(|| {
        let when = some(raw_start.clone())
            .map(|t| format!("/{t}"))
            .unwrap_or_default();
        cx.key_without_id(source, "procedure", &format!("{what}{when}"))
    });
    let minutes = get(pr1, 7, 1).trim().parse::<u32>().ok().filter(|&m| m > 0);
    let end = start
        .as_deref()
        .zip(minutes)
        .and_then(|(s, m)| plus_minutes(s, m));
    let (performed_date_time, performed_period) = match end {
        Some(end) => (
            None,
            Some(Period {
                start: start.clone(),
                end: Some(end),
            }),
        ),
        None => (start, None),
    };
    let performer = [(8, Some("AN")), (11, Some("PR")), (12, None)]
        .into_iter()
        .filter_map(|(f, function)| {
            Some(ProcedurePerformer {
                function: function.map(|code| {
                    concept(
                        Some(PRACTITIONER_TYPE),
                        code,
                        Some(match code {
                            "AN" => "Anesthesiologist/Anesthetist",
                            _ => "Procedure MD/ Surgeon",
                        }),
                    )
                }),
                actor: person(pr1, f)?,
            })
        })
        .collect();
    let reason_code = pr1
        .field(15)
        .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
        .unwrap_or_default();
    let p = Procedure {
        identifier: vec![key.clone()],
        status: if get(pr1, 20, 1) == "D" {
            "entered-in-error"
        } else {
            "completed"
        }
        .into(),
        category: some(get(pr1, 6, 1)).map(|c| concept(Some(FUNCTIONAL_TYPE), &c, None)),
        code: Some(code),
        subject: cx.patient.clone(),
        encounter: cx.encounter.map(|(r, _)| r.clone()),
        performed_date_time,
        performed_period,
        performer,
        reason_code,
        ..Default::default()
    };
    Some((p, key))
}
