//! One command from its payload to its reply: read, policed, run through
//! the `control` service that does the same for the admin page, answered.
//!
//! # The order of the checks
//!
//! 1. The header is read (`invalid`, `not_supported` for another schema
//!    version).
//! 2. Age (`expired`), then the id is recorded as seen (`replayed` when it
//!    was): from here on the id is spent, whatever the outcome.
//! 3. The command is one this version does (`not_supported`), then the
//!    policy allows it (`forbidden`); `firmware.install` without an
//!    `[update]` section is `not_supported`.
//! 4. Its body is read (`invalid`); a pushed configuration's signature is
//!    verified before its TOML is parsed (see `signature`).
//! 5. The `control` service runs it as the policy's actor, which checks the
//!    role and writes the audit record; every error reply is audited here
//!    as `hub.command.refused`, so a refusal leaves a trace too.

use super::command_policy::{self, check_age, check_allowed};
use super::commands::{header, Command, Header};
use super::log_upload;
use super::payload;
use super::reply::{self, CommandError, ErrorCode};
use super::signature::{self, Signed};
use super::telemetry;
use crate::config::edit::EditError;
use crate::config::{CommandPolicy, HubConfig, PayloadFormat};
use crate::control::config::{replace_file, Applied, ChangeError, Intent};
use crate::control::log_bundle;
use crate::control::{self, Actor, Gateway, Operations, Refusal};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;

/// Runs the hub's commands on one gateway.
pub struct Dispatcher {
    ops: Operations,
    policy: CommandPolicy,
    actor: Actor,
    format: PayloadFormat,
    key: Option<[u8; 32]>,
    uplink: HubConfig,
}

impl Dispatcher {
    /// The dispatcher of `config`'s policy on the running `gateway`.
    pub fn new(config: &HubConfig, gateway: Arc<dyn Gateway>) -> Dispatcher {
        Dispatcher::over(Operations::running(gateway), config)
    }

    /// The dispatcher of `config`'s policy acting through `ops`.
    fn over(ops: Operations, config: &HubConfig) -> Dispatcher {
        Dispatcher {
            ops,
            actor: command_policy::actor(&config.commands),
            policy: config.commands.clone(),
            format: config.format,
            // The configuration refused a key that does not decode.
            key: config.config_key_bytes().ok().flatten(),
            uplink: config.clone(),
        }
    }

    /// The reply payload to the command `bytes` that came on
    /// `cmd/{topic_id}`.
    pub async fn answer(&self, topic_id: &str, bytes: &[u8]) -> Vec<u8> {
        let now = self.ops.journal().now_ms();
        let (name, outcome) = match payload::decode(self.format, bytes) {
            Ok(value) => self.run(topic_id, value, now).await,
            Err(e) => (
                None,
                Err(CommandError::new(ErrorCode::Invalid, e.to_string())),
            ),
        };
        if let Err(e) = &outcome {
            self.audit_refusal(topic_id, name.as_deref(), e).await;
        }
        let answered_at = self.ops.journal().now_ms();
        reply::payload(
            self.format,
            topic_id,
            name.as_deref(),
            answered_at,
            &outcome,
        )
    }

    async fn run(
        &self,
        topic_id: &str,
        value: Value,
        now: i64,
    ) -> (Option<String>, Result<Value, CommandError>) {
        let h = match header(topic_id, value) {
            Ok(h) => h,
            Err(e) => return (None, Err(e)),
        };
        let outcome = self.policed(&h, now).await;
        (Some(h.name), outcome)
    }

    async fn policed(&self, h: &Header, now: i64) -> Result<Value, CommandError> {
        check_age(&self.policy, now, h.issued_at)?;
        let first = self
            .ops
            .journal()
            .first_sight_of_hub_command(&h.id, h.issued_at, command_policy::forget_before(now))
            .await
            .map_err(|e| CommandError::new(ErrorCode::Failed, e.to_string()))?;
        if !first {
            return Err(CommandError::new(
                ErrorCode::Replayed,
                format!("command `{}` was received before", h.id),
            ));
        }
        if !crate::config::COMMAND_NAMES.contains(&h.name.as_str()) {
            return Err(CommandError::new(
                ErrorCode::NotSupported,
                format!("`{}` is not a command of this gateway", h.name),
            ));
        }
        check_allowed(&self.policy, &h.name)?;
        let command = Command::read(&h.name, &h.body)?;
        self.execute(h, command).await
    }

