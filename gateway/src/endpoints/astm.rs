//! `astm-serial` and `astm-tcp`: an ASTM analyzer on a serial line or over
//! TCP (server or client). Results come in through the source; orders go
//! out to the analyzer from the journal, not through routes, so both are
//! inbound endpoints.

use super::form::{f, join, Field, Kind};
use super::{EndpointType, Role, SourceStart};
use crate::app::RunError;
use crate::config::{
    AstmSerialConfig, AstmTcpConfig, Endpoint, EndpointKind, SettingsInput, TcpRole,
};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub struct Serial;
pub struct Tcp;

const ASTM_LINE: &[Field] = &[
    f(
        "framing",
        "Framing",
        Kind::Choice(&["e1381", "raw"]),
        "e1381",
    ),
    f(
        "line_terminator",
        "Line terminator (raw)",
        Kind::Choice(&["cr", "crlf", "lf"]),
        "cr",
    ),
    f("max_frame_text", "Longest frame text", Kind::Integer, "240"),
    f("checksum_required", "Checksum required", Kind::Bool, "true"),
    f("check_sequence", "Check frame numbers", Kind::Bool, "true"),
    f("max_message_size", "Largest message", Kind::Size, "4 MiB"),
    f(
        "test_id_component",
        "Test code in R-3 component",
        Kind::Choice(&["auto", "4", "5", "6"]),
        "auto",
    ),
    f(
        "orders",
        "Orders",
        Kind::Choice(&["query", "broadcast"]),
        "query",
    ),
    f("order_poll", "Order poll (broadcast)", Kind::Duration, "2s"),
    f(
        "reconnect_max",
        "Longest reconnect wait",
        Kind::Duration,
        "30s",
    ),
];

const ASTM_TCP: &[Field] = &[
    f(
        "role",
        "Role",
        Kind::Choice(&["server", "client"]),
        "server",
    ),
    f("address", "Address (host:port)", Kind::Text, ""),
];

const ASTM_SERIAL: &[Field] = &[
    f("device", "Device", Kind::Text, ""),
    f("baud", "Baud", Kind::Integer, "9600"),
    f("data_bits", "Data bits", Kind::Integer, "8"),
    f(
        "parity",
        "Parity",
        Kind::Choice(&["none", "odd", "even"]),
        "none",
    ),
    f("stop_bits", "Stop bits", Kind::Integer, "1"),
    f(
        "flow_control",
        "Flow control",
        Kind::Choice(&["none", "software", "hardware"]),
        "none",
    ),
];

impl EndpointType for Serial {
    fn name(&self) -> &'static str {
        "astm-serial"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        let c: AstmSerialConfig = input.read()?;
        input.check(c.problem())?;
        Some(EndpointKind::AstmSerial(c))
    }

    fn form(&self) -> Vec<Field> {
        join(&[ASTM_SERIAL, ASTM_LINE])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Source
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let EndpointKind::AstmSerial(c) = &endpoint.kind else {
                unreachable!("an astm-serial endpoint has serial settings")
            };
            let device = c.device.clone();
            steps
                .run("serial device", async move {
                    match std::fs::metadata(&device) {
                        Ok(_) => Ok(((), format!("{} exists", device.display()))),
                        Err(e) => Err(format!("{}: {e}", device.display())),
                    }
                })
                .await;
            Some("Only the device's presence was checked; the line is not opened while the endpoint may hold it.".into())
        })
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        let EndpointKind::AstmSerial(c) = &endpoint.kind else {
            unreachable!("an astm-serial endpoint has serial settings")
        };
        let config = c.clone();
        Box::pin(async move {
            Ok(tokio::spawn(crate::sources::astm::run_serial(
                endpoint.clone(),
                config,
                start.serial,
                start.cx,
                start.astm_trace,
            )))
        })
    }
}

impl EndpointType for Tcp {
    fn name(&self) -> &'static str {
        "astm-tcp"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        let c: AstmTcpConfig = input.read()?;
        input.check(c.problem())?;
        Some(EndpointKind::AstmTcp(c))
    }

    fn form(&self) -> Vec<Field> {
        join(&[ASTM_TCP, ASTM_LINE])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Source
    }

    fn listen_address<'a>(&self, kind: &'a EndpointKind) -> Option<&'a str> {
        match kind {
            EndpointKind::AstmTcp(c) if c.role == TcpRole::Server => Some(&c.address),
            _ => None,
        }
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let EndpointKind::AstmTcp(c) = &endpoint.kind else {
                unreachable!("an astm-tcp endpoint has TCP settings")
            };
            let addr = match c.role {
                TcpRole::Server => probe::local(&c.address),
                TcpRole::Client => c.address.clone(),
            };
            probe::tcp(steps, &addr).await;
            Some("Only the TCP connection was checked; no ASTM session was opened.".into())
        })
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        let EndpointKind::AstmTcp(c) = &endpoint.kind else {
            unreachable!("an astm-tcp endpoint has TCP settings")
        };
        let config = c.clone();
        Box::pin(async move {
            Ok(tokio::spawn(crate::sources::astm::run_tcp(
                endpoint.clone(),
                config,
                start.cx,
                start.astm_trace,
            )))
        })
    }
}
