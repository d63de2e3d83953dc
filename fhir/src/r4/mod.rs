//! Building blocks shared by the maps to FHIR R4: the resource model,
//! deterministic ids, the transaction Bundle builder, times with offsets,
//! coding systems and units.
//!
//! # Identity and idempotency
//!
//! Every resource a map emits carries a business identifier (from the
//! message, or composed from the message's keys under an `urn:ecko-edge:`
//! system when the message has none). Its `fullUrl` is `urn:uuid:` + a UUID
//! v5 over (type, identifier system, identifier value), and its entry is a
//! conditional `PUT Type?identifier=system|value`. The same message therefore
//! always yields the same Bundle, a redelivery updates instead of
//! duplicating, and Bundles of several messages can be merged by `fullUrl`.
//! A resource the message names by identifier alone (an OBX-18 device) is a
//! `POST` with `If-None-Exist` instead, so it never overwrites what the
//! server knows of it. The Provenance, which has no identifier in R4, is a
//! plain `PUT` by its v5 id.
//!
//! The FHIR sink sends these entries as they are (`conditional_updates`) or,
//! by default, rewrites them to `PUT Type/<v5 id>` (see `sinks::fhir`).

pub mod model;
pub mod ucum;

pub use model::*;
use uuid::Uuid;

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const V3_INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Namespace of every id the gateway derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a8e_4b7d_4e0a_9c35_1d2e_8f60_a7b4);

/// The deterministic id of a resource from its business identifier.
pub fn resource_id(resource_type: &str, system: &str, value: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{resource_type}|{system}|{value}").as_bytes(),
    )
}

/// The `fullUrl` a resource of `resource_type` keyed by `key` gets in a
/// Bundle ([`BundleBuilder::put`] and [`BundleBuilder::ensure`]), so that a
/// resource may refer to one put after it.
pub fn entry_url(resource_type: &str, key: &Identifier) -> String {
    format!(
        "urn:uuid:{}",
        resource_id(
            resource_type,
            key.system.as_deref().unwrap_or_default(),
            key.value.as_deref().unwrap_or_default()
        )
    )
}

/// A deterministic id for anything else a template names (same namespace).
pub fn template_id(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("template|{key}").as_bytes())
}

/// An identifier system private to this gateway, e.g.
/// `urn:ecko-edge:lab-1:specimen`.
pub fn local_system(source: &str, kind: &str) -> String {
    format!("urn:ecko-edge:{}:{kind}", urn_part(source))
}

/// Keeps only characters that are safe in a URN part.
pub fn urn_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Percent-encodes a search parameter value (keeps unreserved characters).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn identifier(system: String, value: impl Into<String>) -> Identifier {
    Identifier {
        system: Some(system),
        value: Some(value.into()),
        ..Default::default()
    }
}

pub fn reference(url: &str) -> Reference {
    Reference {
        reference: Some(url.to_string()),
        display: None,
    }
}

pub fn display_reference(display: &str) -> Reference {
    Reference {
        reference: None,
        display: Some(display.to_string()),
    }
}

pub fn concept(system: Option<&str>, code: &str, display: Option<&str>) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding {
            system: system.map(str::to_string),
            code: Some(code.to_string()),
            display: display.filter(|d| !d.is_empty()).map(str::to_string),
        }],
        text: None,
    }
}

pub fn text_concept(text: &str) -> CodeableConcept {
    CodeableConcept {
        coding: Vec::new(),
        text: Some(text.to_string()),
    }
}

/// Collects the entries of one transaction Bundle.
#[derive(Debug, Default)]
pub struct BundleBuilder {
    entries: Vec<BundleEntry>,
}

