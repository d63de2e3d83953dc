//! Endpoint types: one module each, behind one small trait.
//!
//! An endpoint is one configured connection (`[[endpoint]]` in the file, a
//! row on the admin page's Endpoints list). Everything that differs between
//! types lives in that type's module, as an implementation of
//! [`EndpointType`]: reading and checking its settings, the fields of its
//! admin form, what must hold before it can start (preflight), how "test
//! connection" checks it (probe), and how its source or delivery worker is
//! built. The configuration loader, `check-config`, the admin form, the
//! probe and the supervisor look a type up in [`TYPES`] and call it; none of
//! them matches on the type itself.
//!
//! The typed settings stay in `config` ([`EndpointKind`] and the structs it
//! holds), since the same model backs the file, the page and remote
//! configuration; a type's module is the only code that opens its variant.
//! Adding a type is the steps in ARCHITECTURE.md, "Adding an endpoint type".

mod astm;
mod dicom;
mod dicomweb;
pub(crate) mod fhir;
mod file;
mod file_drop;
pub mod form;
mod mllp;
mod rest;
mod sftp;
mod worklist;

use crate::app::RunError;
use crate::config::{Direction, Endpoint, EndpointKind, SettingsInput, DEFAULT_TIMEOUT};
use crate::delivery::{Reports, Transforms};
use crate::journal::Journal;
use crate::probe::{ProbeOptions, Steps};
use crate::sources::{astm::TraceHub, SourceContext};
use ecko_hal::SerialPorts;
use form::Field;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every endpoint type the gateway knows, in the order the admin page lists
/// them.
pub const TYPES: &[&dyn EndpointType] = &[
    &file::File,
    &file_drop::FileDrop,
    &mllp::Mllp,
    &fhir::Fhir,
    &astm::Serial,
    &astm::Tcp,
    &dicom::Dicom,
    &dicomweb::DicomWeb,
    &worklist::Worklist,
    &rest::Rest,
    &sftp::Sftp,
];

/// The type named `name` (the file's `type = "..."`).
pub fn named(name: &str) -> Option<&'static dyn EndpointType> {
    TYPES.iter().copied().find(|t| t.name() == name)
}

/// The type of an endpoint whose settings were read by one of [`TYPES`].
pub fn of(kind: &EndpointKind) -> &'static dyn EndpointType {
    let name = kind.type_name();
    match named(name) {
        Some(t) => t,
        // Only a type in TYPES can have parsed into `kind`; a test checks
        // every variant has its module.
        None => unreachable!("endpoint type `{name}` is not registered"),
    }
}

/// Whether the endpoint has a running unit: every enabled one, and a
/// disabled MLLP listener, which stays bound to answer `AR` rather than
/// leave its senders with a refused connection.
pub fn runs(endpoint: &Endpoint) -> bool {
    endpoint.enabled || of(&endpoint.kind).runs_while_disabled(endpoint)
}

/// The names of every type, for messages that list them.
pub fn type_names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name()).collect()
}

/// Whether a running endpoint takes messages in or delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives from a peer and journals: a listener, a watched folder, an
    /// analyzer line.
    Source,
    /// Delivers from the journal: a delivery worker leasing its outbox.
    Destination,
}

/// What a destination's delivery worker is started with.
pub struct WorkerStart {
    pub journal: Journal,
    /// Its link's health, metrics and progress.
    pub reports: Reports,
    pub transforms: Transforms,
}

/// A delivery worker whose sink is built, ready to spawn: building it may
/// fail (a certificate), spawning it may not.
pub type PreparedWorker = Box<dyn FnOnce(CancellationToken) -> JoinHandle<()> + Send>;

/// What a source is started with.
pub struct SourceStart {
    pub cx: SourceContext,
    pub astm_trace: TraceHub,
    pub serial: Arc<dyn SerialPorts>,
}

/// One endpoint type. Each method that takes an endpoint or its settings is
/// only ever given endpoints of this type.
pub trait EndpointType: Send + Sync {
    /// The `type` key of the file.
    fn name(&self) -> &'static str;

    /// Reads the type's own settings (the endpoint's keys less the common
    /// ones), reporting every problem at its key.
    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind>;