    async fn execute(&self, h: &Header, command: Command) -> Result<Value, CommandError> {
        let (ops, actor) = (&self.ops, &self.actor);
        match command {
            Command::RetryMessages(filter) => {
                let done = control::messages::retry_matching(ops, actor, filter)
                    .await
                    .map_err(refused)?;
                Ok(json!({ "rows": done.rows, "truncated": done.truncated }))
            }
            Command::SetEnabled { endpoint, enabled } => {
                let applied = control::endpoints::set_enabled(ops, actor, &endpoint, enabled)
                    .await
                    .map_err(change_failed)?;
                let mut value = applied_value(&applied);
                if enabled {
                    // Resuming also resets a tripped circuit breaker: the
                    // hub's operator has one lever for "deliver again".
                    let reset = control::endpoints::resume(ops, actor, &endpoint)
                        .await
                        .map_err(refused)?;
                    value["breaker_reset"] = json!(reset);
                }
                Ok(value)
            }
            Command::Test {
                endpoint,
                round_trip,
            } => {
                let report = control::endpoints::probe(ops, actor, &endpoint, round_trip)
                    .await
                    .map_err(refused)?;
                Ok(json!({
                    "ok": report.ok,
                    "steps": report.steps.iter().map(|s| json!({
                        "name": s.name, "ok": s.ok, "detail": s.detail, "ms": s.ms,
                    })).collect::<Vec<_>>(),
                    "note": report.note,
                }))
            }
            Command::GetMessage { id, payload } => self.message(id, payload).await,
            Command::PushConfig { toml, signature } => {
                let push = Signed {
                    site: &self.uplink.site,
                    device: &self.uplink.device,
                    id: &h.id,
                    issued_at: h.issued_at,
                    toml: &toml,
                };
                signature::verify(self.key, &push, &signature)
                    .map_err(|e| CommandError::new(ErrorCode::Forbidden, e.to_string()))?;
                let intent = Intent {
                    action: "config.push",
                    target: &h.id,
                    tables: &[],
                };
                let applied = replace_file(ops, actor, intent, toml)
                    .await
                    .map_err(change_failed)?;
                Ok(applied_value(&applied))
            }
            Command::LogBundle { url, max_bytes } => self.log_bundle(h, &url, max_bytes).await,
            Command::InstallFirmware {
                url,
                allow_same_security_downgrade,
            } => {
                let config = ops.config();
                super::firmware::install_from(
                    ops.journal(),
                    &self.uplink,
                    config.update.as_ref(),
                    actor,
                    &url,
                    allow_same_security_downgrade,
                )
                .await
            }
        }
    }

    /// A log bundle with the health report, uploaded to `url`.
    async fn log_bundle(
        &self,
        h: &Header,
        url: &str,
        max_bytes: Option<u64>,
    ) -> Result<Value, CommandError> {
        let url = log_upload::destination(&self.policy, url)?;
        let ops = &self.ops;
        let now = ops.journal().now_ms();
        let service = ops.service();
        let started_at = now - service.uptime().as_millis() as i64;
        let health = telemetry::health_report(
            ops.journal(),
            &ops.config(),
            ops.health(),
            service.storage.as_ref(),
            service.clock.as_ref(),
            now,
            started_at,
        )
        .await;
        let request = log_bundle::Request {
            max_bytes: max_bytes.unwrap_or(log_bundle::DEFAULT_BYTES),
            identity: json!({ "site": self.uplink.site, "device": self.uplink.device, "command": h.id }),
            extra: vec![("health.json".into(), health)],
        };
        let bundle = log_bundle::make(ops, &self.actor, request)
            .await
            .map_err(refused)?;
        let (bytes, files, shortened) = (bundle.bytes.len(), bundle.files, bundle.shortened);
        let receipt = log_upload::put(&self.uplink, url, &h.id, bundle.bytes).await?;
        Ok(json!({
            "bytes": bytes,
            "sha256": receipt.sha256,
            "files": files,
            "shortened": shortened,
            "status": receipt.status,
        }))
    }

