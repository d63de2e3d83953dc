//! Scheduling (SIU^S12 new, S13 rescheduled, S14 modified, S15 cancelled)
//! → Appointment with its participants.
//!
//! | field | Appointment |
//! | --- | --- |
//! | SCH-2 filler, else SCH-1 placer appointment id | identifier (the key) |
//! | trigger, SCH-25 filler status (table 0278) | status: S15 cancelled; Booked booked, Pending pending, Complete fulfilled, Noshow noshow, Waitlist waitlist, Started arrived, Deleted entered-in-error |
//! | SCH-6 (S15) | cancelationReason |
//! | SCH-7 | reasonCode |
//! | SCH-8 | appointmentType |
//! | TQ1-7/8, else SCH-11.4/11.5 | start, end (end from SCH-9/10 duration when only the start is sent) |
//! | SCH-9/10 | minutesDuration |
//! | PID | participant (the patient) |
//! | AIS-3 | serviceType |
//! | AIG-3, AIL-3, AIP-3 (AIP-4 role) | participants (resource, location, person) |
//! | NTE | comment |
//!
//! An appointment without a start and an end (neither TQ1-7/8 nor SCH-11)
//! becomes `proposed` unless it is cancelled or waitlisted: R4 (app-3)
//! allows no other status without times.

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
    let event = parsed.identity().trigger_event.clone();
    let Some(sch) = parsed.segment("SCH") else {
        return Err(TransformError::Empty("SIU without SCH".into()));
    };
    let Some(key) =
        ei(sch.field(2), source, "appointment").or_else(|| ei(sch.field(1), source, "appointment"))
    else {
        return Err(TransformError::Empty(
            "SIU without an appointment id (SCH-1/SCH-2)".into(),
        ));
    };
    let mut b = BundleBuilder::new();
    let mut appt = Appointment {
        identifier: vec![key.clone()],
        status: match (
            event.as_str(),
            get(&sch, 25, 1).to_ascii_lowercase().as_str(),
        ) {
            ("S15", _) | (_, "cancelled") => "cancelled",
            (_, "pending") => "pending",
            (_, "complete") => "fulfilled",
            (_, "noshow") => "noshow",
            (_, "waitlist") => "waitlist",
            (_, "started") => "arrived",
            (_, "deleted") => "entered-in-error",
            _ => "booked",
        }
        .into(),
        reason_code: sch
            .field(7)
            .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
            .unwrap_or_default(),
        appointment_type: sch
            .field(8)
            .and_then(|f| f.repetition(1))
            .and_then(|r| cwe(&r, source)),
        ..Default::default()
    };
    if appt.status == "cancelled" {
        appt.cancelation_reason = sch
            .field(6)
            .and_then(|f| f.repetition(1))
            .and_then(|r| cwe(&r, source));
    }
    let duration = get(&sch, 9, 1).parse::<u32>().ok().map(|n| {
        match get(&sch, 10, 1).to_ascii_lowercase().as_str() {
            "h" | "hr" | "hour" | "hours" => n * 60,
            _ => n,
        }
    });
    let tq1 = parsed.segment("TQ1");
    let (start, end) = match tq1.as_ref() {
        Some(t) => (date_time(&get(t, 7, 1), tz), date_time(&get(t, 8, 1), tz)),
        None => (
            date_time(&get(&sch, 11, 4), tz),
            date_time(&get(&sch, 11, 5), tz),
        ),
    };
    let end = end.or_else(|| add_minutes(start.as_deref()?, duration?));
    if start.is_some() && end.is_some() {
        appt.start = start;
        appt.end = end;
    } else if !matches!(appt.status.as_str(), "cancelled" | "waitlist") {
        // R4 app-3: only proposed, cancelled and waitlisted appointments may
        // lack start and end; one without a time is not booked yet.
        appt.status = "proposed".into();
    }
    appt.minutes_duration = duration.filter(|d| *d > 0);
    let mut notes = Vec::new();
    for seg in parsed.segments() {
        match seg.id() {
            "PID" => {
                if let Some((p, pkey)) = patient(&seg, source, tz) {
                    let r = reference(&b.put(Resource::Patient(p), &pkey));
                    appt.participant.push(AppointmentParticipant {
                        actor: Some(r),
                        required: Some("required".into()),
                        status: "accepted".into(),
                        ..Default::default()
                    });
                }
            }
            "AIS" => appt.service_type.extend(
                seg.field(3)
                    .and_then(|f| f.repetition(1))
                    .and_then(|r| cwe(&r, source)),
            ),
            "AIG" | "AIL" | "AIP" => {
                let f = seg.field(3).and_then(|f| f.repetition(1));
                let actor = match seg.id() {
                    "AIG" => f.and_then(|r| cwe(&r, source)).and_then(|c| {
                        c.text
                            .or_else(|| c.coding.first().and_then(|c| c.display.clone()))
                            .or_else(|| c.coding.first().and_then(|c| c.code.clone()))
                            .map(|d| display_reference(&d))
                    }),
                    "AIL" => f
                        .and_then(|r| location_text(&r))
                        .map(|d| display_reference(&d)),
                    _ => f.and_then(|r| xcn(&r)),
                };
                let Some(actor) = actor else {
                    continue;
                };
                appt.participant.push(AppointmentParticipant {
                    type_: seg
                        .field(4)
                        .and_then(|f| f.repetition(1))
                        .and_then(|r| cwe(&r, source))
                        .into_iter()
                        .collect(),
                    actor: Some(actor),
                    required: Some("required".into()),
                    status: "accepted".into(),
                });
            }
            "NTE" => notes.extend(nte(&seg).map(|n| n.text)),
            _ => {}
        }
    }
    if appt.participant.is_empty() {
        return Err(TransformError::Empty(
            "SIU without a patient or resource to take part".into(),
        ));
    }
    appt.comment = (!notes.is_empty()).then(|| notes.join("\n"));
    b.put(Resource::Appointment(appt), &key);
    Ok(finish(b, parsed.identity(), message))
}

/// `start` (a FHIR dateTime with an offset) plus `minutes`, in the same offset.
fn add_minutes(start: &str, minutes: u32) -> Option<String> {
    let (local, offset) = (start.get(..19)?, start.get(19..)?);
    if offset.is_empty() {
        return None;
    }
    let dt: jiff::civil::DateTime = local.parse().ok()?;
    let end = dt
        .checked_add(jiff::Span::new().minutes(i64::from(minutes)))
        .ok()?;
    Some(format!("{}{offset}", end.strftime("%Y-%m-%dT%H:%M:%S")))
}
