//! FHIR JSON as a client posts it to the gateway: one resource or a Bundle,
//! checked for shape before it is journalled.
//!
//! The check is of shape, not of profile: the body is a JSON object with a
//! `resourceType` (a name such as `Observation`), and a Bundle's `entry` is a
//! list of objects whose `resource` is such a resource. An entry of a
//! `transaction` or `batch` Bundle may go without a resource only when its
//! `request.method` is `DELETE` or `GET`. What a resource holds beyond that
//! is the receiving system's to judge; refusing it here would turn the
//! gateway into a validator that disagrees with the hub.

use serde_json::Value;

/// Entries a Bundle may have (a sane bound on what one request is split into).
pub const MAX_ENTRIES: usize = 10_000;

/// A body whose shape was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// `Observation`, `Bundle`, ...
    pub resource_type: String,
    /// A Bundle's `type` (`transaction`, `collection`, ...).
    pub bundle_type: Option<String>,
    /// A Bundle's `identifier` as `system|value` (or `value`): what
    /// identifies a resend of the same Bundle.
    pub identifier: Option<String>,
    /// The document.
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("{at}: `resourceType` is missing")]
    NoResourceType { at: String },
    #[error("{at}: `resourceType` {found:?} is not a resource type name")]
    BadResourceType { at: String, found: String },
    #[error("{at}: {what}")]
    Bundle { at: String, what: String },
    #[error("the Bundle has {0} entries, more than {MAX_ENTRIES}")]
    TooManyEntries(usize),
}

/// Reads `body` as a FHIR resource or Bundle.
pub fn read(body: &[u8]) -> Result<Posted, ShapeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ShapeError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ShapeError::NotAnObject);
    }
    let resource_type = resource_type(&value, "the resource")?;
    let mut posted = Posted {
        resource_type,
        bundle_type: None,
        identifier: None,
        value,
    };
    if posted.resource_type == "Bundle" {
        check_bundle(&mut posted)?;
    }
    Ok(posted)
}

fn resource_type(v: &Value, at: &str) -> Result<String, ShapeError> {
    match v.get("resourceType") {
        None | Some(Value::Null) => Err(ShapeError::NoResourceType { at: at.into() }),
        Some(Value::String(s)) if is_type_name(s) => Ok(s.clone()),
        Some(other) => Err(ShapeError::BadResourceType {
            at: at.into(),
            found: match other {
                Value::String(s) => s.chars().take(64).collect(),
                v => v.to_string().chars().take(64).collect(),
            },
        }),
    }
}

/// `Observation`: an upper-case ASCII letter, then letters and digits.
fn is_type_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn check_bundle(posted: &mut Posted) -> Result<(), ShapeError> {
    let bundle = &posted.value;
    let bad = |at: String, what: &str| ShapeError::Bundle {
        at,
        what: what.into(),
    };
    posted.bundle_type = match bundle.get("type") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(bad("the Bundle".into(), "`type` is not a string")),
    };
    posted.identifier = bundle.get("identifier").and_then(identifier);
    let entries = match bundle.get("entry") {
        None => return Ok(()),
        Some(Value::Array(e)) => e,
        Some(_) => return Err(bad("the Bundle".into(), "`entry` is not a list")),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(ShapeError::TooManyEntries(entries.len()));
    }
    let requests = matches!(posted.bundle_type.as_deref(), Some("transaction" | "batch"));
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("entry[{i}]");
        if !entry.is_object() {
            return Err(bad(at, "is not an object"));
        }
        match entry.get("resource") {
            Some(r @ Value::Object(_)) => {
                resource_type(r, &format!("{at}.resource"))?;
            }
            Some(_) => return Err(bad(at, "`resource` is not an object")),
            None => {
                let method = entry
                    .get("request")
                    .and_then(|r| r.get("method"))
                    .and_then(Value::as_str);
                if !(requests && matches!(method, Some("DELETE" | "GET"))) {
                    return Err(bad(at, "has no `resource`"));
                }
            }
        }
    }
    Ok(())
}

/// `system|value`, or `value` alone.
fn identifier(v: &Value) -> Option<String> {
    let value = v.get("value")?.as_str()?.trim();
    if value.is_empty() {
        return None;
    }
    Some(match v.get("system").and_then(Value::as_str) {
        Some(system) if !system.trim().is_empty() => format!("{}|{value}", system.trim()),
        _ => value.to_string(),
    })
}

impl Posted {
    /// Whether this is a Bundle of requests (`transaction` or `batch`),
    /// which a listener may split into one message per entry.
    pub fn is_request_bundle(&self) -> bool {
        self.resource_type == "Bundle"
            && matches!(self.bundle_type.as_deref(), Some("transaction" | "batch"))
    }

