//! Handler tests of the endpoint, settings, routes and version pages and
//! their JSON twins, on a running gateway whose configuration file lives in
//! a temporary directory: roles, CSRF, validation errors beside their
//! fields, changes written back to the file and applied live.

use super::{hash_password, router, AdminState};
use crate::app::Gateway;
use crate::config::Config;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "a long enough secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_text(dir: &std::path::Path, port: u16) -> String {
    format!(
        r#"# The test gateway.
[journal]
path = "{d}/journal.db"
retention_days = 90

# Lab results arrive here.
[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:${{ECKO_TEST_UNSET_LAB_PORT:-{port}}}"
max_connections = 8 # a small analyzer park

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "${{ECKO_TEST_UNSET_DIR:-{d}}}/inbox"

# Everything is archived.
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"

[[route]]
name = "r"
from = ["lab", "inbox"]
to = ["archive"] # all of it
"#,
        d = dir.display()
    )
}

struct Site {
    app: axum::Router,
    gateway: Option<Gateway>,
    path: PathBuf,
    original: String,
    port: u16,
    dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// The `<label>` of a form field, with what is inside it.
    fn field(&self, name: &str) -> &str {
        let marker = format!("data-field=\"{name}\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body));
        let end = self.body[at..].find("</label>").unwrap() + at;
        &self.body[at..end]
    }
}

struct Browser {
    cookie: String,
    csrf: String,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let original = config_text(dir.path(), port);
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &original).unwrap();
    let config = Config::load(&path).unwrap();
    let gateway = Gateway::start(&config).await.unwrap();
    let app = router(AdminState::supervised(
        gateway.supervisor.clone(),
        CancellationToken::new(),
    ));
    Site {
        app,
        gateway: Some(gateway),
        path,
        original,
        port,
        dir,
    }
}

impl Site {
    fn gw(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
    }

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

    async fn get(&self, uri: &str, b: &Browser) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, &b.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// A form post carrying the session's CSRF token.
    async fn post(&self, uri: &str, b: &Browser, form: &[(&str, &str)]) -> Reply {
        let mut pairs = vec![("csrf", b.csrf.as_str())];
        pairs.extend_from_slice(form);
        self.post_raw(uri, b, &pairs).await
    }

