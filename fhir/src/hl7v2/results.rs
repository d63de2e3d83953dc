//! HL7 v2 result messages (ORU^R01, OUL^R22) → a FHIR R4 transaction Bundle,
//! following the HL7 V2-to-FHIR implementation guide's segment maps:
//!
//! | segment | FHIR |
//! | --- | --- |
//! | PID | Patient (PID-3 identifiers, PID-5 names, PID-7 birth, PID-8 gender, PID-11 address, PID-13 phone, PID-29 death) |
//! | PV1 with a visit number (PV1-19) | Encounter, created only when the server has none (a conditional create: the hospital's ADT owns the visit, and a result's PV1 carries less) |
//! | ORC/OBR | ServiceRequest (placer number) and DiagnosticReport (filler number; `result` = its OBX) |
//! | SPM (ORU: after its OBR; OUL: before the OBRs it belongs to), or OBR-7 when an order has no SPM | Specimen of that order only |
//! | OBX in an OUL specimen group (before its OBR) | Observation about the specimen |
//! | OBX | one Observation per OBX, value[x] by OBX-2: NM → Quantity (UCUM when OBX-6 is UCUM), SN → Quantity with comparator, Range or Ratio, CE/CWE/CNE → CodeableConcept, ST/TX/FT → string, DT/TS/DTM → dateTime; OBX-7 referenceRange, OBX-8 interpretation, OBX-11 status, OBX-14 effective, OBX-16 performer, OBX-18 device |
//! | OBX of type ED or RP | an Attachment in the order's DiagnosticReport `presentedForm` ([`super::attachment`]) |
//! | NTE | `note` of the OBX (Observation) or OBR (ServiceRequest) before it; after an ED or RP OBX, the report's `conclusion` |
//!
//! Every OBX is an Observation of its own, however many share a code: its
//! identifier (the key of its deterministic id and of the conditional PUT)
//! is OBX-21 when sent, else `<filler or placer>/<OBX-3 code>[/<OBX-4>]`
//! (`specimen/<SPM-2>/…` for OUL specimen OBX). When several OBX of one
//! order (or specimen) would get the same key — serial readings,
//! repeated measurements, several isolates, or an OBX-21 the sender
//! repeated by mistake — each gets `#<OBX-1>`
//! appended, or `#obx<n>` (its position among the order's OBX) for all of
//! them when their set ids are missing or repeat. A key that occurs in
//! more than one order of the message (an OBX-21 reused across orders, two
//! OBR with one filler number) gets `#order<n>`, its OBR's position, in
//! each of them. A key that occurs once
//! stays as it always was, so a lone result keeps the id it had before,
//! and a resend of the same message gives the same ids (the upsert stays
//! idempotent).
//!
//! A repeating OBX-5 follows the IG's OBX[Observation-Component] map
//! (`component[forEachOBX-5Instance]`): with more than one non-null
//! repetition of NM, SN, CE/CWE/CNE or DT/TS/DTM, the Observation has no
//! value[x] and one `component` per repetition, in order, each with the
//! Observation's code (OBX-3) and that repetition's value (R4 obs-7: a
//! component with the Observation's own code rules out its value[x]).
//! Text (ST, TX, FT, and types the map does not know) repeats as lines of
//! one text, so its repetitions are joined with line breaks into the one
//! valueString, in order.
//!
//! Blank fields create nothing: a blank OBX-5, spaces or the HL7 null `""`
//! give an Observation without value; an SN whose parts are not numbers is
//! kept as a string, never an empty Range or Ratio. ServiceRequest.subject
//! is required in R4, so without a PID an order's ServiceRequest is left out
//! (its DiagnosticReport and Observations, whose subject is optional, still
//! go). OBX-18 devices are known only by identifier: their entry is a
//! `POST` with `If-None-Exist`, so a richer Device on the server is kept.
//! Times without an offset get the site's.

use super::super::TransformError;
use super::common::*;
use crate::r4::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{Message, Segment, Value};
use jiff::tz::TimeZone;

fn obx_status(s: &str) -> &'static str {
    match s.trim() {
        "C" => "corrected",
        "P" | "R" | "S" | "I" => "preliminary",
        "X" | "N" => "cancelled",
        "D" | "W" => "entered-in-error",
        _ => "final",
    }
}

