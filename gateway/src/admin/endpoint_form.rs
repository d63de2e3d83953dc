//! The endpoint forms: which settings each endpoint type shows, how a
//! submitted value becomes a TOML value, and how the form is drawn with each
//! validation error beside its field.
//!
//! A form shows the file's own text of each setting (an environment
//! reference stays a reference). A field sent back unchanged leaves its key
//! untouched; an emptied field removes the key (the default applies again),
//! except a secret, which the form never shows: left empty it is kept.
//! Settings the form does not show (a FHIR `code_map`, for instance) are
//! kept as they are. Nothing is checked here that the configuration loader
//! checks: values go into the file as typed and the loader judges them.

use super::config_change::FieldError;
use super::render::esc;
use crate::config::edit::{Change, EditValue};
use std::collections::BTreeMap;
use std::fmt::Write;

/// How a field is typed in and written to TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Float,
    /// `true`/`false`, or the default.
    Bool,
    /// Bytes as an integer or with a unit (`"16 MiB"`).
    Size,
    /// A duration with a unit (`"30s"`).
    Duration,
    Choice(&'static [&'static str]),
    /// Never shown back; left empty it is kept.
    Secret,
}

/// One field of an endpoint form.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The form control's name.
    pub name: &'static str,
    /// The configuration key it writes (dotted for nested tables).
    pub key: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    /// The default, as the file would write it (empty: none).
    pub default: &'static str,
    /// Only used when another field has this value (`auth.type` =
    /// `api-key`); otherwise its key is removed.
    pub when: Option<(&'static str, &'static str)>,
}

const fn f(name: &'static str, label: &'static str, kind: Kind, default: &'static str) -> Field {
    Field {
        name,
        key: name,
        label,
        kind,
        default,
        when: None,
    }
}

const fn when(field: Field, on: &'static str, value: &'static str) -> Field {
    Field {
        when: Some((on, value)),
        ..field
    }
}

const fn keyed(field: Field, key: &'static str) -> Field {
    Field { key, ..field }
}

const TIMEOUT: Field = f("timeout", "Timeout", Kind::Duration, "30s");

const DELIVERY: &[Field] = &[
    f(
        "retry.initial",
        "Retry: first backoff",
        Kind::Duration,
        "1s",
    ),
    f(
        "retry.max",
        "Retry: longest backoff",
        Kind::Duration,
        "300s",
    ),
    f("retry.multiplier", "Retry: multiplier", Kind::Float, "2.0"),
    f("retry.jitter", "Retry: jitter (0–1)", Kind::Float, "0.2"),
    f(
        "retry.max_attempts",
        "Retry: most attempts (empty: no limit)",
        Kind::Integer,
        "",
    ),
    f(
        "retry.max_age",
        "Retry: give up after (empty: never)",
        Kind::Duration,
        "",
    ),
    f(
        "partition_by",
        "Lanes by",
        Kind::Choice(&["patient", "source"]),
        "",
    ),
    f(
        "lanes",
        "Lanes in parallel",
        Kind::Integer,
        "1 (8 with lanes by)",
    ),
];

const MLLP: &[Field] = &[
    f(
        "listen",
        "Listen on (listener), e.g. 0.0.0.0:2575",
        Kind::Text,
        "",
    ),
    f("connect", "Connect to (sender), host:port", Kind::Text, ""),
    f(
        "charset",
        "Character set when MSH-18 is empty",
        Kind::Choice(&["ASCII", "8859/1", "UNICODE UTF-8", "windows-1252"]),
        "windows-1252",
    ),
    f("max_message_size", "Largest message", Kind::Size, "16 MiB"),
    f("frame_timeout", "Frame timeout", Kind::Duration, "60s"),
    f("idle_timeout", "Idle timeout", Kind::Duration, "600s"),
    f(
        "max_connections",
        "Most connections (listener)",
        Kind::Integer,
        "64",
    ),
    f("ack_timeout", "ACK timeout (sender)", Kind::Duration, "30s"),
    f(
        "application_error",
        "An AE answer means (sender)",
        Kind::Choice(&["permanent", "retry"]),
        "permanent",
    ),
    f("tls.cert", "TLS certificate (PEM path)", Kind::Text, ""),
    f("tls.key", "TLS private key (PEM path)", Kind::Text, ""),
    f("tls.ca", "TLS CA bundle (PEM path)", Kind::Text, ""),
    f(
        "tls.require_client_cert",
        "TLS: require client certificates (listener)",
        Kind::Bool,
        "false",
    ),
    f(
        "tls.server_name",
        "TLS: server name to verify (sender)",
        Kind::Text,
        "",
    ),
];

