//! Integration templates: ready endpoint and route fragments for common
//! integrations (lab analyzers, a PACS, pharmacies, accounting, ...), each
//! a commented TOML file under `config/integrations/` embedded in the
//! binary.
//!
//! A template file is TOML with a `[template]` table (title, summary, what
//! it maps, and one `[[template.param]]` per value the user fills in) and
//! the `[[endpoint]]` and `[[route]]` tables it adds. A parameter stands
//! in the text as `@{key}`: inside a TOML basic string (`"@{url}"`) for a
//! text parameter, where the value is escaped as string content; bare
//! (`port = @{port}`) for an integer one, whose value must be an integer
//! or one `${NAME}` reference. `@{` means nothing else in a configuration
//! (environment references are `${...}`, message templates `{{ ... }}`),
//! so both of those pass through a template untouched.
//!
//! [`Template::render`] gives the fragment with the values filled in; it is
//! added to a configuration by
//! [`ConfigDocument::add_fragment`](super::edit::ConfigDocument::add_fragment),
//! the editing path of the admin page, which keeps the file's comments and
//! the fragment's own, drops `[template]` and refuses a name in use.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The embedded template files, by name.
const FILES: &[(&str, &str)] = &[
    (
        "lab-hl7-mllp",
        include_str!("../../../config/integrations/lab-hl7-mllp.toml"),
    ),
    (
        "lab-astm-tcp",
        include_str!("../../../config/integrations/lab-astm-tcp.toml"),
    ),
    (
        "lab-astm-serial",
        include_str!("../../../config/integrations/lab-astm-serial.toml"),
    ),
    (
        "pacs-dicom",
        include_str!("../../../config/integrations/pacs-dicom.toml"),
    ),
    (
        "pharmacy-rest",
        include_str!("../../../config/integrations/pharmacy-rest.toml"),
    ),
    (
        "pharmacy-fhir",
        include_str!("../../../config/integrations/pharmacy-fhir.toml"),
    ),
    (
        "accounting-sftp",
        include_str!("../../../config/integrations/accounting-sftp.toml"),
    ),
    (
        "accounting-folder",
        include_str!("../../../config/integrations/accounting-folder.toml"),
    ),
    (
        "abdm-health-information",
        include_str!("../../../config/integrations/abdm-health-information.toml"),
    ),
    (
        "insurance-claims",
        include_str!("../../../config/integrations/insurance-claims.toml"),
    ),
    (
        "registry-notifiable-disease",
        include_str!("../../../config/integrations/registry-notifiable-disease.toml"),
    ),
    (
        "registry-birth-death",
        include_str!("../../../config/integrations/registry-birth-death.toml"),
    ),
];

/// What a parameter's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Any text, written inside a TOML string.
    #[default]
    Text,
    /// A whole number (or a `${NAME}` reference), written bare.
    Integer,
}

/// One value a template asks for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub key: String,
    pub label: String,
    pub help: String,
    /// Taken when no value is given; without one the value is required.
    #[serde(default)]
    pub default: Option<String>,
    /// A sample value: the form's placeholder and what the tests apply.
    pub example: String,
    #[serde(default)]
    pub kind: ParamKind,
    /// The only values allowed, when set.
    #[serde(default)]
    pub choices: Vec<String>,
    /// A credential: the form does not echo it back.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    title: String,
    summary: String,
    maps: String,
    #[serde(default)]
    param: Vec<Param>,
}

#[derive(Debug, serde::Deserialize)]
struct File {
    template: Meta,
}

/// One integration template.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: &'static str,
    pub title: String,
    pub summary: String,
    /// What its transforms map, in words.
    pub maps: String,
    pub params: Vec<Param>,
    /// The file as shipped, comments and `@{key}` placeholders included.
    pub text: &'static str,
}

/// Why a template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("there is no integration template `{0}` (see `ecko-gateway template list`)")]
    Unknown(String),
    #[error("template `{template}` needs a value for `{key}` ({label})")]
    Missing {
        template: String,
        key: String,
        label: String,
    },
    #[error("template `{template}` has no parameter `{key}` (it takes {known})")]
    UnknownParam {
        template: String,
        key: String,
        known: String,
    },
    #[error("`{key}` must be one of {choices}, not `{value}`")]
    NotAChoice {
        key: String,
        value: String,
        choices: String,
    },
    #[error("`{key}` must be a whole number or a ${{NAME}} reference, not `{value}`")]
    NotAnInteger { key: String, value: String },
    #[error("`{key}` must be one line")]
    Multiline { key: String },
}

