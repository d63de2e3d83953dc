//! Orders (ORM^O01, OML^O21, RDE^O11) → ServiceRequest, Specimen and
//! MedicationRequest.
//!
//! Each ORC starts an order; the OBR under it makes a ServiceRequest, an RXO
//! or RXE a MedicationRequest ([`super::pharmacy`]), each SPM a Specimen the
//! ServiceRequest names (and which names it back in `request`).
//!
//! | field | ServiceRequest |
//! | --- | --- |
//! | ORC-2/OBR-2 placer, ORC-3/OBR-3 filler | identifier (the placer number is the key, as in results, so a result updates its order) |
//! | ORC-1 order control, ORC-5 order status | status: NW, XO, SC active; CA, OC, DC, CR revoked; HD on-hold; ORC-5 (table 0038) wins when valued: CM completed, IP/SC/A active, CA/DC revoked, HD on-hold, ER entered-in-error |
//! | ORC-4 | requisition |
//! | OBR-4 | code |
//! | TQ1-9, ORC-7.6, OBR-5 | priority (S stat, A asap, R routine, T timing critical urgent) |
//! | TQ1-7, ORC-7.4, OBR-27.4 | occurrenceDateTime; with TQ1-8, occurrencePeriod |
//! | TQ1-2 | quantityQuantity |
//! | TQ1-11 text instruction, TQ1-10 condition | patientInstruction |
//! | TQ2 (related placer, filler or group numbers, sequence condition, interval, relationship) | a note in words: R4 has no element for one order waiting on another |
//! | PV1 with a visit number | Encounter, created only when the server has none (the ADT owns the visit) |
//! | ORC-9 | authoredOn |
//! | ORC-12, else OBR-16 | requester |
//! | OBR-31 | reasonCode |
//! | NTE | note |
//!
//! An RXO/RXE with a blank medication (RXO-1/RXE-2) makes no
//! MedicationRequest (medication[x] is required in R4); a message left with
//! no order at all is refused with what was missing, so it goes dead visibly.

use super::super::TransformError;
use super::common::*;
use super::pharmacy;
use crate::r4::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{Message, Segment};
use jiff::tz::TimeZone;

/// The segments of one order (ORC and what follows it).
#[derive(Default)]
pub(super) struct OrderGroup<'a> {
    pub orc: Option<Segment<'a>>,
    pub obr: Option<Segment<'a>>,
    pub rx: Option<Segment<'a>>,
    pub rxr: Option<Segment<'a>>,
    pub tq1: Option<Segment<'a>>,
    pub tq2: Vec<Segment<'a>>,
    pub specimens: Vec<(Specimen, Identifier)>,
    pub notes: Vec<Annotation>,
}

impl<'a> OrderGroup<'a> {
    /// A field of the ORC, else of the order detail segment at `detail`.
    fn either(
        &self,
        orc_field: usize,
        detail: Option<(&Segment<'a>, usize)>,
        kind: &str,
        source: &str,
    ) -> Option<Identifier> {
        self.orc
            .as_ref()
            .and_then(|o| ei(o.field(orc_field), source, kind))
            .or_else(|| detail.and_then(|(s, f)| ei(s.field(f), source, kind)))
    }

    pub fn placer(&self, source: &str) -> Option<Identifier> {
        self.either(2, self.obr.as_ref().map(|o| (o, 2)), "placer", source)
    }

    pub fn filler(&self, source: &str) -> Option<Identifier> {
        self.either(3, self.obr.as_ref().map(|o| (o, 3)), "filler", source)
    }

    /// The order's status in ServiceRequest terms (see the module table).
    pub fn status(&self) -> &'static str {
        let Some(orc) = self.orc.as_ref() else {
            return "active";
        };
        match get(orc, 5, 1).as_str() {
            "CM" => return "completed",
            "IP" | "SC" | "A" => return "active",
            "CA" | "DC" => return "revoked",
            "HD" => return "on-hold",
            "ER" => return "entered-in-error",
            _ => {}
        }
        match get(orc, 1, 1).as_str() {
            "CA" | "OC" | "DC" | "CR" | "OD" | "DR" => "revoked",
            "HD" | "OH" => "on-hold",
            _ => "active",
        }
    }

    /// The order control code (ORC-1), for MedicationRequest's finer statuses.
    pub fn control(&self) -> String {
        self.orc.as_ref().map(|o| get(o, 1, 1)).unwrap_or_default()
    }

