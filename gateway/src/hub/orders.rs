//! Orders the hub sends on `orders`: a FHIR R4 Bundle (ServiceRequest,
//! Specimen, Patient) in the uplink's wrapper, read into the journal's
//! [`HubOrder`]. `docs/hub-protocol.md` has the CDDL and the mapping.
//!
//! # One bundle, one order
//!
//! Every ServiceRequest of the bundle is a test of the same order: they
//! share the order's reference (their `requisition`, or else their first
//! `identifier`, or else their `id`) and its status. `active` places the
//! order; `revoked` or `entered-in-error` cancels the order of that
//! reference. The specimen id is the Specimen's `accessionIdentifier` (or
//! first `identifier`): the id on the tube the analyzer reads. Anything
//! else is refused with the reason, never guessed at.

use super::commands::ID_MAX;
use super::payload;
use crate::config::PayloadFormat;
use crate::journal::orders::problem;
use crate::journal::{HubOrder, NewOrder};
use serde_json::{Map, Value};

/// An order message the gateway does not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The message's `id`, when it could be read.
    pub message_id: Option<String>,
    pub analyzer: Option<String>,
    pub reason: String,
}

/// An order message read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMessage {
    pub id: String,
    pub change: HubOrder,
}

/// Reads the order message `bytes` (in `format`).
pub fn read(format: PayloadFormat, bytes: &[u8]) -> Result<OrderMessage, Refused> {
    let value = payload::decode(format, bytes).map_err(|e| Refused {
        message_id: None,
        analyzer: None,
        reason: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(Refused {
            message_id: None,
            analyzer: None,
            reason: "an order message is a map".into(),
        });
    };
    let id = text(&map, "id").filter(|id| id.len() <= ID_MAX);
    let analyzer = text(&map, "analyzer");
    let refuse = |reason: String| Refused {
        message_id: id.clone(),
        analyzer: analyzer.clone(),
        reason,
    };
    match map.get("v").and_then(Value::as_u64) {
        Some(payload::VERSION) => {}
        other => {
            return Err(refuse(format!(
                "`v` must be {}, not {other:?}",
                payload::VERSION
            )))
        }
    }
    let Some(message_id) = id.clone() else {
        return Err(refuse(format!(
            "`id` must be text of at most {ID_MAX} bytes"
        )));
    };
    let Some(analyzer_name) = analyzer.clone() else {
        return Err(refuse("`analyzer` must name an ASTM endpoint".into()));
    };
    let sender = match map.get("sender") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(refuse("`sender` must be text".into())),
    };
    let bundle = map
        .get("bundle")
        .ok_or_else(|| refuse("`bundle` is missing".into()))?;
    let change = from_bundle(bundle, analyzer_name, sender).map_err(refuse)?;
    Ok(OrderMessage {
        id: message_id,
        change,
    })
}

/// An order message for a Modality Worklist: it names a `worklist` where
/// an analyzer's order names its `analyzer`, and its bundle is read by the
/// worklist (one entry per ServiceRequest).
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistOrder {
    pub id: String,
    pub worklist: String,
    pub bundle: Value,
}

/// Reads `bytes` as an order for a worklist; `None` when it names no
/// `worklist` (it is an analyzer's order: [`read`]).
pub fn read_worklist(
    format: PayloadFormat,
    bytes: &[u8],
) -> Option<Result<WorklistOrder, Refused>> {
    let Ok(Value::Object(map)) = payload::decode(format, bytes) else {
        return None;
    };
    let worklist = map.get("worklist")?;
    let id = text(&map, "id").filter(|id| id.len() <= ID_MAX);
    let refuse = |reason: String| Refused {
        message_id: id.clone(),
        analyzer: worklist.as_str().map(str::to_string),
        reason,
    };
    if map.get("v").and_then(Value::as_u64) != Some(payload::VERSION) {
        return Some(Err(refuse(format!("`v` must be {}", payload::VERSION))));
    }
    let Some(message_id) = id.clone() else {
        return Some(Err(refuse(format!(
            "`id` must be text of at most {ID_MAX} bytes"
        ))));
    };
    let Some(worklist) = worklist.as_str().filter(|w| !w.is_empty()) else {
        return Some(Err(refuse(
            "`worklist` must name a worklist endpoint".into(),
        )));
    };
    let Some(bundle) = map.get("bundle") else {
        return Some(Err(refuse("`bundle` is missing".into())));
    };
    Some(Ok(WorklistOrder {
        id: message_id,
        worklist: worklist.to_string(),
        bundle: bundle.clone(),
    }))
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `value.path[0].path...` as text, reading the first item of arrays.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
        if let Value::Array(items) = v {
            v = items.first()?;
        }
    }
    v.as_str().filter(|s| !s.trim().is_empty())
}

