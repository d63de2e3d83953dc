//! The services on their own, without a front end: roles refused, audit
//! records written, validation errors placed on their field.

use super::config::ChangeError;
use super::users::{NewUser, TokenRequest};
use super::*;
use crate::config::Config;
use crate::health::Health;
use crate::journal::{Destination, JournalOptions, Settlement};
use ecko_message::Envelope;
use std::sync::Arc;

struct Fixture {
    ops: Operations,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
        [journal]
        path = "{d}/journal.db"
        [[endpoint]]
        name = "inbox"
        type = "file-drop"
        path = "{d}/inbox"
        [[endpoint]]
        name = "archive"
        type = "file"
        path = "{d}/out"
        [[route]]
        name = "r"
        from = ["inbox"]
        to = ["archive"]
        "#,
        d = dir.path().display()
    );
    let config = Config::parse(&toml, "t.toml", |_| None).unwrap();
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    Fixture {
        ops: Operations::fixed(journal, Arc::new(config), Health::new()),
        _dir: dir,
    }
}

use crate::journal::Journal;

fn admin() -> Actor {
    Actor::user("ada", Role::Admin, 1)
}
fn operator() -> Actor {
    Actor::user("otto", Role::Operator, 2)
}
fn viewer() -> Actor {
    Actor::user("vera", Role::Viewer, 3)
}

impl Fixture {
    /// A message whose one delivery is dead.
    async fn dead_letter(&self) -> i64 {
        let j = self.ops.journal();
        let id = j
            .ingest(
                Envelope {
                    source: "inbox".into(),
                    message_type: "ORU^R01".into(),
                    content_type: "x-application/hl7-v2+er7".into(),
                    payload: b"MSH|^~\\&|LAB\r".to_vec(),
                    ..Default::default()
                },
                vec![Destination {
                    endpoint: "archive".into(),
                    transform: "none".into(),
                    lane: String::new(),
                    reply_to: None,
                }],
            )
            .await
            .unwrap()
            .message_id;
        let batch = j.lease("archive", 8, 100).await.unwrap();
        let settled = batch
            .lanes
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l,
                    Settlement::Dead {
                        error: "refused".into(),
                        duration_ms: 1,
                    },
                )
            })
            .collect();
        j.settle(settled).await.unwrap();
        id
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        self.ops
            .journal()
            .audit_log(None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.actor, a.action))
            .collect()
    }
}

fn user(name: &str, role: &str, password: &str, confirm: &str) -> NewUser {
    NewUser {
        name: name.into(),
        role: role.into(),
        password: password.into(),
        confirm: Some(confirm.into()),
    }
}

#[tokio::test]
async fn a_viewer_is_refused_a_retry_and_the_dead_letter_stays_dead() {
    let f = fixture();
    let id = f.dead_letter().await;
    let e = messages::retry_one(&f.ops, &viewer(), id)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Forbidden(Role::Operator)), "{e}");
    assert_eq!(e.to_string(), "this needs the operator role");
    assert!(f.audit_actions().await.is_empty());
}

#[tokio::test]
async fn an_operator_retry_requeues_the_delivery_and_writes_a_message_retry_record() {
    let f = fixture();
    let id = f.dead_letter().await;
    let done = messages::retry_one(&f.ops, &operator(), id).await.unwrap();
    assert_eq!(done.rows, 1);
    assert!(f
        .audit_actions()
        .await
        .contains(&("otto".into(), "message.retry".into())));
}

#[tokio::test]
async fn viewing_a_message_is_audited_as_a_view_of_patient_data_and_a_missing_one_is_not() {
    let f = fixture();
    let id = f.dead_letter().await;
    let v = messages::view(&f.ops, &viewer(), id, "page").await.unwrap();
    assert_eq!(v.message.id, id);
    assert_eq!(v.outbox.len(), 1);
    assert!(!v.events.is_empty());
    let audited = f.audit_actions().await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].1, "message.view");
    let e = messages::view(&f.ops, &viewer(), id + 1000, "api")
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::NotFound(_)), "{e}");
    assert_eq!(f.audit_actions().await.len(), 1, "a miss is not a view");
}