const FHIR: &[Field] = &[
    f("url", "Base URL", Kind::Text, ""),
    f(
        "auth.type",
        "Authentication",
        Kind::Choice(&["none", "api-key", "oauth2", "client-certificate"]),
        "none",
    ),
    when(
        f("auth.header", "API key header", Kind::Text, "X-API-Key"),
        "auth.type",
        "api-key",
    ),
    when(
        keyed(f("auth.api_key", "API key", Kind::Secret, ""), "auth.key"),
        "auth.type",
        "api-key",
    ),
    when(
        f("auth.token_url", "OAuth token URL", Kind::Text, ""),
        "auth.type",
        "oauth2",
    ),
    when(
        f("auth.client_id", "OAuth client id", Kind::Text, ""),
        "auth.type",
        "oauth2",
    ),
    when(
        f(
            "auth.client_secret",
            "OAuth client secret",
            Kind::Secret,
            "",
        ),
        "auth.type",
        "oauth2",
    ),
    when(
        f("auth.scope", "OAuth scope", Kind::Text, ""),
        "auth.type",
        "oauth2",
    ),
    when(
        f("auth.cert", "Client certificate (PEM path)", Kind::Text, ""),
        "auth.type",
        "client-certificate",
    ),
    when(
        keyed(
            f("auth.key_file", "Client key (PEM path)", Kind::Text, ""),
            "auth.key",
        ),
        "auth.type",
        "client-certificate",
    ),
    f(
        "ca_file",
        "CA bundle (PEM path; empty: system)",
        Kind::Text,
        "",
    ),
    f(
        "pinned_cert",
        "Pinned server certificate (PEM path)",
        Kind::Text,
        "",
    ),
    f(
        "max_batch",
        "Messages merged per Bundle",
        Kind::Integer,
        "1",
    ),
    f(
        "max_entries",
        "Most entries per Bundle",
        Kind::Integer,
        "50",
    ),
    f(
        "conditional_updates",
        "Conditional updates",
        Kind::Bool,
        "false",
    ),
];

const FILE: &[Field] = &[
    f("path", "Directory", Kind::Text, ""),
    f("extension", "File name extension", Kind::Text, "msg"),
];

const FILE_DROP: &[Field] = &[
    f("path", "Directory watched", Kind::Text, ""),
    f("message_type", "Message type recorded", Kind::Text, "file"),
    f(
        "content_type",
        "Content type recorded",
        Kind::Text,
        "application/octet-stream",
    ),
    f("poll_interval", "Poll interval", Kind::Duration, "200ms"),
];

const ASTM_LINE: &[Field] = &[
    f(
        "framing",
        "Framing",
        Kind::Choice(&["e1381", "raw"]),
        "e1381",
    ),
    f(
        "line_terminator",
        "Line terminator (raw)",
        Kind::Choice(&["cr", "crlf", "lf"]),
        "cr",
    ),
    f("max_frame_text", "Longest frame text", Kind::Integer, "240"),
    f("checksum_required", "Checksum required", Kind::Bool, "true"),
    f("check_sequence", "Check frame numbers", Kind::Bool, "true"),
    f("max_message_size", "Largest message", Kind::Size, "4 MiB"),
    f(
        "orders",
        "Orders",
        Kind::Choice(&["query", "broadcast"]),
        "query",
    ),
    f("order_poll", "Order poll (broadcast)", Kind::Duration, "2s"),
    f(
        "reconnect_max",
        "Longest reconnect wait",
        Kind::Duration,
        "30s",
    ),
];

const ASTM_TCP: &[Field] = &[
    f(
        "role",
        "Role",
        Kind::Choice(&["server", "client"]),
        "server",
    ),
    f("address", "Address (host:port)", Kind::Text, ""),
];

const ASTM_SERIAL: &[Field] = &[
    f("device", "Device", Kind::Text, ""),
    f("baud", "Baud", Kind::Integer, "9600"),
    f("data_bits", "Data bits", Kind::Integer, "8"),
    f(
        "parity",
        "Parity",
        Kind::Choice(&["none", "odd", "even"]),
        "none",
    ),
    f("stop_bits", "Stop bits", Kind::Integer, "1"),
    f(
        "flow_control",
        "Flow control",
        Kind::Choice(&["none", "software", "hardware"]),
        "none",
    ),
];

