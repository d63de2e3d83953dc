//! `mllp`: HL7 v2 over MLLP, a listener (`listen`) or a sender (`connect`).

use super::form::{f, join, Field, Kind, DELIVERY, TIMEOUT, TLS_CERT, TLS_KEY, TRUST};
use super::{worker, EndpointType, PreparedWorker, Role, SourceStart, WorkerStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, MllpConfig, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Mllp;

fn settings(kind: &EndpointKind) -> &MllpConfig {
    match kind {
        EndpointKind::Mllp(c) => c,
        _ => unreachable!("an mllp endpoint has mllp settings"),
    }
}

const MLLP: &[Field] = &[
    f(
        "listen",
        "Listen on (listener), e.g. 0.0.0.0:2575",
        Kind::Text,
        "",
    ),
    f("connect", "Connect to (sender), host:port", Kind::Text, ""),
    f(
        "charset",
        "Character set when MSH-18 is empty",
        Kind::Choice(&["ASCII", "8859/1", "UNICODE UTF-8", "windows-1252"]),
        "windows-1252",
    ),
    f(
        "on_invalid_text",
        "Bytes invalid in the character set (listener)",
        Kind::Choice(&["refuse", "replace"]),
        "refuse",
    ),
    f("max_message_size", "Largest message", Kind::Size, "16 MiB"),
    f("frame_timeout", "Frame timeout", Kind::Duration, "60s"),
    f("idle_timeout", "Idle timeout", Kind::Duration, "600s"),
    f(
        "max_connections",
        "Most connections (listener)",
        Kind::Integer,
        "64",
    ),
    f("ack_timeout", "ACK timeout (sender)", Kind::Duration, "30s"),
    f(
        "application_error",
        "An AE answer means (sender)",
        Kind::Choice(&["permanent", "retry"]),
        "permanent",
    ),
    f("tls.cert", "TLS certificate (PEM path)", TLS_CERT, ""),
    f("tls.key", "TLS private key (PEM path)", TLS_KEY, ""),
    f("tls.ca", "TLS CA bundle (PEM path)", TRUST, ""),
    f(
        "tls.require_client_cert",
        "TLS: require client certificates (listener)",
        Kind::Bool,
        "false",
    ),
    f(
        "tls.server_name",
        "TLS: server name to verify (sender)",
        Kind::Text,
        "",
    ),
];

impl EndpointType for Mllp {
    fn name(&self) -> &'static str {
        "mllp"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::Mllp)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        settings(kind).problems()
    }

    fn timeout(&self, kind: &EndpointKind, given: Option<Duration>) -> Result<Duration, String> {
        let c = settings(kind);
        if c.connect.is_some() {
            crate::config::mllp_sender_timeout(c, given)
        } else {
            Ok(given.unwrap_or(crate::config::DEFAULT_TIMEOUT))
        }
    }

    fn form(&self) -> Vec<Field> {
        join(&[MLLP, &[TIMEOUT], DELIVERY])
    }

    fn role(&self, kind: &EndpointKind) -> Role {
        if settings(kind).listen.is_some() {
            Role::Source
        } else {
            Role::Destination
        }
    }

    fn listen_address<'a>(&self, kind: &'a EndpointKind) -> Option<&'a str> {
        settings(kind).listen.as_deref()
    }

    fn runs_while_disabled(&self, endpoint: &Endpoint) -> bool {
        crate::sources::mllp::answers_while_disabled(endpoint)
    }

    fn preflight(&self, endpoint: &Endpoint) -> Option<String> {
        let c = settings(&endpoint.kind);
        if c.listen.is_some() {
            c.tls
                .as_ref()
                .and_then(|t| crate::tls::server_config(t).err())
                .map(|e| e.to_string())
        } else {
            crate::sinks::mllp::MllpSink::new(&endpoint.name, c)
                .err()
                .map(|e| e.to_string())
        }
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = settings(&endpoint.kind);
            if c.connect.is_some() {
                probe::mllp_sender(c, steps, options.mllp_round_trip).await
            } else {
                let addr = c.listen.clone().unwrap_or_default();
                probe::tcp(steps, &probe::local(&addr)).await;
                Some("A listener is checked by connecting to it; no message is sent, since it would be journalled.".into())
            }
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let sink = crate::sinks::mllp::MllpSink::new(&endpoint.name, settings(&endpoint.kind))
            .map_err(|source| RunError::Tls {
                endpoint: endpoint.name.clone(),
                source,
            })?;
        Ok(worker(endpoint, sink, start))
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        Box::pin(async move {
            let listener =
                crate::sources::mllp::Listener::bind(endpoint, settings(&endpoint.kind), start.cx)
                    .await?;
            Ok(tokio::spawn(listener.serve()))
        })
    }
}