fn report_status(s: &str) -> &'static str {
    match s.trim() {
        "C" => "corrected",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "X" => "cancelled",
        "A" => "partial",
        _ => "final",
    }
}

/// Whether OBX-5 (or one of its parts) holds nothing: blank, spaces, or the
/// HL7 null `""`.
fn is_null(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t == "\"\""
}

/// One value[x], as an Observation or one of its components holds it.
#[derive(Default)]
struct ValueX {
    quantity: Option<Quantity>,
    codeable_concept: Option<CodeableConcept>,
    string: Option<String>,
    range: Option<Range>,
    ratio: Option<Ratio>,
    date_time: Option<String>,
}

impl ValueX {
    fn is_some(&self) -> bool {
        self.quantity.is_some()
            || self.codeable_concept.is_some()
            || self.string.is_some()
            || self.range.is_some()
            || self.ratio.is_some()
            || self.date_time.is_some()
    }
}

/// Sets value[x] from OBX-2/OBX-5/OBX-6. A blank or null OBX-5 sets nothing;
/// a value that does not fit its type is kept as a string rather than lost.
/// Text (ST, TX, FT) keeps its repetitions as lines of one string; any other
/// type with more than one non-null repetition gets one component per
/// repetition, in order, each with the Observation's code (see the module
/// note).
fn set_value(obs: &mut Observation, obx: &Segment<'_>, source: &str, tz: &TimeZone) {
    let ty = get(obx, 2, 1);
    let Some(field) = obx.field(5).filter(|f| !is_null(&f.value())) else {
        return;
    };
    let structured = matches!(
        ty.as_str(),
        "NM" | "SN" | "CE" | "CWE" | "CNE" | "DT" | "TS" | "DTM"
    );
    if !structured {
        let text: Vec<String> = field
            .repetitions()
            .map(|r| r.value().trim_end().to_string())
            .filter(|s| !is_null(s))
            .collect();
        if !text.is_empty() {
            obs.value_string = Some(text.join("\n"));
        }
        return;
    }
    let values: Vec<ValueX> = field
        .repetitions()
        .filter(|r| !is_null(&r.value()))
        .map(|r| value_of(&ty, &r, obx, source, tz))
        .filter(ValueX::is_some)
        .collect();
    match <[ValueX; 1]>::try_from(values) {
        Ok([v]) => {
            obs.value_quantity = v.quantity;
            obs.value_codeable_concept = v.codeable_concept;
            obs.value_string = v.string;
            obs.value_range = v.range;
            obs.value_ratio = v.ratio;
            obs.value_date_time = v.date_time;
        }
        Err(values) => {
            obs.component = values
                .into_iter()
                .map(|v| ObservationComponent {
                    code: obs.code.clone(),
                    value_quantity: v.quantity,
                    value_codeable_concept: v.codeable_concept,
                    value_string: v.string,
                    value_range: v.range,
                    value_ratio: v.ratio,
                    value_date_time: v.date_time,
                })
                .collect()
        }
    }
}

