//! Financial transactions (DFT^P03) → one ChargeItem per FT1.
//!
//! | field | ChargeItem |
//! | --- | --- |
//! | FT1-2 transaction id (else MSH-10 and FT1-1) | identifier (the key) |
//! | FT1-7 transaction code (else FT1-8 description) | code |
//! | FT1-4 transaction date (DR) | occurrenceDateTime, or occurrencePeriod with an end |
//! | FT1-5 posting date | enteredDate |
//! | FT1-10 quantity | quantity |
//! | FT1-11 extended amount (CP) | priceOverride (value, currency) |
//! | FT1-19 diagnoses | reason |
//! | FT1-20 performed by | performer |
//! | FT1-24 entered by | enterer |
//! | PV1-19 | context (the Encounter) |
//!
//! Status is `billable`: a DFT reports charges to be billed.

use super::super::TransformError;
use super::common::*;
use crate::r4::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::Message;
use jiff::tz::TimeZone;

pub(super) fn to_bundle(
    parsed: &Message,
    message: &StoredMessage,
    tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    let source = message.source.as_str();
    let control = parsed.identity().control_id.clone();
    let mut b = BundleBuilder::new();
    let mut subject: Option<Reference> = None;
    let mut encounter: Option<Reference> = None;
    let mut charges = 0;
    for seg in parsed.segments() {
        match seg.id() {
            "PID" => {
                if let Some((p, key)) = patient(&seg, source, tz) {
                    subject = Some(reference(&b.put(Resource::Patient(p), &key)));
                }
            }
            "PV1" => {
                if let Some((e, key)) =
                    super::adt::encounter(&seg, None, "", None, subject.clone(), source, tz)
                {
                    encounter = Some(reference(&b.put(Resource::Encounter(e), &key)));
                }
            }
            "FT1" => {
                let Some(subject) = subject.clone() else {
                    continue;
                };
                let Some(code) = seg
                    .field(7)
                    .and_then(|f| f.repetition(1))
                    .and_then(|r| cwe(&r, source))
                    .or_else(|| some(get(&seg, 8, 1)).map(|t| text_concept(&t)))
                else {
                    continue;
                };
                let key = match some(get(&seg, 2, 1)) {
                    Some(id) => identifier(local_system(source, "transaction"), id),
                    None if !control.is_empty() => identifier(
                        local_system(source, "transaction"),
                        format!("{control}/{}", get(&seg, 1, 1)),
                    ),
                    None => continue,
                };
                let (from, to) = (
                    date_time(&get(&seg, 4, 1), tz),
                    date_time(&get(&seg, 4, 2), tz),
                );
                let amount = seg.field(11).and_then(|f| f.component(1));
                let money = Money {
                    value: amount
                        .and_then(|c| c.subcomponent(1))
                        .and_then(|s| number(&s.value())),
                    currency: amount
                        .and_then(|c| c.subcomponent(2))
                        .map(|s| s.value().trim().to_string())
                        .filter(|s| s.len() == 3),
                };
                let charge = ChargeItem {
                    identifier: vec![key.clone()],
                    status: "billable".into(),
                    code,
                    subject,
                    context: encounter.clone(),
                    occurrence_date_time: if to.is_none() { from.clone() } else { None },
                    occurrence_period: to.map(|end| Period {
                        start: from,
                        end: Some(end),
                    }),
                    performer: person(&seg, 20)
                        .map(|actor| ChargeItemPerformer {
                            function: None,
                            actor,
                        })
                        .into_iter()
                        .collect(),
                    quantity: quantity(&get(&seg, 10, 1), ""),
                    price_override: money.value.is_some().then_some(money),
                    enterer: person(&seg, 24),
                    entered_date: date_time(&get(&seg, 5, 1), tz),
                    reason: seg
                        .field(19)
                        .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
                        .unwrap_or_default(),
                    ..Default::default()
                };
                b.put(Resource::ChargeItem(charge), &key);
                charges += 1;
            }
            _ => {}
        }
    }
    if charges == 0 {
        return Err(TransformError::Empty(
            "DFT without a patient (PID-3) and a coded FT1".into(),
        ));
    }
    Ok(finish(b, parsed.identity(), message))
}