#[tokio::test]
async fn a_retry_of_a_message_that_does_not_exist_is_not_found() {
    let f = fixture();
    let e = messages::retry_one(&f.ops, &operator(), 999)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::NotFound(_)), "{e}");
}

#[tokio::test]
async fn a_discard_without_a_reason_is_refused_on_the_reason_field() {
    let f = fixture();
    let id = f.dead_letter().await;
    let e = messages::discard(&f.ops, &operator(), id, "  ")
        .await
        .unwrap_err();
    match e {
        Refusal::Invalid { field, .. } => assert_eq!(field, "reason"),
        other => panic!("{other}"),
    }
    let n = messages::discard(&f.ops, &operator(), id, "sent by fax")
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(f
        .audit_actions()
        .await
        .contains(&("otto".into(), "message.discard".into())));
}

#[tokio::test]
async fn an_operator_may_not_add_a_user_and_nothing_is_written() {
    let f = fixture();
    let e = users::add(
        &f.ops,
        &operator(),
        &user(
            "bob",
            "viewer",
            "a long enough secret",
            "a long enough secret",
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Refusal::Forbidden(Role::Admin)), "{e}");
    assert!(f.ops.journal().admin_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_user_is_checked_field_by_field_in_order() {
    let f = fixture();
    let field = |e: Refusal| match e {
        Refusal::Invalid { field, .. } => field,
        other => panic!("{other}"),
    };
    let cases = [
        (user("", "viewer", "a long enough secret", "x"), "name"),
        (user("bob", "boss", "a long enough secret", "x"), "role"),
        (user("bob", "viewer", "short", "short"), "password"),
        (
            user("bob", "viewer", "a long enough secret", "other"),
            "confirm",
        ),
    ];
    for (u, expected) in cases {
        let e = users::add(&f.ops, &admin(), &u).await.unwrap_err();
        assert_eq!(field(e), expected);
    }
}

#[tokio::test]
async fn an_added_user_is_audited_and_a_second_of_the_same_name_conflicts() {
    let f = fixture();
    let bob = user(
        "bob",
        "viewer",
        "a long enough secret",
        "a long enough secret",
    );
    users::add(&f.ops, &admin(), &bob).await.unwrap();
    assert!(f
        .audit_actions()
        .await
        .contains(&("ada".into(), "user.create".into())));
    let e = users::add(&f.ops, &admin(), &bob).await.unwrap_err();
    assert!(matches!(e, Refusal::Conflict(_)), "{e}");
}

#[tokio::test]
async fn a_token_never_has_more_than_its_owners_role() {
    let f = fixture();
    let request = TokenRequest {
        label: "hub".into(),
        role: Some("admin".into()),
        expires_in_days: None,
    };
    let op = operator();
    let e = users::check_token(&request, &op, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "role: a token cannot have more than your role (operator)"
    );
    let e = users::create_token(&f.ops, &op, &request)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Forbidden(Role::Admin)), "{e}");
}

#[tokio::test]
async fn revoking_a_token_that_does_not_exist_is_not_found() {
    let f = fixture();
    let e = users::revoke_token(&f.ops, &admin(), 42).await.unwrap_err();
    assert_eq!(e.to_string(), "no such token");
}

#[tokio::test]
async fn a_configuration_change_without_a_running_gateway_is_not_editable() {
    let f = fixture();
    let e = endpoints::set_enabled(&f.ops, &operator(), "archive", false)
        .await
        .unwrap_err();
    assert!(matches!(e, ChangeError::NotEditable(_)), "{e}");
}

#[tokio::test]
async fn a_viewer_may_not_disable_an_endpoint_or_save_settings() {
    let f = fixture();
    let e = endpoints::set_enabled(&f.ops, &viewer(), "archive", false)
        .await
        .unwrap_err();
    assert!(matches!(e, ChangeError::Forbidden(Role::Operator)), "{e}");
    let e = config::save_settings(&f.ops, &operator(), &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ChangeError::Forbidden(Role::Admin)), "{e}");
}

#[tokio::test]
async fn an_unknown_endpoint_type_is_refused_on_the_type_field() {
    let e = endpoints::check_type("carrier-pigeon").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("type"));
}