    /// The directions the endpoint supports; the first is the default. A
    /// source takes messages in, a destination delivers them.
    fn directions(&self, kind: &EndpointKind) -> &'static [Direction] {
        match self.role(kind) {
            Role::Source => &[Direction::Inbound],
            Role::Destination => &[Direction::Outbound],
        }
    }

    /// Problems with settings that parsed: (key, message).
    fn problems(&self, _kind: &EndpointKind) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The endpoint's overall timeout, from the `timeout` key if given.
    fn timeout(&self, _kind: &EndpointKind, given: Option<Duration>) -> Result<Duration, String> {
        Ok(given.unwrap_or(DEFAULT_TIMEOUT))
    }

    /// The fields of its admin form, in order.
    fn form(&self) -> Vec<Field>;

    /// Its settings written as arrays of tables, edited as rows after the
    /// fields.
    fn rows(&self) -> &'static [form::Rows] {
        &[]
    }

    fn role(&self, kind: &EndpointKind) -> Role;

    /// The `host:port` a listener binds; `None` for anything that does not
    /// listen. The unit's generator finds the ports below 1024 through it.
    fn listen_address<'a>(&self, _kind: &'a EndpointKind) -> Option<&'a str> {
        None
    }

    /// Whether a disabled endpoint still runs, to refuse its senders
    /// clearly instead of leaving them with a refused connection.
    fn runs_while_disabled(&self, _endpoint: &Endpoint) -> bool {
        false
    }

    /// What would stop the endpoint from starting that the file does not
    /// show (an unreadable certificate); checked by `check-config`. Binds
    /// nothing, opens nothing for long, writes nothing.
    fn preflight(&self, _endpoint: &Endpoint) -> Option<String> {
        None
    }

    /// "Test connection": runs the steps that show whether the far end can
    /// be reached now; returns what was deliberately not checked.
    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>>;

    /// Builds the delivery worker of a destination.
    fn destination(
        &self,
        endpoint: &Endpoint,
        _start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        Err(RunError::Endpoint {
            name: endpoint.name.clone(),
            reason: "not a destination".into(),
        })
    }

    /// Starts a source.
    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        Box::pin(async move {
            Err(RunError::Endpoint {
                name: endpoint.name.clone(),
                reason: "not a source".into(),
            })
        })
    }
}

/// Where an HTTP destination sends: its `sandbox_url` in sandbox mode when
/// one is set, otherwise its own address.
fn address(endpoint: &Endpoint, live: &str) -> String {
    match (
        &endpoint.protection.sandbox_url,
        endpoint.protection.is_sandbox(),
    ) {
        (Some(sandbox), true) => sandbox.clone(),
        _ => live.to_string(),
    }
}

/// A delivery worker for `endpoint` that delivers through `sink`.
fn worker<S: crate::sinks::Sink>(
    endpoint: &Endpoint,
    sink: S,
    start: WorkerStart,
) -> PreparedWorker {
    let endpoint = endpoint.clone();
    Box::new(move |stop| {
        crate::delivery::spawn_reporting(
            start.journal,
            &endpoint,
            sink,
            start.reports,
            start.transforms,
            stop,
        )
    })
}

/// A delivery worker for `endpoint` through `sink`, once built: a sink that
/// could not be built is the endpoint's start-up error.
fn built<S: crate::sinks::Sink, E: std::fmt::Display>(
    endpoint: &Endpoint,
    sink: Result<S, E>,
    start: WorkerStart,
) -> Result<PreparedWorker, RunError> {
    let sink = sink.map_err(|e| RunError::Endpoint {
        name: endpoint.name.clone(),
        reason: e.to_string(),
    })?;
    Ok(worker(endpoint, sink, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_registered_type_reads_its_own_endpoints_back() {
        let settings = [
            ("file", r#"path = "out""#),
            ("file-drop", r#"path = "in""#),
            ("mllp", r#"listen = "127.0.0.1:0""#),
            ("fhir", r#"url = "https://hub.example/fhir""#),
            ("astm-serial", r#"device = "/dev/ttyS0""#),
            ("astm-tcp", r#"address = "127.0.0.1:5100""#),
            ("dicom", r#"listen = "127.0.0.1:0""#),
            (
                "dicomweb",
                r#"url = "https://pacs.example/dicom-web/studies""#,
            ),
            ("worklist", r#"modality = "CT""#),
            ("rest", r#"url = "https://api.example/claims""#),
            (
                "sftp",
                r#"host = "sftp.example"
user = "lab"
password = "pw"
host_key_sha256 = "SHA256:PFot+v/UF30LdRkZ8FGu4cP36uaux3z1sdqyowoHo9c"
path = "/in"
pattern = "*.hl7""#,
            ),
        ];
        let mut text = String::from("[journal]\npath = \"j.db\"\n");
        for (ty, keys) in settings {
            text.push_str(&format!(
                "[[endpoint]]\nname = \"{ty}\"\ntype = \"{ty}\"\n{keys}\n"
            ));
        }
        let config = Config::parse(&text, "t.toml", |_| None).unwrap();
        assert_eq!(config.endpoints.len(), TYPES.len(), "one sample per type");
        for e in &config.endpoints {
            let ty = of(&e.kind);
            assert_eq!(ty.name(), e.name);
            assert_eq!(e.kind.type_name(), e.name);
            assert_eq!(e.direction, ty.directions(&e.kind)[0]);
        }
    }

    #[test]
    fn type_names_are_unique_and_every_form_writes_each_key_once() {
        let names = type_names();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "`{n}` twice");
        }
        for ty in TYPES {
            let form = ty.form();
            assert!(!form.is_empty(), "{} has no form", ty.name());
            for (i, f) in form.iter().enumerate() {
                assert!(
                    !form[i + 1..].iter().any(|g| g.name == f.name),
                    "{}: field `{}` twice",
                    ty.name(),
                    f.name
                );
            }
        }
    }

    #[test]
    fn an_unknown_type_is_refused_with_the_list_of_known_ones() {
        let text = "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"x\"\ntype = \"gopher\"\n";
        let e = Config::parse(text, "t.toml", |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown type `gopher`"), "{e}");
        assert!(e.contains(&type_names().join(", ")), "{e}");
    }
}
