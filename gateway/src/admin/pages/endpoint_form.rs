//! The endpoint forms: which settings each endpoint type shows, how a
//! submitted value becomes a TOML value, and which validation error goes
//! beside which field (`endpoint_form.html` draws the form).
//!
//! A form shows the file's own text of each setting (an environment
//! reference stays a reference). A field sent back unchanged leaves its key
//! untouched; an emptied field removes the key (the default applies again),
//! except a secret, which the form never shows: left empty it is kept.
//! Settings the form does not show (a FHIR `code_map`, for instance) are
//! kept as they are. Nothing is checked here that the configuration loader
//! checks: values go into the file as typed and the loader judges them.

use crate::config::edit::Change;
use crate::control::config::FieldError;
use crate::endpoints::form::{Field, Kind};
use minijinja::{context, Value};
use std::collections::BTreeMap;

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
        || key == "password"
        || key == "passphrase"
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

/// The choices of a field drawn as a select, if it is one.
pub(super) fn options(kind: Kind) -> Option<&'static [&'static str]> {
    match kind {
        Kind::Choice(options) => Some(options),
        Kind::Bool => Some(&["true", "false"]),
        _ => None,
    }
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
    /// (route name, checked) for a new endpoint.
    pub routes: &'a [(String, bool)],
}

/// The values `endpoint_form.html` draws: each field with its control and
/// the errors that belong beside it, and the errors no field takes.
pub fn values(view: &FormView<'_>) -> Value {
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
        let in_rows = super::endpoint_rows::groups(view.kind)
            .iter()
            .any(|r| super::endpoint_rows::is_about(r, e));
        match found {
            _ if in_rows => {}
            Some(f) => placed.entry(f.name).or_default().push(&e.message),
            None if e.field.as_deref() == Some("name") => {
                placed.entry("name").or_default().push(&e.message)
            }
            None => general.push(e),
        }
    }
    let controls: Vec<Value> = fields
        .iter()
        .map(|field| {
            let secret = field.kind == Kind::Secret;
            let options = options(field.kind);
            context! {
                name => field.name,
                label => field.label,
                default => field.default,
                // A secret is never shown back.
                value => if secret { "" } else { view.values.get(field.name).map_or("", String::as_str) },
                options,
                secret,
                kept => view.values.contains_key(field.name) || !view.new,
                errors => placed.get(field.name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let routes: Vec<Value> = view
        .routes
        .iter()
        .map(|(name, checked)| context! { name, checked })
        .collect();
    context! {
        action => view.action,
        kind => view.kind,
        name => view.name,
        new => view.new,
        general,
        name_errors => placed.get("name").cloned().unwrap_or_default(),
        fields => controls,
        rows => super::endpoint_rows::values(view.kind, view.values, view.errors),
        routes,
    }
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
    out.extend(super::endpoint_rows::cells_of(kind, settings));
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::edit::EditValue;

    /// Form values or file settings from pairs.
    pub(in crate::admin::pages) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
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
        assert!(is_secret("password", &current));
        assert_eq!(masked(&current)["auth.key"], "••••••••");
    }
}