/// The value of one OBX-5 repetition of a non-text type.
fn value_of(ty: &str, rep: &Value<'_>, obx: &Segment<'_>, source: &str, tz: &TimeZone) -> ValueX {
    let mut v = ValueX::default();
    let as_text = || Some(rep.value().trim().to_string()).filter(|s| !is_null(s));
    let unit_field = obx.field(6);
    let unit_code = unit_field.map(|u| comp(&u, 1)).unwrap_or_default();
    let unit_is_ucum = unit_field.map(|u| comp(&u, 3)).as_deref() == Some("UCUM");
    let quantity_of = |v: &str| {
        let mut q = quantity(v, &unit_code)?;
        if unit_is_ucum && !unit_code.is_empty() {
            q.system = Some(UCUM.into());
            q.code = Some(ucum::code(&unit_code).unwrap_or(&unit_code).to_string());
        }
        Some(q)
    };
    match ty {
        "NM" => {
            let n = rep.value().trim().to_string();
            match quantity_of(&n) {
                Some(q) => v.quantity = Some(q),
                None => v.string = as_text(),
            }
        }
        "SN" => {
            let (cmp, n1, sep, n2) = (comp(rep, 1), comp(rep, 2), comp(rep, 3), comp(rep, 4));
            // What does not fit a number is kept as the sender wrote it.
            let sn_text = || {
                if is_null(&n1) && is_null(&n2) {
                    return None;
                }
                Some(format!("{cmp}{n1}{sep}{n2}").trim().to_string())
            };
            match sep.as_str() {
                "-" => {
                    let range = Range {
                        low: quantity_of(&n1),
                        high: quantity_of(&n2),
                    };
                    if range.low.is_some() || range.high.is_some() {
                        v.range = Some(range);
                    } else {
                        v.string = sn_text();
                    }
                }
                ":" | "/" => match (quantity(&n1, ""), quantity(&n2, "")) {
                    // R4 rat-1: both parts or neither.
                    (Some(numerator), Some(denominator)) => {
                        v.ratio = Some(Ratio {
                            numerator: Some(numerator),
                            denominator: Some(denominator),
                        })
                    }
                    _ => v.string = sn_text(),
                },
                // `2^+`: an ordinal ("2+"), not the number 2.
                "+" => v.string = sn_text(),
                _ => {
                    if let Some(mut q) = quantity_of(&n1) {
                        if matches!(cmp.as_str(), "<" | ">" | "<=" | ">=") {
                            q.comparator = Some(cmp);
                        }
                        v.quantity = Some(q);
                    } else {
                        v.string = sn_text();
                    }
                }
            }
        }
        "CE" | "CWE" | "CNE" => v.codeable_concept = cwe(rep, source),
        _ => {
            // DT, TS, DTM
            v.date_time = date_time(&comp(rep, 1), tz);
            if v.date_time.is_none() {
                v.string = as_text();
            }
        }
    }
    v
}

/// An Observation whose id is final only once its group is complete:
/// results of the same code and sub-id are told apart by their set id.
struct Pending {
    obs: Observation,
    key: Identifier,
    /// OBX-1.
    set_id: String,
}

/// Makes the keys of `group` distinct: a key that occurs once stays
/// as it is (the id a lone result always had); keys shared by several OBX
/// get `#<OBX-1>`, or `#obx<n>` (the OBX's 1-based position in the group)
/// for all of them when their set ids are missing or repeat too.
fn disambiguate(group: &mut [Pending]) {
    use std::collections::HashMap;
    // The sender's own OBX-21 is unique by definition; when two OBX of one
    // order repeat it anyway, they are two results and must not overwrite
    // each other, so they are told apart the same way.
    let mut by_key: HashMap<(Option<String>, String), Vec<usize>> = HashMap::new();
    for (i, p) in group.iter().enumerate() {
        by_key
            .entry((
                p.key.system.clone(),
                p.key.value.clone().unwrap_or_default(),
            ))
            .or_default()
            .push(i);
    }
    for ((_, base), members) in by_key {
        if members.len() < 2 {
            continue;
        }
        let mut set_ids: Vec<&str> = members.iter().map(|&i| group[i].set_id.as_str()).collect();
        let usable = !set_ids.contains(&"");
        set_ids.sort_unstable();
        set_ids.dedup();
        let by_set_id = usable && set_ids.len() == members.len();
        for &i in &members {
            let suffix = if by_set_id {
                group[i].set_id.clone()
            } else {
                format!("obx{}", i + 1)
            };
            let p = &mut group[i];
            p.key.value = Some(format!("{base}#{suffix}"));
            p.obs.identifier = vec![p.key.clone()];
        }
    }
}

