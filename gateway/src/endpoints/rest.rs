//! `rest`: an HTTP(S) listener taking FHIR and custom bodies (`listen`), or
//! a sender to a custom REST API (`url`).
//!
//! One type, like `mllp` and `dicom`: the two roles share the name an
//! operator looks for, `[endpoint.auth]` and the HTTP vocabulary, and the
//! role follows from the address given.

use super::form::{
    f, join, keyed, when, Field, Kind, Rows, DELIVERY, PINNED, SANDBOX_URL, TIMEOUT, TLS_CERT,
    TLS_KEY, TRUST,
};
use super::{built, EndpointType, PreparedWorker, Role, SourceStart, WorkerStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, RestConfig, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use crate::sinks::rest::RestSink;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub struct Rest;

fn settings(kind: &EndpointKind) -> &RestConfig {
    match kind {
        EndpointKind::Rest(c) => c,
        _ => unreachable!("a rest endpoint has rest settings"),
    }
}

const REST: &[Field] = &[
    f(
        "listen",
        "Listen on (listener), e.g. 0.0.0.0:8081; its paths below",
        Kind::Text,
        "",
    ),
    f("url", "URL template (sender)", Kind::Text, ""),
    f("method", "Method (sender)", Kind::Text, "POST"),
    f(
        "body",
        "Body template (sender; empty: the transform's output)",
        Kind::Text,
        "",
    ),
    f(
        "content_type",
        "Content type (sender)",
        Kind::Text,
        "application/json",
    ),
    f(
        "auth.type",
        "Authentication",
        Kind::Choice(&["none", "api-key", "oauth2", "bearer", "client-certificate"]),
        "none",
    ),
];

/// A listener's own `[endpoint.auth]` fields: the bearer token's JWKS.
const BEARER: &[Field] = &[
    when(
        f("auth.jwks_file", "JWKS file (listener)", Kind::Text, ""),
        "auth.type",
        "bearer",
    ),
    when(
        f("auth.jwks_url", "JWKS URL (listener)", Kind::Text, ""),
        "auth.type",
        "bearer",
    ),
    when(
        f("auth.issuer", "Token issuer (listener)", Kind::Text, ""),
        "auth.type",
        "bearer",
    ),
    when(
        f("auth.audience", "Token audience (listener)", Kind::Text, ""),
        "auth.type",
        "bearer",
    ),
    // Its own name: a sender's OAuth scope writes the same key.
    when(
        keyed(
            f(
                "auth.bearer_scope",
                "Scope the token must hold, else 403 (listener)",
                Kind::Text,
                "",
            ),
            "auth.scope",
        ),
        "auth.type",
        "bearer",
    ),
];

/// A listener's `[[endpoint.paths]]`, one row each.
const PATHS: &[Rows] = &[Rows {
    key: "paths",
    label: "Paths (listener)",
    fields: &[
        f("path", "Path, e.g. /fhir", Kind::Text, ""),
        f(
            "accept",
            "Takes",
            Kind::Choice(&["fhir", "json", "text"]),
            "fhir",
        ),
        f(
            "message_type",
            "Message type",
            Kind::Text,
            "FHIR^<resourceType>, JSON or TEXT",
        ),
        f(
            "bundles",
            "Bundles (fhir)",
            Kind::Choice(&["whole", "split"]),
            "whole",
        ),
    ],
    blank: 2,
    hint: "A FHIR path also takes what is below it (/fhir/Observation). Empty a row's path to remove it.",
}];

const LISTENER_AND_TLS: &[Field] = &[
    f(
        "tls.cert",
        "TLS certificate (PEM path, listener)",
        TLS_CERT,
        "",
    ),
    f(
        "tls.key",
        "TLS private key (PEM path, listener)",
        TLS_KEY,
        "",
    ),
    f(
        "tls.ca",
        "TLS client CA bundle (PEM path, listener)",
        TRUST,
        "",
    ),
    f(
        "tls.require_client_cert",
        "TLS: require client certificates (listener)",
        Kind::Bool,
        "false",
    ),
    f(
        "plain_http",
        "Plain HTTP (listener, loopback only)",
        Kind::Bool,
        "false",
    ),
    f(
        "max_body_size",
        "Largest body (listener)",
        Kind::Size,
        "16 MiB",
    ),
    f(
        "max_connections",
        "Most connections (listener)",
        Kind::Integer,
        "64",
    ),
    f(
        "ca_file",
        "CA bundle (PEM path, sender; empty: system)",
        TRUST,
        "",
    ),
    f(
        "pinned_cert",
        "Pinned server certificate (PEM path, sender)",
        PINNED,
        "",
    ),
];

impl EndpointType for Rest {
    fn name(&self) -> &'static str {
        "rest"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::Rest)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        settings(kind).problems()
    }

    fn form(&self) -> Vec<Field> {
        join(&[
            REST,
            super::fhir::SENDER_AUTH,
            BEARER,
            LISTENER_AND_TLS,
            &[TIMEOUT],
            DELIVERY,
            SANDBOX_URL,
        ])
    }

    fn rows(&self) -> &'static [Rows] {
        PATHS
    }

    fn role(&self, kind: &EndpointKind) -> Role {
        if settings(kind).is_listener() {
            Role::Source
        } else {
            Role::Destination
        }
    }

    fn listen_address<'a>(&self, kind: &'a EndpointKind) -> Option<&'a str> {
        settings(kind).listen.as_deref()
    }

    fn preflight(&self, endpoint: &Endpoint) -> Option<String> {
        let c = settings(&endpoint.kind);
        if c.is_listener() {
            if let Err(e) = crate::sources::rest::prepare(endpoint, c) {
                return Some(e.to_string());
            }
            crate::sources::rest::Check::from_config(&c.auth)
                .err()
                .map(|e| e.to_string())
        } else {
            RestSink::new(endpoint, c).err().map(|e| e.to_string())
        }
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = settings(&endpoint.kind);
            if let Some(listen) = &c.listen {
                probe::tcp(steps, &probe::local(listen)).await;
                return Some(
                    "The listener is checked by connecting to it; nothing is posted.".into(),
                );
            }
            let url = c.url.as_deref().unwrap_or_default();
            let Some(host) = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            else {
                return Some("The URL is a template of the message: nothing to connect to before a message renders it.".into());
            };
            probe::tcp(steps, &host).await;
            Some("Only the connection is checked: a request would deliver what it carries.".into())
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let mut c = settings(&endpoint.kind).clone();
        c.url = c.url.map(|live| super::address(endpoint, &live));
        built(endpoint, RestSink::new(endpoint, &c), start)
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        Box::pin(async move {
            let listener =
                crate::sources::rest::Listener::bind(endpoint, settings(&endpoint.kind), start.cx)
                    .await
                    .map_err(|e| RunError::Endpoint {
                        name: endpoint.name.clone(),
                        reason: e.to_string(),
                    })?;
            Ok(tokio::spawn(listener.serve()))
        })
    }
}