    async fn post_raw(&self, uri: &str, b: &Browser, form: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &b.cookie)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn json(&self, method: &str, uri: &str, b: &Browser, body: serde_json::Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &b.cookie)
                .header("x-csrf-token", &b.csrf)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn login(&self, name: &str, role: &str) -> Browser {
        let hash = hash_password(PASSWORD).unwrap();
        self.gw()
            .journal
            .admin_create_user(name, role, &hash, "test", false)
            .await
            .unwrap();
        let body = serde_urlencoded::to_string([("name", name), ("password", PASSWORD)]).unwrap();
        let r = self
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::HOST, "gw")
                    .body(Body::from(body))
                    .unwrap(),
            )
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
        let page = self.get("/endpoints", &b).await;
        let marker = "name=\"csrf\" content=\"";
        let at = page.body.find(marker).unwrap() + marker.len();
        b.csrf = page.body[at..at + 64].to_string();
        b
    }

    async fn audit_actions(&self) -> Vec<String> {
        self.gw()
            .journal
            .audit_log(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {} {}", r.actor, r.action, r.target.unwrap_or_default()))
            .collect()
    }

    fn running(&self) -> Vec<String> {
        self.gw().supervisor.running()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_the_endpoint_list_and_detail_without_change_controls() {
    let s = site().await;
    let v = s.login("vera", "viewer").await;
    let list = s.get("/endpoints", &v).await;
    assert_eq!(list.status, StatusCode::OK);
    for name in ["lab", "inbox", "archive"] {
        assert!(
            list.body.contains(&format!("data-name=\"{name}\"")),
            "{}",
            list.body
        );
    }
    assert!(!list.body.contains("New endpoint"));
    assert!(!list.body.contains("/disable"));
    let d = s.get("/endpoints/lab", &v).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.body.contains("id=\"endpoint-settings\""));
    assert!(d.body.contains(&format!(
        "127.0.0.1:${{ECKO_TEST_UNSET_LAB_PORT:-{}}}",
        s.port
    )));
    assert!(
        d.body.contains(&format!("127.0.0.1:{}", s.port)),
        "in force"
    );
    assert!(d.body.contains("id=\"endpoint-routes\""));
    assert!(d.body.contains("id=\"endpoint-queue\""));
    assert!(d.body.contains("running"));
    assert!(!d.body.contains("id=\"test\""));
    assert!(!d.body.contains("/edit"));
    assert_eq!(
        s.get("/endpoints/nope", &v).await.status,
        StatusCode::NOT_FOUND
    );

    let api = s.get("/api/v1/endpoints/archive", &v).await;
    assert_eq!(api.status, StatusCode::OK);
    let j = api.json();
    assert_eq!(j["type"], "file");
    assert_eq!(j["running"], true);
    assert_eq!(j["routes"][0]["name"], "r");
    assert!(j["settings"]["path"].as_str().unwrap().ends_with("/out"));
    assert_eq!(
        s.get("/api/v1/endpoints/nope", &v).await.status,
        StatusCode::NOT_FOUND
    );
    // The list the dashboard uses keeps working.
    let all = s.get("/api/v1/endpoints", &v).await.json();
    assert_eq!(all["endpoints"].as_array().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_refuses_the_roles_below_it_and_leaves_the_file_alone() {
    let s = site().await;
    let viewer = s.login("vera", "viewer").await;
    let operator = s.login("otto", "operator").await;
    let operator_and_up = [
        "/endpoints/archive/disable",
        "/endpoints/archive/enable",
        "/endpoints/archive/test",
    ];
    let admin_only = [
        "/endpoints/archive/edit",
        "/new-endpoint",
        "/settings",
        "/routes",
        "/config/versions/x/rollback",
    ];
    for uri in operator_and_up.iter().chain(&admin_only) {
        assert_eq!(
            s.post(uri, &viewer, &[]).await.status,
            StatusCode::FORBIDDEN,
            "viewer {uri}"
        );
    }
    for uri in admin_only {
        assert_eq!(
            s.post(uri, &operator, &[]).await.status,
            StatusCode::FORBIDDEN,
            "operator {uri}"
        );
    }
    for uri in [
        "/endpoints/archive/edit",
        "/new-endpoint",
        "/config/versions",
    ] {
        assert_eq!(
            s.get(uri, &operator).await.status,
            StatusCode::FORBIDDEN,
            "GET {uri}"
        );
    }
    let api_admin_only = [
        ("POST", "/api/v1/endpoints"),
        ("PUT", "/api/v1/endpoints/archive"),
        ("PUT", "/api/v1/settings"),
        ("PUT", "/api/v1/routes"),
        ("POST", "/api/v1/config/versions/x/rollback"),
    ];
    for (m, uri) in api_admin_only {
        let r = s.json(m, uri, &operator, serde_json::json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "operator {m} {uri}");
    }
    for uri in [
        "/api/v1/endpoints/archive/disable",
        "/api/v1/endpoints/archive/test",
    ] {
        let r = s.json("POST", uri, &viewer, serde_json::json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "viewer {uri}");
    }
    assert_eq!(
        s.get("/api/v1/config/versions", &operator).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.file(), s.original);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_the_sessions_csrf_token_is_refused() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let r = s.post_raw("/endpoints/archive/disable", &a, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post_raw("/endpoints/archive/disable", &a, &[("csrf", "0000")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .send(
            Request::put("/api/v1/endpoints/archive")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &a.cookie)
                .body(Body::from(r#"{"settings":{"extension":"x"}}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.file(), s.original);
    assert!(s.running().contains(&"archive".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_disables_and_enables_a_destination_live_written_and_audited() {
    let s = site().await;
    let o = s.login("otto", "operator").await;
    let r = s.post("/endpoints/archive/disable", &o, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/endpoints/archive?applied="));
    assert!(s.file().contains("path = \"") && s.file().contains("enabled = false"));
    assert!(!s.running().contains(&"archive".to_string()));
    let page = s.get(r.location(), &o).await;
    assert!(page.body.contains("stopped archive"), "{}", page.body);
    assert!(page.body.contains("status disabled"));

    let r = s
        .json(
            "POST",
            "/api/v1/endpoints/archive/enable",
            &o,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["applied"]["started"][0], "archive");
    assert!(s.file().contains("enabled = true"));
    assert!(s.running().contains(&"archive".to_string()));
    let audit = s.audit_actions().await;
    assert!(
        audit.contains(&"otto endpoint.disable archive".to_string()),
        "{audit:?}"
    );
    assert!(audit.contains(&"otto endpoint.enable archive".to_string()));
    assert_eq!(
        s.post("/endpoints/nope/disable", &o, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // Enabling what is enabled changes no text and keeps no new version.
    let r = s
        .json(
            "POST",
            "/api/v1/endpoints/archive/enable",
            &o,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["version"].is_null());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_shown_and_an_empty_secret_field_keeps_the_secret() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let r = s
        .json(
            "POST",
            "/api/v1/endpoints",
            &a,
            serde_json::json!({ "name": "hub", "type": "fhir", "settings": {
                "url": "http://127.0.0.1:9/fhir", "auth.type": "api-key", "auth.key": "very-secret-key" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = s.login("vera", "viewer").await;
    for page in [
        s.get("/endpoints/hub", &v).await,
        s.get("/api/v1/endpoints/hub", &v).await,
        s.get("/endpoints/hub/edit", &a).await,
    ] {
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("very-secret-key"), "{}", page.body);
    }
    let r = s
        .post(
            "/endpoints/hub/edit",
            &a,
            &[
                ("type", "fhir"),
                ("url", "http://127.0.0.1:9/fhir"),
                ("auth.type", "api-key"),
                ("auth.api_key", ""),
                ("max_batch", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let text = s.file();
    assert!(
        text.contains("very-secret-key") && text.contains("max_batch = 5"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_refused_with_each_error_beside_its_field_and_changes_nothing() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let form = s.get("/endpoints/lab/edit", &a).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form
        .field("listen")
        .contains(&format!("${{ECKO_TEST_UNSET_LAB_PORT:-{}}}", s.port)));
    assert!(form.field("max_connections").contains("value=\"8\""));

    let listen = format!("127.0.0.1:${{ECKO_TEST_UNSET_LAB_PORT:-{}}}", s.port);
    let r = s
        .post(
            "/endpoints/lab/edit",
            &a,
            &[
                ("type", "mllp"),
                ("listen", &listen),
                ("max_connections", "0"),
                ("charset", "EBCDIC"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let field = r.field("max_connections");
    assert!(field.contains("class=\"invalid\""), "{field}");
    assert!(
        field.contains("`max_connections` must be at least 1"),
        "{field}"
    );
    assert!(
        r.field("charset")
            .contains("unknown character set `EBCDIC`"),
        "{}",
        r.field("charset")
    );
    assert!(!r.field("listen").contains("field-error"));
    // A value of the wrong shape stops the loader before the checks
    // above (as at start); its error is found by its position.
    let r2 = s
        .post(
            "/endpoints/lab/edit",
            &a,
            &[("type", "mllp"), ("idle_timeout", "soon")],
        )
        .await;
    assert_eq!(r2.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r2.field("idle_timeout").contains("field-error"),
        "{}",
        r2.body
    );

    let field_of = |r: &Reply| {
        r.json()["errors"][0]["field"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let j = s
        .json(
            "PUT",
            "/api/v1/endpoints/lab",
            &a,
            serde_json::json!({ "settings": { "max_connections": 0 } }),
        )
        .await;
    assert_eq!(j.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", j.body);
    assert_eq!(field_of(&j), "max_connections");
    let j = s
        .json(
            "PUT",
            "/api/v1/endpoints/lab",
            &a,
            serde_json::json!({ "settings": { "colour": "blue" } }),
        )
        .await;
    assert_eq!(j.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", j.body);
    assert_eq!(field_of(&j), "colour");
    assert!(j.body.contains("unknown field `colour`"));
    assert_eq!(s.file(), s.original);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_moves_a_listener_live_keeping_comments_and_references_and_a_version() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let new_port = free_port();
    let listen = format!("127.0.0.1:${{ECKO_TEST_UNSET_LAB_PORT:-{new_port}}}");
    let r = s
        .post(
            "/endpoints/lab/edit",
            &a,
            &[
                ("type", "mllp"),
                ("listen", &listen),
                ("max_connections", "8"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = s.get(r.location(), &a).await;
    assert!(page.body.contains("restarted lab"), "{}", page.body);
    let text = s.file();
    assert_eq!(
        text,
        s.original.replace(
            &format!("LAB_PORT:-{}}}", s.port),
            &format!("LAB_PORT:-{new_port}}}")
        ),
        "only the edited value changed"
    );
    tokio::net::TcpStream::connect(("127.0.0.1", new_port))
        .await
        .expect("the listener answers on its new port");
    let versions = s.get("/api/v1/config/versions", &a).await.json();
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["user"], "ada");
    assert_eq!(list[0]["action"], "endpoint.edit");
    assert_eq!(list[1]["action"], "on_disk");
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada endpoint.edit lab".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_an_endpoint_that_joins_a_route_and_starts_at_once() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    assert!(s.get("/new-endpoint", &a).await.body.contains("type=fhir"));
    let form = s.get("/new-endpoint?type=file", &a).await;
    assert!(form.body.contains("name=\"route\" value=\"r\""));
    let copy = format!("{}/copy", s.dir.path().display());
    let r = s
        .post(
            "/new-endpoint",
            &a,
            &[
                ("type", "file"),
                ("name", "copy"),
                ("path", &copy),
                ("route", "r"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.running().contains(&"copy".to_string()));
    let route = s.gw().supervisor.config().routes[0].clone();
    assert_eq!(route.to, ["archive", "copy"]);
    assert!(
        s.file()
            .contains("to = [\"archive\", \"copy\"] # all of it"),
        "{}",
        s.file()
    );

    let dup = s
        .post(
            "/new-endpoint",
            &a,
            &[("type", "file"), ("name", "copy"), ("path", &copy)],
        )
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(dup.field("name").contains("exists already"), "{}", dup.body);
    let missing = s
        .post(
            "/new-endpoint",
            &a,
            &[("type", "file"), ("name", "nopath"), ("path", "")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        missing.field("path").contains("missing field `path`"),
        "{}",
        missing.body
    );

    let j = s
        .json(
            "POST",
            "/api/v1/endpoints",
            &a,
            serde_json::json!({ "name": "drop-2", "type": "file-drop",
                "settings": { "path": format!("{}/drop2", s.dir.path().display()) }, "routes": ["r"] }),
        )
        .await;
    assert_eq!(j.status, StatusCode::CREATED, "{}", j.body);
    assert_eq!(j.json()["applied"]["started"][0], "drop-2");
    assert_eq!(
        s.gw().supervisor.config().routes[0].from,
        ["lab", "inbox", "drop-2"]
    );
    let bad = s
        .json(
            "POST",
            "/api/v1/endpoints",
            &a,
            serde_json::json!({ "name": "x", "type": "pigeon" }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["errors"][0]["field"], "type");
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada endpoint.create copy".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_shows_each_step_on_the_page_and_in_json_and_is_audited() {
    let s = site().await;
    let o = s.login("otto", "operator").await;
    let r = s.post("/endpoints/archive/test", &o, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Connection test: passed"), "{}", r.body);
    assert!(r.body.contains("is writable"));
    let lab = s.post("/endpoints/lab/test", &o, &[]).await;
    assert!(lab.body.contains("Connection test: passed"), "{}", lab.body);
    assert!(lab.body.contains("no message is sent"));
    let j = s
        .json(
            "POST",
            "/api/v1/endpoints/lab/test",
            &o,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(j.status, StatusCode::OK);
    assert_eq!(j.json()["ok"], true);
    assert_eq!(j.json()["steps"][0]["name"], "TCP connect");
    assert_eq!(
        s.post("/endpoints/nope/test", &o, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let audit = s.audit_actions().await;
    assert!(
        audit.contains(&"otto endpoint.test archive".to_string()),
        "{audit:?}"
    );
    assert!(audit.contains(&"otto endpoint.test lab".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_on_the_endpoint_pages_and_form_is_shown_escaped() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let notice = s
        .get("/endpoints/lab?applied=%3Cscript%3Ex%3C%2Fscript%3E", &a)
        .await;
    assert!(
        notice
            .body
            .contains("<p class=\"notice\" id=\"notice\">&lt;script&gt;x&lt;/script&gt;</p>"),
        "{}",
        notice.body
    );
    let r = s
        .json(
            "POST",
            "/api/v1/endpoints",
            &a,
            serde_json::json!({ "name": "hub", "type": "fhir",
                "settings": { "url": "http://127.0.0.1:9/fhir?a=<b>&c" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let detail = s.get("/endpoints/hub", &a).await;
    assert!(
        detail
            .body
            .contains("<code>http://127.0.0.1:9/fhir?a=&lt;b&gt;&amp;c</code>"),
        "{}",
        detail.body
    );
    let form = s.get("/endpoints/hub/edit", &a).await;
    assert!(form
        .field("url")
        .contains("value=\"http://127.0.0.1:9/fhir?a=&lt;b&gt;&amp;c\""));
    let sent_back = s
        .post(
            "/endpoints/lab/edit",
            &a,
            &[("type", "mllp"), ("idle_timeout", "\"><script>x</script>")],
        )
        .await;
    assert_eq!(sent_back.status, StatusCode::UNPROCESSABLE_ENTITY);
    let field = sent_back.field("idle_timeout");
    assert!(
        field.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""),
        "{field}"
    );
    assert!(
        field.contains("`&quot;&gt;&lt;script&gt;x&lt;/script&gt;`"),
        "{field}"
    );
    let named = s
        .post(
            "/new-endpoint",
            &a,
            &[
                ("type", "file"),
                ("name", "<script>x</script>"),
                ("path", "/x"),
            ],
        )
        .await;
    assert_eq!(named.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(named
        .field("name")
        .contains("value=\"&lt;script&gt;x&lt;/script&gt;\""));
    for page in [&notice, &detail, &form, &sent_back, &named] {
        assert!(!page.body.contains("<script>x"), "{}", page.body);
        assert!(!page.body.contains("<b>&"), "{}", page.body);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_validated_beside_their_field_applied_live_and_written() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let page = s.get("/settings", &a).await;
    assert!(page.field("retention_days").contains("value=\"90\""));
    let r = s
        .post(
            "/settings",
            &a,
            &[("retention_days", "0"), ("time_zone", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.field("retention_days").contains("must be at least 1"),
        "{}",
        r.body
    );
    let r = s
        .post(
            "/settings",
            &a,
            &[("retention_days", "60"), ("time_zone", "Mars/Olympus")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.field("time_zone").contains("unknown time zone"),
        "{}",
        r.body
    );
    assert!(!r.field("retention_days").contains("field-error"));
    assert_eq!(s.file(), s.original);

    let r = s
        .post(
            "/settings",
            &a,
            &[
                ("retention_days", "30"),
                ("max_size", "1 GiB"),
                ("time_zone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.gw().journal.limits().0, 1 << 30);
    assert_eq!(
        s.gw().supervisor.time_zone().iana_name(),
        Some("Europe/Berlin")
    );
    let c = s.gw().supervisor.config();
    assert_eq!(c.journal.retention.as_secs(), 30 * 86_400);
    let text = s.file();
    assert!(
        text.contains("retention_days = 30\nmax_size = \"1 GiB\"\n"),
        "{text}"
    );
    assert!(
        text.contains("[site]\ntime_zone = \"Europe/Berlin\""),
        "{text}"
    );
    assert!(text.starts_with("# The test gateway.\n"));

    let j = s
        .json(
            "PUT",
            "/api/v1/settings",
            &a,
            serde_json::json!({ "retention_days": 45 }),
        )
        .await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.body);
    assert_eq!(
        s.get("/api/v1/settings", &a).await.json()["retention_days"],
        45
    );
    let j = s
        .json(
            "PUT",
            "/api/v1/settings",
            &a,
            serde_json::json!({ "max_size": "tiny" }),
        )
        .await;
    assert_eq!(j.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(j.json()["errors"][0]["field"], "max_size");
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada settings.edit settings".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_edited_as_toml_are_validated_like_the_file_and_applied() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let page = s.get("/routes", &a).await;
    assert!(
        page.body.contains("to = [&quot;archive&quot;] # all of it"),
        "{}",
        page.body
    );
    let bad = "[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"nowhere\"]\n";
    let r = s.post("/routes", &a, &[("toml", bad)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("`to` names unknown endpoint `nowhere`"),
        "{}",
        r.body
    );
    assert_eq!(s.file(), s.original);
    let good = "[[route]]\nname = \"only-lab\"\nfrom = [\"lab\"]\nto = [\"archive\"]\n";
    let r = s.post("/routes", &a, &[("toml", good)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let routes = s.gw().supervisor.config().routes.clone();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].name, "only-lab");
    let v = s.get("/routes", &s.login("vera", "viewer").await).await;
    assert!(v.body.contains("only-lab") && !v.body.contains("<textarea"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_rolls_back_to_a_kept_version_with_its_diff_shown_first() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    assert!(s
        .get("/config/versions", &a)
        .await
        .body
        .contains("no-versions"));
    let r = s.post("/endpoints/archive/disable", &a, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = s.get("/config/versions", &a).await;
    assert!(list.body.contains("endpoint.disable"), "{}", list.body);
    let versions = s.get("/api/v1/config/versions", &a).await.json();
    let before = versions["versions"][1]["id"].as_str().unwrap().to_string();
    let diff = s.get(&format!("/config/versions/{before}"), &a).await;
    assert_eq!(diff.status, StatusCode::OK);
    assert!(
        diff.body
            .contains("<span class=\"del\">- enabled = false</span>"),
        "{}",
        diff.body
    );
    let j = s
        .get(&format!("/api/v1/config/versions/{before}"), &a)
        .await
        .json();
    assert_eq!(j["diff_from_current"][0]["op"], "-");
    assert_eq!(j["text"], s.original);

    let r = s
        .post(&format!("/config/versions/{before}/rollback"), &a, &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.file(), s.original);
    assert!(s.running().contains(&"archive".to_string()));
    assert!(s
        .audit_actions()
        .await
        .contains(&format!("ada config.rollback {before}")));
    let newest = s.get("/api/v1/config/versions", &a).await.json();
    assert_eq!(newest["versions"][0]["action"], "config.rollback");
    assert_eq!(
        s.post(
            "/config/versions/20000101T000000.000Z-x-y/rollback",
            &a,
            &[]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_on_the_configuration_pages_is_shown_escaped() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let settings = s
        .post("/settings", &a, &[("time_zone", "\"><script>x</script>")])
        .await;
    assert_eq!(settings.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        settings
            .field("time_zone")
            .contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""),
        "{}",
        settings.body
    );
    let hostile = "# </textarea><script>x</script>\n[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"nowhere\"]\n";
    let routes = s.post("/routes", &a, &[("toml", hostile)]).await;
    assert_eq!(routes.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        routes.body.contains(
            "spellcheck=\"false\"># &lt;/textarea&gt;&lt;script&gt;x&lt;/script&gt;\n[[route]]"
        ),
        "{}",
        routes.body
    );
    let commented =
        "[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"archive\"] # <b>all</b> & more\n";
    let r = s.post("/routes", &a, &[("toml", commented)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let versions = s.get("/api/v1/config/versions", &a).await.json();
    let before = versions["versions"][1]["id"].as_str().unwrap().to_string();
    let diff = s.get(&format!("/config/versions/{before}"), &a).await;
    assert!(
        diff.body.contains(
            "<span class=\"del\">- to = [&quot;archive&quot;] # &lt;b&gt;all&lt;/b&gt; &amp; more</span>"
        ),
        "{}",
        diff.body
    );
    let unknown = s.get("/config/versions/%3Cscript%3Ex", &a).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.body.contains("`&lt;script&gt;x`"),
        "{}",
        unknown.body
    );
    for page in [&settings, &routes, &diff, &unknown] {
        assert!(!page.body.contains("<script>x"), "{}", page.body);
        assert!(!page.body.contains("<b>all"), "{}", page.body);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_hand_edit_keeps_it_as_a_version_and_a_broken_edit_changes_nothing() {
    let s = site().await;
    let edited = s.original.replace(
        "type = \"file-drop\"\n",
        "type = \"file-drop\"\nenabled = false\n",
    );
    std::fs::write(&s.path, &edited).unwrap();
    let applied = super::reload(&s.gw().supervisor, "SIGHUP").await.unwrap();
    assert_eq!(applied.report.stopped, ["inbox"]);
    let version = applied.version.expect("a hand edit is kept as a version");
    assert_eq!(version.action, "config.reload");
    assert!(!s.running().contains(&"inbox".to_string()));
    assert_eq!(s.file(), edited, "the file is applied, not rewritten");
    let file = s.path.display().to_string();
    assert!(s
        .audit_actions()
        .await
        .contains(&format!("SIGHUP config.reload {file}")));
    let again = super::reload(&s.gw().supervisor, "SIGHUP").await.unwrap();
    assert!(
        again.version.is_none(),
        "reloading an unchanged file keeps no second copy"
    );

    let broken =
        format!("{edited}\n[[route]]\nname = \"x\"\nfrom = [\"nowhere\"]\nto = [\"archive\"]\n");
    std::fs::write(&s.path, &broken).unwrap();
    match super::reload(&s.gw().supervisor, "SIGHUP").await {
        Err(super::ChangeError::Invalid(errors)) => {
            assert!(
                errors
                    .iter()
                    .any(|e| e.message.contains("nowhere") && e.line > 0),
                "{errors:?}"
            )
        }
        other => panic!("a broken file was not refused: {other:?}"),
    }
    assert!(s.running().contains(&"lab".to_string()));
    assert!(!s.running().contains(&"inbox".to_string()));
    assert!(
        !s.gw()
            .supervisor
            .config()
            .endpoint("inbox")
            .unwrap()
            .enabled
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_promotes_a_sandboxed_destination_to_live_audited() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let operator = s.login("otto", "operator").await;
    let j = s
        .json(
            "PUT",
            "/api/v1/endpoints/archive",
            &a,
            serde_json::json!({ "settings": { "mode": "sandbox" } }),
        )
        .await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.body);
    assert!(s.file().contains("mode = \"sandbox\""));
    let page = s.get("/endpoints/archive", &a).await;
    assert!(page.body.contains("promote-form"), "{}", page.body);
    assert_eq!(
        s.post("/endpoints/archive/promote", &operator, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = s.post("/endpoints/archive/promote", &a, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!s.file().contains("mode ="), "{}", s.file());
    assert_eq!(
        s.gw()
            .supervisor
            .config()
            .endpoint("archive")
            .unwrap()
            .protection
            .mode,
        crate::config::Mode::Live
    );
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada endpoint.promote archive".to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_an_endpoint_and_its_route_from_an_integration_template() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let types = s.get("/new-endpoint", &a).await;
    assert!(
        types.body.contains("/new-endpoint/template/lab-hl7-mllp"),
        "{}",
        types.body
    );
    let form = s.get("/new-endpoint/template/lab-hl7-mllp", &a).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.field("allow").contains("required"), "{}", form.body);
    assert!(
        form.body.contains("value=\"analyzer-mllp\""),
        "{}",
        form.body
    );

    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let missing = s
        .post(
            "/new-endpoint/template/lab-hl7-mllp",
            &a,
            &[("name", "chem"), ("listen", &listen), ("to", "archive")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        missing.field("allow").contains("needs a value for `allow`"),
        "{}",
        missing.body
    );
    let bad = s
        .post(
            "/new-endpoint/template/lab-hl7-mllp",
            &a,
            &[
                ("name", "chem"),
                ("listen", "nowhere"),
                ("allow", "127.0.0.1"),
                ("to", "archive"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.field("listen").contains("field-error"), "{}", bad.body);
    assert_eq!(s.file(), s.original, "a refused template writes nothing");

    let r = s
        .post(
            "/new-endpoint/template/lab-hl7-mllp",
            &a,
            &[
                ("name", "chem"),
                ("listen", &listen),
                ("allow", "127.0.0.1"),
                ("to", "archive"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.location().starts_with("/endpoints/chem?"),
        "{}",
        r.location()
    );
    assert!(s.running().contains(&"chem".to_string()));
    let config = s.gw().supervisor.config();
    let route = config
        .routes
        .iter()
        .find(|r| r.name == "chem-results")
        .unwrap();
    assert_eq!(route.from, ["chem"]);
    assert_eq!(route.to, ["archive"]);
    let file = s.file();
    for line in s.original.lines() {
        assert!(
            file.contains(line),
            "the file's own {line:?} is kept:\n{file}"
        );
    }
    assert!(
        file.contains("# Only the analyzer may connect; add its other addresses here."),
        "{file}"
    );
    assert!(!file.contains("[template]"), "{file}");
    tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .expect("the new listener answers at once");
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada template.apply lab-hl7-mllp".to_string()));

    let again = s
        .post(
            "/new-endpoint/template/lab-hl7-mllp",
            &a,
            &[("name", "chem"), ("allow", "127.0.0.1"), ("to", "archive")],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.field("name").contains("exists already"),
        "{}",
        again.body
    );

    let viewer = s.login("vic", "viewer").await;
    let refused = s
        .post(
            "/new-endpoint/template/lab-hl7-mllp",
            &viewer,
            &[("name", "x"), ("allow", "127.0.0.1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

mod certificates;
mod rest_paths;