    pub fn priority(&self) -> Option<String> {
        let code = self
            .tq1
            .as_ref()
            .map(|t| get(t, 9, 1))
            .filter(|s| !s.is_empty())
            .or_else(|| {
                self.orc
                    .as_ref()
                    .map(|o| get(o, 7, 6))
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| self.obr.as_ref().map(|o| get(o, 5, 1)))
            .unwrap_or_default();
        match code.as_str() {
            "S" => Some("stat".into()),
            "A" => Some("asap".into()),
            "R" => Some("routine".into()),
            // Timing critical: the order must be done at its time.
            "T" => Some("urgent".into()),
            _ => None,
        }
    }

    /// The requested end: TQ1-8.
    pub fn end(&self, tz: &TimeZone) -> Option<String> {
        self.tq1.as_ref().and_then(|t| date_time(&get(t, 8, 1), tz))
    }

    /// TQ1-2, the quantity of the service (CQ: number^units).
    pub fn quantity(&self) -> Option<Quantity> {
        let t = self.tq1.as_ref()?;
        quantity(&get(t, 2, 1), &get(t, 2, 2))
    }

    /// TQ1-11, the text instruction, and TQ1-10, its condition.
    pub fn instruction(&self) -> Option<String> {
        let t = self.tq1.as_ref()?;
        let parts: Vec<String> = [get(t, 11, 1), get(t, 10, 1)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Each TQ2 in words, as a note: R4's ServiceRequest cannot say that
    /// one order waits for another.
    pub fn relations(&self) -> Vec<Annotation> {
        self.tq2
            .iter()
            .filter_map(|t| {
                let related: Vec<String> = [(3, "placer"), (4, "filler"), (5, "placer group")]
                    .into_iter()
                    .flat_map(|(f, kind)| {
                        t.field(f)
                            .map(|field| {
                                field
                                    .repetitions()
                                    .map(|r| comp(&r, 1))
                                    .filter(|id| !id.is_empty())
                                    .map(|id| format!("{kind} {id}"))
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                if related.is_empty() {
                    return None;
                }
                let condition = match get(t, 6, 1).as_str() {
                    "ES" => Some("starts when it ends"),
                    "EE" => Some("ends when it ends"),
                    "SS" => Some("starts when it starts"),
                    "SE" => Some("ends when it starts"),
                    _ => None,
                };
                let interval = some(get(t, 8, 1)).map(|n| {
                    let unit = get(t, 8, 2);
                    if unit.is_empty() {
                        n
                    } else {
                        format!("{n} {unit}")
                    }
                });
                let relationship = match get(t, 10, 1).as_str() {
                    "C" => Some("compound"),
                    "E" => Some("exclusive"),
                    "N" => Some("nurse prerogative"),
                    "S" => Some("simultaneous"),
                    "T" => Some("tapering"),
                    _ => None,
                };
                let mut text = format!("Related order ({})", related.join(", "));
                if let Some(c) = condition {
                    text.push_str(&format!(": this order {c}"));
                    if let Some(i) = &interval {
                        text.push_str(&format!(", {i} after"));
                    }
                }
                if let Some(r) = relationship {
                    text.push_str(&format!("; {r}"));
                }
                Some(Annotation { text, time: None })
            })
            .collect()
    }

    /// The requested start: TQ1-7, else ORC-7.4, else OBR-27.4.
    pub fn start(&self, tz: &TimeZone) -> Option<String> {
        self.tq1
            .as_ref()
            .and_then(|t| date_time(&get(t, 7, 1), tz))
            .or_else(|| self.orc.as_ref().and_then(|o| date_time(&get(o, 7, 4), tz)))
            .or_else(|| {
                self.obr
                    .as_ref()
                    .and_then(|o| date_time(&get(o, 27, 4), tz))
            })
    }

    pub fn authored(&self, tz: &TimeZone) -> Option<String> {
        self.orc.as_ref().and_then(|o| date_time(&get(o, 9, 1), tz))
    }

    pub fn requester(&self) -> Option<Reference> {
        self.orc
            .as_ref()
            .and_then(|o| person(o, 12))
            .or_else(|| self.obr.as_ref().and_then(|o| person(o, 16)))
    }
}

pub(super) fn to_bundle(
    parsed: &Message,
    message: &StoredMessage,
    tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    let source = message.source.as_str();
    let mut b = BundleBuilder::new();
    let mut subject: Option<Reference> = None;
    let mut encounter: Option<Reference> = None;
    let mut groups: Vec<OrderGroup<'_>> = Vec::new();
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
                    // The ADT owns the visit: an order only creates it.
                    encounter = Some(reference(&b.ensure(Resource::Encounter(e), &key)));
                }
            }
            "ORC" => groups.push(OrderGroup {
                orc: Some(seg),
                ..Default::default()
            }),
            "OBR" | "RXO" | "RXE" | "RXR" | "TQ1" | "TQ2" | "SPM" | "NTE" => {
                if groups.is_empty()
                    || (seg.id() == "OBR" && groups.last().is_some_and(|g| g.obr.is_some()))
                {
                    groups.push(OrderGroup::default());
                }
                let Some(g) = groups.last_mut() else {
                    continue;
                };
                match seg.id() {
                    "OBR" => g.obr = Some(seg),
                    "RXO" | "RXE" => g.rx = Some(seg),
                    "RXR" => g.rxr = g.rxr.or(Some(seg)),
                    "TQ1" => g.tq1 = g.tq1.or(Some(seg)),
                    "TQ2" => g.tq2.push(seg),
                    "SPM" => g.specimens.extend(spm(&seg, source, subject.clone(), tz)),
                    _ => g.notes.extend(nte(&seg)),
                }
            }
            _ => {}
        }
    }
    let Some(subject) = subject else {
        return Err(TransformError::Empty(
            "an order without a patient identifier (PID-3)".into(),
        ));
    };
    let mut orders = 0;
    let mut skipped: Vec<String> = Vec::new();
    for g in &groups {
        let placer = g.placer(source);
        let filler = g.filler(source);
        let Some(key) = placer.clone().or_else(|| filler.clone()) else {
            continue;
        };
        let identifiers: Vec<Identifier> = [
            (placer, "PLAC", "Placer Identifier"),
            (filler, "FILL", "Filler Identifier"),
        ]
        .into_iter()
        .filter_map(|(id, code, display)| {
            let mut id = id?;
            id.type_ = Some(concept(
                Some("http://terminology.hl7.org/CodeSystem/v2-0203"),
                code,
                Some(display),
            ));
            Some(id)
        })
        .collect();
        if let Some(rx) = g.rx.as_ref() {
            let mr = pharmacy::medication_request(
                g,
                rx,
                identifiers.clone(),
                subject.clone(),
                encounter.clone(),
                source,
                tz,
            );
            let mut rx_key = key.clone();
            if g.obr.is_some() {
                // Both in one group: the ServiceRequest keeps the plain key.
                rx_key.value = rx_key.value.map(|v| format!("{v}/rx"));
            }
            // medication[x] is required in R4: a blank RXO-1/RXE-2 is not
            // an order the hub could act on.
            if mr.medication_codeable_concept.is_some() {
                b.put(Resource::MedicationRequest(mr), &rx_key);
                orders += 1;
            } else {
                skipped.push(format!(
                    "order {}: no medication (RXO-1/RXE-2)",
                    key.value.as_deref().unwrap_or_default()
                ));
            }
        }
        let Some(obr) = g.obr.as_ref() else {
            continue;
        };
        let sr_url = format!(
            "urn:uuid:{}",
            resource_id(
                "ServiceRequest",
                key.system.as_deref().unwrap_or_default(),
                key.value.as_deref().unwrap_or_default()
            )
        );
        let mut specimens = Vec::new();
        for (mut s, skey) in g.specimens.clone() {
            s.request = vec![reference(&sr_url)];
            specimens.push(reference(&b.put(Resource::Specimen(s), &skey)));
        }
        let sr = ServiceRequest {
            identifier: identifiers,
            status: g.status().into(),
            intent: "order".into(),
            priority: g.priority(),
            code: obr
                .field(4)
                .and_then(|f| f.repetition(1))
                .and_then(|r| cwe(&r, source)),
            subject: subject.clone(),
            encounter: encounter.clone(),
            authored_on: g.authored(tz),
            requester: g.requester(),
            specimen: specimens,
            note: g.notes.iter().cloned().chain(g.relations()).collect(),
            requisition: g
                .orc
                .as_ref()
                .and_then(|o| ei(o.field(4), source, "requisition")),
            quantity_quantity: g.quantity(),
            occurrence_date_time: g.end(tz).is_none().then(|| g.start(tz)).flatten(),
            occurrence_period: g.end(tz).map(|end| Period {
                start: g.start(tz),
                end: Some(end),
            }),
            patient_instruction: g.instruction(),
            reason_code: obr
                .field(31)
                .map(|f| f.repetitions().filter_map(|r| cwe(&r, source)).collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        b.put(Resource::ServiceRequest(sr), &key);
        orders += 1;
    }
    if orders == 0 {
        skipped.insert(0, "no order to map".into());
        return Err(TransformError::Empty(skipped.join("; ")));
    }
    Ok(finish(b, parsed.identity(), message))
}