/// The fields of an endpoint type, in form order; `None` for an unknown
/// type.
pub fn fields(kind: &str) -> Option<Vec<Field>> {
    let parts: &[&[Field]] = match kind {
        "mllp" => &[MLLP, &[TIMEOUT], DELIVERY],
        "fhir" => &[FHIR, &[TIMEOUT], DELIVERY],
        "file" => &[FILE, &[TIMEOUT], DELIVERY],
        "file-drop" => &[FILE_DROP],
        "astm-tcp" => &[ASTM_TCP, ASTM_LINE],
        "astm-serial" => &[ASTM_SERIAL, ASTM_LINE],
        _ => return None,
    };
    Some(parts.iter().flat_map(|p| p.iter().copied()).collect())
}

/// A value as typed, in the TOML type the field's kind asks for. A value
/// that does not parse as that type goes in as a string, so that the
/// loader's own message says what is wrong with it.
pub fn value(kind: Kind, typed: &str) -> EditValue {
    let v = typed.trim();
    let bare_reference = v.starts_with("${") && v.ends_with('}') && v.matches("${").count() == 1;
    match kind {
        Kind::Integer | Kind::Float | Kind::Bool | Kind::Size if bare_reference => {
            EditValue::Reference(v.to_string())
        }
        Kind::Integer | Kind::Size => v
            .parse::<i64>()
            .map_or_else(|_| EditValue::String(v.to_string()), EditValue::Integer),
        Kind::Float => v
            .parse::<f64>()
            .map_or_else(|_| EditValue::String(v.to_string()), EditValue::Float),
        Kind::Bool => match v {
            "true" => EditValue::Bool(true),
            "false" => EditValue::Bool(false),
            other => EditValue::String(other.to_string()),
        },
        Kind::Text | Kind::Duration | Kind::Choice(_) | Kind::Secret => {
            EditValue::String(v.to_string())
        }
    }
}

/// Whether the field applies given the submitted values.
fn applies(field: &Field, submitted: &BTreeMap<String, String>) -> bool {
    field
        .when
        .is_none_or(|(on, value)| submitted.get(on).map(|s| s.trim()) == Some(value))
}

/// The changes a submitted form makes to an endpoint whose keys are now
/// `current` (the file's text of each key).
pub fn changes(
    fields: &[Field],
    submitted: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<(String, Change)> {
    let mut out: Vec<(String, Change)> = Vec::new();
    for field in fields {
        if !applies(field, submitted) {
            continue;
        }
        let Some(typed) = submitted.get(field.name) else {
            continue;
        };
        let typed = typed.trim();
        let now = current.get(field.key).map(String::as_str);
        if Some(typed) == now || (typed.is_empty() && now.is_none()) {
            continue;
        }
        if typed.is_empty() {
            if field.kind != Kind::Secret {
                out.push((field.key.to_string(), Change::Remove));
            }
            continue;
        }
        out.push((field.key.to_string(), Change::Set(value(field.kind, typed))));
    }
    // Keys of fields that do not apply (another authentication type) go,
    // unless an applying field writes the same key.
    for field in fields {
        if applies(field, submitted) || !current.contains_key(field.key) {
            continue;
        }
        let kept = fields
            .iter()
            .any(|g| g.key == field.key && applies(g, submitted));
        if !kept && !out.iter().any(|(k, _)| k == field.key) {
            out.push((field.key.to_string(), Change::Remove));
        }
    }
    out
}

/// Keys whose values are never shown.
pub fn is_secret(key: &str, settings: &BTreeMap<String, String>) -> bool {
    key == "auth.client_secret"
        || (key == "auth.key" && settings.get("auth.type").map(String::as_str) == Some("api-key"))
}

/// The settings with secrets masked.
pub fn masked(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    settings
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret(k, settings) {
                "••••••••".to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// The form field an error belongs beside, if any.
pub fn field_for<'a>(
    error: &FieldError,
    fields: &'a [Field],
    submitted: &BTreeMap<String, String>,
) -> Option<&'a Field> {
    let key = error.field.as_deref()?;
    let exact = |f: &&Field| f.key == key;
    if let Some(found) = fields
        .iter()
        .filter(exact)
        .find(|f| applies(f, submitted))
        .or_else(|| fields.iter().find(exact))
    {
        return Some(found);
    }
    // An error about a whole table (`retry`): the field it names, else its
    // first field.
    let prefix = format!("{key}.");
    let nested: Vec<&Field> = fields
        .iter()
        .filter(|f| f.key.starts_with(&prefix))
        .collect();
    let quoted: Vec<&str> = error.message.split('`').skip(1).step_by(2).collect();
    nested
        .iter()
        .find(|f| quoted.iter().any(|q| f.key.rsplit('.').next() == Some(q)))
        .or_else(|| nested.first())
        .copied()
}

/// What the form shows: the endpoint's type, its name (editable only when
/// new), the values, the errors, the routes it may join.
pub struct FormView<'a> {
    pub action: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub new: bool,
    pub values: &'a BTreeMap<String, String>,
    pub errors: &'a [FieldError],
    pub csrf: &'a str,
    /// (route name, checked) for a new endpoint.
    pub routes: &'a [(String, bool)],
}