#[tokio::test]
async fn a_probe_of_an_unknown_endpoint_is_not_found_and_a_viewer_may_not_probe() {
    let f = fixture();
    let e = endpoints::probe(&f.ops, &operator(), "nowhere", false)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::NotFound(_)), "{e}");
    let e = endpoints::probe(&f.ops, &viewer(), "archive", false)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Forbidden(Role::Operator)), "{e}");
}

#[tokio::test]
async fn an_endpoint_probe_is_audited_with_its_outcome() {
    let f = fixture();
    let report = endpoints::probe(&f.ops, &operator(), "archive", false)
        .await
        .unwrap();
    assert_eq!(report.endpoint, "archive");
    assert!(f
        .audit_actions()
        .await
        .contains(&("otto".into(), "endpoint.test".into())));
}

#[test]
fn an_order_for_an_endpoint_that_is_not_astm_is_refused_on_the_analyzer_field() {
    let f = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let order = crate::journal::NewOrder {
        analyzer: "archive".into(),
        specimen_id: "S1".into(),
        tests: vec!["GLU".into()],
        ..Default::default()
    };
    let e = runtime
        .block_on(orders::add(&f.ops.config(), &operator(), order))
        .unwrap_err();
    match e {
        Refusal::Invalid { field, .. } => assert_eq!(field, "analyzer"),
        other => panic!("{other}"),
    }
}

#[test]
fn the_command_line_retry_refuses_a_source_as_destination() {
    let f = fixture();
    let e = messages::retry_dead(
        &f.ops.config(),
        &Actor::command_line("root"),
        &messages::RetryDead {
            destination: Some("inbox".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a destination endpoint"), "{e}");
}

#[tokio::test]
async fn a_viewer_changes_their_own_password_after_the_current_one_and_it_is_audited() {
    let f = fixture();
    let j = f.ops.journal();
    let old = "the old long password";
    let id = j
        .admin_create_user(
            "vera",
            "viewer",
            &users::hash_password(old).unwrap(),
            "test",
            false,
        )
        .await
        .unwrap();
    let vera = Actor::user("vera", Role::Viewer, id);
    // Two sessions: the one the change is made in stays, the other ends.
    j.admin_open_session(id, "here", "c1", 60_000)
        .await
        .unwrap();
    j.admin_open_session(id, "elsewhere", "c2", 60_000)
        .await
        .unwrap();
    let change = |current: &str, password: &str, confirm: &str| users::OwnPassword {
        current: current.into(),
        password: password.into(),
        confirm: Some(confirm.into()),
    };
    let new = "a brand new password";
    let e = users::change_own_password(&f.ops, &vera, &change("not it at all", new, new), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::Invalid {
                field: "current",
                ..
            }
        ),
        "{e:?}"
    );
    let e = users::change_own_password(&f.ops, &vera, &change(old, "short", "short"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::Invalid {
                field: "password",
                ..
            }
        ),
        "{e:?}"
    );
    let e = users::change_own_password(&f.ops, &vera, &change(old, new, "another one!"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::Invalid {
                field: "confirm",
                ..
            }
        ),
        "{e:?}"
    );
    let hash = j.admin_user("vera").await.unwrap().unwrap().password_hash;
    assert!(
        users::verify_password(old, &hash),
        "refusals change nothing"
    );

    users::change_own_password(&f.ops, &vera, &change(old, new, new), Some("here"))
        .await
        .unwrap();
    let hash = j.admin_user("vera").await.unwrap().unwrap().password_hash;
    assert!(users::verify_password(new, &hash) && !users::verify_password(old, &hash));
    assert!(j.admin_session("here").await.unwrap().is_some());
    assert!(j.admin_session("elsewhere").await.unwrap().is_none());
    let audit = j.audit_log(None, 10).await.unwrap();
    let record = audit
        .iter()
        .find(|a| a.action == "user.password")
        .expect("audited");
    assert_eq!(record.actor, "vera");
    assert_eq!(record.target.as_deref(), Some("vera"));

    let cli = Actor::command_line("root");
    let e = users::change_own_password(&f.ops, &cli, &change(new, old, old), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Conflict(_)), "{e:?}");
}