/// Makes keys distinct across the orders of one message: a key (an OBX-21
/// the sender reused, or two OBR with one filler number) that occurs in
/// more than one order gets `#order<n>`, the 1-based position of its OBR in
/// the message, in every order it occurs in. Keys of one order only stay
/// as they are.
fn disambiguate_across(orders: &mut [Order]) {
    use std::collections::HashMap;
    let mut by_key: HashMap<(Option<String>, String), Vec<usize>> = HashMap::new();
    for (n, o) in orders.iter().enumerate() {
        for p in &o.observations {
            let k = (
                p.key.system.clone(),
                p.key.value.clone().unwrap_or_default(),
            );
            let seen = by_key.entry(k).or_default();
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
    }
    for ((system, base), in_orders) in by_key {
        if in_orders.len() < 2 {
            continue;
        }
        for n in in_orders {
            for p in &mut orders[n].observations {
                if p.key.system == system && p.key.value.as_deref() == Some(base.as_str()) {
                    p.key.value = Some(format!("{base}#order{}", n + 1));
                    p.obs.identifier = vec![p.key.clone()];
                }
            }
        }
    }
}

/// What is being built for the current OBR.
struct Order {
    report: DiagnosticReport,
    report_key: Identifier,
    filler: Option<Identifier>,
    request: Option<(ServiceRequest, Identifier)>,
    observations: Vec<Pending>,
    /// Specimens of this order: from SPM (after the OBR in ORU, before it in
    /// OUL), else none yet (OBR-7 may give one at the end).
    specimens: Vec<Reference>,
}

/// Where an OBX or NTE belongs.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    None,
    /// The OBR of the last order.
    Order,
    /// The last OBX of the last order.
    Result,
    /// An OUL specimen group, before its OBR: OBX describe the specimen.
    Specimen,
    /// An ED or RP OBX of the last order: its NTE conclude the report.
    Report,
}

/// The Observation of one OBX, without `basedOn` and `specimen` (set when
/// its order is complete).
fn observation(
    seg: &Segment<'_>,
    key_prefix: &str,
    subject: Option<&Reference>,
    fallback_time: Option<&String>,
    b: &mut BundleBuilder,
    source: &str,
    tz: &TimeZone,
) -> Option<Pending> {
    let code = seg
        .field(3)
        .and_then(|f| f.repetition(1))
        .and_then(|r| cwe(&r, source))?;
    let code_key = code
        .coding
        .first()
        .and_then(|c| c.code.clone())
        .or_else(|| code.text.clone())
        .unwrap_or_default();
    let given = ei(seg.field(21), source, "observation");
    let key = given.unwrap_or_else(|| {
        let sub = get(seg, 4, 1);
        identifier(
            local_system(source, "observation"),
            format!(
                "{key_prefix}/{code_key}{}",
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                }
            ),
        )
    });
    let unit = seg.field(6).map(|u| comp(&u, 1)).unwrap_or_default();
    let mut obs = Observation {
        identifier: vec![key.clone()],
        status: obx_status(&get(seg, 11, 1)).into(),
        category: vec![laboratory()],
        code,
        subject: subject.cloned(),
        effective_date_time: date_time(&get(seg, 14, 1), tz).or_else(|| fallback_time.cloned()),
        interpretation: seg
            .field(8)
            .map(|f| {
                f.repetitions()
                    .filter_map(|r| interpretation(&comp(&r, 1)))
                    .collect()
            })
            .unwrap_or_default(),
        performer: seg
            .field(16)
            .map(|f| f.repetitions().filter_map(|r| xcn(&r)).collect())
            .unwrap_or_default(),
        reference_range: reference_range(&get(seg, 7, 1), &unit)
            .into_iter()
            .collect(),
        ..Default::default()
    };
    set_value(&mut obs, seg, source, tz);
    // OBX-18 names the device by identifier alone: created when the server
    // does not know it, never overwritten.
    if let Some(dev_key) = seg
        .field(18)
        .and_then(|f| f.repetitions().find_map(|r| ei(Some(r), source, "device")))
    {
        let d = Device {
            identifier: vec![dev_key.clone()],
            ..Default::default()
        };
        obs.device = Some(reference(&b.ensure(Resource::Device(d), &dev_key)));
    }
    Some(Pending {
        obs,
        key,
        set_id: get(seg, 1, 1).trim().to_string(),
    })
}

/// Puts the specimen observations of an OUL group, once the group is
/// complete (their keys are then final).
fn flush_specimen_observations(b: &mut BundleBuilder, group: &mut Vec<Pending>) {
    disambiguate(group);
    for p in group.drain(..) {
        b.put(Resource::Observation(p.obs), &p.key);
    }
}

