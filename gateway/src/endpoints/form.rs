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
    /// The path of a PEM file, typed in or uploaded from the form
    /// (`control::certificates`); what the file must hold.
    Pem(Pem),
}

/// What a PEM file setting holds, for checking an uploaded file before
/// the setting refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pem {
    /// A certificate chain, the certificate presented first; its private
    /// key is the setting `key`.
    Certificate { key: &'static str },
    /// A private key; its certificate is the setting `certificate`.
    Key { certificate: &'static str },
    /// CA certificates the peer is verified against.
    Trust,
    /// The one server certificate accepted.
    Pinned,
}

impl Pem {
    /// What the file must hold, for [`crate::tls::upload::check`].
    pub fn holds(self) -> crate::tls::upload::Holds {
        use crate::tls::upload::Holds;
        match self {
            Pem::Certificate { .. } => Holds::Certificate,
            Pem::Key { .. } => Holds::PrivateKey,
            Pem::Trust => Holds::Trust,
            Pem::Pinned => Holds::Pinned,
        }
    }
}

/// A listener's or sender's own certificate at `tls.cert` with its key at
/// `tls.key`, and their CA bundle at `tls.ca` (MLLP, the REST listener).
pub const TLS_CERT: Kind = Kind::Pem(Pem::Certificate { key: "tls.key" });
pub const TLS_KEY: Kind = Kind::Pem(Pem::Key {
    certificate: "tls.cert",
});
/// A client certificate at `auth.cert` with its key at `auth.key`.
pub const AUTH_CERT: Kind = Kind::Pem(Pem::Certificate { key: "auth.key" });
pub const AUTH_KEY: Kind = Kind::Pem(Pem::Key {
    certificate: "auth.cert",
});
pub const TRUST: Kind = Kind::Pem(Pem::Trust);
pub const PINNED: Kind = Kind::Pem(Pem::Pinned);

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

/// A setting written as an array of tables (`[[endpoint.paths]]`), edited
/// on the form as rows, one table a row: each field's `key` is the key
/// within the table. A row without its first field is no table.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    /// The array's key (`paths`).
    pub key: &'static str,
    pub label: &'static str,
    pub fields: &'static [Field],
    /// Empty rows offered for adding tables.
    pub blank: usize,
    /// What the form says below the rows.
    pub hint: &'static str,
}

/// A type's form: its own fields, then groups shared with other types.
pub fn join(parts: &[&[Field]]) -> Vec<Field> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}
