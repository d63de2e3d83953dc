//! Field access and the data-type maps every HL7 v2 message family shares:
//! CWE/CE → CodeableConcept, EI and CX → Identifier, XCN → a display
//! reference, XTN → ContactPoint, PID → Patient, SPM → Specimen, NTE →
//! Annotation, and the Provenance that closes every Bundle.

use crate::r4::*;
use ecko_message::StoredMessage;
use ecko_protocol::hl7::{Identity, Segment, Value};
use jiff::tz::TimeZone;

/// Text of field `f`, first repetition, component `c` (1-based), trimmed.
pub(crate) fn get(seg: &Segment<'_>, f: usize, c: usize) -> String {
    seg.field(f)
        .and_then(|v| v.component(c))
        .map(|v| first_sub(&v))
        .unwrap_or_default()
}

/// The first subcomponent, trimmed; the HL7 null `""` reads as blank.
pub(crate) fn first_sub(v: &Value<'_>) -> String {
    v.subcomponent(1)
        .map(|s| s.value().trim().to_string())
        .filter(|s| s != "\"\"")
        .unwrap_or_default()
}

pub(super) fn comp(v: &Value<'_>, c: usize) -> String {
    v.component(c).map(|v| first_sub(&v)).unwrap_or_default()
}

/// A coding system named in a v2 message (CWE-3) as a FHIR system URI:
/// the standard one it names ([`crate::coding_systems`]), else the
/// source's local system.
pub(super) fn system(name: &str, source: &str) -> String {
    crate::coding_systems::uri(name).unwrap_or_else(|| local_system(source, "code"))
}

/// A CWE/CE/CNE value: both triplets become codings.
pub(super) fn cwe(v: &Value<'_>, source: &str) -> Option<CodeableConcept> {
    let mut cc = CodeableConcept::default();
    for base in [1, 4] {
        let code = comp(v, base);
        if code.is_empty() {
            continue;
        }
        let display = comp(v, base + 1);
        cc.coding.push(Coding {
            system: Some(system(&comp(v, base + 2), source)),
            code: Some(code),
            display: Some(display).filter(|d| !d.is_empty()),
        });
    }
    let original = comp(v, 9);
    if !original.is_empty() {
        cc.text = Some(original);
    } else if cc.coding.is_empty() {
        let text = comp(v, 2);
        if text.is_empty() {
            return None;
        }
        cc.text = Some(text);
    }
    Some(cc)
}

/// An entity identifier (EI): value and its namespace's system.
pub(super) fn ei(v: Option<Value<'_>>, source: &str, kind: &str) -> Option<Identifier> {
    let v = v?;
    let id = comp(&v, 1);
    if id.is_empty() {
        return None;
    }
    let ns = comp(&v, 2);
    let universal = comp(&v, 3);
    let sys = if !universal.is_empty() && comp(&v, 4) == "ISO" {
        format!("urn:oid:{universal}")
    } else if !ns.is_empty() {
        format!("urn:ecko-edge:assigner:{}:{kind}", urn_part(&ns))
    } else {
        local_system(source, kind)
    };
    Some(identifier(sys, id))
}

/// A CX patient identifier.
pub(super) fn cx(v: &Value<'_>, source: &str) -> Option<Identifier> {
    cx_of(v, source, "patient")
}

/// A CX identifier of `kind` (`patient`, `visit`, ...): the assigning
/// authority (CX-4) names its system.
pub(super) fn cx_of(v: &Value<'_>, source: &str, kind: &str) -> Option<Identifier> {
    let id = comp(v, 1);
    if id.is_empty() {
        return None;
    }
    let authority = v.component(4);
    let ns = authority
        .and_then(|a| a.subcomponent(1))
        .map(|s| s.value().trim().to_string())
        .unwrap_or_default();
    let universal = authority
        .and_then(|a| a.subcomponent(2))
        .map(|s| s.value().trim().to_string())
        .unwrap_or_default();
    let ty = authority
        .and_then(|a| a.subcomponent(3))
        .map(|s| s.value().trim().to_string())
        .unwrap_or_default();
    let sys = if !universal.is_empty() && ty == "ISO" {
        format!("urn:oid:{universal}")
    } else if !ns.is_empty() {
        format!("urn:ecko-edge:assigner:{}:{kind}", urn_part(&ns))
    } else {
        local_system(source, kind)
    };
    let mut ident = identifier(sys, id);
    let type_code = comp(v, 5);
    if !type_code.is_empty() {
        ident.type_ = Some(concept(
            Some("http://terminology.hl7.org/CodeSystem/v2-0203"),
            &type_code,
            None,
        ));
    }
    Some(ident)
}

