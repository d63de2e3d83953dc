//! What an endpoint type's admin form shows: its fields, how each is typed
//! in and which configuration key it writes. Drawing the form and turning
//! what was submitted into changes of the file is the admin page's work
//! (`admin::pages::endpoint_form`); the fields are the type's own knowledge.

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

pub const fn f(
    name: &'static str,
    label: &'static str,
    kind: Kind,
    default: &'static str,
) -> Field {
    Field {
        name,
        key: name,
        label,
        kind,
        default,
        when: None,
    }
}

pub const fn when(field: Field, on: &'static str, value: &'static str) -> Field {
    Field {
        when: Some((on, value)),
        ..field
    }
}

pub const fn keyed(field: Field, key: &'static str) -> Field {
    Field { key, ..field }
}

pub const TIMEOUT: Field = f("timeout", "Timeout", Kind::Duration, "30s");

pub const DELIVERY: &[Field] = &[
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
    f(
        "rate_limit.per_second",
        "Rate limit: messages per second (requests, for a REST listener; empty: none)",
        Kind::Float,
        "",
    ),
    f("rate_limit.burst", "Rate limit: burst", Kind::Integer, "1"),
    f(
        "circuit_breaker.failures",
        "Circuit breaker: pause after this many refusals in a row (0: off)",
        Kind::Integer,
        "20",
    ),
    f(
        "circuit_breaker.window",
        "Circuit breaker: within",
        Kind::Duration,
        "5m",
    ),
    f("mode", "Mode", Kind::Choice(&["live", "sandbox"]), "live"),
];

/// Sandbox mode of an HTTP destination: where its requests go instead.
pub const SANDBOX_URL: &[Field] = &[f(
    "sandbox_url",
    "Sandbox URL (sandbox mode; empty: capture without sending)",
    Kind::Text,
    "",
)];

/// A type's form: its own fields, then groups shared with other types.
pub fn join(parts: &[&[Field]]) -> Vec<Field> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}