    /// The resources of a Bundle's entries, in order, each with its type;
    /// an error names an entry without a resource (a `DELETE`), which
    /// cannot be a message of its own.
    pub fn entries(&self) -> Result<Vec<(String, &Value)>, ShapeError> {
        let entries = self
            .value
            .get("entry")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| match e.get("resource") {
                Some(r) => Ok((resource_type(r, "")?, r)),
                None => Err(ShapeError::Bundle {
                    at: format!("entry[{i}]"),
                    what: "has no `resource` and cannot be kept as a message of its own".into(),
                }),
            })
            .collect()
    }

    /// Each entry of a `transaction` or `batch` Bundle as a Bundle of its
    /// own: a one-entry `transaction` holding the entry as posted (its
    /// `fullUrl`, `resource` and `request`: a conditional `PUT` stays
    /// conditional, a `DELETE` needs no resource), each with the resource
    /// type it is about. An entry that refers to another by that one's
    /// `fullUrl` would point at nothing once they travel apart, so such a
    /// Bundle is refused, naming both entries.
    pub fn entry_transactions(&self) -> Result<Vec<(String, Value)>, ShapeError> {
        let entries = self
            .value
            .get("entry")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let full_urls: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.get("fullUrl").and_then(Value::as_str))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let at = format!("entry[{i}]");
            if let Some(r) = e.get("resource") {
                let mut found = None;
                references(r, &mut |reference| {
                    if found.is_none() {
                        found = full_urls
                            .iter()
                            .position(|u| *u == Some(reference))
                            .filter(|j| *j != i);
                    }
                });
                if let Some(j) = found {
                    return Err(ShapeError::Bundle {
                        at,
                        what: format!(
                            "refers to entry[{j}] by its fullUrl, which means nothing once the entries are sent apart: post this Bundle to a path that keeps Bundles whole"
                        ),
                    });
                }
            }
            let resource_type = match e.get("resource") {
                Some(r) => resource_type(r, &format!("{at}.resource"))?,
                None => e
                    .get("request")
                    .and_then(|r| r.get("url"))
                    .and_then(Value::as_str)
                    .and_then(|u| u.split(['/', '?']).next())
                    .filter(|t| is_type_name(t))
                    .map(str::to_string)
                    .ok_or_else(|| ShapeError::Bundle {
                        at: at.clone(),
                        what: "has neither a `resource` nor a `request.url` naming a resource type"
                            .into(),
                    })?,
            };
            out.push((
                resource_type,
                serde_json::json!({
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [e],
                }),
            ));
        }
        Ok(out)
    }
}

/// Calls `f` with every `reference` string inside `v`.
fn references<'a>(v: &'a Value, f: &mut impl FnMut(&'a str)) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference") {
                f(r);
            }
            for child in o.values() {
                references(child, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| references(c, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_read_with_its_type() {
        let p = read(br#"{"resourceType":"Observation","status":"final"}"#).unwrap();
        assert_eq!(p.resource_type, "Observation");
        assert_eq!(p.bundle_type, None);
    }

    #[test]
    fn a_body_without_a_resource_type_is_refused() {
        for (body, expected) in [
            (&br#"{"status":"final"}"#[..], "`resourceType` is missing"),
            (br#"{"resourceType":"observation"}"#, "not a resource type"),
            (br#"{"resourceType":7}"#, "not a resource type"),
            (br#"[1,2]"#, "not a JSON object"),
            (br#"{"resourceType":"#, "not JSON"),
        ] {
            let e = read(body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn a_bundle_whose_entries_are_not_resources_is_refused_at_the_entry() {
        let body = br#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":{"resourceType":"Patient"}},
            {"resource":{"id":"x"}}]}"#;
        let e = read(body).unwrap_err().to_string();
        assert!(e.contains("entry[1].resource"), "{e}");
        let body = br#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"x"}]}"#;
        assert!(read(body).unwrap_err().to_string().contains("entry[0]"));
        let body = br#"{"resourceType":"Bundle","entry":{"resource":{}}}"#;
        assert!(read(body).unwrap_err().to_string().contains("not a list"));
    }

    #[test]
    fn a_transaction_may_delete_without_a_resource_but_cannot_be_split_then() {
        let body = br#"{"resourceType":"Bundle","type":"transaction",
            "identifier":{"system":"urn:lab","value":"b-1"},
            "entry":[{"resource":{"resourceType":"Patient"}},
                     {"request":{"method":"DELETE","url":"Patient/1"}}]}"#;
        let p = read(body).unwrap();
        assert!(p.is_request_bundle());
        assert_eq!(p.identifier.as_deref(), Some("urn:lab|b-1"));
        assert!(p.entries().unwrap_err().to_string().contains("entry[1]"));
    }

    #[test]
    fn a_transactions_entries_are_its_resources_in_order() {
        let body = br#"{"resourceType":"Bundle","type":"batch","entry":[
            {"resource":{"resourceType":"Patient","id":"p"}},
            {"resource":{"resourceType":"Observation","id":"o"}}]}"#;
        let p = read(body).unwrap();
        let types: Vec<String> = p.entries().unwrap().into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, ["Patient", "Observation"]);
    }

    #[test]
    fn each_entry_becomes_a_transaction_of_its_own_keeping_its_request() {
        let body = br#"{"resourceType":"Bundle","type":"batch","entry":[
            {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"7"}]},
             "request":{"method":"PUT","url":"Patient?identifier=urn:mrn|7"}},
            {"request":{"method":"DELETE","url":"Observation/9"}}]}"#;
        let split = read(body).unwrap().entry_transactions().unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].0, "Patient");
        assert_eq!(split[0].1["type"], "transaction");
        assert_eq!(
            split[0].1["entry"][0]["request"]["url"],
            "Patient?identifier=urn:mrn|7"
        );
        assert_eq!(split[0].1["entry"][0]["fullUrl"], "urn:uuid:1");
        assert_eq!(
            split[1].0, "Observation",
            "a DELETE is about its url's type"
        );
        assert_eq!(split[1].1["entry"][0]["request"]["method"], "DELETE");
    }

    #[test]
    fn entries_that_refer_to_each_other_by_full_url_are_not_split_apart() {
        let body = br#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
            {"fullUrl":"urn:uuid:o","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"},
             "hasMember":[{"reference":"urn:uuid:o"}]},"request":{"method":"POST","url":"Observation"}}]}"#;
        match read(body).unwrap().entry_transactions() {
            Err(ShapeError::Bundle { at, what }) => {
                assert_eq!(at, "entry[1]");
                assert!(what.contains("entry[0]"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }
}
