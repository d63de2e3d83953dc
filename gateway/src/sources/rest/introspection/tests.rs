use super::*;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A stand-in identity provider: answers per token, counts questions, and
/// takes only the listener's own client credentials.
struct Provider {
    url: String,
    asked: Arc<AtomicUsize>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn provider(status: StatusCode, body: Option<&'static str>) -> Provider {
    let asked = Arc::new(AtomicUsize::new(0));
    let app = {
        let asked = asked.clone();
        axum::Router::new().route(
            "/introspect",
            axum::routing::post(move |headers: HeaderMap, form: String| {
                let asked = asked.clone();
                async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let basic = base64::engine::general_purpose::STANDARD.encode("gateway:s3cret");
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some(format!("Basic {basic}").as_str())
                    {
                        return (StatusCode::UNAUTHORIZED, "who are you".to_string());
                    }
                    if let Some(body) = body {
                        return (status, body.to_string());
                    }
                    let form: HashMap<String, String> = serde_urlencoded::from_str(&form).unwrap();
                    assert_eq!(form["token_type_hint"], "access_token");
                    let answer = match form["token"].as_str() {
                        "good" => serde_json::json!({
                            "active": true, "scope": "lab.write other", "exp": now() + 300,
                            "iss": "https://idp.example", "aud": ["ecko", "else"],
                        }),
                        "short" => serde_json::json!({
                            "active": true, "scope": "lab.write", "exp": now() + 2,
                            "iss": "https://idp.example", "aud": "ecko",
                        }),
                        "no-scope" => serde_json::json!({
                            "active": true, "scope": "read", "iss": "https://idp.example", "aud": "ecko",
                        }),
                        "expired" => serde_json::json!({
                            "active": true, "scope": "lab.write", "exp": now() - 5,
                            "iss": "https://idp.example", "aud": "ecko",
                        }),
                        "foreign" => serde_json::json!({
                            "active": true, "scope": "lab.write", "iss": "https://other.example", "aud": "ecko",
                        }),
                        "elsewhere" => serde_json::json!({
                            "active": true, "scope": "lab.write", "iss": "https://idp.example", "aud": "billing",
                        }),
                        _ => serde_json::json!({ "active": false }),
                    };
                    (StatusCode::OK, answer.to_string())
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Provider {
        url: format!("http://{addr}/introspect"),
        asked,
    }
}

fn introspection(url: &str, secret: &str, keep_for: Duration) -> Introspection {
    Introspection::new(
        Settings {
            url: url.into(),
            client_id: "gateway".into(),
            client_secret: secret.into(),
            keep_for,
            issuer: Some("https://idp.example".into()),
            audience: Some("ecko".into()),
            scope: Some("lab.write".into()),
        },
        super::super::auth::idp_client(None).unwrap(),
    )
}

#[tokio::test]
async fn an_active_token_is_taken_and_its_answer_kept_for_the_next_request() {
    let idp = provider(StatusCode::OK, None).await;
    let check = introspection(&idp.url, "s3cret", Duration::from_secs(60));
    assert_eq!(check.verify("good").await, Ok(()));
    assert_eq!(check.verify("good").await, Ok(()));
    assert_eq!(idp.asked.load(Ordering::SeqCst), 1, "the second is kept");
    let every_time = introspection(&idp.url, "s3cret", Duration::ZERO);
    assert_eq!(every_time.verify("good").await, Ok(()));
    assert_eq!(every_time.verify("good").await, Ok(()));
    assert_eq!(idp.asked.load(Ordering::SeqCst), 3, "0s asks each time");
}

#[tokio::test]
async fn a_kept_answer_does_not_outlive_the_token() {
    let idp = provider(StatusCode::OK, None).await;
    let check = introspection(&idp.url, "s3cret", Duration::from_secs(3600));
    assert_eq!(check.verify("short").await, Ok(()));
    let kept = check.kept.lock().await;
    let until = kept.values().next().copied().unwrap();
    assert!(
        until <= Instant::now() + Duration::from_secs(3),
        "kept past the token's exp"
    );
}

#[tokio::test]
async fn an_inactive_expired_foreign_or_misdirected_token_is_unauthenticated_and_never_kept() {
    let idp = provider(StatusCode::OK, None).await;
    let check = introspection(&idp.url, "s3cret", Duration::from_secs(60));
    for token in ["made-up", "expired", "foreign", "elsewhere"] {
        for _ in 0..2 {
            assert!(
                matches!(check.verify(token).await, Err(Denied::Unauthenticated(_))),
                "{token}"
            );
        }
    }
    assert_eq!(idp.asked.load(Ordering::SeqCst), 8, "refusals are not kept");
    assert!(matches!(
        check.verify("no-scope").await,
        Err(Denied::Forbidden(m)) if m.contains("lab.write")
    ));
}

#[tokio::test]
async fn a_provider_out_of_reach_or_answering_nonsense_leaves_the_token_unjudged() {
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/introspect", l.local_addr().unwrap())
    };
    let check = introspection(&gone, "s3cret", Duration::from_secs(60));
    assert!(matches!(
        check.verify("good").await,
        Err(Denied::Unavailable(_))
    ));
    for (status, body, expected) in [
        (StatusCode::INTERNAL_SERVER_ERROR, "oops", "HTTP 500"),
        (StatusCode::OK, "<html>", "not RFC 7662 JSON"),
        (StatusCode::OK, "{\"scope\":\"x\"}", "not RFC 7662 JSON"),
    ] {
        let idp = provider(status, Some(body)).await;
        let check = introspection(&idp.url, "s3cret", Duration::from_secs(60));
        match check.verify("good").await {
            Err(Denied::Unavailable(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_listener_presents_its_own_client_credentials() {
    let idp = provider(StatusCode::OK, None).await;
    let wrong = introspection(&idp.url, "not-the-secret", Duration::from_secs(60));
    match wrong.verify("good").await {
        Err(Denied::Unavailable(m)) => assert!(m.contains("HTTP 401"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn past_the_cap_the_kept_answers_are_dropped_rather_than_grown() {
    let idp = provider(StatusCode::OK, None).await;
    let check = introspection(&idp.url, "s3cret", Duration::from_secs(60));
    {
        let mut kept = check.kept.lock().await;
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_KEPT as u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            kept.insert(key, later);
        }
    }
    assert_eq!(check.verify("good").await, Ok(()));
    assert_eq!(check.kept.lock().await.len(), 1);
}
