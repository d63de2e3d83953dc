//! `fhir`: transaction Bundles to a FHIR R4 server over HTTP(S).

use super::form::{
    f, join, keyed, when, Field, Kind, AUTH_CERT, AUTH_KEY, DELIVERY, PINNED, SANDBOX_URL, TIMEOUT,
    TRUST,
};
use super::{EndpointType, PreparedWorker, Role, WorkerStart};
use crate::app::RunError;
use crate::config::{CodeMapEntry, Endpoint, EndpointKind, FhirSinkConfig, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use crate::sinks::fhir::FhirSink;
use ecko_fhir::shape::{CodeMap, FhirDestination, LoincCoding};
use futures_util::future::BoxFuture;
use std::sync::Arc;

pub struct Fhir;

/// What the destination's settings ask of every Bundle sent to it.
pub fn shaping(c: &FhirSinkConfig) -> FhirDestination {
    let codings = |e: &CodeMapEntry| -> Vec<LoincCoding> {
        e.targets()
            .into_iter()
            .map(|t| LoincCoding {
                code: t.code,
                display: t.display,
                unit: t.unit,
            })
            .collect()
    };
    FhirDestination {
        code_map: CodeMap {
            all: c
                .code_map
                .iter()
                .map(|(k, v)| (k.clone(), codings(v)))
                .collect(),
            by_source: c
                .code_map_by_source
                .iter()
                .map(|(source, map)| {
                    let map = map.iter().map(|(k, v)| (k.clone(), codings(v))).collect();
                    (source.clone(), map)
                })
                .collect(),
        },
        conditional_updates: c.conditional_updates,
    }
}

fn settings(kind: &EndpointKind) -> &FhirSinkConfig {
    match kind {
        EndpointKind::Fhir(c) => c,
        _ => unreachable!("a fhir endpoint has fhir settings"),
    }
}

const URL: &[Field] = &[
    f("url", "Base URL", Kind::Text, ""),
    f(
        "auth.type",
        "Authentication",
        Kind::Choice(&["none", "api-key", "oauth2", "client-certificate"]),
        "none",
    ),
];

/// The fields of `[endpoint.auth]` that an HTTPS sender presents, each
/// shown for its `auth.type` (the `rest` sender's too).
pub(super) const SENDER_AUTH: &[Field] = &[
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
        f("auth.cert", "Client certificate (PEM path)", AUTH_CERT, ""),
        "auth.type",
        "client-certificate",
    ),
    when(
        keyed(
            f("auth.key_file", "Client key (PEM path)", AUTH_KEY, ""),
            "auth.key",
        ),
        "auth.type",
        "client-certificate",
    ),
];

const FHIR: &[Field] = &[
    f("ca_file", "CA bundle (PEM path; empty: system)", TRUST, ""),
    f(
        "pinned_cert",
        "Pinned server certificate (PEM path)",
        PINNED,
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

impl EndpointType for Fhir {
    fn name(&self) -> &'static str {
        "fhir"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        let c: FhirSinkConfig = input.read()?;
        input.check(c.problem())?;
        Some(EndpointKind::Fhir(c))
    }

    fn form(&self) -> Vec<Field> {
        join(&[URL, SENDER_AUTH, FHIR, &[TIMEOUT], DELIVERY, SANDBOX_URL])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Destination
    }

    fn preflight(&self, endpoint: &Endpoint) -> Option<String> {
        FhirSink::new(endpoint, settings(&endpoint.kind))
            .err()
            .map(|e| e.to_string())
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            probe::fhir(endpoint, settings(&endpoint.kind), steps).await;
            None
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        mut start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        start.transforms.fhir = Some(Arc::new(shaping(settings(&endpoint.kind))));
        let mut c = settings(&endpoint.kind).clone();
        c.url = super::address(endpoint, &c.url);
        super::built(endpoint, FhirSink::new(endpoint, &c), start)
    }
}
