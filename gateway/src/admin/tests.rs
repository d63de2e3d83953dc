//! Handler tests: every route, called through the router as a browser or
//! script would, against a real journal in a temporary directory.

use super::{hash_password, router, AdminState};
use crate::config::Config;
use crate::journal::{Destination, Journal, JournalOptions, NewMessage, Settlement};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "a long enough secret";

struct Site {
    app: Router,
    journal: Journal,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A logged-in browser: its cookie and the page's CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn site_with(extra: &str) -> Site {
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
        [admin]
        listen = "127.0.0.1:0"
        {extra}
        "#,
        d = dir.path().display()
    );
    let config = Config::parse(&toml, "t.toml", |_| None).unwrap();
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    let app = router(AdminState::new(
        journal.clone(),
        Arc::new(config),
        CancellationToken::new(),
    ));
    Site {
        app,
        journal,
        _dir: dir,
    }
}

async fn site() -> Site {
    site_with("").await
}

impl Site {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, b: Option<&Browser>) -> Reply {
        let mut r = Request::get(uri);
        if let Some(b) = b {
            r = r.header(header::COOKIE, &b.cookie);
        }
        self.send(r.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, b: Option<&Browser>, form: &[(&str, &str)]) -> Reply {
        let mut r = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "gw");
        if let Some(b) = b {
            r = r.header(header::COOKIE, &b.cookie);
        }
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(r.body(Body::from(body)).unwrap()).await
    }

    async fn post_json(&self, uri: &str, b: Option<&Browser>, json: serde_json::Value) -> Reply {
        let mut r = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(b) = b {
            r = r
                .header(header::COOKIE, &b.cookie)
                .header("x-csrf-token", &b.csrf);
        }
        self.send(r.body(Body::from(json.to_string())).unwrap())
            .await
    }

    async fn add_user(&self, name: &str, role: &str) {
        let hash = hash_password(PASSWORD).unwrap();
        self.journal
            .admin_create_user(name, role, &hash, "test", false)
            .await
            .unwrap();
    }

    async fn login(&self, name: &str, role: &str) -> Browser {
        self.add_user(name, role).await;
        let r = self
            .post_form("/login", None, &[("name", name), ("password", PASSWORD)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let cookie = r
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut b = Browser {
            cookie,
            csrf: String::new(),
        };
        let page = self.get("/", Some(&b)).await;
        let marker = "name=\"csrf\" content=\"";
        let at = page.body.find(marker).unwrap() + marker.len();
        b.csrf = page.body[at..at + 64].to_string();
        b
    }

    async fn ingest(&self, control: &str, patient: &str) -> i64 {
        let payload = format!(
            "MSH|^~\\&|LAB|H|GW|H|20240101||ORU^R01|{control}|P|2.5\rPID|||{patient}\rOBX|1|NM|GLU||5.2|mmol/L\r"
        );
        self.journal
            .ingest(
                NewMessage {
                    source: "inbox".into(),
                    dedup_key: Some(control.into()),
                    message_type: "ORU^R01".into(),
                    content_type: "x-application/hl7-v2+er7".into(),
                    control_id: Some(control.into()),
                    patient_id: Some(patient.into()),
                    payload: payload.into_bytes(),
                    ack: Some(format!("MSH|^~\\&|GW\rMSA|AA|{control}\r").into_bytes()),
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
            .message_id
    }

    /// One delivery attempt of every due row of `archive`, with `outcome`.
    async fn attempt(&self, outcome: Settlement) {
        let batch = self.journal.lease("archive", 8, 100).await.unwrap();
        let settled = batch
            .lanes
            .into_iter()
            .flatten()
            .map(|l| (l, outcome.clone()))
            .collect();
        self.journal.settle(settled).await.unwrap();
    }

    async fn dead(&self, control: &str) -> i64 {
        let id = self.ingest(control, "P1").await;
        self.attempt(Settlement::Dead {
            error: "HTTP 503 from hub".into(),
            duration_ms: 12,
        })
        .await;
        id
    }
}

const PAGES: &[&str] = &[
    "/",
    "/logs",
    "/logs/stream",
    "/messages/1",
    "/errors",
    "/stats",
    "/settings",
    "/users",
    "/audit",
];
const PAGE_POSTS: &[&str] = &[
    "/messages/1/retry",
    "/messages/1/discard",
    "/errors/retry",
    "/users",
    "/logout",
];
const API_GETS: &[&str] = &[
    "/api/v1/endpoints",
    "/api/v1/messages",
    "/api/v1/messages/1",
    "/api/v1/stats",
    "/api/v1/audit",
];
const API_POSTS: &[&str] = &[
    "/api/v1/messages/retry",
    "/api/v1/messages/1/retry",
    "/api/v1/messages/1/discard",
    "/api/v1/tokens",
];

#[tokio::test]
async fn before_any_user_exists_every_page_leads_to_the_first_run_setup() {
    let s = site().await;
    for p in PAGES {
        let r = s.get(p, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{p}");
        assert_eq!(r.location(), "/setup", "{p}");
    }
    assert_eq!(s.get("/login", None).await.location(), "/setup");
    assert_eq!(s.get("/setup", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_session_every_page_redirects_to_the_login_and_every_form_is_refused() {
    let s = site().await;
    s.add_user("ann", "admin").await;
    for p in PAGES {
        let r = s.get(p, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{p}");
        assert_eq!(r.location(), "/login", "{p}");
    }
    for p in PAGE_POSTS {
        let r = s.post_form(p, None, &[("reason", "x")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{p}");
        assert_eq!(r.location(), "/login", "{p}");
    }
    let forged = Browser {
        cookie: "ecko_session=00ff".into(),
        csrf: String::new(),
    };
    assert_eq!(s.get("/", Some(&forged)).await.location(), "/login");
}

#[tokio::test]
async fn without_a_session_or_token_every_api_route_answers_401() {
    let s = site().await;
    s.add_user("ann", "admin").await;
    for p in API_GETS {
        assert_eq!(s.get(p, None).await.status, StatusCode::UNAUTHORIZED, "{p}");
    }
    for p in API_POSTS {
        let r = s.post_json(p, None, serde_json::json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{p}");
    }
    let r = s
        .send(
            Request::get("/api/v1/messages")
                .header(header::AUTHORIZATION, "Bearer nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_health_check_and_the_assets_need_no_session() {
    let s = site().await;
    let r = s.get("/healthz", None).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok\n"));
    assert!(s
        .get("/assets/app.js", None)
        .await
        .body
        .contains("EventSource"));
    assert_eq!(s.get("/assets/app.css", None).await.status, StatusCode::OK);
    assert_eq!(
        s.get("/nothing-here", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let s = site().await;
    for p in ["/healthz", "/setup", "/", "/api/v1/messages", "/nothing"] {
        let r = s.get(p, None).await;
        let csp = r
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{p}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{p}");
        assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(r.headers.get("referrer-policy").unwrap(), "same-origin");
    }
}

#[tokio::test]
async fn the_first_run_setup_creates_one_administrator_and_only_once() {
    let s = site().await;
    let form = [
        ("name", "root"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    let r = s.post_form("/setup", None, &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let u = s.journal.admin_user("root").await.unwrap().unwrap();
    assert_eq!(u.role, "admin");
    assert!(u.password_hash.starts_with("$argon2id$"));
    let again = s
        .post_form(
            "/setup",
            None,
            &[
                ("name", "eve"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(s.journal.admin_user("eve").await.unwrap().is_none());
    assert_eq!(s.get("/setup", None).await.location(), "/login");
}

#[tokio::test]
async fn the_setup_refuses_a_short_password_or_a_mismatch_with_the_reason() {
    let s = site().await;
    let r = s
        .post_form(
            "/setup",
            None,
            &[
                ("name", "root"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("at least 10 characters"));
    let r = s
        .post_form(
            "/setup",
            None,
            &[
                ("name", "root"),
                ("password", PASSWORD),
                ("confirm", "other password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("differ"));
    let r = s
        .post_form(
            "/setup",
            None,
            &[
                ("name", "ro ot<"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.journal.admin_user_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_cross_site_login_or_setup_is_refused() {
    let s = site().await;
    let r = s
        .send(
            Request::post("/setup")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::HOST, "gw")
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::from(
                    format!("name=root&password={PASSWORD}&confirm={PASSWORD}").replace(' ', "+"),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(Body::from("name=a&password=b"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_login_sets_a_secure_httponly_strict_cookie_and_the_dashboard_shows_every_endpoint() {
    let s = site().await;
    s.add_user("ann", "viewer").await;
    let r = s
        .post_form("/login", None, &[("name", "ann"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cookie = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let b = Browser {
        cookie: cookie.split(';').next().unwrap().into(),
        csrf: String::new(),
    };
    let page = s.get("/", Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(">inbox</a>") && page.body.contains(">archive</a>"));
    assert!(!page.body.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_repeated_failures_lock_the_account() {
    let s = site_with("lockout_after = 3").await;
    s.add_user("ann", "admin").await;
    for _ in 0..3 {
        let r = s
            .post_form(
                "/login",
                None,
                &[("name", "ann"), ("password", "wrong password!")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Wrong user name or password"));
    }
    let r = s
        .post_form("/login", None, &[("name", "ann"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("locked"));
    let unknown = s
        .post_form(
            "/login",
            None,
            &[("name", "nobody"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_attempts_from_one_address_are_rate_limited() {
    let s = site_with("login_attempts_per_minute = 2").await;
    for _ in 0..2 {
        let r = s
            .post_form("/login", None, &[("name", "x"), ("password", "y")])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = s
        .post_form("/login", None, &[("name", "x"), ("password", "y")])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_state_changing_request_without_the_right_csrf_token_is_refused() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let id = s.dead("C1").await;
    let uri = format!("/messages/{id}/retry");
    let r = s.post_form(&uri, Some(&b), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.post_form(&uri, Some(&b), &[("csrf", "0000")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let wrong = Browser {
        cookie: b.cookie.clone(),
        csrf: "bad".into(),
    };
    let r = s
        .post_json(
            &format!("/api/v1/messages/{id}/retry"),
            Some(&wrong),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.post_form("/logout", Some(&b), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Nothing changed.
    let rows = s.journal.outbox_of(id).await.unwrap();
    assert_eq!(rows[0].state, crate::journal::OutboxState::Dead);
    let r = s.post_form(&uri, Some(&b), &[("csrf", &b.csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let rows = s.journal.outbox_of(id).await.unwrap();
    assert_eq!(rows[0].state, crate::journal::OutboxState::Queued);
}

#[tokio::test]
async fn a_viewer_may_look_but_not_retry_discard_or_manage_users() {
    let s = site().await;
    let b = s.login("vic", "viewer").await;
    let id = s.dead("C1").await;
    for p in ["/", "/logs", "/errors", "/stats", "/settings"] {
        assert_eq!(s.get(p, Some(&b)).await.status, StatusCode::OK, "{p}");
    }
    assert_eq!(
        s.get(&format!("/messages/{id}"), Some(&b)).await.status,
        StatusCode::OK
    );
    for p in ["/users", "/audit", "/api/v1/audit"] {
        assert_eq!(
            s.get(p, Some(&b)).await.status,
            StatusCode::FORBIDDEN,
            "{p}"
        );
    }
    let csrf = b.csrf.clone();
    for p in [
        format!("/messages/{id}/retry"),
        format!("/messages/{id}/discard"),
        "/errors/retry".into(),
        "/users".into(),
    ] {
        let r = s
            .post_form(&p, Some(&b), &[("csrf", &csrf), ("reason", "x")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
    }
    for p in [
        format!("/api/v1/messages/{id}/retry"),
        format!("/api/v1/messages/{id}/discard"),
        "/api/v1/messages/retry".into(),
        "/api/v1/tokens".into(),
    ] {
        let r = s
            .post_json(
                &p,
                Some(&b),
                serde_json::json!({"reason": "x", "label": "x"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
    }
    assert_eq!(
        s.journal.outbox_of(id).await.unwrap()[0].state,
        crate::journal::OutboxState::Dead
    );
}

#[tokio::test]
async fn the_viewer_page_shows_hl7_fields_the_ack_and_each_attempt_and_is_audited() {
    let s = site().await;
    let b = s.login("ann", "admin").await;
    let id = s.ingest("CTRL-9", "P77").await;
    s.attempt(Settlement::Retry {
        error: "connection refused".into(),
        duration_ms: 3,
        retry_at: 0,
    })
    .await;
    s.attempt(Settlement::Delivered {
        response: Some("201 Created".into()),
        duration_ms: 8,
    })
    .await;
    let r = s.get(&format!("/messages/{id}"), Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    for needle in [
        "MSH-10",
        "Message Control ID",
        "CTRL-9",
        "PID-3",
        "MSA",
        "connection refused",
        "201 Created",
        "delivered",
    ] {
        assert!(r.body.contains(needle), "{needle}");
    }
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "message.view"
        && a.actor == "ann"
        && a.target.as_deref() == Some(&format!("message {id}") as &str)));
    let r = s.get(&format!("/api/v1/messages/{id}"), Some(&b)).await;
    let v = r.json();
    assert_eq!(v["control_id"], "CTRL-9");
    assert_eq!(v["outbox"][0]["state"], "delivered");
    assert_eq!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "attempt")
            .count(),
        2
    );
    assert_eq!(
        s.get("/api/v1/messages/999", Some(&b)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/messages/999", Some(&b)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_messages_api_filters_and_pages_newest_first_by_id() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    for i in 0..7 {
        s.ingest(&format!("C{i}"), if i % 2 == 0 { "EVEN" } else { "ODD" })
            .await;
    }
    let page = s.get("/api/v1/messages?limit=3", Some(&b)).await.json();
    let ids: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [7, 6, 5]);
    assert_eq!(page["next_before"], 5);
    let page = s
        .get("/api/v1/messages?limit=3&before=5", Some(&b))
        .await
        .json();
    assert_eq!(page["messages"][0]["id"], 4);
    let page = s
        .get("/api/v1/messages?patient_id=ODD", Some(&b))
        .await
        .json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    let page = s
        .get("/api/v1/messages?control_id=C3", Some(&b))
        .await
        .json();
    assert_eq!(page["messages"][0]["id"], 4);
    let page = s
        .get("/api/v1/messages?status=queued&endpoint=archive", Some(&b))
        .await
        .json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 7);
    let page = s.get("/api/v1/messages?status=dead", Some(&b)).await.json();
    assert!(page["messages"].as_array().unwrap().is_empty());
    let future = s.journal.now_ms() + 60_000;
    let page = s
        .get(&format!("/api/v1/messages?from={future}"), Some(&b))
        .await
        .json();
    assert!(page["messages"].as_array().unwrap().is_empty());
    for bad in [
        "status=lost",
        "before=x",
        "limit=0",
        "from=yesterday",
        "from=20&to=10",
    ] {
        let r = s.get(&format!("/api/v1/messages?{bad}"), Some(&b)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(
        s.get("/logs?status=lost", Some(&b)).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_errors_page_lists_dead_messages_and_retry_puts_them_back_in_the_queue() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let id = s.dead("C1").await;
    let r = s.get("/errors", Some(&b)).await;
    assert!(r.body.contains("HTTP 503 from hub"));
    assert!(r.body.contains(&format!("/messages/{id}/retry")));
    let r = s
        .post_form(
            &format!("/messages/{id}/retry"),
            Some(&b),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/errors"));
    s.attempt(Settlement::Delivered {
        response: None,
        duration_ms: 1,
    })
    .await;
    assert_eq!(
        s.journal.outbox_of(id).await.unwrap()[0].state,
        crate::journal::OutboxState::Delivered
    );
    assert!(s.get("/errors", Some(&b)).await.body.contains("no-errors"));
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "message.retry" && a.actor == "op"));
}

#[tokio::test]
async fn retry_all_matching_requeues_only_the_matching_errors() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let a = s.dead("A").await;
    let c = s.dead("B").await;
    let r = s
        .post_form(
            "/errors/retry",
            Some(&b),
            &[("csrf", &b.csrf), ("control_id", "A")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.journal.outbox_of(a).await.unwrap()[0].state,
        crate::journal::OutboxState::Queued
    );
    assert_eq!(
        s.journal.outbox_of(c).await.unwrap()[0].state,
        crate::journal::OutboxState::Dead
    );
    let r = s
        .post_json("/api/v1/messages/retry", Some(&b), serde_json::json!({}))
        .await;
    assert_eq!(r.json()["retried"], 1);
    let r = s
        .post_json(
            "/api/v1/messages/retry",
            Some(&b),
            serde_json::json!({"status": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_discard_needs_a_reason_and_takes_the_message_off_the_errors_page() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let id = s.dead("C1").await;
    let r = s
        .post_form(
            &format!("/messages/{id}/discard"),
            Some(&b),
            &[("csrf", &b.csrf), ("reason", "  ")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .post_json(
            &format!("/api/v1/messages/{id}/discard"),
            Some(&b),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .post_form(
            &format!("/messages/{id}/discard"),
            Some(&b),
            &[("csrf", &b.csrf), ("reason", "test message")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s.get("/errors", Some(&b)).await.body.contains("no-errors"));
    let v = s
        .get(&format!("/api/v1/messages/{id}"), Some(&b))
        .await
        .json();
    assert_eq!(v["outbox"][0]["state"], "discarded");
    assert_eq!(v["outbox"][0]["discarded"]["reason"], "test message");
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "message.discard"
        && a.detail.as_deref().unwrap_or("").contains("test message")));
    assert_eq!(
        s.post_json(
            "/api/v1/messages/999/discard",
            Some(&b),
            serde_json::json!({"reason": "x"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_admin_adds_users_with_validation_and_sees_the_audit_log() {
    let s = site().await;
    let b = s.login("ann", "admin").await;
    let r = s.get("/users", Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    let ok = [
        ("csrf", b.csrf.as_str()),
        ("name", "bob"),
        ("role", "operator"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    assert_eq!(
        s.post_form("/users", Some(&b), &ok).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        s.post_form("/users", Some(&b), &ok).await.status,
        StatusCode::CONFLICT
    );
    let bad_role = [
        ("csrf", b.csrf.as_str()),
        ("name", "carl"),
        ("role", "root"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    let r = s.post_form("/users", Some(&b), &bad_role).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Role"));
    let r = s.get("/audit", Some(&b)).await;
    assert!(r.body.contains("user.create") && r.body.contains("bob"));
    let v = s.get("/api/v1/audit", Some(&b)).await.json();
    assert!(v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "login"));
}

#[tokio::test]
async fn an_api_token_made_by_an_admin_reads_the_api_without_a_cookie_or_csrf() {
    let s = site().await;
    let b = s.login("ann", "admin").await;
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&b),
            serde_json::json!({"label": "hub"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = s
        .post_json("/api/v1/tokens", Some(&b), serde_json::json!({"label": ""}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for p in [
        "/api/v1/endpoints",
        "/api/v1/messages",
        "/api/v1/stats?window=1h",
    ] {
        let r = s
            .send(
                Request::get(p)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
    }
    let r = s
        .send(
            Request::post("/api/v1/messages/retry")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_stats_report_volume_success_rate_and_p95_per_endpoint() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    s.ingest("C1", "P").await;
    s.attempt(Settlement::Retry {
        error: "x".into(),
        duration_ms: 1,
        retry_at: 0,
    })
    .await;
    s.attempt(Settlement::Delivered {
        response: None,
        duration_ms: 1,
    })
    .await;
    let v = s.get("/api/v1/stats?window=1h", Some(&b)).await.json();
    let e = v["endpoints"].as_array().unwrap();
    let inbox = e.iter().find(|e| e["name"] == "inbox").unwrap();
    let archive = e.iter().find(|e| e["name"] == "archive").unwrap();
    assert_eq!(inbox["received"], 1);
    assert_eq!(archive["delivered"], 1);
    assert_eq!(archive["success_rate"], 0.5);
    assert!(archive["p95_ms"].is_i64());
    assert_eq!(
        s.get("/api/v1/stats?window=2y", Some(&b)).await.status,
        StatusCode::BAD_REQUEST
    );
    let page = s.get("/stats?window=7d", Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg") && page.body.contains("50.0 %"));
    let v = s.get("/api/v1/endpoints", Some(&b)).await.json();
    assert_eq!(v["endpoints"][0]["name"], "inbox");
    assert_eq!(v["endpoints"][0]["messages_today"], 1);
}

#[tokio::test]
async fn the_live_log_streams_new_events_as_server_sent_events() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let res = s
        .app
        .clone()
        .oneshot(
            Request::get("/logs/stream")
                .header(header::COOKIE, &b.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    s.ingest("LIVE-1", "P").await;
    let mut body = res.into_body();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while !seen.contains("LIVE-1") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("an event within 2 s");
        if let Some(Ok(f)) = frame {
            if let Some(d) = f.data_ref() {
                seen.push_str(&String::from_utf8_lossy(d));
            }
        }
    }
    assert!(seen.contains("event: log") && seen.contains("\"kind\":\"received\""));
}

#[tokio::test]
async fn logging_out_ends_the_session() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let r = s.post_form("/logout", Some(&b), &[("csrf", &b.csrf)]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/login"));
    assert!(r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(s.get("/", Some(&b)).await.location(), "/login");
}
