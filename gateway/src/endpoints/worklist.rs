//! `worklist`: a Modality Worklist kept in the journal. Orders routed to it
//! become scheduled procedure steps; a `dicom` SCP that names it in
//! `worklist` answers modalities' C-FIND from them.

use super::form::{f, join, Field, Kind, DELIVERY};
use super::{worker, EndpointType, PreparedWorker, Role, WorkerStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, SettingsInput, WorklistConfig};
use crate::journal::{Journal, WorklistEntry};
use crate::probe::{ProbeOptions, Steps};
use crate::sinks::worklist::{Kept, WorklistSink, WorklistStore};
use futures_util::future::BoxFuture;
use std::sync::Arc;

pub struct Worklist;

fn settings(kind: &EndpointKind) -> &WorklistConfig {
    match kind {
        EndpointKind::Worklist(c) => c,
        _ => unreachable!("a worklist endpoint has worklist settings"),
    }
}

const WORKLIST: &[Field] = &[
    f(
        "modality",
        "Modality when the order names none (CT, MR, …)",
        Kind::Text,
        "",
    ),
    f(
        "station_ae",
        "Scheduled station AE title when the order names none",
        Kind::Text,
        "",
    ),
    f(
        "keep_for",
        "Kept after the scheduled start for",
        Kind::Duration,
        "7d",
    ),
];

impl EndpointType for Worklist {
    fn name(&self) -> &'static str {
        "worklist"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::Worklist)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        settings(kind).problems()
    }

    fn form(&self) -> Vec<Field> {
        join(&[WORKLIST, DELIVERY])
    }

    fn role(&self, _kind: &EndpointKind) -> Role {
        Role::Destination
    }

    fn probe<'a>(
        &'a self,
        _endpoint: &'a Endpoint,
        _steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            Some("A worklist is kept in the journal: there is nothing to connect to.".into())
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        let store = JournalWorklist {
            journal: start.journal.clone(),
            name: endpoint.name.clone(),
        };
        let sink = WorklistSink::new(&endpoint.name, settings(&endpoint.kind), Arc::new(store));
        Ok(worker(endpoint, sink, start))
    }
}

/// The journal as the worklist sink's store.
struct JournalWorklist {
    journal: Journal,
    name: String,
}

impl WorklistStore for JournalWorklist {
    fn keep(&self, message_id: i64, entries: Vec<Kept>) -> BoxFuture<'static, Result<(), String>> {
        let journal = self.journal.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let rows = entries
                .into_iter()
                .map(|(c, expires_at)| {
                    let start = c.start();
                    Ok(WorklistEntry {
                        key: c.key,
                        state: c.state.as_str().to_string(),
                        start,
                        expires_at,
                        item: serde_json::to_string(&c.step).map_err(|e| e.to_string())?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            journal
                .apply_worklist(&name, message_id, rows)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