/// The form, with each error under its field and the rest at the top.
pub fn render(view: &FormView<'_>) -> String {
    let fields = fields(view.kind).unwrap_or_default();
    let mut placed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut general = Vec::new();
    // The loader names the endpoint first in messages about it; a missing
    // key has no position, so its error is placed by the key it names.
    let about_this = format!("endpoint `{}`", view.name);
    for e in view.errors {
        let found = field_for(e, &fields, view.values).or_else(|| {
            if e.field.is_some() || !e.message.starts_with(&about_this) {
                return None;
            }
            let quoted: Vec<&str> = e.message.split('`').skip(1).step_by(2).collect();
            fields.iter().find(|f| quoted.contains(&f.key))
        });
        match found {
            Some(f) => placed.entry(f.name).or_default().push(&e.message),
            None if e.field.as_deref() == Some("name") => {
                placed.entry("name").or_default().push(&e.message)
            }
            None => general.push(e),
        }
    }
    let mut out = format!(
        "<form method=\"post\" action=\"{}\" class=\"card wide endpoint-form\" id=\"endpoint-form\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"type\" value=\"{}\">",
        esc(view.action),
        esc(view.csrf),
        esc(view.kind)
    );
    if !general.is_empty() {
        out.push_str(
            "<div class=\"error\" id=\"form-errors\"><p>The configuration was not changed:</p><ul>",
        );
        for e in general {
            let _ = write!(out, "<li>line {}: {}</li>", e.line, esc(&e.message));
        }
        out.push_str("</ul></div>");
    }
    let errors_of = |name: &str| {
        placed
            .get(name)
            .map(|msgs| {
                msgs.iter()
                    .map(|m| format!("<span class=\"field-error\">{}</span>", esc(m)))
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let _ = write!(
        out,
        "<label data-field=\"name\">Name <input name=\"name\" value=\"{}\"{}>{}</label>",
        esc(view.name),
        if view.new { " required" } else { " readonly" },
        errors_of("name")
    );
    for field in &fields {
        let value = if field.kind == Kind::Secret {
            ""
        } else {
            view.values
                .get(field.name)
                .map(String::as_str)
                .unwrap_or("")
        };
        let class = if placed.contains_key(field.name) {
            " class=\"invalid\""
        } else {
            ""
        };
        let control = match field.kind {
            Kind::Choice(options) => select(field, value, options),
            Kind::Bool => select(field, value, &["true", "false"]),
            Kind::Secret => format!(
                "<input type=\"password\" name=\"{}\" value=\"\" autocomplete=\"off\" placeholder=\"{}\">",
                field.name,
                if view.values.contains_key(field.name) || !view.new {
                    "unchanged unless typed"
                } else {
                    ""
                }
            ),
            _ => format!(
                "<input name=\"{}\" value=\"{}\" placeholder=\"{}\">",
                field.name,
                esc(value),
                esc(field.default)
            ),
        };
        let _ = write!(
            out,
            "<label data-field=\"{n}\"{class}>{} {control}{}</label>",
            esc(field.label),
            errors_of(field.name),
            n = field.name,
        );
    }
    if view.new && !view.routes.is_empty() {
        out.push_str("<fieldset><legend>Add to routes</legend>");
        for (route, checked) in view.routes {
            let _ = write!(
                out,
                "<label class=\"check\"><input type=\"checkbox\" name=\"route\" value=\"{r}\"{}> {r}</label>",
                if *checked { " checked" } else { "" },
                r = esc(route)
            );
        }
        out.push_str("<p class=\"hint\">An inbound endpoint joins a route's <code>from</code>, a destination its <code>to</code>.</p></fieldset>");
    }
    out.push_str("<p class=\"hint\">Empty fields take the default shown. Values may use <code>${NAME:-default}</code>. Settings not shown here are kept as the file has them.</p>");
    let _ = write!(
        out,
        "<button id=\"save\">{}</button></form>",
        if view.new {
            "Create endpoint"
        } else {
            "Save and apply"
        }
    );
    out
}

fn select(field: &Field, value: &str, options: &[&str]) -> String {
    let mut s = format!("<select name=\"{}\">", field.name);
    let _ = write!(
        s,
        "<option value=\"\">default{}</option>",
        if field.default.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(field.default))
        }
    );
    let mut known = false;
    for o in options {
        let sel = if *o == value {
            known = true;
            " selected"
        } else {
            ""
        };
        let _ = write!(s, "<option{sel}>{}</option>", esc(o));
    }
    if !known && !value.is_empty() {
        // A value the file has that is not an option (a reference, a typo):
        // shown so that saving does not silently change it.
        let _ = write!(s, "<option selected>{}</option>", esc(value));
    }
    s.push_str("</select>");
    s
}

/// The form's values from the file's settings: each field's key's text,
/// keyed by field name.
pub fn values_from_settings(
    kind: &str,
    settings: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for field in fields(kind).unwrap_or_default() {
        if !applies(&field, settings) && field.when.is_some() {
            continue;
        }
        if let Some(v) = settings.get(field.key) {
            out.insert(field.name.to_string(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_unchanged_field_is_left_alone_and_an_emptied_one_goes_back_to_its_default() {
        let fields = fields("mllp").unwrap();
        let current = map(&[("listen", "0.0.0.0:${P:-2575}"), ("max_connections", "8")]);
        let submitted = map(&[
            ("listen", "0.0.0.0:${P:-2575}"),
            ("max_connections", ""),
            ("idle_timeout", "5m"),
            ("frame_timeout", ""),
        ]);
        let c = changes(&fields, &submitted, &current);
        assert_eq!(
            c,
            [
                (
                    "idle_timeout".to_string(),
                    Change::Set(EditValue::String("5m".into()))
                ),
                ("max_connections".to_string(), Change::Remove),
            ]
        );
    }

    #[test]
    fn typed_values_take_the_type_of_their_field_and_bare_references_stay_bare() {
        assert_eq!(value(Kind::Integer, "64"), EditValue::Integer(64));
        assert_eq!(
            value(Kind::Integer, "lots"),
            EditValue::String("lots".into())
        );
        assert_eq!(
            value(Kind::Integer, "${N:-64}"),
            EditValue::Reference("${N:-64}".into())
        );
        assert_eq!(
            value(Kind::Size, "2 GiB"),
            EditValue::String("2 GiB".into())
        );
        assert_eq!(value(Kind::Bool, "false"), EditValue::Bool(false));
        assert_eq!(
            value(Kind::Text, "127.0.0.1:${P:-1}"),
            EditValue::String("127.0.0.1:${P:-1}".into())
        );
    }

    #[test]
    fn a_secret_left_empty_is_kept_and_keys_of_another_auth_type_are_removed() {
        let fields = fields("fhir").unwrap();
        let current = map(&[
            ("url", "https://hub/fhir"),
            ("auth.type", "api-key"),
            ("auth.key", "s3cret"),
        ]);
        let same_type = map(&[
            ("url", "https://hub/fhir"),
            ("auth.type", "api-key"),
            ("auth.api_key", ""),
        ]);
        assert!(changes(&fields, &same_type, &current).is_empty());
        let to_oauth = map(&[
            ("url", "https://hub/fhir"),
            ("auth.type", "oauth2"),
            ("auth.token_url", "https://idp/token"),
            ("auth.client_id", "gw"),
            ("auth.client_secret", "x"),
        ]);
        let c = changes(&fields, &to_oauth, &current);
        assert!(
            c.contains(&("auth.key".to_string(), Change::Remove)),
            "{c:?}"
        );
        assert!(c.contains(&(
            "auth.type".to_string(),
            Change::Set(EditValue::String("oauth2".into()))
        )));
        assert!(is_secret("auth.key", &current));
        assert_eq!(masked(&current)["auth.key"], "••••••••");
    }
}
