//! The minijinja templates of a message that sinks render (`rest`: method,
//! URL, headers, body; `sftp`: the file name), so that each sees the same
//! names and helpers.
//!
//! A template sees `msg` (`id`, `source`, `message_type`, `control_id`,
//! `patient_id`, `received_at`, `text`: the payload as received), `payload`
//! (the transform's output as text), `json` (that output parsed, when it is
//! JSON) and `attempt`, with the helpers of the FHIR templates (`uuid`,
//! `fhir_time`, ...). Rendering is bounded (fuel).

use super::Delivery;
use minijinja::Environment;
use serde_json::Value;

/// Instructions one rendering may run.
const FUEL: u64 = 500_000;

/// A template that does not compile, by its key.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct TemplateError {
    pub key: String,
    pub reason: String,
}

/// The templates of one sink, each under its key.
pub struct Templates(Environment<'static>);

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        ecko_fhir::template::context::add_helpers(&mut env);
        Templates(env)
    }

    /// Compiles `text` as the template `key`.
    pub fn add(
        &mut self,
        key: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<(), TemplateError> {
        let key = key.into();
        self.0
            .add_template_owned(key.clone(), text.into())
            .map_err(|e| TemplateError {
                key,
                reason: e.to_string(),
            })
    }

    /// Renders the template `key` for `context` (of [`context`]); the
    /// error names the template and its line.
    pub fn render(&self, key: &str, context: &minijinja::Value) -> Result<String, String> {
        self.0
            .get_template(key)
            .and_then(|t| t.render(context))
            .map_err(|e| {
                let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
                format!("template `{key}`{line}: {e}")
            })
    }
}

/// What a template of `d` sees.
pub fn context(d: &Delivery) -> minijinja::Value {
    let payload = d.payload.to_bytes();
    let payload_text = String::from_utf8_lossy(&payload).into_owned();
    let json: Option<Value> = serde_json::from_slice(&payload).ok();
    let m = &d.message;
    let received_at = jiff::Timestamp::from_millisecond(m.received_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    minijinja::context! {
        msg => minijinja::context! {
            id => m.id,
            source => m.source,
            message_type => m.message_type,
            control_id => m.control_id,
            patient_id => m.patient_id,
            received_at => received_at,
            text => String::from_utf8_lossy(&m.payload),
        },
        payload => payload_text,
        json => json.map(minijinja::Value::from_serialize),
        attempt => d.attempt,
    }
}
