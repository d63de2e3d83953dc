//! A REST listener's `[[endpoint.paths]]` and its bearer scope, edited on
//! the endpoint form: rows written as tables, validated by the loader with
//! the error beside the rows, served live.

use super::*;
use crate::sources::rest::auth::tests::{claims, key_pair, token};

/// A plain HTTP/1.1 request to the listener on `port`: its status.
async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_edits_a_listener_s_paths_and_bearer_scope_on_the_form_and_they_are_served() {
    let s = site().await;
    let a = s.login("ada", "admin").await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (signing, jwk) = key_pair("k1");
    let jwks = s.dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    let jwks = jwks.display().to_string();
    let new = s.get("/new-endpoint?type=rest", &a).await;
    assert!(
        new.body.contains("data-rows=\"paths\"") && new.body.contains("name=\"paths.0.path\""),
        "{}",
        new.body
    );
    let r = s
        .post(
            "/new-endpoint",
            &a,
            &[
                ("type", "rest"),
                ("name", "api"),
                ("listen", &listen),
                ("plain_http", "true"),
                ("auth.type", "bearer"),
                ("auth.jwks_file", &jwks),
                ("auth.bearer_scope", "results.write"),
                ("paths.0.path", "/fhir"),
                ("paths.0.accept", ""),
                ("paths.0.message_type", ""),
                ("paths.0.bundles", "split"),
                ("paths.1.path", "/notes"),
                ("paths.1.accept", "text"),
                ("paths.1.message_type", "NOTE"),
                ("paths.1.bundles", ""),
                ("paths.2.path", ""),
                ("paths.2.accept", "json"),
                ("route", "r"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let text = s.file();
    let api = &text[text.find("name = \"api\"").unwrap()..];
    assert!(
        api.contains("[[endpoint.paths]]\npath = \"/fhir\"\nbundles = \"split\"")
            && api.contains(
                "[[endpoint.paths]]\npath = \"/notes\"\naccept = \"text\"\nmessage_type = \"NOTE\""
            ),
        "{api}"
    );
    assert_eq!(api.matches("[[endpoint.paths]]").count(), 2, "{api}");
    assert!(api.contains("scope = \"results.write\""), "{api}");
    // Served: the scope is required, the text path takes text.
    assert!(wait_for_port(port).await);
    let good = token(&signing, "k1", claims(300, "results.write"));
    let narrow = token(&signing, "k1", claims(300, "results.read"));
    let auth = |t: &str| format!("Bearer {t}");
    let text_body = [("Content-Type", "text/plain")];
    assert_eq!(
        request(
            port,
            "POST",
            "/notes",
            &[("Authorization", &auth(&narrow)), text_body[0]],
            "a note"
        )
        .await,
        403
    );
    let taken = request(
        port,
        "POST",
        "/notes",
        &[("Authorization", &auth(&good)), text_body[0]],
        "a note",
    )
    .await;
    assert!(taken == 201 || taken == 202, "{taken}");
    assert_eq!(
        request(
            port,
            "POST",
            "/orders",
            &[("Authorization", &auth(&good)), text_body[0]],
            "x"
        )
        .await,
        404
    );
    // The form shows the rows back, and two blank ones.
    let form = s.get("/endpoints/api/edit", &a).await;
    for shown in [
        "name=\"paths.0.path\" value=\"/fhir\"",
        "name=\"paths.1.message_type\" value=\"NOTE\"",
        "name=\"paths.3.path\" value=\"\"",
        "name=\"auth.bearer_scope\" value=\"results.write\"",
    ] {
        assert!(form.body.contains(shown), "{shown}: {}", form.body);
    }
    // A path that is not one: refused beside the rows, the file as it was.
    let before = s.file();
    let edit = [
        ("type", "rest"),
        ("listen", listen.as_str()),
        ("plain_http", "true"),
        ("auth.type", "bearer"),
        ("auth.jwks_file", jwks.as_str()),
        ("auth.bearer_scope", "results.write"),
        ("paths.0.path", "/fhir"),
        ("paths.0.bundles", "split"),
        ("paths.1.path", "notes"),
        ("paths.1.accept", "text"),
        ("paths.1.message_type", "NOTE"),
    ];
    let r = s.post("/endpoints/api/edit", &a, &edit).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let rows = &r.body[r.body.find("data-rows=\"paths\"").unwrap()..];
    let rows = &rows[..rows.find("</fieldset>").unwrap()];
    assert!(rows.contains("`notes` is not a path"), "{rows}");
    assert!(
        rows.contains("name=\"paths.1.path\" value=\"notes\""),
        "{rows}"
    );
    assert_eq!(s.file(), before);
    // Emptying a row's path removes its table; nothing else changes.
    let mut removing = edit;
    removing[8] = ("paths.1.path", "");
    let r = s.post("/endpoints/api/edit", &a, &removing).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let after = s.file();
    assert_eq!(after.matches("[[endpoint.paths]]").count(), 1, "{after}");
    assert!(
        !after.contains("/notes") && after.contains("path = \"/fhir\""),
        "{after}"
    );
    assert_eq!(
        request(
            port,
            "POST",
            "/notes",
            &[("Authorization", &auth(&good)), text_body[0]],
            "a note"
        )
        .await,
        404
    );
    s.stop().await;
}

async fn wait_for_port(port: u16) -> bool {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}