    /// Message `id`'s metadata and deliveries; its payload and patient id
    /// only when the policy lets patient data over the uplink.
    async fn message(&self, id: i64, with_payload: bool) -> Result<Value, CommandError> {
        if with_payload && !self.policy.patient_data {
            return Err(CommandError::new(
                ErrorCode::Forbidden,
                "this gateway's command policy keeps message payloads off the uplink",
            ));
        }
        let view = control::messages::view(&self.ops, &self.actor, id, "hub")
            .await
            .map_err(refused)?;
        let m = &view.message;
        let mut value = json!({
            "id": m.id,
            "received_at": m.received_at,
            "source": m.source,
            "message_type": m.message_type,
            "content_type": m.content_type,
            "control_id": m.control_id,
            "size": m.payload.len(),
            "deliveries": view.outbox.iter().map(|o| json!({
                "id": o.id,
                "destination": o.destination,
                "state": o.state.as_str(),
                "attempts": o.attempts,
                "next_attempt_at": o.next_attempt_at,
                "last_error": o.last_error,
            })).collect::<Vec<_>>(),
        });
        if self.policy.patient_data {
            value["patient_id"] = json!(m.patient_id);
            if with_payload {
                value["payload"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&m.payload));
            }
        }
        Ok(value)
    }

    async fn audit_refusal(&self, id: &str, name: Option<&str>, e: &CommandError) {
        let detail = format!(
            "{}: {}: {}",
            name.unwrap_or("unreadable command"),
            e.code.as_str(),
            e.message
        );
        if let Err(err) = self
            .ops
            .journal()
            .audit(
                &self.actor.name,
                "hub.command.refused",
                Some(&format!("command {id}")),
                Some(&detail),
            )
            .await
        {
            tracing::error!(error = %err, "a refused hub command could not be audited");
        }
        tracing::info!(
            command = id,
            code = e.code.as_str(),
            "hub command refused: {detail}"
        );
    }
}

fn applied_value(applied: &Applied) -> Value {
    let r = &applied.report;
    json!({
        "version": applied.version.as_ref().map(|v| v.id.clone()),
        "summary": r.summary(),
        "started": r.started,
        "stopped": r.stopped,
        "restarted": r.restarted,
        "needs_restart": r.needs_restart,
    })
}

/// A service's refusal as the hub's error.
fn refused(r: Refusal) -> CommandError {
    let code = match &r {
        Refusal::Forbidden(_) => ErrorCode::Forbidden,
        Refusal::Invalid { .. } => ErrorCode::Invalid,
        Refusal::NotFound(_) => ErrorCode::NotFound,
        Refusal::Conflict(_) | Refusal::Internal(_) | Refusal::Journal(_) => ErrorCode::Failed,
    };
    CommandError::new(code, r.to_string())
}

/// A configuration change not made as the hub's error; in every case the
/// file and the running gateway are as they were.
fn change_failed(e: ChangeError) -> CommandError {
    let message = e.to_string();
    match e {
        ChangeError::Forbidden(_) => CommandError::new(ErrorCode::Forbidden, message),
        ChangeError::Edit(EditError::UnknownEndpoint(_)) => {
            CommandError::new(ErrorCode::NotFound, message)
        }
        ChangeError::Edit(_) => CommandError::new(ErrorCode::Invalid, message),
        ChangeError::Invalid(problems) => CommandError::new(ErrorCode::Invalid, message)
            .with_detail(json!({ "problems": problems })),
        ChangeError::Apply(_) | ChangeError::Write(_) => {
            CommandError::new(ErrorCode::Failed, message)
                .with_detail(json!({ "rolled_back": true }))
        }
        ChangeError::NotEditable(_) => CommandError::new(ErrorCode::Failed, message),
    }
}

/// A command as it came from the broker, with the connection it came on.
pub struct Received {
    pub publish: super::mqtt::Delivery,
    pub id: String,
    pub connection: u64,
}

/// A command answered: the reply to publish, then the command to
/// acknowledge if its connection is still the one up.
pub struct Answered {
    pub received: Received,
    pub reply: Vec<u8>,
}

