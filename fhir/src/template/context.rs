//! What a template sees: the parsed message as objects with 1-based access,
//! and the helper functions.
//!
//! - `msg.source`, `msg.id`, `msg.type`, `msg.control_id`, `msg.received_at`
//!   (an instant), `msg.text` (the payload as text).
//! - HL7 v2: `msg.segments()` (all), `msg.segments("OBX")`,
//!   `msg.segment("PID")` (the first, or undefined), `msg.groups("OBR")`
//!   (lists of segments, each from one OBR up to the next OBR or PID).
//! - ASTM: `msg.astm.header`, `msg.astm.patients[i].record`, `.comments`,
//!   `.orders[j].record`, `.orders[j].results[k].record`, `.comments`.
//! - A segment or record: `seg.id`; `seg[5]` is the first component of field
//!   5; `seg.get("5.2")`, `seg.get("3(2).1")` (second repetition),
//!   `seg.get("2.1.2")` (subcomponent) return text with escapes decoded
//!   (`""` when absent); `seg.repeats(3)` gives each repetition, again with
//!   `rep[1]` and `rep.get("4.1")`.
//! - `uuid(type, system, value)`: the id the built-in maps give that
//!   resource (UUID v5 over its business identifier); `uuid(part, …)` with
//!   any other number of parts: a v5 over the parts.
//! - `fhir_time(v)`: an HL7/ASTM time as a FHIR dateTime with an offset
//!   (the site's when it has none), `fhir_instant(v)` only full times;
//!   `msg.local_system(kind)`: `urn:ecko-edge:<source>:<kind>`;
//!   `ucum(unit)`: the UCUM code of a unit, or none; `number(text)`: a
//!   number, or none. Filters: minijinja's, with `tojson` for JSON values.

use crate::r4 as fhir;
use crate::TransformContext;
use ecko_message::StoredMessage;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use std::sync::Arc;

/// A segment or record: fields → repetitions → components → subcomponents,
/// decoded.
#[derive(Debug)]
pub struct Node {
    id: String,
    fields: Vec<Vec<Vec<Vec<String>>>>,
}

/// One repetition of a field.
#[derive(Debug)]
struct Repetition(Vec<Vec<String>>);

/// `F[(R)][.C[.S]]` → (field, repetition, component, subcomponent), 1-based.
fn parse_path(path: &str) -> Option<(usize, usize, usize, usize)> {
    let mut parts = path.trim().split('.');
    let head = parts.next()?;
    let (f, r) = match head.split_once('(') {
        Some((f, r)) => (f, r.strip_suffix(')')?),
        None => (head, "1"),
    };
    let num = |s: Option<&str>| s.map_or(Some(1), |s| s.parse::<usize>().ok().filter(|n| *n > 0));
    let (f, r) = (num(Some(f))?, num(Some(r))?);
    let c = num(parts.next())?;
    let s = num(parts.next())?;
    if parts.next().is_some() {
        return None;
    }
    Some((f, r, c, s))
}

fn pick(comps: &[Vec<String>], c: usize, s: usize) -> String {
    comps
        .get(c - 1)
        .and_then(|subs| subs.get(s - 1))
        .cloned()
        .unwrap_or_default()
}

fn bad_path(path: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("`{path}` is not a field path (expected e.g. \"5\", \"5.2\", \"3(2).1\")"),
    )
}

fn one_string_arg<'a>(method: &str, args: &'a [Value]) -> Result<&'a str, Error> {
    match args {
        [v] => v.as_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{method}() takes a string"),
            )
        }),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{method}() takes one argument"),
        )),
    }
}

impl Node {
    fn get(&self, f: usize, r: usize, c: usize, s: usize) -> String {
        self.fields
            .get(f - 1)
            .and_then(|reps| reps.get(r - 1))
            .map(|comps| pick(comps, c, s))
            .unwrap_or_default()
    }
}

impl Object for Node {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if key.as_str() == Some("id") {
            return Some(Value::from(self.id.clone()));
        }
        let n = usize::try_from(key.clone()).ok().filter(|n| *n > 0)?;
        Some(Value::from(self.get(n, 1, 1, 1)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["id"])
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get" => {
                let path = one_string_arg(method, args)?;
                let (f, r, c, s) = parse_path(path).ok_or_else(|| bad_path(path))?;
                Ok(Value::from(self.get(f, r, c, s)))
            }
            "repeats" => {
                let f = match args {
                    [v] => usize::try_from(v.clone()).ok().filter(|n| *n > 0),
                    _ => None,
                }
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "repeats() takes a field number",
                    )
                })?;
                let reps = self.fields.get(f - 1).cloned().unwrap_or_default();
                Ok(Value::from(
                    reps.into_iter()
                        .filter(|comps| comps.iter().flatten().any(|s| !s.is_empty()))
                        .map(|comps| Value::from_object(Repetition(comps)))
                        .collect::<Vec<_>>(),
                ))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id)
    }
}