/// Maps one stored ORU^R01 or OUL^R22 message.
pub(super) fn to_bundle(
    parsed: &Message,
    message: &StoredMessage,
    tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    let source = message.source.as_str();
    let specimen_first = parsed.identity().message_code == "OUL";
    let mut b = BundleBuilder::new();
    let mut subject: Option<Reference> = None;
    let mut encounter: Option<Reference> = None;
    // OUL: the SPM whose OBRs follow.
    let mut group_specimen: Option<(Reference, String)> = None;
    let mut orders: Vec<Order> = Vec::new();
    let mut orc: Option<Segment<'_>> = None;
    let mut context = Context::None;

    // OUL: the OBX of the current specimen group, put when it ends.
    let mut specimen_observations: Vec<Pending> = Vec::new();

    for seg in parsed.segments() {
        if !specimen_observations.is_empty() && !matches!(seg.id(), "OBX" | "NTE") {
            flush_specimen_observations(&mut b, &mut specimen_observations);
        }
        match seg.id() {
            "PID" => {
                subject = None;
                if let Some((p, key)) = patient(&seg, source, tz) {
                    subject = Some(reference(&b.put(Resource::Patient(p), &key)));
                }
                encounter = None;
                group_specimen = None;
                orc = None;
                context = Context::None;
            }
            "PV1" => {
                if let Some(key) = visit_number(&seg, source) {
                    let class = match get(&seg, 2, 1).as_str() {
                        "I" => ("IMP", "inpatient encounter"),
                        "E" => ("EMER", "emergency"),
                        "P" => ("PRENC", "pre-admission"),
                        _ => ("AMB", "ambulatory"),
                    };
                    let e = Encounter {
                        identifier: vec![key.clone()],
                        status: if get(&seg, 45, 1).is_empty() {
                            "in-progress"
                        } else {
                            "finished"
                        }
                        .into(),
                        class: Coding {
                            system: Some(V3_ACT_CODE.into()),
                            code: Some(class.0.into()),
                            display: Some(class.1.into()),
                        },
                        subject: subject.clone(),
                        period: {
                            let p = Period {
                                start: date_time(&get(&seg, 44, 1), tz),
                                end: date_time(&get(&seg, 45, 1), tz),
                            };
                            (p != Period::default()).then_some(p)
                        },
                        ..Default::default()
                    };
                    encounter = Some(reference(&b.ensure(Resource::Encounter(e), &key)));
                }
            }
            "ORC" => orc = Some(seg),
            "SPM" => {
                let Some((s, key)) = spm(&seg, source, subject.clone(), tz) else {
                    continue;
                };
                let id = key.value.clone().unwrap_or_default();
                let r = reference(&b.put(Resource::Specimen(s), &key));
                match orders.last_mut() {
                    // ORU: the SPM of the order it follows.
                    Some(order) if !specimen_first && context != Context::None => {
                        order.specimens.push(r);
                        context = Context::Order;
                    }
                    _ => {
                        group_specimen = Some((r, id));
                        context = Context::Specimen;
                    }
                }
            }
            "OBR" => {
                let placer = ei(seg.field(2), source, "placer")
                    .or_else(|| orc.as_ref().and_then(|o| ei(o.field(2), source, "placer")));
                let filler = ei(seg.field(3), source, "filler")
                    .or_else(|| orc.as_ref().and_then(|o| ei(o.field(3), source, "filler")));
                let Some(report_key) = filler.clone().or_else(|| placer.clone()) else {
                    context = Context::None;
                    continue;
                };
                let code = seg
                    .field(4)
                    .and_then(|f| f.repetition(1))
                    .and_then(|r| cwe(&r, source));
                let status = report_status(&get(&seg, 25, 1));
                // ServiceRequest.subject is required in R4: without a
                // patient the order is not sent, its results are.
                let request = placer.filter(|_| subject.is_some()).map(|key| {
                    let sr = ServiceRequest {
                        identifier: vec![key.clone()],
                        status: if matches!(status, "final" | "corrected") {
                            "completed"
                        } else {
                            "active"
                        }
                        .into(),
                        intent: "order".into(),
                        priority: match get(&seg, 5, 1).as_str() {
                            "S" => Some("stat".into()),
                            "A" => Some("asap".into()),
                            _ => None,
                        },
                        code: code.clone(),
                        subject: subject.clone().unwrap_or_default(),
                        encounter: encounter.clone(),
                        authored_on: orc.as_ref().and_then(|o| date_time(&get(o, 9, 1), tz)),
                        requester: person(&seg, 16),
                        ..Default::default()
                    };
                    (sr, key)
                });
                orders.push(Order {
                    report: DiagnosticReport {
                        identifier: vec![report_key.clone()],
                        status: status.into(),
                        category: vec![concept(Some(V2_0074), "LAB", Some("Laboratory"))],
                        code: code.unwrap_or_else(|| {
                            concept(Some(LOINC), "11502-2", Some("Laboratory report"))
                        }),
                        subject: subject.clone(),
                        effective_date_time: date_time(&get(&seg, 7, 1), tz),
                        issued: instant(&get(&seg, 22, 1), tz),
                        ..Default::default()
                    },
                    report_key,
                    filler,
                    request,
                    observations: Vec::new(),
                    specimens: group_specimen.iter().map(|(r, _)| r.clone()).collect(),
                });
                context = Context::Order;
            }
            "OBX" if context == Context::Specimen => {
                let Some((specimen, id)) = group_specimen.as_ref() else {
                    continue;
                };
                if let Some(mut found) = observation(
                    &seg,
                    &format!("specimen/{id}"),
                    subject.as_ref(),
                    None,
                    &mut b,
                    source,
                    tz,
                ) {
                    found.obs.specimen = Some(specimen.clone());
                    specimen_observations.push(found);
                }
            }
            "OBX" => {
                let Some(order) = orders.last_mut() else {
                    continue;
                };
                if let Some(form) = super::attachment::attachment(&seg, tz) {
                    order.report.presented_form.push(form);
                    context = Context::Report;
                    continue;
                }
                let prefix = order.report_key.value.clone().unwrap_or_default();
                let Some(found) = observation(
                    &seg,
                    &prefix,
                    subject.as_ref(),
                    order.report.effective_date_time.as_ref(),
                    &mut b,
                    source,
                    tz,
                ) else {
                    continue;
                };
                order.observations.push(found);
                context = Context::Result;
            }
            "NTE" => {
                let Some(note) = nte(&seg) else {
                    continue;
                };
                match (context, orders.last_mut()) {
                    (Context::Result, Some(o)) => {
                        if let Some(p) = o.observations.last_mut() {
                            p.obs.note.push(note);
                        }
                    }
                    (Context::Order, Some(o)) => {
                        if let Some((sr, _)) = o.request.as_mut() {
                            sr.note.push(note);
                        }
                    }
                    (Context::Report, Some(o)) => {
                        let text = match o.report.conclusion.take() {
                            Some(before) => format!("{before}\n{}", note.text),
                            None => note.text,
                        };
                        o.report.conclusion = Some(text);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    flush_specimen_observations(&mut b, &mut specimen_observations);
    for order in &mut orders {
        disambiguate(&mut order.observations);
    }
    disambiguate_across(&mut orders);
    let mut results = 0;
    for order in orders {
        let mut report = order.report;
        let mut specimens = order.specimens;
        if specimens.is_empty() {
            // No SPM for this order: the collection time (OBR-7) still
            // names a specimen, keyed by the filler number.
            if let (Some(f), Some(t)) = (&order.filler, &report.effective_date_time) {
                let key = identifier(
                    local_system(source, "specimen"),
                    f.value.clone().unwrap_or_default(),
                );
                let s = Specimen {
                    identifier: vec![key.clone()],
                    subject: report.subject.clone(),
                    collection: Some(SpecimenCollection {
                        collected_date_time: Some(t.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                specimens.push(reference(&b.put(Resource::Specimen(s), &key)));
            }
        }
        let based_on = order.request.map(|(mut sr, key)| {
            sr.specimen = specimens.clone();
            reference(&b.put(Resource::ServiceRequest(sr), &key))
        });
        for Pending { mut obs, key, .. } in order.observations {
            obs.based_on = based_on.clone().into_iter().collect();
            obs.specimen = specimens.first().cloned();
            report
                .result
                .push(reference(&b.put(Resource::Observation(obs), &key)));
            results += 1;
        }
        report.based_on = based_on.into_iter().collect();
        report.specimen = specimens;
        b.put(Resource::DiagnosticReport(report), &order.report_key);
    }
    if results == 0 && b.is_empty() {
        return Err(TransformError::Empty("no PID, OBR or OBX to map".into()));
    }
    Ok(finish(b, parsed.identity(), message))
}