/// Answers commands one at a time, in the order they came, until either
/// side goes away.
pub async fn serve(
    dispatcher: Dispatcher,
    mut commands: tokio::sync::mpsc::Receiver<Received>,
    answers: tokio::sync::mpsc::Sender<Answered>,
) {
    while let Some(received) = commands.recv().await {
        let reply = dispatcher
            .answer(&received.id, &received.publish.payload)
            .await;
        if answers.send(Answered { received, reply }).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::Health;
    use crate::journal::{Journal, JournalOptions};
    use ecko_message::Envelope;

    const CONFIG: &str = r#"
        [journal]
        path = "journal.db"
        [[endpoint]]
        name = "inbox"
        type = "file-drop"
        path = "inbox"
        [[endpoint]]
        name = "archive"
        type = "file"
        path = "out"
        [[route]]
        name = "r"
        from = ["inbox"]
        to = ["archive"]
        [hub]
        "#;

    /// A dispatcher over a journal holding one message, with the policy
    /// `patient_data` as given; and that message's id.
    async fn dispatcher(dir: &tempfile::TempDir, patient_data: bool) -> (Dispatcher, i64) {
        let mut config = Config::parse(CONFIG, "t.toml", |_| None).unwrap();
        config.hub.commands.patient_data = patient_data;
        let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
        let id = journal
            .ingest(
                Envelope {
                    source: "inbox".into(),
                    message_type: "ORU^R01".into(),
                    content_type: "x-application/hl7-v2+er7".into(),
                    patient_id: Some("P-0042".into()),
                    payload: b"MSH|^~\\&|LAB\r".to_vec(),
                    ..Default::default()
                },
                vec![crate::journal::Destination {
                    endpoint: "archive".into(),
                    transform: "none".into(),
                    lane: String::new(),
                    reply_to: None,
                }],
            )
            .await
            .unwrap()
            .message_id;
        let hub = config.hub.clone();
        let ops = Operations::fixed(journal, Arc::new(config), Health::new());
        (Dispatcher::over(ops, &hub), id)
    }

    async fn ask(d: &Dispatcher, id: &str, cmd: &str, body: Value) -> Value {
        let now = d.ops.journal().now_ms();
        let command = json!({"v": 1, "id": id, "issued_at": now, "cmd": cmd, "body": body});
        let bytes = payload::encode(PayloadFormat::Cbor, &command);
        payload::decode(PayloadFormat::Cbor, &d.answer(id, &bytes).await).unwrap()
    }

    #[tokio::test]
    async fn a_message_s_metadata_leaves_without_its_payload_or_patient_id_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let (d, id) = dispatcher(&dir, false).await;
        let r = ask(&d, "c-1", "message.get", json!({"message_id": id})).await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["result"]["message_type"], "ORU^R01");
        assert!(r["result"].get("patient_id").is_none(), "{r}");
        assert!(r["result"].get("payload").is_none(), "{r}");

        let r = ask(
            &d,
            "c-2",
            "message.get",
            json!({"message_id": id, "payload": true}),
        )
        .await;
        assert_eq!(r["error"]["code"], "forbidden", "{r}");
        d.ops.journal().close().await;
    }

    #[tokio::test]
    async fn with_patient_data_allowed_the_payload_comes_as_base64() {
        let dir = tempfile::tempdir().unwrap();
        let (d, id) = dispatcher(&dir, true).await;
        let r = ask(
            &d,
            "c-1",
            "message.get",
            json!({"message_id": id, "payload": true}),
        )
        .await;
        assert_eq!(r["result"]["patient_id"], "P-0042", "{r}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["result"]["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, b"MSH|^~\\&|LAB\r");
        d.ops.journal().close().await;
    }

    #[tokio::test]
    async fn every_refusal_is_audited_and_a_seen_id_is_refused_as_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (d, id) = dispatcher(&dir, false).await;
        let first = ask(&d, "c-1", "message.get", json!({"message_id": id})).await;
        assert_eq!(first["ok"], true);
        let again = ask(&d, "c-1", "message.get", json!({"message_id": id})).await;
        assert_eq!(again["error"]["code"], "replayed");
        let missing = ask(&d, "c-2", "message.get", json!({"message_id": id + 1})).await;
        assert_eq!(missing["error"]["code"], "not_found");
        let unknown = ask(&d, "c-3", "reboot", json!({})).await;
        assert_eq!(unknown["error"]["code"], "not_supported");
        let unreadable = d.answer("c-4", b"\xff\xff").await;
        let unreadable = payload::decode(PayloadFormat::Cbor, &unreadable).unwrap();
        assert_eq!(unreadable["error"]["code"], "invalid");

        let audit = d.ops.journal().audit_log(None, 50).await.unwrap();
        let refused: Vec<_> = audit
            .iter()
            .filter(|a| a.action == "hub.command.refused")
            .map(|a| (a.actor.as_str(), a.target.clone().unwrap_or_default()))
            .collect();
        assert_eq!(refused.len(), 4, "{audit:?}");
        assert!(refused.iter().all(|(actor, _)| *actor == "hub"));
        for id in ["c-1", "c-2", "c-3", "c-4"] {
            assert!(
                refused.iter().any(|(_, t)| t == &format!("command {id}")),
                "{id}"
            );
        }
        // The read that ran is audited by the message service itself.
        assert!(audit
            .iter()
            .any(|a| a.action == "message.view" && a.detail.as_deref() == Some("hub")));
        d.ops.journal().close().await;
    }
}
