//! Shaping transaction Bundles for one FHIR destination, once, before
//! anything is sent: the destination's code map, conditional entries turned
//! into updates by id, and the Bundles of several queued messages merged
//! into one transaction. The sink that posts the result only authenticates,
//! sends and classifies the answer.
//!
//! A merged Bundle keeps order within its lane: entries with the same
//! `fullUrl` (the same resource, since ids are derived from business
//! identifiers) collapse into one, the later message's content winning.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What one FHIR destination asks of every Bundle it is sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FhirDestination {
    pub code_map: CodeMap,
    /// Send conditional entries as the transforms wrote them
    /// (`PUT Type?identifier=…`) instead of updates by id.
    pub conditional_updates: bool,
}

/// A LOINC code (and its display) a local code maps to; with a `unit`,
/// only for results in that unit (LIVD gives one vendor code a LOINC per
/// unit: mmol/L and mg/dL are different LOINC codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoincCoding {
    pub code: String,
    pub display: Option<String>,
    pub unit: Option<String>,
}

impl LoincCoding {
    /// The one of `candidates` that holds for a result in `unit`: the one
    /// for exactly that unit (compared without case: analyzers write
    /// `mmol/l`), else the one for any unit. A unit-bound LOINC never
    /// applies to a result in another unit or without one: a wrong LOINC
    /// is worse than none.
    /// `units` are the result's unit as sent and its UCUM code.
    pub fn pick<'a>(candidates: &'a [LoincCoding], units: &[&str]) -> Option<&'a LoincCoding> {
        let same = |c: &LoincCoding| {
            c.unit.as_deref().is_some_and(|cu| {
                units
                    .iter()
                    .any(|u| !u.trim().is_empty() && cu.trim().eq_ignore_ascii_case(u.trim()))
            })
        };
        candidates
            .iter()
            .find(|c| same(c))
            .or_else(|| candidates.iter().find(|c| c.unit.is_none()))
    }
}

impl FhirDestination {
    /// `bundle`, from a message of `source`, as this destination takes it.
    pub fn shape(&self, bundle: &mut Value, source: &str) {
        self.code_map.apply(bundle, source);
        if !self.conditional_updates {
            to_id_updates(bundle);
        }
    }
}

/// How many entries a Bundle has.
pub fn entry_count(v: &Value) -> usize {
    v.get("entry").and_then(Value::as_array).map_or(0, Vec::len)
}

/// Turns conditional entries (`PUT Type?identifier=…`, `POST` with
/// `If-None-Exist`) whose `fullUrl` is `urn:uuid:<id>` into `PUT Type/<id>`
/// with that id, and points every reference to such an entry at `Type/<id>`.
///
/// The id is the UUID v5 of the same business identifier the condition
/// searched for, so the update lands on the same resource every time. An
/// `If-None-Exist` entry carries nothing but that identifier: rewriting it
/// can only replace the bare resource an earlier message put there.
pub fn to_id_updates(bundle: &mut Value) {
    let mut renamed: HashMap<String, String> = HashMap::new();
    for e in bundle
        .get_mut("entry")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(id) = e
            .get("fullUrl")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix("urn:uuid:"))
            .map(str::to_string)
        else {
            continue;
        };
        let Some(ty) = e
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let method = e.pointer("/request/method").and_then(Value::as_str);
        let conditional = match method {
            Some("PUT") => e
                .pointer("/request/url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.contains('?')),
            Some("POST") => e.pointer("/request/ifNoneExist").is_some(),
            _ => false,
        };
        if conditional {
            e["request"] = serde_json::json!({"method": "PUT", "url": format!("{ty}/{id}")});
            e["resource"]["id"] = Value::String(id.clone());
        }
        if e.pointer("/request/url").and_then(Value::as_str) == Some(&format!("{ty}/{id}")) {
            renamed.insert(format!("urn:uuid:{id}"), format!("{ty}/{id}"));
        }
    }
    fn walk(v: &mut Value, renamed: &HashMap<String, String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get_mut("reference") {
                    if let Some(new) = renamed.get(r.as_str()) {
                        *r = new.clone();
                    }
                }
                for (_, child) in o.iter_mut() {
                    walk(child, renamed);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| walk(c, renamed)),
            _ => {}
        }
    }
    if let Some(entries) = bundle.get_mut("entry") {
        walk(entries, &renamed);
    }
}