impl BundleBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `resource` as a conditional PUT on its business identifier and
    /// returns the reference other entries use. A resource already added
    /// under the same identifier is replaced in place.
    pub fn put(&mut self, resource: Resource, key: &Identifier) -> String {
        let system = key.system.clone().unwrap_or_default();
        let value = key.value.clone().unwrap_or_default();
        let ty = resource.type_name();
        let full_url = entry_url(ty, key);
        let request = BundleRequest {
            method: "PUT".into(),
            url: format!(
                "{ty}?identifier={}|{}",
                query_value(&system),
                query_value(&value)
            ),
            if_none_exist: None,
        };
        self.insert(BundleEntry {
            full_url: full_url.clone(),
            resource,
            request,
        });
        full_url
    }

    /// Adds `resource`, which the message knows only by its identifier, as a
    /// `POST` with `If-None-Exist`: created when the server has no resource
    /// with that identifier, otherwise left as the server has it.
    pub fn ensure(&mut self, resource: Resource, key: &Identifier) -> String {
        let system = key.system.clone().unwrap_or_default();
        let value = key.value.clone().unwrap_or_default();
        let ty = resource.type_name();
        let full_url = entry_url(ty, key);
        if self.entries.iter().any(|e| e.full_url == full_url) {
            // Already in the Bundle, perhaps with more than the identifier.
            return full_url;
        }
        let request = BundleRequest {
            method: "POST".into(),
            url: ty.to_string(),
            if_none_exist: Some(format!(
                "identifier={}|{}",
                query_value(&system),
                query_value(&value)
            )),
        };
        self.insert(BundleEntry {
            full_url: full_url.clone(),
            resource,
            request,
        });
        full_url
    }

    /// Adds `resource` under its own deterministic `id` (a plain PUT).
    pub fn put_by_id(&mut self, resource: Resource, id: Uuid) -> String {
        let full_url = format!("urn:uuid:{id}");
        let request = BundleRequest {
            method: "PUT".into(),
            url: format!("{}/{id}", resource.type_name()),
            if_none_exist: None,
        };
        self.insert(BundleEntry {
            full_url: full_url.clone(),
            resource,
            request,
        });
        full_url
    }

    fn insert(&mut self, entry: BundleEntry) {
        match self
            .entries
            .iter_mut()
            .find(|e| e.full_url == entry.full_url)
        {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }

    pub fn references(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.full_url.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(self) -> Bundle {
        Bundle {
            type_: "transaction".into(),
            entry: self.entries,
        }
    }
}

/// Adds the Provenance of a message: what it produced, when the gateway
/// received it, from which endpoint, and which message it was.
pub fn add_provenance(
    b: &mut BundleBuilder,
    source: &str,
    message_key: &str,
    message_label: &str,
    received_at_ms: i64,
) {
    let targets: Vec<Reference> = b.references().iter().map(|r| reference(r)).collect();
    if targets.is_empty() {
        return;
    }
    let recorded = jiff::Timestamp::from_millisecond(received_at_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let provenance = Provenance {
        id: None,
        target: targets,
        recorded,
        activity: None,
        agent: vec![ProvenanceAgent {
            type_: Some(concept(
                Some("http://terminology.hl7.org/CodeSystem/provenance-participant-type"),
                "assembler",
                Some("Assembler"),
            )),
            who: display_reference(&format!("Ecko Edge gateway, endpoint {source}")),
        }],
        entity: vec![ProvenanceEntity {
            role: "source".into(),
            what: display_reference(message_label),
        }],
    };
    let id = resource_id("Provenance", &local_system(source, "message"), message_key);
    let mut provenance = provenance;
    provenance.id = Some(id.to_string());
    b.put_by_id(Resource::Provenance(provenance), id);
}

/// An HL7 v2 or ASTM timestamp (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]`) as a
/// FHIR dateTime. Times without an offset get the site's; a date alone stays
/// a date. `None` for blank or unreadable values.
pub fn date_time(value: &str, tz: &jiff::tz::TimeZone) -> Option<String> {
    let value = value.trim();
    let (body, offset) = match value.find(['+', '-']) {
        Some(i) if i >= 4 => (&value[..i], Some(&value[i..])),
        _ => (value, None),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<i32>().ok());
    let year = num(0..4)?;
    match digits.len() {
        4 => return Some(format!("{year:04}")),
        6 => return Some(format!("{year:04}-{:02}", num(4..6)?)),
        8 => {
            let d = jiff::civil::Date::new(year as i16, num(4..6)? as i8, num(6..8)? as i8).ok()?;
            return Some(d.to_string());
        }
        10 | 12 | 14 => {}
        _ => return None,
    }
    let dt = jiff::civil::DateTime::new(
        year as i16,
        num(4..6)? as i8,
        num(6..8)? as i8,
        num(8..10)? as i8,
        num(10..12).unwrap_or(0) as i8,
        num(12..14).unwrap_or(0) as i8,
        0,
    )
    .ok()?;
    let frac = fraction
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        .map(|f| format!(".{}", &f[..f.len().min(3)]))
        .unwrap_or_default();
    let offset = match offset {
        Some(o) if o.len() == 5 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let h: i32 = o.get(1..3)?.parse().ok()?;
            let m: i32 = o.get(3..5)?.parse().ok()?;
            jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()?
        }
        Some(_) => return None,
        None => dt.to_zoned(tz.clone()).ok()?.offset(),
    };
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.abs();
    Some(format!(
        "{}{frac}{sign}{:02}:{:02}",
        dt.strftime("%Y-%m-%dT%H:%M:%S"),
        abs / 3600,
        (abs % 3600) / 60
    ))
}

/// A FHIR dateTime with a time of day (as [`date_time`] writes it) `minutes`
/// later, at the same offset; `None` for a date alone.
pub fn plus_minutes(date_time: &str, minutes: u32) -> Option<String> {
    let t: jiff::Timestamp = date_time.parse().ok()?;
    let offset = date_time.get(date_time.len().checked_sub(6)?..)?;
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h: i32 = offset.get(1..3)?.parse().ok()?;
    let m: i32 = offset.get(4..6)?.parse().ok()?;
    let offset = jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()?;
    let later = t
        .checked_add(jiff::SignedDuration::from_mins(i64::from(minutes)))
        .ok()?;
    Some(
        later
            .to_zoned(jiff::tz::TimeZone::fixed(offset))
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    )
}

/// An instant (FHIR `instant` needs seconds and an offset): only full times.
pub fn instant(value: &str, tz: &jiff::tz::TimeZone) -> Option<String> {
    date_time(value, tz).filter(|s| s.len() >= 20)
}

/// A Quantity for `value` in `unit`, with the UCUM system when the unit is
/// UCUM; `None` when `value` is not a number.
pub fn quantity(value: &str, unit: &str) -> Option<Quantity> {
    let number = number(value)?;
    let unit = unit.trim();
    let mut q = Quantity {
        value: Some(number),
        ..Default::default()
    };
    if !unit.is_empty() {
        q.unit = Some(unit.to_string());
        if let Some(code) = ucum::code(unit) {
            q.system = Some(UCUM.into());
            q.code = Some(code.to_string());
        }
    }
    Some(q)
}

/// A decimal number, or `None` for anything else.
pub fn number(value: &str) -> Option<serde_json::Number> {
    let v = value.trim();
    let v = v.strip_prefix('+').unwrap_or(v);
    let v = if v.starts_with('.') {
        format!("0{v}")
    } else if let Some(rest) = v.strip_prefix("-.") {
        format!("-0.{rest}")
    } else {
        v.to_string()
    };
    let ok = !v.is_empty()
        && v.trim_start_matches('-').split_once('.').map_or(
            v.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit()),
            |(a, b)| {
                !a.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && !b.is_empty()
                    && b.bytes().all(|c| c.is_ascii_digit())
            },
        );
    if !ok {
        return None;
    }
    serde_json::from_str(&v).ok()
}

