//! Endpoint actions: enable, disable, test the connection ("probe"),
//! create and edit; resume after a circuit breaker tripped, promote from
//! sandbox to live. Every change goes through [`super::config`], so it is
//! validated, applied live, kept as a version and audited like any other.

use super::config::{change, read_document, Applied, ChangeError, FieldError, Intent};
use super::{Actor, Operations, Refusal, Role};
use crate::config::edit::{Change, ConfigDocument, EditError, TablePath};
use crate::probe::{probe as run_probe, ProbeOptions, ProbeReport};
use std::collections::BTreeMap;

/// Enables or disables endpoint `name` (in the file and the running
/// gateway). Needs operator; audited as `endpoint.enable` or
/// `endpoint.disable`.
pub async fn set_enabled(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    enabled: bool,
) -> Result<Applied, ChangeError> {
    let action = if enabled {
        "endpoint.enable"
    } else {
        "endpoint.disable"
    };
    change(
        ops,
        actor,
        Role::Operator,
        Intent {
            action,
            target: name,
            tables: &[TablePath::Endpoint(name)],
        },
        |doc| doc.set_enabled(name, enabled),
    )
    .await
}

/// Tests endpoint `name`'s connection with its type's probe steps
/// (`round_trip`: an MLLP sender also sends a test query). Needs operator;
/// audited as `endpoint.test` with each step's outcome.
pub async fn probe(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    round_trip: bool,
) -> Result<ProbeReport, Refusal> {
    actor.require(Role::Operator)?;
    let endpoint = ops
        .config()
        .endpoint(name)
        .cloned()
        .ok_or(Refusal::NotFound("no such endpoint".into()))?;
    let report = run_probe(
        &endpoint,
        ProbeOptions {
            mllp_round_trip: round_trip,
            ..ProbeOptions::default()
        },
    )
    .await;
    let detail = report
        .steps
        .iter()
        .map(|s| format!("{} {}", s.name, if s.ok { "ok" } else { "failed" }))
        .collect::<Vec<_>>()
        .join(", ");
    if let Err(e) = ops
        .journal()
        .audit(
            &actor.name,
            "endpoint.test",
            Some(name),
            Some(&format!(
                "{}: {detail}",
                if report.ok { "passed" } else { "failed" }
            )),
        )
        .await
    {
        tracing::error!(error = %e, "a connection test could not be audited");
    }
    Ok(report)
}

/// `Ok` when `kind` names a registered endpoint type.
pub fn check_type(kind: &str) -> Result<(), FieldError> {
    if crate::endpoints::named(kind).is_some() {
        return Ok(());
    }
    Err(FieldError {
        field: Some("type".into()),
        message: format!(
            "`{kind}` is not an endpoint type (expected one of {})",
            crate::endpoints::type_names().join(", ")
        ),
        line: 0,
    })
}

/// A new endpoint: its settings as changes of its table, and the routes it
/// joins on `side` (`from` for a source, `to` for a destination).
pub struct NewEndpoint<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub settings: Vec<(String, Change)>,
    pub routes: &'a [String],
    pub side: &'a str,
}

/// Where a new endpoint of this type joins routes, from its settings (an
/// MLLP endpoint without `listen` is a sender).
pub fn route_side(kind: &str, listen: Option<&str>) -> &'static str {
    match kind {
        "file" | "fhir" => "to",
        "mllp" if listen.is_none_or(|l| l.trim().is_empty()) => "to",
        _ => "from",
    }
}

/// Adds an endpoint to the file and starts it. Needs admin; audited as
/// `endpoint.create`.
pub async fn create(
    ops: &Operations,
    actor: &Actor,
    new: NewEndpoint<'_>,
) -> Result<Applied, ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    check_type(new.kind).map_err(|e| ChangeError::Invalid(vec![e]))?;
    let NewEndpoint {
        name,
        kind,
        settings,
        routes,
        side,
    } = new;
    change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "endpoint.create",
            target: name,
            tables: &[TablePath::Endpoint(name)],
        },
        |doc: &mut ConfigDocument| {
            doc.add_endpoint(name, kind, &settings)?;
            for r in routes {
                doc.attach_to_route(r, side, name)?;
            }
            Ok(())
        },
    )
    .await
}

/// Changes endpoint `name`'s settings and restarts it with them. Needs
/// admin; audited as `endpoint.edit`.
pub async fn edit(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    settings: Vec<(String, Change)>,
) -> Result<Applied, ChangeError> {
    change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "endpoint.edit",
            target: name,
            tables: &[TablePath::Endpoint(name)],
        },
        |doc| doc.edit_endpoint(name, &settings),
    )
    .await
}

/// The endpoint's type and the file's text of its keys, to edit them.
/// Needs admin.
pub fn file_settings(
    ops: &Operations,
    actor: &Actor,
    name: &str,
) -> Result<(String, BTreeMap<String, String>), ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let (doc, _) = read_document(ops)?;
    let settings: BTreeMap<String, String> = doc
        .endpoint_settings(name)
        .ok_or_else(|| ChangeError::Edit(EditError::UnknownEndpoint(name.to_string())))?
        .into_iter()
        .collect();
    let kind = settings.get("type").cloned().unwrap_or_default();
    Ok((kind, settings))
}

/// Resumes destination `name` after its circuit breaker tripped: the
/// breaker is reset and its queue delivered again (the running worker
/// notices within a second). Needs operator; audited as `endpoint.resume`
/// in the journal transaction that resets it. `Ok(false)`: it was not
/// paused.
pub async fn resume(ops: &Operations, actor: &Actor, name: &str) -> Result<bool, Refusal> {
    actor.require(Role::Operator)?;
    if ops.config().endpoint(name).is_none() {
        return Err(Refusal::NotFound("no such endpoint".into()));
    }
    let resumed = ops.journal().resume_breaker(name, &actor.name).await?;
    if resumed {
        tracing::info!(endpoint = %name, actor = %actor.name, "destination resumed");
    }
    Ok(resumed)
}

/// Promotes destination `name` from sandbox to live: `mode` is removed
/// from its table (live is the default) and the endpoint restarts with
/// it. What was captured in sandbox stays captured and is not sent again.
/// Needs admin; audited as `endpoint.promote`.
pub async fn promote(ops: &Operations, actor: &Actor, name: &str) -> Result<Applied, ChangeError> {
    change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "endpoint.promote",
            target: name,
            tables: &[TablePath::Endpoint(name)],
        },
        |doc| doc.edit_endpoint(name, &[("mode".to_string(), Change::Remove)]),
    )
    .await
}

/// [`resume`] beside a running gateway or without one (the `resume`
/// command), through the journal file. Needs operator; audited the same.
pub fn resume_offline(
    config: &crate::config::Config,
    actor: &Actor,
    name: &str,
) -> Result<bool, Refusal> {
    actor.require(Role::Operator)?;
    if !config.endpoint(name).is_some_and(|e| e.direction.sends()) {
        return Err(Refusal::invalid(
            "endpoint",
            format!("`{name}` is not a destination endpoint of this configuration"),
        ));
    }
    let path = crate::config::resolve(&config.journal.path);
    Ok(crate::journal::external::resume_breaker_at(
        &path,
        name,
        &actor.name,
    )?)
}
