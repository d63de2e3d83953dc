//! `file-drop`: each file dropped into a directory taken as a message.

use super::form::{f, Field, Kind};
use super::{EndpointType, Role, SourceStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, FileDropConfig, SettingsInput};
use crate::probe::{self, ProbeOptions, Steps};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub struct FileDrop;

fn settings(kind: &EndpointKind) -> &FileDropConfig {
    match kind {
        EndpointKind::FileDrop(c) => c,
        _ => unreachable!("a file-drop endpoint has file-drop settings"),
    }
}

const FILE_DROP: &[Field] = &[
    f("path", "Directory watched", Kind::Text, ""),
    f("message_type", "Message type recorded", Kind::Text, "file"),
    f(
        "content_type",
        "Content type recorded",
        Kind::Text,
        "application/octet-stream",
    ),
    f("poll_interval", "Poll interval", Kind::Duration, "200ms"),
    f(
        "on_invalid_text",
        "HL7 text invalid in its charset",
        Kind::Choice(&["refuse", "replace"]),
        "refuse",
    ),
];

impl EndpointType for FileDrop {
    fn name(&self) -> &'static str {
        "file-drop"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::FileDrop)
    }

    fn form(&self) -> Vec<Field> {
        FILE_DROP.to_vec()
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
            let dir = crate::config::resolve(&settings(&endpoint.kind).path);
            probe::directory(steps, &dir).await;
            None
        })
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        let config = settings(&endpoint.kind).clone();
        Box::pin(async move {
            Ok(tokio::spawn(crate::sources::file_drop::run(
                endpoint.clone(),
                config,
                start.cx,
            )))
        })
    }
}
