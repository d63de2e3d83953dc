//! Handler tests: every route, called through the router as a browser or
//! script would, against a real journal in a temporary directory.

use super::{hash_password, router, AdminState};
use crate::config::Config;
use crate::health::{Health, DOWN_AFTER_MS};
use crate::journal::{Destination, Journal, JournalOptions, ManualClock, Settlement};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use ecko_message::Envelope;
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "a long enough secret";

struct Site {
    app: Router,
    journal: Journal,
    health: Health,
    clock: Arc<ManualClock>,
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
    site_full("", "", extra).await
}

/// A site whose configuration has `journal` in `[journal]`, `more` after the
/// endpoints and routes, and `admin` in `[admin]`; its journal runs on a
/// manual clock starting now.
async fn site_full(journal_keys: &str, more: &str, admin: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
        [journal]
        path = "{d}/journal.db"
        {journal_keys}
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
        {more}
        [admin]
        listen = "127.0.0.1:0"
        {admin}
        "#,
        d = dir.path().display()
    );
    let config = Config::parse(&toml, "t.toml", |_| None).unwrap();
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now().as_millisecond()));
    let mut options = JournalOptions::new(dir.path().join("journal.db"));
    options.clock = clock.clone();
    let journal = Journal::open(options).unwrap();
    let health = Health::new();
    let app = router(AdminState::with_health(
        journal.clone(),
        Arc::new(config),
        CancellationToken::new(),
        health.clone(),
    ));
    Site {
        app,
        journal,
        health,
        clock,
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

    /// A form posted from client address `peer` (`ip:port`).
    async fn post_form_from(&self, peer: &str, uri: &str, form: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(form).unwrap();
        let r = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "gw")
            .extension(crate::admin::ClientAddr(peer.parse().unwrap()))
            .body(Body::from(body))
            .unwrap();
        self.send(r).await
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
                Envelope {
                    source: "inbox".into(),
                    dedup_key: Some(control.into()),
                    message_type: "ORU^R01".into(),
                    content_type: "x-application/hl7-v2+er7".into(),
                    control_id: Some(control.into()),
                    patient_id: Some(patient.into()),
                    payload: payload.into_bytes(),
                    ack: Some(format!("MSH|^~\\&|GW\rMSA|AA|{control}\r").into_bytes()),
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
            .message_id
    }

    /// Each of `ids` has its (first) delivery queued.
    async fn assert_queued(&self, ids: &[i64]) {
        for &id in ids {
            assert_eq!(
                self.journal.outbox_of(id).await.unwrap()[0].state,
                crate::journal::OutboxState::Queued,
                "message {id}"
            );
        }
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
    "/dashboard/live",
    "/stats.csv",
    "/logs",
    "/logs/stream",
    "/messages/1",
    "/messages/1/raw",
    "/messages/1/deliveries/1",
    "/errors",
    "/stats",
    "/settings",
    "/users",
    "/audit",
    "/audit/export.csv",
];
const PAGE_POSTS: &[&str] = &[
    "/messages/1/retry",
    "/messages/1/discard",
    "/errors/retry",
    "/errors/groups",
    "/errors/group/retry",
    "/errors/group/discard",
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

/// The setup form for `root` with `code`.
fn setup_fields(code: &str) -> [(&str, &str); 4] {
    [
        ("setup_code", code),
        ("name", "root"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ]
}

impl Site {
    /// This device's setup code, as an operator reads it from the file.
    fn setup_code(&self) -> String {
        crate::control::setup_code::issue(self._dir.path())
            .unwrap()
            .0
    }

    /// A setup form posted from `ip`, as the server marks each connection.
    async fn setup_from(&self, ip: &str, form: &[(&str, &str)]) -> Reply {
        let mut r = Request::post("/setup")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "gw")
            .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
            .unwrap();
        let addr = std::net::SocketAddr::new(ip.parse().unwrap(), 50_000);
        r.extensions_mut().insert(super::ClientAddr(addr));
        self.send(r).await
    }
}

#[tokio::test]
async fn the_first_run_setup_creates_one_administrator_and_only_once() {
    let s = site().await;
    let code = s.setup_code();
    let form = [
        ("setup_code", code.as_str()),
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
                ("setup_code", code.as_str()),
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
async fn the_setup_form_asks_for_the_setup_code_and_the_code_file_exists_once_it_is_shown() {
    let s = site().await;
    let path = crate::control::setup_code::path(s._dir.path());
    assert!(!path.exists());
    let page = s.get("/setup", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"setup_code\""), "{}", page.body);
    assert!(
        path.exists(),
        "the code is made before anyone is asked for it"
    );
}

#[tokio::test]
async fn the_setup_is_refused_without_the_setup_code_or_with_a_wrong_one_on_that_field() {
    let s = site().await;
    let code = s.setup_code();
    let mut wrong = code.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    for given in ["", wrong.as_str()] {
        let r = s
            .post_form(
                "/setup",
                None,
                &[
                    ("setup_code", given),
                    ("name", "root"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{given:?}: {}", r.body);
        assert!(
            r.body.contains("id=\"setup_code-error\">Setup code: "),
            "{}",
            r.body
        );
        assert!(r.body.contains("aria-invalid=\"true\""));
    }
    let r = s
        .post_form(
            "/setup",
            None,
            &[
                ("name", "root"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a form without the field"
    );
    assert_eq!(s.journal.admin_user_count().await.unwrap(), 0);
    assert_eq!(s.setup_code(), code, "a refusal leaves the code as it was");
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "setup.refused"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn the_right_setup_code_typed_loosely_makes_the_administrator_and_is_consumed() {
    let s = site().await;
    let code = s.setup_code();
    let typed = code.to_lowercase().replace('-', " ");
    let form = [
        ("setup_code", typed.as_str()),
        ("name", "root"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    let r = s.post_form("/setup", None, &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.journal.admin_user("root").await.unwrap().is_some());
    assert!(!crate::control::setup_code::path(s._dir.path()).exists());
}

#[tokio::test]
async fn wrong_setup_codes_count_toward_the_login_rate_limit() {
    let s = site_with("login_attempts_per_minute = 2").await;
    let code = s.setup_code();
    for _ in 0..2 {
        let r = s
            .post_form("/setup", None, &setup_fields("AAAA-AAAA-AAAA"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = s.post_form("/setup", None, &setup_fields(&code)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(s.journal.admin_user_count().await.unwrap(), 0);
    let login = s
        .post_form("/login", None, &[("name", "x"), ("password", "y")])
        .await;
    assert_eq!(
        login.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the same limiter"
    );
}

#[tokio::test]
async fn with_loopback_only_setup_the_device_itself_needs_no_code_and_others_are_refused() {
    let s = site_with("setup_from_loopback_only = true").await;
    let form = [
        ("name", "root"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    for ip in ["192.168.1.20", "0.0.0.0", "fe80::1"] {
        let r = s.setup_from(ip, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{ip}");
        assert!(r.body.contains("from the device itself only"), "{}", r.body);
    }
    let wrong_code = s.post_form("/setup", None, &form).await;
    assert_eq!(
        wrong_code.status,
        StatusCode::FORBIDDEN,
        "no address: not loopback"
    );
    assert_eq!(s.journal.admin_user_count().await.unwrap(), 0);
    let r = s.setup_from("::1", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.journal.admin_user("root").await.unwrap().is_some());
    assert!(
        !crate::control::setup_code::path(s._dir.path()).exists(),
        "no code was made"
    );
}

#[tokio::test]
async fn the_setup_refuses_a_short_password_or_a_mismatch_with_the_reason() {
    let s = site().await;
    let code = s.setup_code();
    let code = code.as_str();
    let r = s
        .post_form(
            "/setup",
            None,
            &[
                ("setup_code", code),
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
                ("setup_code", code),
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
                ("setup_code", code),
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
    assert_no_inline_script(&page.body);
}

#[tokio::test]
async fn repeated_failures_throttle_the_name_from_that_address_only() {
    let s = site_with("throttle_after = 3").await;
    s.add_user("ann", "admin").await;
    let attacker = "10.0.0.66:40000";
    for _ in 0..3 {
        let r = s
            .post_form_from(
                attacker,
                "/login",
                &[("name", "ann"), ("password", "wrong password!")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Wrong user name or password"));
    }
    // The right password from the attacker's address waits too ...
    let r = s
        .post_form_from(
            attacker,
            "/login",
            &[("name", "ann"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("try again in 1 s"), "{}", r.body);
    // ... the administrator at her own desk does not.
    let r = s
        .post_form_from(
            "10.0.0.1:50000",
            "/login",
            &[("name", "ann"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.journal
            .admin_user("ann")
            .await
            .unwrap()
            .unwrap()
            .locked_until,
        0,
        "the account itself is never locked"
    );
}

#[tokio::test]
async fn an_unknown_name_and_a_wrong_password_get_the_same_answer_also_when_throttled() {
    let s = site_with("throttle_after = 2").await;
    s.add_user("ann", "admin").await;
    let from = "10.0.0.66:40000";
    let answers = |name: &'static str| {
        let s = &s;
        async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                let r = s
                    .post_form_from(
                        from,
                        "/login",
                        &[("name", name), ("password", "not it at all")],
                    )
                    .await;
                out.push((r.status, r.body.replace(name, "NAME")));
            }
            out
        }
    };
    let known = answers("ann").await;
    let unknown = answers("bob").await;
    assert_eq!(known, unknown);
    assert_eq!(
        known.iter().map(|a| a.0).collect::<Vec<_>>(),
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
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
    for p in ["/users", "/audit", "/audit/export.csv", "/api/v1/audit"] {
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
            &[("csrf", &b.csrf), ("back", "/errors?endpoint=archive")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/errors?endpoint=archive"),
        "back to the page the form was on"
    );
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
async fn the_add_a_user_form_offers_the_least_role_first_as_the_command_line_does() {
    let s = site().await;
    let b = s.login("ann", "admin").await;
    let page = s.get("/users", Some(&b)).await.body;
    let form = page
        .split("<h2>Add a user</h2>")
        .nth(1)
        .and_then(|f| f.split("</form>").next())
        .unwrap_or_default();
    assert!(form.contains("<option selected>viewer</option>"), "{form}");
    assert!(form.contains("<option>admin</option>"), "{form}");
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
    // A token is a viewer unless made otherwise.
    let r = s
        .send(
            Request::post("/api/v1/messages/retry")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
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

/// Every `<script` tag in `body` loads a file (`src=`): the CSP forbids
/// inline script, and a page must not depend on it.
fn assert_no_inline_script(body: &str) {
    let lower = body.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag_end = lower[at..].find('>').map_or(lower.len(), |e| at + e);
        let tag = &lower[at..tag_end];
        assert!(tag.contains(" src="), "inline script at {at}: {tag}");
    }
}

#[test]
fn the_inline_script_check_catches_a_script_without_src() {
    assert_no_inline_script("<script src=\"/assets/app.js\" defer></script>");
    let caught =
        std::panic::catch_unwind(|| assert_no_inline_script("<p><SCRIPT type=module>x</SCRIPT>"));
    assert!(caught.is_err());
}

impl Site {
    /// The status of a request without reading its body (the live log's
    /// body never ends).
    async fn status_of(&self, req: Request<Body>) -> (StatusCode, String) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (res.status(), location)
    }

    /// A token made through the API by `admin`, with `role`.
    async fn token(&self, admin: &Browser, role: &str, days: Option<u32>) -> String {
        let mut body = serde_json::json!({"label": format!("{role} token"), "role": role});
        if let Some(d) = days {
            body["expires_in_days"] = d.into();
        }
        let r = self.post_json("/api/v1/tokens", Some(admin), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }

    async fn api_as(&self, method: &str, uri: &str, token: &str, json: &str) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn endpoint_view(&self, b: &Browser, name: &str) -> serde_json::Value {
        let v = self.get("/api/v1/endpoints", Some(b)).await.json();
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no endpoint {name}: {v}"))
            .clone()
    }

    /// Leases every due row of `archive` and settles them one by one with
    /// the given outcomes (in lease order).
    async fn attempt_each(&self, outcomes: Vec<Settlement>) {
        let batch = self.journal.lease("archive", 8, 100).await.unwrap();
        let leases: Vec<_> = batch.lanes.into_iter().flatten().collect();
        assert_eq!(leases.len(), outcomes.len(), "rows leased");
        self.journal
            .settle(leases.into_iter().zip(outcomes).collect())
            .await
            .unwrap();
    }

    async fn ingest_as(&self, content_type: &str, message_type: &str, payload: &[u8]) -> i64 {
        self.ingest_from("inbox", "archive", content_type, message_type, payload)
            .await
    }

    async fn ingest_from(
        &self,
        source: &str,
        destination: &str,
        content_type: &str,
        message_type: &str,
        payload: &[u8],
    ) -> i64 {
        self.journal
            .ingest(
                Envelope {
                    source: source.into(),
                    dedup_key: None,
                    message_type: message_type.into(),
                    content_type: content_type.into(),
                    control_id: None,
                    patient_id: None,
                    payload: payload.to_vec(),
                    ack: None,
                    ..Default::default()
                },
                vec![Destination {
                    endpoint: destination.into(),
                    transform: "none".into(),
                    lane: String::new(),
                    reply_to: None,
                }],
            )
            .await
            .unwrap()
            .message_id
    }
}

// ---- dashboard: status from the health registry ----

#[tokio::test]
async fn the_dashboard_shows_up_degraded_down_since_disabled_and_unknown_from_what_endpoints_report(
) {
    let s = site_full(
        "",
        r#"[[endpoint]]
        name = "old-lab"
        type = "file-drop"
        path = "/nonexistent/old"
        enabled = false
        [[endpoint]]
        name = "spare"
        type = "file"
        path = "/nonexistent/spare""#,
        "",
    )
    .await;
    let b = s.login("ann", "viewer").await;
    let now = s.journal.now_ms();
    s.health.up("inbox", now - 60_000, "watching /var/inbox");
    s.health
        .failed("archive", now - 1_000, "connection refused");
    let inbox = s.endpoint_view(&b, "inbox").await;
    assert_eq!(inbox["status"], "up");
    assert_eq!(inbox["since"], now - 60_000);
    assert_eq!(inbox["detail"], "watching /var/inbox");
    let archive = s.endpoint_view(&b, "archive").await;
    assert_eq!(archive["status"], "degraded");
    assert_eq!(archive["since"], now - 1_000);
    assert!(archive["alerts"][0]
        .as_str()
        .unwrap()
        .contains("failing since"));
    assert_eq!(s.endpoint_view(&b, "old-lab").await["status"], "disabled");
    assert_eq!(s.endpoint_view(&b, "spare").await["status"], "unknown");

    // Failing for longer than the threshold with no delivery: down since the
    // first failure.
    s.clock.advance(DOWN_AFTER_MS);
    let archive = s.endpoint_view(&b, "archive").await;
    assert_eq!(archive["status"], "down");
    assert_eq!(archive["since"], now - 1_000);
    let page = s.get("/", Some(&b)).await;
    let tz = jiff::tz::TimeZone::UTC;
    assert!(
        page.body.contains(&format!(
            "down since {}",
            super::format::time(now - 1_000, &tz)
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("archive: down since"));

    // One delivery and it is up again; a listener that stops is down.
    s.health.delivered("archive", s.journal.now_ms());
    assert_eq!(s.endpoint_view(&b, "archive").await["status"], "up");
    s.health
        .down("inbox", s.journal.now_ms(), "cannot read /var/inbox: gone");
    let inbox = s.endpoint_view(&b, "inbox").await;
    assert_eq!(inbox["status"], "down");
    assert!(inbox["alerts"][0].as_str().unwrap().contains("gone"));
}

#[tokio::test]
async fn the_dashboard_counts_queue_depth_dead_letters_and_messages_today_and_raises_alerts() {
    let s = site_full("max_size = \"1MiB\"", "", "").await;
    let b = s.login("ann", "viewer").await;
    let v = s.get("/api/v1/endpoints", Some(&b)).await.json();
    assert!(v["alerts"].as_array().unwrap().is_empty(), "{v}");
    s.ingest("C1", "P1").await;
    s.attempt(Settlement::Dead {
        error: "HTTP 400 from hub".into(),
        duration_ms: 4,
    })
    .await;
    s.ingest("C2", "P1").await;
    s.ingest("C3", "P1").await;
    s.attempt_each(vec![
        Settlement::Delivered {
            response: None,
            duration_ms: 2,
        },
        Settlement::Retry {
            error: "timeout".into(),
            duration_ms: 2,
            retry_at: 0,
        },
    ])
    .await;
    s.ingest("C4", "P1").await;
    let archive = s.endpoint_view(&b, "archive").await;
    assert_eq!(archive["queue_depth"], 2, "C3 failing and C4 queued");
    assert_eq!(archive["failing"], 1);
    assert_eq!(archive["dead"], 1);
    assert_eq!(archive["messages_today"], 1, "one delivered today");
    assert!(archive["alerts"][0]
        .as_str()
        .unwrap()
        .starts_with("1 dead letter: HTTP 400 from hub"));
    let inbox = s.endpoint_view(&b, "inbox").await;
    assert_eq!(inbox["messages_today"], 4);
    assert_eq!(inbox["last_message_at"], s.journal.now_ms());
    // A journal near its size cap.
    s.ingest_as("text/plain", "blob", &vec![b'x'; 1 << 20])
        .await;
    let v = s.get("/api/v1/endpoints", Some(&b)).await.json();
    assert!(
        v["alerts"][0].as_str().unwrap().starts_with("journal at "),
        "{v}"
    );
    let page = s.get("/", Some(&b)).await;
    assert!(page.body.contains("of its size cap") && page.body.contains("dead letter"));
}

#[tokio::test]
async fn the_dashboard_shows_todays_counts_a_day_of_trend_the_oldest_queued_age_and_the_system_and_warns_of_a_certificate_near_expiry(
) {
    let certs = tempfile::tempdir().unwrap();
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 10))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let mut params = rcgen::CertificateParams::new(vec!["gw.local".to_string()]).unwrap();
    params.not_after =
        rcgen::date_time_ymd(soon.year().into(), soon.month() as u8, soon.day() as u8);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        certs.path().join("admin.pem"),
        certs.path().join("admin.key"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let s = site_full(
        "",
        "",
        &format!(
            "cert = \"{}\"\nkey = \"{}\"",
            cert_file.display(),
            key_file.display()
        ),
    )
    .await;
    let b = s.login("ann", "viewer").await;
    s.ingest("C1", "P1").await;
    s.clock.advance(12 * 60_000);
    let page = s.get("/", Some(&b)).await.body;
    assert!(page.contains("<table id=\"system\">"), "{page}");
    let journal = page
        .split("id=\"system-journal\">")
        .nth(1)
        .and_then(|r| r.split("</td>").next())
        .unwrap_or_default();
    assert!(
        journal.contains(" of ") && journal.contains(" %)"),
        "the journal against its cap: {journal:?}"
    );
    assert!(page.contains("write-ahead log"), "{page}");
    assert!(page.contains(crate::cli::VERSION), "{page}");
    assert!(page.contains("id=\"system-clock\""), "{page}");
    assert!(page.contains("<td class=\"oldest\">12 min</td>"), "{page}");
    assert!(
        page.contains("<td class=\"counts\">1 received, 1 acknowledged, 0 refused</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"counts\">0 delivered, 0 failed</td>"),
        "{page}"
    );
    assert!(
        page.contains("<svg class=\"sparkline\"")
            && page.contains("1 in all, at most 1 in an hour"),
        "the inbox's last 24 hours: {page}"
    );
    let row = page
        .lines()
        .find(|l| l.contains("class=\"certificate\""))
        .unwrap_or_else(|| panic!("no certificate row: {page}"));
    assert!(
        row.contains("admin.pem") && row.contains("class=\"error\"") && row.contains("renew it"),
        "{row}"
    );
    assert!(
        row.contains("in 9 days") || row.contains("in 10 days"),
        "{row}"
    );
}

#[tokio::test]
async fn a_journal_left_unwritable_by_a_full_disk_is_the_dashboards_first_alert() {
    let s = site_full("", "", "").await;
    let b = s.login("ann", "viewer").await;
    s.journal.mark_unwritable();
    let v = s.get("/api/v1/endpoints", Some(&b)).await.json();
    assert!(
        v["alerts"][0]
            .as_str()
            .unwrap()
            .starts_with("the disk holding the journal is full"),
        "{v}"
    );
}

// ---- live log ----

/// Reads SSE frames until `done` says so or `wait` passes; returns the text.
async fn read_stream(
    body: &mut axum::body::Body,
    wait: std::time::Duration,
    done: impl Fn(&str) -> bool,
) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = String::new();
    loop {
        if done(&seen) {
            return (seen, false);
        }
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return (seen, false),
            Ok(None) => return (seen, true),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    seen.push_str(&String::from_utf8_lossy(d));
                }
            }
            Ok(Some(Err(_))) => return (seen, true),
        }
    }
}

#[tokio::test]
async fn the_live_log_applies_the_filters_and_writes_times_in_the_site_time_zone() {
    let s = site_full("", "[site]\ntime_zone = \"Asia/Kolkata\"", "").await;
    let b = s.login("ann", "viewer").await;
    let res = s
        .app
        .clone()
        .oneshot(
            Request::get("/logs/stream?patient_id=WANTED&status=queued")
                .header(header::COOKIE, &b.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.ingest("OTHER-1", "SOMEONE").await;
    s.ingest("MINE-1", "WANTED").await;
    s.attempt(Settlement::Delivered {
        response: None,
        duration_ms: 1,
    })
    .await;
    s.ingest("OTHER-2", "SOMEONE").await;
    let mut body = res.into_body();
    let (seen, _) = read_stream(&mut body, std::time::Duration::from_secs(2), |t| {
        t.contains("OTHER-2")
    })
    .await;
    assert!(seen.contains("MINE-1"), "{seen}");
    assert!(!seen.contains("OTHER-"), "{seen}");
    assert_eq!(seen.matches("event: log").count(), 1, "{seen}");
    let tz = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
    let expected = super::format::time(s.journal.now_ms(), &tz);
    assert!(seen.contains(&format!("\"time\":\"{expected}\"")), "{seen}");
    // The page names the stream with its filters.
    let page = s.get("/logs?endpoint=archive&control_id=X", Some(&b)).await;
    assert!(page
        .body
        .contains("data-stream=\"/logs/stream?endpoint=archive&amp;control_id=X\""));
    let bad = s.get("/logs/stream?status=lost", Some(&b)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_live_log_stops_when_the_session_is_logged_out_or_expires() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let open = |b: &Browser| {
        Request::get("/logs/stream")
            .header(header::COOKIE, &b.cookie)
            .body(Body::empty())
            .unwrap()
    };
    let res = s.app.clone().oneshot(open(&b)).await.unwrap();
    let mut body = res.into_body();
    s.ingest("BEFORE", "P").await;
    let (seen, ended) = read_stream(&mut body, std::time::Duration::from_secs(2), |t| {
        t.contains("BEFORE")
    })
    .await;
    assert!(seen.contains("BEFORE") && !ended);
    let r = s.post_form("/logout", Some(&b), &[("csrf", &b.csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (_, ended) = read_stream(&mut body, std::time::Duration::from_secs(4), |_| false).await;
    assert!(ended, "the stream ends after logout");

    let b = s.login("bob", "viewer").await;
    let res = s.app.clone().oneshot(open(&b)).await.unwrap();
    let mut body = res.into_body();
    s.clock.advance(9 * 3_600_000); // past the 8 h session
    let (_, ended) = read_stream(&mut body, std::time::Duration::from_secs(4), |_| false).await;
    assert!(ended, "the stream ends when the session expires");
}

// ---- message viewer ----

#[tokio::test]
async fn the_viewer_names_and_numbers_the_fields_of_every_segment_of_an_order() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let orm = "MSH|^~\\&|HIS|WARD|LAB|H|20240102030405||ORM^O01|ORD-1|P|2.5\r\
               PID|1||P9^^^HOSP^MR||Doe^Jane||19800101|F\r\
               PV1|1|I|WARD^12^1||||1234^House^Greg||||||||||||V77\r\
               ORC|NW|PLC-1|||||||20240102030405|||1234^House^Greg\r\
               OBR|1|PLC-1||GLU^Glucose^L|||20240102030000\r\
               SPM|1|SPEC-1||BLD^Blood^HL70487\r\
               NTE|1|L|fasting\r";
    let id = s
        .ingest_as(
            "application/octet-stream",
            "ORM^O01",
            format!("\n{orm}").as_bytes(),
        )
        .await;
    let r = s.get(&format!("/messages/{id}"), Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    for (pos, name, value) in [
        ("MSH-9", "Message Type", "ORM"),
        ("PID-3", "Patient Identifier List", "P9"),
        ("PV1-3", "Assigned Patient Location", "WARD"),
        ("PV1-19", "Visit Number", "V77"),
        ("ORC-1", "Order Control", "NW"),
        ("ORC-12", "Ordering Provider", "House"),
        ("OBR-4", "Universal Service Identifier", "Glucose"),
        ("SPM-2", "Specimen ID", "SPEC-1"),
        ("SPM-4", "Specimen Type", "Blood"),
        ("NTE-3", "Comment", "fasting"),
    ] {
        let row = format!("<th>{pos}</th><td class=\"fname\">{name}</td>");
        let at = r.body.find(&row).unwrap_or_else(|| panic!("{row}"));
        let line_end = r.body[at..].find("</tr>").unwrap() + at;
        assert!(
            r.body[at..line_end].contains(value),
            "{pos}: {}",
            &r.body[at..line_end]
        );
    }
    assert_eq!(r.body.matches("<table class=\"segment\">").count(), 7);
}

#[tokio::test]
async fn the_viewer_shows_astm_records_by_level_and_fhir_json_pretty_printed() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let astm = s
        .ingest_as(
            "application/x-astm",
            "ASTM",
            b"H|\\^&|||Analyzer\rP|1||PAT-1\rO|1|SID-1||^^^GLU\rR|1|^^^GLU|5.2|mmol/L\rC|1|I|checked\rL|1|N\r",
        )
        .await;
    let r = s.get(&format!("/messages/{astm}"), Some(&b)).await;
    for (level, record) in [
        (0, "H|"),
        (1, "P|1"),
        (2, "O|1"),
        (3, "R|1"),
        (3, "C|1"),
        (0, "L|1"),
    ] {
        assert!(
            r.body
                .contains(&format!("<div class=\"rec l{level}\"><code>{record}")),
            "{record} at level {level}"
        );
    }
    let fhir = s
        .ingest_as(
            "application/fhir+json",
            "Bundle",
            br#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final"}}]}"#,
        )
        .await;
    let r = s.get(&format!("/messages/{fhir}"), Some(&b)).await;
    assert!(
        r.body
            .contains("<pre class=\"json\">{\n  &quot;resourceType&quot;: &quot;Bundle&quot;,"),
        "{}",
        r.body
    );
    assert!(r.body.contains("\n      &quot;resource&quot;: {\n"));
}

#[tokio::test]
async fn a_refusal_page_quotes_a_hostile_value_escaped() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let r = s
        .get("/logs?from=%3Cscript%3Ealert(1)%3C%2Fscript%3E", Some(&b))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("<h1>Cannot do that</h1>"), "{}", r.body);
    assert!(
        r.body
            .contains("`&lt;script&gt;alert(1)&lt;/script&gt;` is not a time"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert"));
    let r = s.get("/no/such/page", Some(&b)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r
        .body
        .contains("<p class=\"error\">There is no such page.</p>"));
}

#[tokio::test]
async fn the_viewer_escapes_a_hostile_payload_its_names_and_its_acknowledgement() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let hl7 = s.ingest("<script>c</script>", "P<b>").await;
    let r = s.get(&format!("/messages/{hl7}"), Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    for (section, escaped) in [
        (
            "facts",
            "<th>Control id</th><td>&lt;script&gt;c&lt;/script&gt;</td>",
        ),
        ("HL7 field", "<td>&lt;script&gt;c&lt;/script&gt;</td></tr>"),
        (
            "acknowledgement",
            "MSA|AA|&lt;script&gt;c&lt;/script&gt;&lt;CR&gt;",
        ),
        ("raw", "|&lt;script&gt;c&lt;/script&gt;|P|2.5&lt;CR&gt;"),
    ] {
        assert!(r.body.contains(escaped), "{section}: {}", r.body);
    }
    let text = s
        .ingest_from(
            "<in>",
            "archive",
            "text/plain",
            "<t>",
            b"<script>alert(1)</script>\x01",
        )
        .await;
    let r = s.get(&format!("/messages/{text}"), Some(&b)).await;
    assert!(r.body.contains("<td>&lt;in&gt;</td>"), "{}", r.body);
    assert!(r.body.contains("<td>&lt;t&gt;</td>"));
    assert!(r
        .body
        .contains("<pre class=\"raw\">&lt;script&gt;alert(1)&lt;/script&gt;&lt;0x01&gt;</pre>"));
    assert!(!r.body.contains("<script>"), "{}", r.body);
    assert!(!r.body.contains("<in>") && !r.body.contains("<t>"));
}

// ---- errors: back, retry all ----

#[tokio::test]
async fn a_form_returns_to_its_own_page_and_never_to_another_site() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let id = s.dead("C1").await;
    for (given, expected) in [
        (format!("/messages/{id}"), format!("/messages/{id}")),
        ("https://evil.example/".into(), "/errors".into()),
        ("//evil.example/x".into(), "/errors".into()),
        (String::new(), "/errors".into()),
    ] {
        let r = s
            .post_form(
                &format!("/messages/{id}/retry"),
                Some(&b),
                &[("csrf", &b.csrf), ("back", &given)],
            )
            .await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, expected.as_str())
        );
    }
    // A Referer naming another site is not followed either.
    let r = s
        .send(
            Request::post(format!("/messages/{id}/discard"))
                .header(header::COOKIE, &b.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::REFERER, "https://evil.example/")
                .body(Body::from(format!("csrf={}&reason=test", b.csrf)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.location(), "/errors");
    // The errors page gives each form its own address to come back to.
    s.post_form(
        &format!("/messages/{id}/retry"),
        Some(&b),
        &[("csrf", &b.csrf)],
    )
    .await;
    s.attempt(Settlement::Dead {
        error: "x".into(),
        duration_ms: 1,
    })
    .await;
    let page = s.get("/errors?endpoint=archive", Some(&b)).await;
    assert!(page
        .body
        .contains("name=\"back\" value=\"/errors?endpoint=archive&amp;status=errors\""));
}

#[tokio::test]
async fn retry_all_matching_says_how_many_were_retried_and_when_the_bulk_limit_stopped_it() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    for c in ["A", "B", "C"] {
        s.dead(c).await;
    }
    let r = s
        .post_form(
            "/errors/retry",
            Some(&b),
            &[
                ("csrf", &b.csrf),
                ("endpoint", "archive"),
                ("back", "/errors?endpoint=archive"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/errors?endpoint=archive&retried=3");
    let page = s.get(r.location(), Some(&b)).await;
    assert!(
        page.body.contains("3 deliveries queued again."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("only the newest"));
    let page = s.get("/errors?retried=7&truncated=1", Some(&b)).await;
    assert!(page
        .body
        .contains("7 deliveries queued again. More than 10000 messages matched"));

    // The limit itself, at a size a test can reach.
    s.attempt(Settlement::Dead {
        error: "x".into(),
        duration_ms: 1,
    })
    .await;
    let done = s
        .journal
        .admin_retry_at_most(
            crate::journal::Selection::Matching(Default::default()),
            "op",
            2,
        )
        .await
        .unwrap();
    assert_eq!((done.rows, done.truncated), (2, true));
    let audit = s.journal.audit_log(None, 1).await.unwrap();
    assert!(audit[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("stopped at 2 messages"));
    let r = s
        .post_json("/api/v1/messages/retry", Some(&b), serde_json::json!({}))
        .await;
    assert_eq!(
        r.json(),
        serde_json::json!({"retried": 1, "truncated": false})
    );
}

// ---- statistics ----

#[tokio::test]
async fn the_stats_give_exact_volume_success_rate_average_and_p95_for_known_durations() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    for i in 0..20 {
        s.ingest(&format!("S{i}"), "P").await;
    }
    // Every message fails once, then 19 take 10 ms and one 900 ms.
    s.attempt(Settlement::Retry {
        error: "busy".into(),
        duration_ms: 3,
        retry_at: 0,
    })
    .await;
    let mut outcomes: Vec<Settlement> = (0..19)
        .map(|_| Settlement::Delivered {
            response: None,
            duration_ms: 10,
        })
        .collect();
    outcomes.push(Settlement::Delivered {
        response: None,
        duration_ms: 900,
    });
    s.attempt_each(outcomes).await;
    s.journal
        .record_incomplete("inbox", "no terminator", &[b"H|\\^&".to_vec()], Vec::new())
        .await
        .unwrap();
    let v = s.get("/api/v1/stats?window=1h", Some(&b)).await.json();
    let e = v["endpoints"].as_array().unwrap();
    let inbox = e.iter().find(|e| e["name"] == "inbox").unwrap();
    let archive = e.iter().find(|e| e["name"] == "archive").unwrap();
    assert_eq!(inbox["received"], 20);
    assert_eq!(inbox["rejected"], 1);
    assert_eq!(inbox["rejection_rate"], 1.0 / 21.0);
    assert_eq!(archive["attempts"], 40);
    assert_eq!(archive["delivered"], 20);
    assert_eq!(archive["failed"], 20);
    assert_eq!(archive["success_rate"], 0.5);
    assert_eq!(archive["avg_ms"], (19.0 * 10.0 + 900.0) / 20.0);
    assert_eq!(archive["p95_ms"], 10, "the 19th of 20 durations");
    assert_eq!(
        archive["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum::<u64>(),
        20
    );
    assert_eq!(inbox["buckets"].as_array().unwrap().len(), 12);

    // One more slow delivery moves the p95 into its bucket, bounded by the
    // longest duration seen.
    s.ingest("S20", "P").await;
    s.attempt_each(vec![Settlement::Delivered {
        response: None,
        duration_ms: 400,
    }])
    .await;
    let v = s.get("/api/v1/stats?window=1h", Some(&b)).await.json();
    let archive = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "archive")
        .unwrap()
        .clone();
    assert_eq!(
        archive["p95_ms"], 500,
        "the 20th of 21: 400 ms, in the 200-500 ms bucket"
    );
    let page = s.get("/stats?window=1h", Some(&b)).await;
    assert!(page.body.contains("51.2 %"), "21 of 41 attempts");
    // One window at a time, with the median and p99 beside p95.
    let table = page.body.split("id=\"stats\"").nth(1).unwrap();
    let table = table.split("</table>").next().unwrap();
    assert_eq!(table.matches("<tr><td>archive</td>").count(), 1, "{table}");
    assert!(table.contains("<th>p50</th>") && table.contains("<th>p99</th>"));
    // The chart: an axis, time labels, hover titles naming the series.
    assert!(page.body.contains("class=\"axis\""), "{}", page.body);
    assert!(page.body.contains("<title>delivered: "), "{}", page.body);
    assert!(page.body.contains("class=\"s-failed\""));
    // The same buckets as CSV, delivered and failed adding up.
    let csv = s.get("/stats.csv?window=1h", Some(&b)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.body
            .starts_with("endpoint,bucket_start,bucket_end,received,delivered,failed,most_waiting,oldest_wait_s\n"),
        "{}",
        csv.body
    );
    let (mut delivered, mut failed) = (0u64, 0u64);
    for line in csv
        .body
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("archive,"))
    {
        let f: Vec<&str> = line.split(',').collect();
        delivered += f[4].parse::<u64>().unwrap();
        failed += f[5].parse::<u64>().unwrap();
    }
    assert_eq!((delivered, failed), (21, 20), "{}", csv.body);
    assert_eq!(
        s.get("/stats.csv?window=2y", Some(&b)).await.status,
        StatusCode::BAD_REQUEST
    );

    // Outside the window: nothing.
    s.clock.advance(2 * 3_600_000);
    let v = s.get("/api/v1/stats?window=1h", Some(&b)).await.json();
    let archive = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "archive")
        .unwrap()
        .clone();
    assert_eq!(archive["attempts"], 0);
    assert!(archive["p95_ms"].is_null());
}

// ---- message list: time filter after a clock step ----

#[tokio::test]
async fn the_time_filter_holds_after_the_clock_stepped_back() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let t0 = s.journal.now_ms();
    let first = s.ingest("LATE", "P").await; // at t0
    s.clock.set(t0 - 3_600_000); // the clock steps back an hour
    let second = s.ingest("EARLY", "P").await;
    assert!(second > first);
    let ids = |v: serde_json::Value| -> Vec<i64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect()
    };
    let v = s
        .get(
            &format!(
                "/api/v1/messages?from={}&to={}",
                t0 - 3_600_000,
                t0 - 3_500_000
            ),
            Some(&b),
        )
        .await
        .json();
    assert_eq!(ids(v), [second]);
    let v = s
        .get(&format!("/api/v1/messages?from={}", t0), Some(&b))
        .await
        .json();
    assert_eq!(ids(v), [first]);
    let v = s
        .get(&format!("/api/v1/messages?to={}", t0), Some(&b))
        .await
        .json();
    assert_eq!(ids(v), [second]);
    // A time range pages newest first by time, one at a time, none lost.
    s.clock.advance(1);
    let third = s.ingest("EARLY-2", "P").await;
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let v = s
            .get(
                &format!(
                    "/api/v1/messages?from={}&to={}&limit=1{before}",
                    t0 - 7_200_000,
                    t0 + 1
                ),
                Some(&b),
            )
            .await
            .json();
        seen.extend(ids(v.clone()));
        match v["next_before"].as_i64() {
            Some(n) => before = format!("&before={n}"),
            None => break,
        }
    }
    assert_eq!(seen, [first, third, second]);
}

#[tokio::test]
async fn the_endpoint_filter_finds_messages_from_it_and_routed_to_it() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let routed = s.ingest("R1", "P").await;
    // From elsewhere, routed to `inbox`: found by `endpoint=inbox` too.
    let unrouted = s
        .ingest_from("lab2", "inbox", "text/plain", "note", b"hello")
        .await;
    let ids = |v: serde_json::Value| -> Vec<i64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(s
            .get("/api/v1/messages?endpoint=inbox", Some(&b))
            .await
            .json()),
        [unrouted, routed]
    );
    assert_eq!(
        ids(s
            .get("/api/v1/messages?endpoint=archive", Some(&b))
            .await
            .json()),
        [routed]
    );
    assert_eq!(
        ids(s
            .get(
                "/api/v1/messages?endpoint=archive&limit=1&before=2",
                Some(&b)
            )
            .await
            .json()),
        [routed]
    );
    s.attempt(Settlement::Dead {
        error: "x".into(),
        duration_ms: 1,
    })
    .await;
    assert_eq!(
        ids(s
            .get("/api/v1/messages?endpoint=archive&status=dead", Some(&b))
            .await
            .json()),
        [routed]
    );
    assert!(ids(s
        .get(
            "/api/v1/messages?endpoint=archive&status=delivered",
            Some(&b)
        )
        .await
        .json())
    .is_empty());
}

// ---- users and tokens ----

#[tokio::test]
async fn an_admin_changes_roles_resets_passwords_unlocks_and_deletes_users_all_audited() {
    let s = site_with("lockout_after = 2").await;
    let a = s.login("ann", "admin").await;
    let bob = s.login("bob", "viewer").await;
    // Change role: bob's open session follows at once.
    let r = s
        .post_form(
            "/users/bob/role",
            Some(&a),
            &[("csrf", &a.csrf), ("role", "operator")],
        )
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/users"));
    let bob_page = s.get("/errors", Some(&bob)).await;
    assert!(bob_page.body.contains("bob (operator)"));
    let r = s
        .post_form(
            "/users/bob/role",
            Some(&a),
            &[("csrf", &a.csrf), ("role", "root")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Throttle bob's logins from one address, unlock him.
    for _ in 0..2 {
        s.post_form(
            "/login",
            None,
            &[("name", "bob"), ("password", "wrong password")],
        )
        .await;
    }
    let throttled = s
        .post_form(
            "/login",
            None,
            &[("name", "bob"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(s
        .get("/users", Some(&a))
        .await
        .body
        .contains("/users/bob/unlock"));
    let r = s
        .post_form("/users/bob/unlock", Some(&a), &[("csrf", &a.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = s
        .post_form("/login", None, &[("name", "bob"), ("password", PASSWORD)])
        .await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the throttle is lifted"
    );
    // Reset the password: the old one stops working, bob's sessions end.
    let new_password = "another long secret";
    let r = s
        .post_form(
            "/users/bob/password",
            Some(&a),
            &[
                ("csrf", &a.csrf),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s
        .post_form(
            "/users/bob/password",
            Some(&a),
            &[
                ("csrf", &a.csrf),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(s.get("/", Some(&bob)).await.location(), "/login");
    let old = s
        .post_form("/login", None, &[("name", "bob"), ("password", PASSWORD)])
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = s
        .post_form(
            "/login",
            None,
            &[("name", "bob"), ("password", new_password)],
        )
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    // The last administrator stays.
    let r = s
        .post_form(
            "/users/ann/role",
            Some(&a),
            &[("csrf", &a.csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = s
        .post_form("/users/ann/delete", Some(&a), &[("csrf", &a.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("last administrator"));
    // Delete bob.
    let r = s
        .post_form("/users/bob/delete", Some(&a), &[("csrf", &a.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s.journal.admin_user("bob").await.unwrap().is_none());
    let r = s
        .post_form("/users/bob/delete", Some(&a), &[("csrf", &a.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let actions: Vec<String> = s
        .journal
        .audit_log(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "ann")
        .map(|e| format!("{} {}", e.action, e.target.unwrap_or_default()))
        .collect();
    for expected in [
        "user.role bob",
        "user.unlock bob",
        "user.password bob",
        "user.delete bob",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
}

#[tokio::test]
async fn api_tokens_carry_a_role_expire_and_can_be_listed_and_revoked() {
    let s = site().await;
    let a = s.login("ann", "admin").await;
    let viewer = s.token(&a, "viewer", None).await;
    let operator = s.token(&a, "operator", Some(30)).await;
    let id = s.dead("T1").await;
    // A viewer token reads but cannot retry; an operator token can.
    assert_eq!(
        s.api_as("GET", "/api/v1/messages", &viewer, "")
            .await
            .status,
        StatusCode::OK
    );
    let retry = format!("/api/v1/messages/{id}/retry");
    assert_eq!(
        s.api_as("POST", &retry, &viewer, "{}").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as("POST", &retry, &operator, "{}").await.status,
        StatusCode::OK
    );
    // Tokens are for the API only.
    assert_eq!(
        s.api_as("GET", "/errors", &operator, "").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Listed without their secrets.
    let list = s.get("/api/v1/tokens", Some(&a)).await;
    assert!(!list.body.contains(&viewer) && !list.body.contains(&operator));
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    let op = tokens.iter().find(|t| t["role"] == "operator").unwrap();
    assert_eq!(op["expires_at"], s.journal.now_ms() + 30 * 86_400_000);
    assert!(s
        .get("/users", Some(&a))
        .await
        .body
        .contains("operator token"));
    // No token above its maker's role, and only admins make tokens.
    let o = s.login("otto", "operator").await;
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&o),
            serde_json::json!({"label": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post_json(
            "/api/v1/tokens",
            Some(&a),
            serde_json::json!({"label": "x", "role": "root"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Expiry.
    s.clock.advance(31 * 86_400_000);
    assert_eq!(
        s.api_as("GET", "/api/v1/messages", &operator, "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.api_as("GET", "/api/v1/messages", &viewer, "")
            .await
            .status,
        StatusCode::OK
    );
    // Revocation, through the page.
    let a = s.login("amy", "admin").await;
    let viewer_id = tokens.iter().find(|t| t["role"] == "viewer").unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = s
        .post_form(
            &format!("/tokens/{viewer_id}/revoke"),
            Some(&a),
            &[("csrf", &a.csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.api_as("GET", "/api/v1/messages", &viewer, "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = s
        .send(
            Request::delete(format!("/api/v1/tokens/{viewer_id}"))
                .header(header::COOKIE, &a.cookie)
                .header("x-csrf-token", &a.csrf)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A token made on the page is shown once.
    let r = s
        .post_form(
            "/tokens",
            Some(&a),
            &[
                ("csrf", &a.csrf),
                ("label", "hub"),
                ("role", "viewer"),
                ("expires_in_days", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let at = r.body.find("<pre id=\"new-token\">").unwrap() + "<pre id=\"new-token\">".len();
    let hub = &r.body[at..at + 64];
    assert_eq!(
        s.api_as("GET", "/api/v1/stats", hub, "").await.status,
        StatusCode::OK
    );
    let actions: Vec<String> = s
        .journal
        .audit_log(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.iter().filter(|a| *a == "token.create").count() == 3
            && actions.contains(&"token.revoke".to_string())
    );
}

#[tokio::test]
async fn a_token_never_acts_above_its_owners_current_role() {
    let s = site().await;
    let a = s.login("ann", "admin").await;
    s.add_user("root2", "admin").await;
    let token = s.token(&a, "admin", None).await;
    assert_eq!(
        s.api_as("GET", "/api/v1/audit", &token, "").await.status,
        StatusCode::OK
    );
    s.journal
        .admin_set_role("ann", "viewer", "root2")
        .await
        .unwrap();
    assert_eq!(
        s.api_as("GET", "/api/v1/audit", &token, "").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as("GET", "/api/v1/messages", &token, "").await.status,
        StatusCode::OK
    );
}

// ---- every route: roles and CSRF ----

#[derive(Clone, Copy)]
enum Who {
    Nobody,
    Viewer,
    Operator,
    Admin,
    ViewerToken,
    OperatorToken,
    AdminToken,
}

/// Every protected route with the least role it needs.
fn routes(msg: i64) -> Vec<(&'static str, String, super::auth::Role)> {
    use super::auth::Role::*;
    vec![
        ("GET", "/".into(), Viewer),
        ("GET", "/logs".into(), Viewer),
        ("GET", "/logs/stream".into(), Viewer),
        ("GET", format!("/messages/{msg}"), Viewer),
        ("GET", "/errors".into(), Viewer),
        ("GET", "/stats".into(), Viewer),
        ("GET", "/settings".into(), Viewer),
        ("GET", "/users".into(), Admin),
        ("GET", "/audit".into(), Admin),
        ("GET", "/audit/export.csv".into(), Admin),
        ("GET", "/endpoints".into(), Viewer),
        ("GET", "/endpoints/archive".into(), Viewer),
        ("GET", "/endpoints/archive/edit".into(), Admin),
        ("GET", "/new-endpoint".into(), Admin),
        ("GET", "/routes".into(), Viewer),
        ("GET", "/config/versions".into(), Admin),
        ("POST", "/endpoints/archive/edit".into(), Admin),
        ("POST", "/endpoints/archive/enable".into(), Operator),
        ("POST", "/endpoints/archive/disable".into(), Operator),
        ("POST", "/endpoints/archive/test".into(), Operator),
        ("POST", "/new-endpoint".into(), Admin),
        ("POST", "/routes".into(), Admin),
        ("POST", "/settings".into(), Admin),
        ("POST", "/config/versions/1/rollback".into(), Admin),
        ("POST", format!("/messages/{msg}/retry"), Operator),
        ("POST", format!("/messages/{msg}/discard"), Operator),
        ("POST", "/errors/retry".into(), Operator),
        ("POST", "/users".into(), Admin),
        ("POST", "/users/nobody/role".into(), Admin),
        ("POST", "/users/nobody/password".into(), Admin),
        ("POST", "/users/nobody/unlock".into(), Admin),
        ("POST", "/users/nobody/delete".into(), Admin),
        ("POST", "/tokens".into(), Admin),
        ("POST", "/tokens/999/revoke".into(), Admin),
        ("GET", "/api/v1/endpoints".into(), Viewer),
        ("GET", "/api/v1/messages".into(), Viewer),
        ("GET", format!("/api/v1/messages/{msg}"), Viewer),
        ("GET", "/api/v1/stats".into(), Viewer),
        ("GET", "/api/v1/audit".into(), Admin),
        ("GET", "/api/v1/tokens".into(), Admin),
        ("GET", "/api/v1/endpoints/archive".into(), Viewer),
        ("GET", "/api/v1/settings".into(), Viewer),
        ("GET", "/api/v1/routes".into(), Viewer),
        ("GET", "/api/v1/config/versions".into(), Admin),
        ("GET", "/api/v1/config/versions/1".into(), Admin),
        ("POST", "/api/v1/endpoints".into(), Admin),
        ("PUT", "/api/v1/endpoints/archive".into(), Admin),
        ("POST", "/api/v1/endpoints/archive/enable".into(), Operator),
        ("POST", "/api/v1/endpoints/archive/disable".into(), Operator),
        ("POST", "/api/v1/endpoints/archive/test".into(), Operator),
        ("PUT", "/api/v1/settings".into(), Admin),
        ("PUT", "/api/v1/routes".into(), Admin),
        ("POST", "/api/v1/config/versions/1/rollback".into(), Admin),
        ("POST", "/api/v1/messages/retry".into(), Operator),
        ("POST", format!("/api/v1/messages/{msg}/retry"), Operator),
        ("POST", format!("/api/v1/messages/{msg}/discard"), Operator),
        ("POST", "/api/v1/tokens".into(), Admin),
        ("DELETE", "/api/v1/tokens/999".into(), Admin),
        // Last: it ends the session.
        ("POST", "/logout".into(), Viewer),
    ]
}

const FORM: &[(&str, &str)] = &[
    ("reason", "checked by hand"),
    ("name", "zed"),
    ("role", "viewer"),
    ("password", PASSWORD),
    ("confirm", PASSWORD),
    ("label", "t"),
];

fn request(
    method: &str,
    path: &str,
    who: Option<(&Browser, bool)>,
    token: Option<&str>,
) -> Request<Body> {
    let api = path.starts_with("/api/");
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "gw");
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let mut csrf = None;
    if let Some((b, with_csrf)) = who {
        r = r.header(header::COOKIE, &b.cookie);
        if with_csrf {
            csrf = Some(b.csrf.clone());
        }
    }
    if method == "GET" {
        return r.body(Body::empty()).unwrap();
    }
    if api {
        if let Some(c) = &csrf {
            r = r.header("x-csrf-token", c);
        }
        r.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"reason":"checked by hand","label":"t"}"#))
            .unwrap()
    } else {
        let mut form: Vec<(&str, &str)> = FORM.to_vec();
        if let Some(c) = &csrf {
            form.push(("csrf", c));
        }
        r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(&form).unwrap()))
            .unwrap()
    }
}

#[tokio::test]
async fn every_route_answers_each_role_session_and_token_as_the_role_table_says() {
    use super::auth::Role;
    let s = site().await;
    let admin = s.login("ann", "admin").await;
    let tokens = [
        s.token(&admin, "viewer", None).await,
        s.token(&admin, "operator", None).await,
        s.token(&admin, "admin", None).await,
    ];
    let msg = s.dead("M1").await;
    let mut sessions = Vec::new();
    for (name, role) in [("vic", "viewer"), ("otto", "operator"), ("amy", "admin")] {
        sessions.push(s.login(name, role).await);
    }
    let mut checked = 0;
    for who in [
        Who::Nobody,
        Who::ViewerToken,
        Who::OperatorToken,
        Who::AdminToken,
        Who::Viewer,
        Who::Operator,
        Who::Admin,
    ] {
        let (role, browser, token) = match who {
            Who::Nobody => (None, None, None),
            Who::Viewer => (Some(Role::Viewer), Some(&sessions[0]), None),
            Who::Operator => (Some(Role::Operator), Some(&sessions[1]), None),
            Who::Admin => (Some(Role::Admin), Some(&sessions[2]), None),
            Who::ViewerToken => (Some(Role::Viewer), None, Some(tokens[0].as_str())),
            Who::OperatorToken => (Some(Role::Operator), None, Some(tokens[1].as_str())),
            Who::AdminToken => (Some(Role::Admin), None, Some(tokens[2].as_str())),
        };
        for (method, path, least) in routes(msg) {
            let api = path.starts_with("/api/");
            let (status, location) = s
                .status_of(request(method, &path, browser.map(|b| (b, true)), token))
                .await;
            let case = format!("{method} {path} as {role:?} (token: {})", token.is_some());
            match (role, token) {
                (None, _) if api => assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}"),
                (None, _) => {
                    assert_eq!(
                        (status, location.as_str()),
                        (StatusCode::SEE_OTHER, "/login"),
                        "{case}"
                    )
                }
                (Some(_), Some(_)) if !api => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}")
                }
                (Some(r), _) if r < least => assert_eq!(status, StatusCode::FORBIDDEN, "{case}"),
                (Some(_), _) if path == "/logout" => {
                    assert_eq!(
                        (status, location.as_str()),
                        (StatusCode::SEE_OTHER, "/login"),
                        "{case}"
                    )
                }
                (Some(_), _) => {
                    assert!(
                        !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                            && !status.is_server_error()
                            && location != "/login",
                        "{case}: {status} {location}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * routes(msg).len());
    // Pages an admin sees load their script from a file, never inline.
    let a = s.login("alma", "admin").await;
    for (method, path, _) in routes(msg) {
        if method == "GET" && !path.starts_with("/api/") && path != "/logs/stream" {
            let r = s.get(&path, Some(&a)).await;
            // This page is not attached to a running gateway: the edit form
            // and the version history say so instead of offering changes.
            let expected = if path.ends_with("/edit") || path == "/config/versions" {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            assert_eq!(r.status, expected, "{path}");
            assert_no_inline_script(&r.body);
        }
    }
}

#[tokio::test]
async fn every_state_changing_route_refuses_a_session_without_its_csrf_token_and_changes_nothing() {
    let s = site().await;
    let a = s.login("ann", "admin").await;
    let msg = s.dead("M1").await;
    s.add_user("bob", "viewer").await;
    let audit_before = s.journal.audit_log(None, 1000).await.unwrap().len();
    let wrong = Browser {
        cookie: a.cookie.clone(),
        csrf: "0".repeat(64),
    };
    let mut checked = 0;
    for (method, path, _) in routes(msg).into_iter().filter(|(m, _, _)| *m != "GET") {
        // The same routes aimed at a real user, so a slip would show.
        let path = path.replace("/users/nobody/", "/users/bob/");
        for (who, csrf) in [(&a, false), (&wrong, true)] {
            let (status, _) = s
                .status_of(request(method, &path, Some((who, csrf)), None))
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} (csrf sent: {csrf})"
            );
            checked += 1;
        }
    }
    let state_changing = routes(msg).iter().filter(|(m, _, _)| *m != "GET").count();
    assert_eq!(checked, 2 * state_changing);
    assert_eq!(
        s.journal.audit_log(None, 1000).await.unwrap().len(),
        audit_before,
        "nothing audited, nothing done"
    );
    assert_eq!(
        s.journal.outbox_of(msg).await.unwrap()[0].state,
        crate::journal::OutboxState::Dead
    );
    assert_eq!(
        s.journal.admin_user("bob").await.unwrap().unwrap().role,
        "viewer"
    );
    assert_eq!(
        s.get("/", Some(&a)).await.status,
        StatusCode::OK,
        "still logged in"
    );
}

#[tokio::test]
async fn every_role_changes_its_own_password_on_the_account_page_with_the_current_one() {
    let s = site_with("login_attempts_per_minute = 3").await;
    let b = s.login("vic", "viewer").await;
    let home = s.get("/", Some(&b)).await;
    assert!(
        home.body.contains("href=\"/account\""),
        "linked for a viewer"
    );
    let page = s.get("/account", Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"current\""), "{}", page.body);
    let new = "my own new password";
    let form = |current: &'static str| {
        vec![
            ("csrf", b.csrf.clone()),
            ("current", current.to_string()),
            ("password", new.to_string()),
            ("confirm", new.to_string()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        Request::post("/account")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &b.cookie)
            .body(Body::from(body))
            .unwrap()
    };
    let r = s.send(post(form("not the password"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .body
        .contains("Current password: not your current password."));
    let r = s.send(post(form(PASSWORD))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/account?changed=1");
    let done = s.get("/account?changed=1", Some(&b)).await;
    assert!(
        done.body.contains("id=\"password-changed\""),
        "the session stays"
    );
    let old = s
        .post_form("/login", None, &[("name", "vic"), ("password", PASSWORD)])
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let audit = s.journal.audit_log(None, 20).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "user.password" && a.actor == "vic"));
    // The wrong current password counted: with the failed login, the
    // address has used its three attempts.
    let r = s.send(post(form(PASSWORD))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
}

#[tokio::test]
async fn failed_logins_and_throttles_are_on_the_audit_page_under_their_own_filter() {
    // The former name of `throttle_after` still reads.
    let s = site_with("lockout_after = 2").await;
    let admin = s.login("ada", "admin").await;
    s.add_user("ann", "viewer").await;
    for _ in 0..2 {
        let r = s
            .post_form(
                "/login",
                None,
                &[("name", "ann"), ("password", "wrong one!")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = s
        .post_form("/login", None, &[("name", "nobody"), ("password", "x")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let all = s.get("/audit", Some(&admin)).await;
    assert!(all.body.contains("id=\"audit-filter\""), "{}", all.body);
    assert!(all.body.contains("user.create"), "every entry by default");
    let page = s.get("/audit?show=logins", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(
        body.contains("<option value=\"logins\" selected>"),
        "{body}"
    );
    assert_eq!(body.matches("<td>login.failed</td>").count(), 3, "{body}");
    assert!(
        body.contains("<td>login.throttle</td><td>ann</td>"),
        "{body}"
    );
    assert!(
        body.contains("<td>nobody</td><td>unknown user name"),
        "{body}"
    );
    assert!(!body.contains("user.create"), "{body}");
}

#[tokio::test]
async fn the_audit_export_holds_every_entry_of_its_filter_newest_first_and_is_itself_audited() {
    let s = site().await;
    let admin = s.login("ada", "admin").await;
    // More than one page of the export, so the page boundary is crossed.
    let failures = crate::control::audit::EXPORT_PAGE + 205;
    for i in 0..failures {
        let name = format!("guess{i}");
        s.journal
            .audit(&name, "login.failed", None, Some("wrong password"))
            .await
            .unwrap();
        if i % 100 == 0 {
            s.journal
                .audit("ada", "user.create", Some("user x"), None)
                .await
                .unwrap();
        }
    }
    let r = s.get("/audit/export.csv?show=logins", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).unwrap(),
        "text/csv; charset=utf-8"
    );
    assert!(r
        .headers
        .get(header::CONTENT_DISPOSITION)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("audit-logins.csv"));
    let mut reader = csv::Reader::from_reader(r.body.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["id", "time", "actor", "action", "target", "detail"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), failures, "every failed login, nothing else");
    assert!(rows.iter().all(|r| &r[3] == "login.failed"));
    assert_eq!(
        &rows[0][2],
        &format!("guess{}", failures - 1),
        "newest first"
    );
    assert_eq!(&rows[failures - 1][2], "guess0");
    let ids: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "no entry twice");

    let all = s.get("/audit/export.csv", Some(&admin)).await;
    let every = csv::Reader::from_reader(all.body.as_bytes())
        .records()
        .count();
    assert!(
        every > failures + 10,
        "{every}: the unfiltered export has all"
    );
    let audit = s.journal.audit_log(None, 3).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "audit.export" && a.actor == "ada"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn an_admin_sees_every_open_session_and_ends_one_which_logs_its_browser_out() {
    let s = site().await;
    let admin = s.login("ada", "admin").await;
    let vic = s.login("vic", "viewer").await;
    assert_eq!(s.get("/", Some(&vic)).await.status, StatusCode::OK);
    let page = s.get("/users", Some(&admin)).await.body;
    assert_eq!(page.matches("<tr class=\"session\"").count(), 2, "{page}");
    assert!(page.contains("(yours)"), "{page}");
    let row = page
        .split("<tr class=\"session\" data-id=\"")
        .skip(1)
        .find(|r| r.contains("<td>vic</td>"))
        .unwrap();
    let id = &row[..16];
    let r = s
        .post_form(
            &format!("/sessions/{id}/revoke"),
            Some(&admin),
            &[("csrf", admin.csrf.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.get("/", Some(&vic)).await.location(), "/login");
    assert_eq!(s.get("/", Some(&admin)).await.status, StatusCode::OK);
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "session.revoke" && a.target.as_deref() == Some("vic")));
    let again = s
        .post_form(
            &format!("/sessions/{id}/revoke"),
            Some(&admin),
            &[("csrf", admin.csrf.as_str())],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let val = s.login("val", "viewer").await;
    let mine = s.journal.admin_open_sessions().await.unwrap();
    let theirs = mine.iter().find(|x| x.user == "ada").unwrap();
    let viewer_try = s
        .post_form(
            &format!("/sessions/{}/revoke", theirs.id),
            Some(&val),
            &[("csrf", val.csrf.as_str())],
        )
        .await;
    assert_eq!(viewer_try.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/", Some(&admin)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_errors_page_groups_failures_by_cause_and_retries_or_discards_a_group_in_one_action() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let first = s.dead("A").await;
    let second = s.dead("B").await;
    let page = s.get("/errors", Some(&b)).await;
    assert!(page.body.contains("id=\"error-groups\""), "{}", page.body);
    assert!(
        page.body
            .contains("archive fails on its side (HTTP 503)</strong>: 2 messages since"),
        "one group for both messages, in plain words: {}",
        page.body
    );
    let key = page
        .body
        .split("data-key=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let r = s
        .post_form(
            "/errors/group/discard",
            Some(&b),
            &[("csrf", &b.csrf), ("key", &key), ("reason", " ")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a discard needs a reason"
    );
    let r = s
        .post_form(
            "/errors/group/retry",
            Some(&b),
            &[("csrf", &b.csrf), ("key", &key), ("back", "/errors")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/errors?retried=2")
    );
    s.assert_queued(&[first, second]).await;
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "message.retry"
            && a.target.as_deref().is_some_and(|t| t.contains("HTTP 503"))),
        "{audit:?}"
    );
    // Dead again, then discarded as a group: off the page.
    s.attempt(Settlement::Dead {
        error: "HTTP 503 from hub".into(),
        duration_ms: 3,
    })
    .await;
    let r = s
        .post_form(
            "/errors/group/discard",
            Some(&b),
            &[("csrf", &b.csrf), ("key", &key), ("reason", "hub retired")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/errors?discarded=2")
    );
    let page = s.get("/errors", Some(&b)).await;
    assert!(!page.body.contains("id=\"error-groups\""), "{}", page.body);
    let viewer = s.login("view", "viewer").await;
    let r = s
        .post_form(
            "/errors/group/retry",
            Some(&viewer),
            &[("csrf", &viewer.csrf), ("key", &key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn retries_that_failed_the_same_way_are_one_history_line_with_their_count_and_span() {
    let s = site().await;
    let b = s.login("view", "viewer").await;
    let id = s.ingest("C1", "P1").await;
    for n in 0..5 {
        s.attempt(Settlement::Retry {
            error: format!("connection refused (os error 111) after {n} ms"),
            duration_ms: 2,
            retry_at: 0,
        })
        .await;
    }
    s.attempt(Settlement::Retry {
        error: "HTTP 503 from hub".into(),
        duration_ms: 2,
        retry_at: 0,
    })
    .await;
    s.attempt(Settlement::Delivered {
        response: None,
        duration_ms: 1,
    })
    .await;
    let page = s.get(&format!("/messages/{id}"), Some(&b)).await;
    let history = page.body.split("id=\"history\"").nth(1).unwrap();
    let history = history.split("</table>").next().unwrap();
    assert_eq!(history.matches("5 attempts").count(), 1, "{history}");
    assert_eq!(
        history.matches("connection refused").count(),
        1,
        "{history}"
    );
    assert!(
        history.contains("HTTP 503 from hub"),
        "another error is its own line: {history}"
    );
    assert_eq!(
        history.matches("class=\"collapsed\"").count(),
        1,
        "{history}"
    );
}

#[tokio::test]
async fn the_dashboards_live_part_is_the_table_alone_and_follows_new_messages() {
    let s = site().await;
    let b = s.login("view", "viewer").await;
    let today = |body: &str| {
        body.split("data-name=\"inbox\"")
            .nth(1)
            .and_then(|r| r.split("class=\"today\">").nth(1))
            .and_then(|r| r.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    let page = s.get("/", Some(&b)).await;
    assert!(
        page.body.contains("data-live=\"/dashboard/live\""),
        "{}",
        page.body
    );
    let before = s.get("/dashboard/live", Some(&b)).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(
        !before.body.contains("<html"),
        "a fragment, not a page: {}",
        before.body
    );
    assert!(before.body.contains("id=\"endpoints\""));
    assert_eq!(today(&before.body), "0", "{}", before.body);
    s.ingest("LIVE-1", "P1").await;
    let after = s.get("/dashboard/live", Some(&b)).await;
    assert_eq!(today(&after.body), "1", "{}", after.body);
}

#[tokio::test]
async fn a_delivery_shows_and_downloads_the_fhir_bundle_it_sends_and_the_message_downloads_as_received(
) {
    let hub = r#"
        [[endpoint]]
        name = "hub"
        type = "fhir"
        url = "https://hub.example/fhir"
        "#;
    let s = site_full("", hub, "").await;
    let b = s.login("ann", "viewer").await;
    let payload = "MSH|^~\\&|LAB|H|GW|H|20240101||ORU^R01|C-FHIR|P|2.5\rPID|||P88^^^H^MR||Doe^Jane\rOBR|1||F1|GLU^Glucose\rOBX|1|NM|GLU^Glucose||5.2|mmol/L|||||F\r";
    let id = s
        .journal
        .ingest(
            Envelope {
                source: "inbox".into(),
                message_type: "ORU^R01".into(),
                content_type: "x-application/hl7-v2+er7".into(),
                control_id: Some("C-FHIR".into()),
                payload: payload.as_bytes().to_vec(),
                ..Default::default()
            },
            vec![Destination {
                endpoint: "hub".into(),
                transform: "hl7v2-fhir".into(),
                lane: String::new(),
                reply_to: None,
            }],
        )
        .await
        .unwrap()
        .message_id;
    let oid = s.journal.outbox_of(id).await.unwrap()[0].id;
    let viewer = s.get(&format!("/messages/{id}"), Some(&b)).await;
    let link = format!("/messages/{id}/deliveries/{oid}");
    assert!(viewer.body.contains(&link), "{}", viewer.body);

    let page = s.get(&link, Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("&quot;resourceType&quot;: &quot;Bundle&quot;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Observation"), "{}", page.body);

    let file = s.get(&format!("{link}?download=1"), Some(&b)).await;
    assert_eq!(file.status, StatusCode::OK);
    let bundle: serde_json::Value = serde_json::from_str(&file.body).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    assert!(bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["resourceType"] == "Observation"));

    let raw = s.get(&format!("/messages/{id}/raw"), Some(&b)).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, payload);

    let audit = s.journal.audit_log(None, 20).await.unwrap();
    let exports = audit
        .iter()
        .filter(|a| a.action == "message.export" && a.actor == "ann")
        .count();
    assert_eq!(exports, 3);
    assert_eq!(
        s.get(&format!("/messages/{id}/deliveries/999"), Some(&b))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_log_page_finds_messages_by_accession_or_specimen_and_by_text_within_a_time_range() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let wanted = s.ingest("C-ACC", "P1").await;
    let other = s.ingest("C-OTHER", "P2").await;
    // The one with an order: its accession and specimen ids are recorded.
    s.journal
        .ingest(
            Envelope {
                source: "inbox".into(),
                message_type: "ORM^O01".into(),
                content_type: "x-application/hl7-v2+er7".into(),
                control_id: Some("C-ORDER".into()),
                payload: b"MSH|^~\\&|HIS|H|GW|H|20240101||ORM^O01|C-ORDER|P|2.5\rORC|NW|PL-5|ACC-77\rSPM|1|TUBE-4\r".to_vec(),
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
        .unwrap();
    crate::app::search_index::index_once(&s.journal)
        .await
        .unwrap();
    for key in ["ACC-77", "TUBE-4"] {
        let page = s.get(&format!("/logs?key={key}"), Some(&b)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("C-ORDER"), "{key}: {}", page.body);
        assert!(!page.body.contains("C-ACC"), "{key}");
        assert!(page.body.contains("Live events are not searched"), "{key}");
        assert!(!page.body.contains("id=\"live-log\""), "{key}");
    }
    let api = s.get("/api/v1/messages?key=ACC-77", Some(&b)).await.json();
    assert_eq!(api["messages"].as_array().unwrap().len(), 1, "{api}");

    // Text needs a bounded range: every payload in it is read.
    let r = s.get("/logs?text=5.2", Some(&b)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs a time range"), "{}", r.body);
    let now = s.journal.now_ms();
    let q = format!("text=c-acc&from={}&to={}", now - 60_000, now + 60_000);
    let found = s
        .get(&format!("/api/v1/messages?{q}"), Some(&b))
        .await
        .json();
    let ids: Vec<i64> = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [wanted], "{found}");
    assert!(!ids.contains(&other));
}

#[tokio::test]
async fn ticked_error_groups_are_retried_or_discarded_together_each_audited() {
    let s = site().await;
    let b = s.login("op", "operator").await;
    let a = s.dead("A").await;
    let second = s.ingest("B", "P2").await;
    s.attempt(Settlement::Dead {
        error: "HTTP 400 from hub: Observation.code required".into(),
        duration_ms: 4,
    })
    .await;
    let page = s.get("/errors", Some(&b)).await;
    assert!(page.body.contains("form=\"bulk-groups\""), "{}", page.body);
    let keys: Vec<String> = page
        .body
        .split("data-key=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect();
    assert_eq!(keys.len(), 2, "two causes, two groups: {}", page.body);
    let none = s
        .post_form(
            "/errors/groups",
            Some(&b),
            &[("csrf", &b.csrf), ("action", "retry")],
        )
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let r = s
        .post_form(
            "/errors/groups",
            Some(&b),
            &[
                ("csrf", &b.csrf),
                ("action", "retry"),
                ("key", &keys[0]),
                ("key", &keys[1]),
                ("key", "gone-since"),
                ("back", "/errors"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/errors?retried=2")
    );
    s.assert_queued(&[a, second]).await;
    let audit = s.journal.audit_log(None, 20).await.unwrap();
    assert_eq!(
        audit.iter().filter(|x| x.action == "message.retry").count(),
        2,
        "{audit:?}"
    );
    let viewer = s.login("view", "viewer").await;
    let r = s
        .post_form(
            "/errors/groups",
            Some(&viewer),
            &[
                ("csrf", &viewer.csrf),
                ("action", "retry"),
                ("key", &keys[0]),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_stats_cover_a_range_of_ones_own_on_the_page_the_api_and_the_csv() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let start = s.journal.now_ms();
    for i in 0..3 {
        s.ingest(&format!("EARLY{i}"), "P").await;
    }
    s.clock.advance(3 * 3_600_000);
    for i in 0..2 {
        s.ingest(&format!("LATE{i}"), "P").await;
    }
    let received = |v: &serde_json::Value| {
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "inbox")
            .unwrap()["received"]
            .clone()
    };
    let early = format!("from={}&to={}", start - 60_000, start + 3_600_000);
    let v = s
        .get(&format!("/api/v1/stats?{early}"), Some(&b))
        .await
        .json();
    assert_eq!(v["window"], "custom");
    assert_eq!(received(&v), 3, "{v}");
    let now = s.journal.now_ms();
    let late = format!("from={}&to={}", now - 3_600_000, now + 60_000);
    let v = s
        .get(&format!("/api/v1/stats?{late}"), Some(&b))
        .await
        .json();
    assert_eq!(received(&v), 2, "{v}");

    let page = s.get(&format!("/stats?{early}"), Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"stats-range\""), "{}", page.body);
    assert!(
        page.body.contains("per 3 min") || page.body.contains("per 2 min"),
        "{}",
        page.body
    );
    let csv = s.get(&format!("/stats.csv?{early}"), Some(&b)).await;
    let inbox_received: u64 = csv
        .body
        .lines()
        .filter(|l| l.starts_with("inbox,"))
        .map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(inbox_received, 3, "{}", csv.body);

    for bad in ["from=1000", "from=20&to=10"] {
        assert_eq!(
            s.get(&format!("/stats?{bad}"), Some(&b)).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_captured_delivery_shows_in_the_viewer_what_would_have_been_sent_with_secrets_masked() {
    let s = site().await;
    let b = s.login("ann", "viewer").await;
    let id = s.ingest("CTRL-S", "P1").await;
    let capture = crate::sinks::capture::Capture::http(
        "POST",
        "https://claims.example/fhir",
        vec![
            ("Authorization".into(), "Bearer tok-very-secret".into()),
            ("X-Trace".into(), "trace-1".into()),
        ],
        br#"{"resourceType":"Bundle"}"#,
    );
    let request = serde_json::json!({
        "mode": "sandbox", "sent_to": "nowhere (captured)", "request": capture, "response": null,
    });
    s.attempt(Settlement::Captured {
        request: request.to_string(),
        duration_ms: 0,
    })
    .await;
    let r = s.get(&format!("/messages/{id}"), Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    for needle in [
        "Sandbox capture for archive",
        "https://claims.example/fhir",
        "X-Trace",
        "trace-1",
        "********",
        "resourceType",
        "st-captured",
    ] {
        assert!(r.body.contains(needle), "{needle}");
    }
    assert!(!r.body.contains("tok-very-secret"));
    let v = s
        .get(&format!("/api/v1/messages/{id}"), Some(&b))
        .await
        .json();
    assert_eq!(v["outbox"][0]["state"], "captured");
    assert_eq!(v["outbox"][0]["captured"]["request"]["method"], "POST");
    let list = s.get("/logs", Some(&b)).await;
    assert!(list.body.contains("captured"), "the log names it captured");
}

#[tokio::test]
async fn a_paused_destination_shows_as_paused_and_an_operator_resumes_it_audited() {
    let s = site().await;
    let viewer = s.login("vera", "viewer").await;
    let operator = s.login("otto", "operator").await;
    s.journal
        .trip_breaker("archive", 20, "20 permanent failures in a row", vec![])
        .await
        .unwrap();
    let now = s.journal.now_ms();
    s.health
        .paused("archive", now, "20 permanent failures in a row");
    let dashboard = s.get("/", Some(&viewer)).await;
    assert!(
        dashboard.body.contains("status paused"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("paused by its circuit breaker"));
    let page = s.get("/endpoints/archive", Some(&viewer)).await;
    assert!(page.body.contains("paused"));
    assert!(!page.body.contains("resume-form"), "a viewer cannot resume");
    let page = s.get("/endpoints/archive", Some(&operator)).await;
    assert!(page.body.contains("resume-form"));
    assert_eq!(
        s.post_form(
            "/endpoints/archive/resume",
            Some(&viewer),
            &[("csrf", &viewer.csrf)]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert!(s.journal.breaker("archive").await.unwrap().is_some());
    let r = s
        .post_form(
            "/endpoints/archive/resume",
            Some(&operator),
            &[("csrf", &operator.csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.journal.breaker("archive").await.unwrap().is_none());
    let audit = s.journal.audit_log(None, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "endpoint.resume" && a.actor == "otto"));
    assert!(audit
        .iter()
        .any(|a| a.action == "endpoint.breaker_tripped" && a.actor == "gateway"));
}

#[tokio::test]
async fn a_sandboxed_destination_is_marked_on_the_dashboard_and_its_page() {
    let s = site_full(
        "",
        "[[endpoint]]\nname = \"trial\"\ntype = \"file\"\npath = \"trial\"\nmode = \"sandbox\"\n",
        "",
    )
    .await;
    let b = s.login("ann", "admin").await;
    let dashboard = s.get("/", Some(&b)).await;
    assert_eq!(dashboard.body.matches("class=\"sandbox\"").count(), 1);
    let page = s.get("/endpoints/trial", Some(&b)).await;
    assert!(page.body.contains("id=\"sandbox\""));
    assert!(page.body.contains("promote-form"));
    let live = s.get("/endpoints/archive", Some(&b)).await;
    assert!(!live.body.contains("promote-form"));
}