fn from_bundle(
    bundle: &Value,
    analyzer: String,
    sender: Option<String>,
) -> Result<HubOrder, String> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("`bundle` must be a FHIR Bundle".into());
    }
    let resources: Vec<&Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|e| e.iter().filter_map(|e| e.get("resource")).collect())
        .unwrap_or_default();
    let of = |kind: &str| -> Vec<&Value> {
        resources
            .iter()
            .copied()
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(kind))
            .collect()
    };
    let requests = of("ServiceRequest");
    let Some(first) = requests.first() else {
        return Err("the bundle has no ServiceRequest".into());
    };
    let reference = |r: &Value| {
        at(r, &["requisition", "value"])
            .or_else(|| at(r, &["identifier", "value"]))
            .or_else(|| at(r, &["id"]))
            .map(str::to_string)
    };
    let hub_ref = reference(first)
        .ok_or("the ServiceRequest has no requisition, identifier or id to know it by")?;
    let status = at(first, &["status"]).unwrap_or("");
    for r in &requests[1..] {
        if reference(r).as_deref() != Some(hub_ref.as_str()) {
            return Err(
                "the ServiceRequests of one bundle are one order: they must share a requisition"
                    .into(),
            );
        }
        if at(r, &["status"]).unwrap_or("") != status {
            return Err("the ServiceRequests of one bundle must share a status".into());
        }
    }
    match status {
        "active" => {}
        "revoked" | "entered-in-error" => {
            return Ok(HubOrder::Cancel { analyzer, hub_ref });
        }
        other => {
            return Err(format!(
                "ServiceRequest status `{other}` is neither an order (active) nor a cancellation (revoked, entered-in-error)"
            ))
        }
    }
    let mut tests = Vec::new();
    for r in &requests {
        let code = at(r, &["code", "coding", "code"])
            .ok_or("every ServiceRequest needs code.coding[0].code, the test the analyzer runs")?;
        tests.push(code.to_string());
    }
    let specimens = of("Specimen");
    let [specimen] = specimens.as_slice() else {
        return Err(format!(
            "an order needs exactly one Specimen, the bundle has {}",
            specimens.len()
        ));
    };
    let specimen_id = at(specimen, &["accessionIdentifier", "value"])
        .or_else(|| at(specimen, &["identifier", "value"]))
        .ok_or("the Specimen has no accessionIdentifier or identifier")?
        .to_string();
    let patients = of("Patient");
    let (patient_id, patient_name) = match patients.as_slice() {
        [] => (String::new(), Vec::new()),
        [p] => {
            let id = at(p, &["identifier", "value"])
                .or_else(|| at(p, &["id"]))
                .unwrap_or("")
                .to_string();
            let mut name: Vec<String> = at(p, &["name", "family"])
                .map(|f| vec![f.to_string()])
                .unwrap_or_default();
            if let Some(given) = p
                .get("name")
                .and_then(|n| n.get(0))
                .and_then(|n| n.get("given"))
                .and_then(Value::as_array)
            {
                name.extend(given.iter().filter_map(Value::as_str).map(str::to_string));
            }
            (id, name)
        }
        _ => return Err("an order is for one Patient, the bundle has several".into()),
    };
    let priority = match at(first, &["priority"]) {
        None | Some("routine") => "R",
        Some("stat") => "S",
        Some("asap" | "urgent") => "A",
        Some(other) => return Err(format!("ServiceRequest priority `{other}` is not FHIR's")),
    };
    let order = NewOrder {
        analyzer,
        specimen_id,
        patient_id,
        patient_name,
        tests,
        priority: priority.into(),
        sender,
    };
    if let Some(p) = problem(&order) {
        return Err(p.to_string());
    }
    Ok(HubOrder::Place { order, hub_ref })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(status: &str) -> Value {
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "p1",
                    "identifier": [{"value": "P-77"}],
                    "name": [{"family": "Roe", "given": ["Ann", "B"]}]}},
                {"resource": {"resourceType": "Specimen", "id": "s1",
                    "accessionIdentifier": {"value": "SPEC-5"}}},
                {"resource": {"resourceType": "ServiceRequest", "id": "sr1", "status": status,
                    "intent": "order", "priority": "stat",
                    "requisition": {"value": "REQ-1"},
                    "code": {"coding": [{"system": "urn:lab", "code": "GLU"}]},
                    "subject": {"reference": "Patient/p1"},
                    "specimen": [{"reference": "Specimen/s1"}]}},
                {"resource": {"resourceType": "ServiceRequest", "id": "sr2", "status": status,
                    "intent": "order", "requisition": {"value": "REQ-1"},
                    "code": {"coding": [{"code": "NA"}]}}}
            ]
        })
    }

    fn message(bundle: Value) -> Vec<u8> {
        payload::encode(
            PayloadFormat::Cbor,
            &json!({"v": 1, "id": "o-1", "issued_at": 1, "analyzer": "chem", "bundle": bundle}),
        )
    }

    #[test]
    fn an_active_bundle_is_one_order_with_a_test_per_service_request() {
        let m = read(PayloadFormat::Cbor, &message(bundle("active"))).unwrap();
        assert_eq!(m.id, "o-1");
        let HubOrder::Place { order, hub_ref } = m.change else {
            panic!("{:?}", m.change)
        };
        assert_eq!(hub_ref, "REQ-1");
        assert_eq!(order.analyzer, "chem");
        assert_eq!(order.specimen_id, "SPEC-5");
        assert_eq!(order.patient_id, "P-77");
        assert_eq!(order.patient_name, ["Roe", "Ann", "B"]);
        assert_eq!(order.tests, ["GLU", "NA"]);
        assert_eq!(order.priority, "S");
    }

    #[test]
    fn a_revoked_service_request_cancels_the_order_of_its_reference() {
        let mut b = bundle("revoked");
        // A cancellation needs nothing but the requests.
        b["entry"].as_array_mut().unwrap().drain(..2);
        let m = read(PayloadFormat::Cbor, &message(b)).unwrap();
        assert_eq!(
            m.change,
            HubOrder::Cancel {
                analyzer: "chem".into(),
                hub_ref: "REQ-1".into()
            }
        );
    }

    #[test]
    fn a_malformed_order_is_refused_with_its_id_and_reason() {
        let refused = |b: Value| read(PayloadFormat::Cbor, &message(b)).unwrap_err();
        let r = refused(bundle("completed"));
        assert_eq!(r.message_id.as_deref(), Some("o-1"));
        assert_eq!(r.analyzer.as_deref(), Some("chem"));
        assert!(r.reason.contains("`completed`"), "{r:?}");

        let mut no_specimen = bundle("active");
        no_specimen["entry"].as_array_mut().unwrap().remove(1);
        assert!(refused(no_specimen).reason.contains("exactly one Specimen"));

        let mut no_code = bundle("active");
        no_code["entry"][3]["resource"]["code"] = json!({"text": "sodium"});
        assert!(refused(no_code).reason.contains("code.coding[0].code"));

        let mut split = bundle("active");
        split["entry"][3]["resource"]["requisition"]["value"] = json!("REQ-2");
        assert!(refused(split).reason.contains("share a requisition"));

        assert!(refused(json!({"resourceType": "Patient"}))
            .reason
            .contains("FHIR Bundle"));

        let garbage = read(PayloadFormat::Cbor, b"\xff").unwrap_err();
        assert_eq!(garbage.message_id, None);
        let json_in_cbor = read(PayloadFormat::Json, &message(bundle("active"))).unwrap_err();
        assert!(json_in_cbor.reason.contains("not JSON"), "{json_in_cbor:?}");
    }
}