/// Every template, in catalogue order. A shipped file that does not read
/// is left out (and fails the tests).
pub fn all() -> &'static [Template] {
    static ALL: OnceLock<Vec<Template>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|(name, text)| match read(name, text) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(template = name, error = %e, "an embedded integration template does not read");
                    None
                }
            })
            .collect()
    })
}

/// The template called `name`.
pub fn named(name: &str) -> Result<&'static Template, RenderError> {
    all()
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| RenderError::Unknown(name.to_string()))
}

fn read(name: &'static str, text: &'static str) -> Result<Template, String> {
    // The placeholders made TOML: `0` is a string's content or an integer.
    let neutral = substitute(text, |_| Some("0".to_string()));
    let file: File = toml::from_str(&neutral).map_err(|e| e.to_string())?;
    let Meta {
        title,
        summary,
        maps,
        param,
    } = file.template;
    Ok(Template {
        name,
        title,
        summary,
        maps,
        params: param,
        text,
    })
}

/// `text` with each `@{key}` replaced by `value(key)` (left as it is when
/// that gives `None`), in one pass: a value is never read for placeholders.
fn substitute(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let key = &after[..end];
                match value(key) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `@{key}` placeholders `text` names, in order of first use.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    substitute(text, |k| {
        if !keys.iter().any(|x| x == k) {
            keys.push(k.to_string());
        }
        None
    });
    keys
}

/// `value` as the content of a TOML basic string.
fn toml_string_content(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '"' => "\\\"".to_string(),
            c if c.is_control() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

impl Template {
    /// Each parameter's example: the values the tests apply.
    pub fn sample_values(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .map(|p| (p.key.clone(), p.example.clone()))
            .collect()
    }

    /// The parameters a value is still needed for, given `values`.
    pub fn missing<'a>(&'a self, values: &BTreeMap<String, String>) -> Vec<&'a Param> {
        self.params
            .iter()
            .filter(|p| {
                p.default.is_none() && values.get(&p.key).is_none_or(|v| v.trim().is_empty())
            })
            .collect()
    }

    /// The fragment with `values` filled in (a parameter left out or empty
    /// takes its default): TOML holding `[[endpoint]]` and `[[route]]`
    /// tables, and the `[template]` table the editor drops.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, RenderError> {
        if let Some(key) = values
            .keys()
            .find(|k| !self.params.iter().any(|p| &p.key == *k))
        {
            return Err(RenderError::UnknownParam {
                template: self.name.to_string(),
                key: key.clone(),
                known: self
                    .params
                    .iter()
                    .map(|p| format!("`{}`", p.key))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut filled = BTreeMap::new();
        for p in &self.params {
            let given = values
                .get(&p.key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty());
            let Some(value) = given.or(p.default.as_deref()) else {
                return Err(RenderError::Missing {
                    template: self.name.to_string(),
                    key: p.key.clone(),
                    label: p.label.clone(),
                });
            };
            filled.insert(p.key.as_str(), self.written(p, value)?);
        }
        Ok(substitute(self.text, |k| filled.get(k).cloned()))
    }

    /// A value as the fragment's text writes it.
    fn written(&self, p: &Param, value: &str) -> Result<String, RenderError> {
        if value.contains(['\n', '\r']) {
            return Err(RenderError::Multiline { key: p.key.clone() });
        }
        if !p.choices.is_empty() && !p.choices.iter().any(|c| c == value) {
            return Err(RenderError::NotAChoice {
                key: p.key.clone(),
                value: value.to_string(),
                choices: p.choices.join(", "),
            });
        }
        match p.kind {
            ParamKind::Text => Ok(toml_string_content(value)),
            ParamKind::Integer => {
                let reference = value.starts_with("${")
                    && value.ends_with('}')
                    && value.matches("${").count() == 1;
                if reference || value.parse::<i64>().is_ok() {
                    Ok(value.to_string())
                } else {
                    Err(RenderError::NotAnInteger {
                        key: p.key.clone(),
                        value: value.to_string(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
