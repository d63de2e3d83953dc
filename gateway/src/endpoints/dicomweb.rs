//! `dicomweb`: stored DICOM objects sent to a DICOMweb server by STOW-RS.

use super::form::{f, join, Field, Kind, DELIVERY, PINNED, SANDBOX_URL, TIMEOUT, TRUST};
use super::{EndpointType, PreparedWorker, Role, WorkerStart};
use crate::app::RunError;
use crate::config::{DicomWebConfig, Endpoint, EndpointKind, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;

pub struct DicomWeb;

fn settings(kind: &EndpointKind) -> &DicomWebConfig {
    match kind {
        EndpointKind::DicomWeb(c) => c,
        _ => unreachable!("a dicomweb endpoint has dicomweb settings"),
    }
}

const DICOMWEB: &[Field] = &[
    f("url", "STOW-RS URL (…/studies)", Kind::Text, ""),
    f("ca_file", "CA bundle (PEM path)", TRUST, ""),
    f(
        "pinned_cert",
        "Pinned server certificate (PEM path)",
        PINNED,
        "",
    ),
    f("max_batch", "Objects per request", Kind::Integer, "16"),
    f(
        "max_request_size",
        "Bytes per request",
        Kind::Size,
        "64 MiB",
    ),
];

impl EndpointType for DicomWeb {
    fn name(&self) -> &'static str {
        "dicomweb"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::DicomWeb)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        settings(kind).problems()
    }

    fn form(&self) -> Vec<Field> {
        join(&[DICOMWEB, &[TIMEOUT], DELIVERY, SANDBOX_URL])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Destination
    }

    fn preflight(&self, endpoint: &Endpoint) -> Option<String> {
        crate::sinks::dicomweb::DicomWebSink::new(endpoint, settings(&endpoint.kind))
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
            let url = settings(&endpoint.kind).url.trim();
            let host = url
                .split_once("://")
                .map(|(scheme, rest)| {
                    let authority = rest.split('/').next().unwrap_or(rest);
                    if authority.contains(':') {
                        authority.to_string()
                    } else if scheme == "https" {
                        format!("{authority}:443")
                    } else {
                        format!("{authority}:80")
                    }
                })
                .unwrap_or_default();
            probe::tcp(steps, &host).await;
            Some("Only the connection is checked: a STOW-RS request stores what it carries.".into())
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let mut c = settings(&endpoint.kind).clone();
        c.url = super::address(endpoint, &c.url);
        super::built(
            endpoint,
            crate::sinks::dicomweb::DicomWebSink::new(endpoint, &c),
            start,
        )
    }
}