/// A reference range written as `low-high`, `low to high`, `<x`, `>x`.
pub fn reference_range(text: &str, unit: &str) -> Option<ReferenceRange> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let parts = t
        .split_once(" to ")
        .or_else(|| t.split_once(" - "))
        .or_else(|| {
            // `3.5-5.1` but not a leading minus sign.
            t.get(1..)?.find('-').map(|i| (&t[..i + 1], &t[i + 2..]))
        });
    if let Some((lo, hi)) = parts {
        if let (Some(low), Some(high)) = (quantity(lo, unit), quantity(hi, unit)) {
            return Some(ReferenceRange {
                low: Some(low),
                high: Some(high),
                text: None,
            });
        }
    }
    if let Some(hi) = t.strip_prefix('<').map(|s| s.trim_start_matches('=')) {
        if let Some(high) = quantity(hi, unit) {
            return Some(ReferenceRange {
                high: Some(high),
                ..Default::default()
            });
        }
    }
    if let Some(lo) = t.strip_prefix('>').map(|s| s.trim_start_matches('=')) {
        if let Some(low) = quantity(lo, unit) {
            return Some(ReferenceRange {
                low: Some(low),
                ..Default::default()
            });
        }
    }
    Some(ReferenceRange {
        text: Some(t.to_string()),
        ..Default::default()
    })
}

/// Abnormal flags (HL7 table 0078, ASTM) → v3 ObservationInterpretation.
pub fn interpretation(flag: &str) -> Option<CodeableConcept> {
    let (code, display) = match flag.trim() {
        "N" => ("N", "Normal"),
        "H" => ("H", "High"),
        "L" => ("L", "Low"),
        "HH" | ">" => ("HH", "Critical high"),
        "LL" | "<" => ("LL", "Critical low"),
        "A" => ("A", "Abnormal"),
        "AA" => ("AA", "Critical abnormal"),
        "U" => ("U", "Significant change up"),
        "D" => ("D", "Significant change down"),
        "R" => ("R", "Resistant"),
        "S" => ("S", "Susceptible"),
        "I" => ("I", "Intermediate"),
        "POS" => ("POS", "Positive"),
        "NEG" => ("NEG", "Negative"),
        _ => return None,
    };
    Some(concept(Some(V3_INTERPRETATION), code, Some(display)))
}

/// Administrative sex (HL7 table 0001, ASTM) → FHIR gender.
pub fn gender(sex: &str) -> Option<String> {
    match sex.trim() {
        "M" | "m" => Some("male".into()),
        "F" | "f" => Some("female".into()),
        "O" | "A" | "N" => Some("other".into()),
        "U" => Some("unknown".into()),
        _ => None,
    }
}

/// The laboratory category every lab Observation and report carries.
pub fn laboratory() -> CodeableConcept {
    concept(Some(OBS_CATEGORY), "laboratory", Some("Laboratory"))
}

#[cfg(test)]
mod tests;
