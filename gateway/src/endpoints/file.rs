//! `file`: each delivered payload written as a file into a directory.

use super::form::{f, join, Field, Kind, DELIVERY, TIMEOUT};
use super::{worker, EndpointType, PreparedWorker, Role, WorkerStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, FileSinkConfig, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;

pub struct File;

fn settings(kind: &EndpointKind) -> &FileSinkConfig {
    match kind {
        EndpointKind::File(c) => c,
        _ => unreachable!("a file endpoint has file settings"),
    }
}

const FILE: &[Field] = &[
    f("path", "Directory", Kind::Text, ""),
    f("extension", "File name extension", Kind::Text, "msg"),
];

impl EndpointType for File {
    fn name(&self) -> &'static str {
        "file"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::File)
    }

    fn form(&self) -> Vec<Field> {
        join(&[FILE, &[TIMEOUT], DELIVERY])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Destination
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let dir = crate::config::resolve(&settings(&endpoint.kind).path);
            probe::directory(steps, &dir).await;
            None
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let sink = crate::sinks::file::FileSink::new(settings(&endpoint.kind));
        Ok(worker(endpoint, sink, start))
    }
}
