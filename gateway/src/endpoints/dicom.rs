//! `dicom`: a store SCP for modalities (`listen`), or a store SCU that
//! forwards stored objects to a PACS (`connect`).

use super::form::{f, join, Field, Kind, DELIVERY, TIMEOUT};
use super::{worker, EndpointType, PreparedWorker, Role, SourceStart, WorkerStart};
use crate::app::RunError;
use crate::config::{DicomConfig, Endpoint, EndpointKind, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub struct Dicom;

fn settings(kind: &EndpointKind) -> &DicomConfig {
    match kind {
        EndpointKind::Dicom(c) => c,
        _ => unreachable!("a dicom endpoint has dicom settings"),
    }
}

const DICOM: &[Field] = &[
    f(
        "listen",
        "Listen on (store SCP), e.g. 0.0.0.0:11112",
        Kind::Text,
        "",
    ),
    f(
        "connect",
        "PACS address (forward), host:port",
        Kind::Text,
        "",
    ),
    f("ae_title", "Our AE title", Kind::Text, "ECKO"),
    f(
        "peer_ae_title",
        "PACS AE title (forward)",
        Kind::Text,
        "ANY-SCP",
    ),
    f(
        "accept_any_called_ae",
        "Accept any called AE title (SCP)",
        Kind::Bool,
        "false",
    ),
    f(
        "max_associations",
        "Most associations at once (SCP)",
        Kind::Integer,
        "16",
    ),
    f("max_pdu", "Largest PDU received", Kind::Size, "64 KiB"),
    f(
        "association_timeout",
        "Association (ARTIM) timeout",
        Kind::Duration,
        "30s",
    ),
    f("dimse_timeout", "DIMSE timeout", Kind::Duration, "60s"),
    f(
        "idle_timeout",
        "Idle association timeout (SCP)",
        Kind::Duration,
        "300s",
    ),
    f(
        "max_object_size",
        "Largest object (SCP)",
        Kind::Size,
        "4 GiB",
    ),
    f("store", "Object store directory (SCP)", Kind::Text, ""),
    f(
        "mpps",
        "Accept MPPS N-CREATE/N-SET (SCP)",
        Kind::Bool,
        "false",
    ),
    f(
        "study_idle",
        "Announce a study as ImagingStudy after it is idle for (SCP; empty: off)",
        Kind::Duration,
        "",
    ),
    f(
        "study_endpoint",
        "FHIR Endpoint the studies are fetched from, e.g. Endpoint/pacs-wado (SCP)",
        Kind::Text,
        "",
    ),
];

impl EndpointType for Dicom {
    fn name(&self) -> &'static str {
        "dicom"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::Dicom)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        settings(kind).problems()
    }

    fn form(&self) -> Vec<Field> {
        join(&[DICOM, &[TIMEOUT], DELIVERY])
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

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = settings(&endpoint.kind);
            if c.is_listener() {
                let addr = c.listen.clone().unwrap_or_default();
                probe::tcp(steps, &probe::local(&addr)).await;
                Some("The store SCP is checked by connecting to it; nothing is stored.".into())
            } else {
                let addr = c.connect.clone().unwrap_or_default();
                if probe::tcp(steps, &addr).await.is_some() {
                    let sink = crate::sinks::dicom::DicomSink::new(&endpoint.name, c);
                    steps
                        .run("C-ECHO", async { sink.echo().await.map(|d| ((), d)) })
                        .await;
                }
                None
            }
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let sink = crate::sinks::dicom::DicomSink::new(&endpoint.name, settings(&endpoint.kind));
        Ok(worker(endpoint, sink, start))
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        Box::pin(async move {
            let listener =
                crate::sources::dicom::Listener::bind(endpoint, settings(&endpoint.kind), start.cx)
                    .await?;
            Ok(tokio::spawn(listener.serve()))
        })
    }
}