pub(super) fn patient(
    pid: &Segment<'_>,
    source: &str,
    tz: &TimeZone,
) -> Option<(Patient, Identifier)> {
    let identifiers: Vec<Identifier> = pid
        .field(3)
        .map(|f| f.repetitions().filter_map(|r| cx(&r, source)).collect())
        .unwrap_or_default();
    let key = identifiers.first()?.clone();
    let names = pid
        .field(5)
        .map(|f| f.repetitions().filter_map(|r| human_name(&r)).collect())
        .unwrap_or_default();
    let address = pid
        .field(11)
        .map(|f| f.repetitions().filter_map(|r| xad(&r)).collect())
        .unwrap_or_default();
    let telecom = [(13, Some("home")), (14, Some("work"))]
        .into_iter()
        .flat_map(|(f, default_use)| {
            pid.field(f)
                .map(|f| {
                    f.repetitions()
                        .filter_map(|r| xtn(&r, default_use))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    let birth = get(pid, 7, 1);
    let p = Patient {
        identifier: identifiers,
        name: names,
        telecom,
        gender: gender(&get(pid, 8, 1)),
        birth_date: birth.get(..8).and_then(|d| date_time(d, tz)),
        deceased_date_time: date_time(&get(pid, 29, 1), tz),
        address,
        ..Default::default()
    };
    let mut p = p;
    super::pid::details(pid, source, tz, &mut p);
    Some((p, key))
}

/// An XAD (street^other^city^state^zip^country) as an Address; `None`
/// when blank.
pub(super) fn xad(r: &Value<'_>) -> Option<Address> {
    let a = Address {
        line: [comp(r, 1), comp(r, 2)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        city: some(comp(r, 3)),
        state: some(comp(r, 4)),
        postal_code: some(comp(r, 5)),
        country: some(comp(r, 6)),
        ..Default::default()
    };
    (a != Address::default()).then_some(a)
}

/// An XTN (PID-13 home, PID-14 business) as a ContactPoint: XTN-2 (table
/// 0201) gives `use`, XTN-3 (table 0202) `system`; the value is the email
/// (XTN-4) for internet addresses, else the unformatted number (XTN-12), else
/// one composed of country, area, local number and extension (XTN-5..8),
/// else the old formatted number (XTN-1).
pub(super) fn xtn(v: &Value<'_>, default_use: Option<&str>) -> Option<ContactPoint> {
    let equipment = comp(v, 3);
    let email = comp(v, 4);
    let (system, mobile) = match equipment.as_str() {
        "PH" => ("phone", false),
        "CP" => ("phone", true),
        "FX" => ("fax", false),
        "BP" => ("pager", false),
        "Internet" | "X.400" => ("email", false),
        "MD" | "TDD" | "TTY" => ("other", false),
        _ if !email.is_empty() || comp(v, 2) == "NET" => ("email", false),
        _ => ("phone", false),
    };
    let value = if system == "email" {
        some(email)?
    } else {
        some(comp(v, 12))
            .or_else(|| {
                let mut parts: Vec<String> = Vec::new();
                if let Some(c) = some(comp(v, 5)) {
                    parts.push(format!("+{}", c.trim_start_matches('+')));
                }
                parts.extend(some(comp(v, 6)));
                parts.push(some(comp(v, 7))?);
                if let Some(x) = some(comp(v, 8)) {
                    parts.push(format!("ext. {x}"));
                }
                Some(parts.join(" "))
            })
            .or_else(|| some(comp(v, 1)))?
    };
    let use_ = if mobile {
        Some("mobile")
    } else {
        match comp(v, 2).as_str() {
            "PRN" | "ORN" | "VHN" => Some("home"),
            "WPN" => Some("work"),
            "" => default_use,
            _ => None,
        }
    };
    Some(ContactPoint {
        system: Some(system.into()),
        value: Some(value),
        use_: use_.map(str::to_string),
    })
}

/// An XPN (family^given^second given^suffix^prefix^^type) as a HumanName;
/// `None` without family and given names.
pub(super) fn human_name(r: &Value<'_>) -> Option<HumanName> {
    let family = comp(r, 1);
    let given: Vec<String> = [comp(r, 2), comp(r, 3)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let n = HumanName {
        use_: match comp(r, 7).as_str() {
            "L" => Some("official".into()),
            "D" => Some("usual".into()),
            "M" | "B" => Some("maiden".into()),
            "N" | "A" => Some("nickname".into()),
            _ => None,
        },
        family: some(family),
        given,
        suffix: some(comp(r, 4)).into_iter().collect(),
        prefix: some(comp(r, 5)).into_iter().collect(),
    };
    (n.family.is_some() || !n.given.is_empty()).then_some(n)
}

/// The visit number (PV1-19, a CX) as the Encounter's identifier.
pub(super) fn visit_number(pv1: &Segment<'_>, source: &str) -> Option<Identifier> {
    let mut id = cx_of(&pv1.field(19)?.repetition(1)?, source, "visit")?;
    id.type_ = None;
    Some(id)
}

/// The deterministic id of the Patient keyed by `key` (its `fullUrl` and
/// what other resources' keys name it by).
pub(super) fn patient_id(key: &Identifier) -> uuid::Uuid {
    resource_id(
        "Patient",
        key.system.as_deref().unwrap_or_default(),
        key.value.as_deref().unwrap_or_default(),
    )
}

/// `Some(s)` unless `s` is blank.
pub(super) fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// An XCN (person and id) as a display reference: "Given Family", else the id.
pub(super) fn xcn(v: &Value<'_>) -> Option<Reference> {
    let name = [comp(v, 6), comp(v, 3), comp(v, 2)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let name = if name.is_empty() { comp(v, 1) } else { name };
    (!name.is_empty()).then(|| display_reference(&name))
}

/// The first person named in field `f` (XCN).
pub(super) fn person(seg: &Segment<'_>, f: usize) -> Option<Reference> {
    seg.field(f)?.repetitions().find_map(|r| xcn(&r))
}

/// A PL location (point of care^room^bed^facility^status^type^building^floor)
/// as display text: "GENERAL ICU, room 101, bed A".
pub(super) fn location_text(v: &Value<'_>) -> Option<String> {
    let mut parts = Vec::new();
    let facility = v
        .component(4)
        .and_then(|c| c.subcomponent(1))
        .map(|s| s.value().trim().to_string())
        .unwrap_or_default();
    let unit = comp(v, 1);
    let head = [facility, unit]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !head.is_empty() {
        parts.push(head);
    }
    let room = comp(v, 2);
    if !room.is_empty() {
        parts.push(format!("room {room}"));
    }
    let bed = comp(v, 3);
    if !bed.is_empty() {
        parts.push(format!("bed {bed}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The text of an NTE (NTE-3, repetitions on separate lines), if any.
pub(super) fn nte(seg: &Segment<'_>) -> Option<Annotation> {
    let text: Vec<String> = seg
        .field(3)
        .map(|f| {
            f.repetitions()
                .map(|r| r.value().trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    (!text.is_empty()).then(|| Annotation {
        text: text.join("\n"),
        time: None,
    })
}

/// SPM → Specimen, as the V2-to-FHIR IG's SPM map gives it: SPM-2's placer
/// (EIP-1) and filler (EIP-2) parts and SPM-31 other ids as identifiers
/// (the placer's, else the filler's, is the key), SPM-30 accession id,
/// SPM-3 parents (by their deterministic ids), SPM-4 type, SPM-6 additive
/// and SPM-27 container type as the container, SPM-7 collection method,
/// SPM-8 source site, SPM-12 amount, SPM-14 description as a note, SPM-17
/// collection time (a period when it has an end), SPM-18 received time,
/// SPM-21 reject reason and SPM-24 condition as `condition`. Without
/// either part of SPM-2 there is no specimen to name.
pub(super) fn spm(
    seg: &Segment<'_>,
    source: &str,
    subject: Option<Reference>,
    tz: &TimeZone,
) -> Option<(Specimen, Identifier)> {
    let part = |v: &Value<'_>, c: usize, type_code: &str| -> Option<Identifier> {
        let c = v.component(c)?;
        let sub = |n: usize| {
            c.subcomponent(n)
                .map(|s| s.value().trim().to_string())
                .unwrap_or_default()
        };
        let (id, ns) = (sub(1), sub(2));
        if id.is_empty() {
            return None;
        }
        let sys = if ns.is_empty() {
            local_system(source, "specimen")
        } else {
            format!("urn:ecko-edge:assigner:{}:specimen", urn_part(&ns))
        };
        let mut ident = identifier(sys, id);
        ident.type_ = Some(concept(
            Some("http://terminology.hl7.org/CodeSystem/v2-0203"),
            type_code,
            None,
        ));
        Some(ident)
    };
    let eip = seg.field(2).and_then(|f| f.repetition(1));
    let placer = eip.as_ref().and_then(|v| part(v, 1, "PLAC"));
    let filler = eip.as_ref().and_then(|v| part(v, 2, "FILL"));
    // The key is the id in its namespace (the deterministic id and the
    // conditional update's search), whatever its type.
    let key = Identifier {
        type_: None,
        ..placer.clone().or_else(|| filler.clone())?
    };
    let mut identifiers: Vec<Identifier> = placer.into_iter().chain(filler).collect();
    identifiers.extend(
        seg.field(31)
            .map(|f| {
                f.repetitions()
                    .filter_map(|r| ei(Some(r), source, "specimen"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    identifiers.dedup();
    let parent = seg
        .field(3)
        .map(|f| {
            f.repetitions()
                .filter_map(|r| part(&r, 1, "PLAC").or_else(|| part(&r, 2, "FILL")))
                .map(|k| reference(&entry_url("Specimen", &Identifier { type_: None, ..k })))
                .collect()
        })
        .unwrap_or_default();
    let coded = |f: usize| {
        seg.field(f)
            .and_then(|f| f.repetition(1))
            .and_then(|r| cwe(&r, source))
    };
    let collected = seg.field(17).and_then(|f| f.repetition(1));
    let (start, end) = collected
        .as_ref()
        .map(|v| (date_time(&comp(v, 1), tz), date_time(&comp(v, 2), tz)))
        .unwrap_or((None, None));
    let amount = seg.field(12).and_then(|f| f.repetition(1)).and_then(|v| {
        let unit = v.component(2).map(|u| {
            u.subcomponent(1)
                .map(|s| s.value().trim().to_string())
                .unwrap_or_default()
        });
        quantity(&comp(&v, 1), unit.as_deref().unwrap_or_default())
    });
    let collection = SpecimenCollection {
        collected_date_time: end.is_none().then(|| start.clone()).flatten(),
        collected_period: end.clone().map(|end| Period {
            start: start.clone(),
            end: Some(end),
        }),
        quantity: amount,
        method: coded(7),
        body_site: coded(8),
    };
    let container = SpecimenContainer {
        type_: coded(27),
        additive_codeable_concept: coded(6),
    };
    let condition = [21, 24]
        .into_iter()
        .flat_map(|f| {
            seg.field(f)
                .map(|field| {
                    field
                        .repetitions()
                        .filter_map(|r| cwe(&r, source))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    let s = Specimen {
        identifier: identifiers,
        accession_identifier: seg
            .field(30)
            .and_then(|f| f.repetition(1))
            .and_then(|v| cx_of(&v, source, "accession")),
        type_: coded(4),
        subject,
        parent,
        collection: (collection != SpecimenCollection::default()).then_some(collection),
        container: (container != SpecimenContainer::default())
            .then_some(container)
            .into_iter()
            .collect(),
        condition,
        note: some(get(seg, 14, 1))
            .map(|text| Annotation { text, time: None })
            .into_iter()
            .collect(),
        received_time: date_time(&get(seg, 18, 1), tz),
        ..Default::default()
    };
    Some((s, key))
}

/// Adds the Provenance of the message and closes the Bundle.
pub(super) fn finish(mut b: BundleBuilder, id: &Identity, message: &StoredMessage) -> Bundle {
    let source = message.source.as_str();
    let label = format!(
        "HL7 v2 {}^{} {} from {}",
        id.message_code,
        id.trigger_event,
        id.control_id,
        if id.sending_application.is_empty() {
            source
        } else {
            &id.sending_application
        }
    );
    let key = if id.control_id.is_empty() {
        message
            .dedup_key
            .clone()
            .unwrap_or_else(|| message.id.to_string())
    } else {
        id.control_id.clone()
    };
    add_provenance(&mut b, source, &key, &label, message.received_at);
    b.finish()
}