pub fn is_transaction(v: &Value) -> bool {
    v.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && v.get("type").and_then(Value::as_str) == Some("transaction")
        && v.get("entry").is_some_and(Value::is_array)
}

/// One transaction Bundle with the entries of all `bundles`, in order; a
/// `fullUrl` seen before keeps its place and takes the later content.
pub fn merge<B: std::borrow::Borrow<Value>>(bundles: &[B]) -> Value {
    if let [only] = bundles {
        return only.borrow().clone();
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for b in bundles {
        for e in b
            .borrow()
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match e.get("fullUrl").and_then(Value::as_str) {
                Some(url) => match at.get(url) {
                    Some(&i) => entries[i] = e.clone(),
                    None => {
                        at.insert(url.to_string(), entries.len());
                        entries.push(e.clone());
                    }
                },
                None => entries.push(e.clone()),
            }
        }
    }
    serde_json::json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// An endpoint's map from local codes to LOINC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodeMap {
    /// For local codes from any source.
    pub all: BTreeMap<String, Vec<LoincCoding>>,
    /// Per source endpoint; wins over `all` (a code it names is looked up
    /// there only).
    pub by_source: BTreeMap<String, BTreeMap<String, Vec<LoincCoding>>>,
}

impl CodeMap {
    /// Adds a LOINC coding in front of each coding of `bundle` that is in
    /// the local-code system of `source` (the transforms' system for codes
    /// no standard system claims) and whose code the map knows, unless the
    /// concept has LOINC already. Codings in any other system are left as
    /// they are: the same letters can mean something else in SNOMED or an
    /// HL7 table. The unit a mapping may depend on is the `valueQuantity`
    /// of the object holding the concept (an Observation, a component).
    pub fn apply(&self, bundle: &mut Value, source: &str) {
        let specific = self.by_source.get(source);
        if self.all.is_empty() && specific.is_none_or(BTreeMap::is_empty) {
            return;
        }
        let local = crate::r4::local_system(source, "code");
        let lookup = |code: &str, units: &[&str]| {
            let candidates = specific
                .and_then(|m| m.get(code))
                .or_else(|| self.all.get(code))?;
            LoincCoding::pick(candidates, units)
        };
        walk_concepts(bundle, &[], &mut |codings, units| {
            let loinc = crate::r4::LOINC;
            if codings
                .iter()
                .any(|c| c.get("system").and_then(Value::as_str) == Some(loinc))
            {
                return;
            }
            let found = codings.iter().find_map(|c| {
                if c.get("system").and_then(Value::as_str) != Some(local.as_str()) {
                    return None;
                }
                lookup(c.get("code").and_then(Value::as_str)?, units)
            });
            if let Some(entry) = found {
                let mut coding = serde_json::json!({ "system": loinc, "code": entry.code });
                if let Some(d) = &entry.display {
                    coding["display"] = Value::String(d.clone());
                }
                codings.insert(0, coding);
            }
        });
    }
}

/// Calls `f` with every `coding` array in `v` and the unit (as sent, and
/// its UCUM code) of the nearest enclosing object with a `valueQuantity`.
fn walk_concepts(v: &mut Value, units: &[&str], f: &mut impl FnMut(&mut Vec<Value>, &[&str])) {
    match v {
        Value::Object(o) => {
            let own: Vec<String> = o
                .get("valueQuantity")
                .map(|q| {
                    ["unit", "code"]
                        .iter()
                        .filter_map(|k| q.get(*k).and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let own: Vec<&str> = own.iter().map(String::as_str).collect();
            let units = if own.is_empty() { units } else { &own[..] };
            if let Some(Value::Array(codings)) = o.get_mut("coding") {
                f(codings, units);
            }
            for (_, child) in o.iter_mut() {
                walk_concepts(child, units, f);
            }
        }
        Value::Array(a) => {
            for child in a {
                walk_concepts(child, units, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