impl Object for Repetition {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let n = usize::try_from(key.clone()).ok().filter(|n| *n > 0)?;
        Some(Value::from(pick(&self.0, n, 1)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let path = one_string_arg(method, args)?;
        let mut parts = path.split('.');
        let num =
            |s: Option<&str>| s.map_or(Some(1), |s| s.parse::<usize>().ok().filter(|n| *n > 0));
        let c = num(parts.next()).ok_or_else(|| bad_path(path))?;
        let s = num(parts.next()).ok_or_else(|| bad_path(path))?;
        Ok(Value::from(pick(&self.0, c, s)))
    }
}

/// An HL7 v2 segment, decoded.
fn hl7_node(seg: &ecko_protocol::hl7::Segment<'_>) -> Node {
    let mut fields = Vec::new();
    for n in 1..=seg.field_count() {
        let reps = seg
            .field(n)
            .map(|f| {
                f.repetitions()
                    .map(|r| {
                        let mut comps = Vec::new();
                        let mut c = 1;
                        while let Some(comp) = r.component(c) {
                            let mut subs = Vec::new();
                            let mut s = 1;
                            while let Some(sub) = comp.subcomponent(s) {
                                subs.push(if sub.is_null() {
                                    String::new()
                                } else {
                                    sub.value().trim().to_string()
                                });
                                s += 1;
                                if s > 64 {
                                    break;
                                }
                            }
                            comps.push(subs);
                            c += 1;
                            if c > 256 {
                                break;
                            }
                        }
                        comps
                    })
                    .collect()
            })
            .unwrap_or_default();
        fields.push(reps);
    }
    Node {
        id: seg.id().to_string(),
        fields,
    }
}

/// An ASTM record, decoded (components have no subcomponents in ASTM).
fn astm_node(record: &ecko_protocol::astm::records::Record) -> Node {
    let d = *record.delimiters();
    let fields = (1..=record.field_count())
        .map(|n| {
            let field = record.field(n);
            if n <= 2 {
                return vec![vec![vec![field.raw().to_string()]]];
            }
            field
                .repeats()
                .into_iter()
                .map(|r| {
                    r.raw()
                        .split(d.component)
                        .map(|c| vec![d.unescape(c).trim().to_string()])
                        .collect()
                })
                .collect()
        })
        .collect();
    Node {
        id: record.kind().letter().to_string(),
        fields,
    }
}

fn node(n: Node) -> Value {
    Value::from_object(n)
}

fn astm_tree(m: &ecko_protocol::astm::message::Message) -> Value {
    let with_comments = |record: &ecko_protocol::astm::records::Record,
                         comments: &[ecko_protocol::astm::records::Record],
                         extra: Vec<(&str, Value)>| {
        let mut map: Vec<(&str, Value)> = vec![
            ("record", node(astm_node(record))),
            (
                "comments",
                Value::from(
                    comments
                        .iter()
                        .map(|c| node(astm_node(c)))
                        .collect::<Vec<_>>(),
                ),
            ),
        ];
        map.extend(extra);
        Value::from_iter(map)
    };
    let patients: Vec<Value> = m
        .patients
        .iter()
        .map(|p| {
            let orders: Vec<Value> = p
                .orders
                .iter()
                .map(|o| {
                    let results: Vec<Value> = o
                        .results
                        .iter()
                        .map(|r| with_comments(&r.record, &r.comments, Vec::new()))
                        .collect();
                    with_comments(
                        &o.record,
                        &o.comments,
                        vec![("results", Value::from(results))],
                    )
                })
                .collect();
            with_comments(
                &p.record,
                &p.comments,
                vec![("orders", Value::from(orders))],
            )
        })
        .collect();
    Value::from_iter([
        ("header", node(astm_node(&m.header.record))),
        ("patients", Value::from(patients)),
    ])
}

/// The message as the template sees it.
#[derive(Debug)]
pub struct Msg {
    source: String,
    id: i64,
    message_type: String,
    control_id: Option<String>,
    received_at: String,
    text: String,
    segments: Vec<Arc<Node>>,
    astm: Option<Value>,
    /// What `fhir_time` and `fhir_instant` read times without an offset in.
    time_zone: jiff::tz::TimeZone,
}

impl Msg {
    pub fn new(message: &StoredMessage, cx: &TransformContext) -> Msg {
        let mut text = None;
        let mut segments = Vec::new();
        let mut astm = None;
        if message.payload.starts_with(b"MSH") {
            let options = crate::hl7v2::parse_options(message);
            if let Ok(parsed) = ecko_protocol::hl7::Message::parse(&message.payload, &options) {
                segments = parsed.segments().map(|s| Arc::new(hl7_node(&s))).collect();
                let (decoded, _) = parsed
                    .charset()
                    .decode(&message.payload, options.fallback_charset);
                text = Some(decoded.into_owned());
            }
        } else if message.payload.first() == Some(&b'H') {
            let records: Vec<Vec<u8>> = message
                .payload
                .split(|b| *b == b'\r' || *b == b'\n')
                .filter(|r| !r.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            if let Ok(parsed) = ecko_protocol::astm::message::Message::parse(
                &records,
                &ecko_protocol::astm::message::ParseOptions {
                    check_sequence: false,
                },
            ) {
                astm = Some(astm_tree(&parsed));
            }
        }
        let received_at = jiff::Timestamp::from_millisecond(message.received_at)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let text = text.unwrap_or_else(|| String::from_utf8_lossy(&message.payload).into_owned());
        Msg {
            time_zone: cx.time_zone_of(message),
            source: message.source.clone(),
            id: message.id,
            message_type: message.message_type.clone(),
            control_id: message.control_id.clone(),
            received_at,
            text,
            segments,
            astm,
        }
    }
}

impl Object for Msg {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "source" => Value::from(self.source.clone()),
            "id" => Value::from(self.id),
            "type" => Value::from(self.message_type.clone()),
            "control_id" => Value::from(self.control_id.clone()),
            "received_at" => Value::from(self.received_at.clone()),
            "text" => Value::from(self.text.clone()),
            "astm" => self.astm.clone().unwrap_or(Value::UNDEFINED),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&[
            "source",
            "id",
            "type",
            "control_id",
            "received_at",
            "text",
            "astm",
        ])
    }

    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let as_values = |nodes: Vec<&Arc<Node>>| {
            Value::from(
                nodes
                    .into_iter()
                    .map(|n| Value::from_dyn_object(n.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        match method {
            "segments" => match args {
                [] => Ok(as_values(self.segments.iter().collect())),
                _ => {
                    let id = one_string_arg(method, args)?;
                    Ok(as_values(
                        self.segments.iter().filter(|s| s.id == id).collect(),
                    ))
                }
            },
            "segment" => {
                let id = one_string_arg(method, args)?;
                Ok(self
                    .segments
                    .iter()
                    .find(|s| s.id == id)
                    .map_or(Value::UNDEFINED, |n| Value::from_dyn_object(n.clone())))
            }
            "groups" => {
                let id = one_string_arg(method, args)?;
                let mut groups: Vec<Vec<&Arc<Node>>> = Vec::new();
                let mut open = false;
                for s in &self.segments {
                    if s.id == id {
                        groups.push(vec![s]);
                        open = true;
                    } else if s.id == "PID" || s.id == "MSH" {
                        open = false;
                    } else if open {
                        if let Some(g) = groups.last_mut() {
                            g.push(s);
                        }
                    }
                }
                Ok(Value::from(
                    groups.into_iter().map(as_values).collect::<Vec<_>>(),
                ))
            }
            "local_system" => {
                let kind = one_string_arg(method, args)?;
                Ok(Value::from(fhir::local_system(&self.source, kind)))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// The zone of the message being rendered: helpers are registered once per
/// compiled template, the zone differs per message.
fn message_zone(state: &State) -> jiff::tz::TimeZone {
    state
        .lookup("msg")
        .and_then(|msg| {
            msg.downcast_object_ref::<Msg>()
                .map(|m| m.time_zone.clone())
        })
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Registers the helper functions.
pub fn add_helpers(env: &mut Environment<'static>) {
    env.add_function("uuid", |parts: minijinja::value::Rest<String>| -> String {
        match &parts[..] {
            [ty, system, value] => fhir::resource_id(ty, system, value).to_string(),
            _ => fhir::template_id(&parts.join("|")).to_string(),
        }
    });
    env.add_function(
        "fhir_time",
        |state: &State, v: Option<String>| -> Option<String> {
            fhir::date_time(&v?, &message_zone(state))
        },
    );
    env.add_function(
        "fhir_instant",
        |state: &State, v: Option<String>| -> Option<String> {
            fhir::instant(&v?, &message_zone(state))
        },
    );
    env.add_function("ucum", |unit: Option<String>| -> Option<String> {
        fhir::ucum::code(&unit?).map(str::to_string)
    });
    env.add_function("number", |text: Option<String>| -> Value {
        text.as_deref()
            .and_then(fhir::number)
            .map_or(Value::from(()), |n| Value::from_serialize(&n))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_field_repetition_component_and_subcomponent() {
        assert_eq!(parse_path("5"), Some((5, 1, 1, 1)));
        assert_eq!(parse_path("5.2"), Some((5, 1, 2, 1)));
        assert_eq!(parse_path("3(2).4.1"), Some((3, 2, 4, 1)));
        assert_eq!(parse_path("0"), None);
        assert_eq!(parse_path("5.x"), None);
        assert_eq!(parse_path("5.1.1.1"), None);
    }
}
