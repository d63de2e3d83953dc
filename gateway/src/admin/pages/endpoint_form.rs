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

use crate::admin::render::esc;
use crate::config::edit::Change;
use crate::control::config::FieldError;
use crate::endpoints::form::{Field, Kind};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The fields of an endpoint type, in form order; `None` for an unknown
/// type.
pub fn fields(kind: &str) -> Option<Vec<Field>> {
    crate::endpoints::named(kind).map(|t| t.form())
}

/// A value as typed, in the TOML type the field's kind asks for. A value
/// that does not parse as that type goes in as a string, so that the
/// loader's own message says what is wrong with it.
pub use crate::control::config::typed_value as value;

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
    use crate::config::edit::EditValue;

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
