use super::*;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};

/// A P-256 key pair: the signing key and its JWK.
pub(crate) fn key_pair(kid: &str) -> (EncodingKey, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
    });
    (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
}

fn bearer(jwks: serde_json::Value, scope: Option<&str>) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::json!({ "keys": jwks }).to_string()).unwrap();
    Check::from_config(&RestAuth::Bearer {
        jwks_file: Some(path),
        jwks_url: None,
        introspection_url: None,
        client_id: None,
        client_secret: None,
        introspection_cache: crate::config::Span(Duration::from_secs(60)),
        idp_ca: None,
        issuer: Some("https://idp.example".into()),
        audience: Some("ecko".into()),
        scope: scope.map(str::to_string),
    })
    .unwrap()
}

pub(crate) fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

pub(crate) fn claims(exp_from_now: i64, scope: &str) -> serde_json::Value {
    let now = jiff::Timestamp::now().as_second();
    serde_json::json!({
        "iss": "https://idp.example", "aud": "ecko", "sub": "lis",
        "exp": now + exp_from_now, "scope": scope,
    })
}

fn with_bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

#[tokio::test]
async fn an_api_key_is_taken_only_when_it_is_the_configured_one() {
    let check = Check::from_config(&RestAuth::ApiKey {
        header: "X-API-Key".into(),
        key: "s3cret".into(),
    })
    .unwrap();
    let mut h = HeaderMap::new();
    assert!(matches!(
        check.check(&h).await,
        Err(Denied::Unauthenticated(_))
    ));
    h.insert("x-api-key", "s3cre".parse().unwrap());
    assert!(matches!(
        check.check(&h).await,
        Err(Denied::Unauthenticated(_))
    ));
    h.insert("x-api-key", "s3cret".parse().unwrap());
    assert_eq!(check.check(&h).await, Ok(()));
}

#[tokio::test]
async fn a_bearer_token_signed_by_a_key_of_the_jwks_is_taken() {
    let (key, jwk) = key_pair("k1");
    let check = bearer(serde_json::json!([jwk]), Some("results.write"));
    let t = token(&key, "k1", claims(300, "openid results.write"));
    assert_eq!(check.check(&with_bearer(&t)).await, Ok(()));
}

#[tokio::test]
async fn a_bearer_token_that_is_expired_foreign_or_for_another_audience_is_refused() {
    let (key, jwk) = key_pair("k1");
    let (other, _) = key_pair("k1");
    let check = bearer(serde_json::json!([jwk]), None);
    let expired = token(&key, "k1", claims(-600, ""));
    let foreign = token(&other, "k1", claims(300, ""));
    let mut wrong_aud = claims(300, "");
    wrong_aud["aud"] = "someone-else".into();
    let wrong_aud = token(&key, "k1", wrong_aud);
    let unknown_kid = token(&key, "k2", claims(300, ""));
    for t in [expired, foreign, wrong_aud, unknown_kid, "garbage".into()] {
        assert!(
            matches!(
                check.check(&with_bearer(&t)).await,
                Err(Denied::Unauthenticated(_))
            ),
            "{t}"
        );
    }
    assert!(matches!(
        check.check(&HeaderMap::new()).await,
        Err(Denied::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn a_valid_token_without_the_required_scope_is_forbidden() {
    let (key, jwk) = key_pair("k1");
    let check = bearer(serde_json::json!([jwk]), Some("results.write"));
    let t = token(&key, "k1", claims(300, "results.read"));
    assert!(matches!(
        check.check(&with_bearer(&t)).await,
        Err(Denied::Forbidden(_))
    ));
}

#[tokio::test]
async fn a_token_whose_algorithm_does_not_fit_the_key_is_refused_without_a_panic() {
    let (key, jwk) = key_pair("k1");
    // An RSA key beside it: an ES256 token naming it is refused.
    let rsa = serde_json::json!({"kty": "RSA", "kid": "r", "n": "sXch", "e": "AQAB"});
    let check = bearer(serde_json::json!([jwk.clone(), rsa]), None);
    let es_for_rsa = token(&key, "r", claims(300, ""));
    assert!(matches!(
        check.check(&with_bearer(&es_for_rsa)).await,
        Err(Denied::Unauthenticated(_))
    ));
    // HS256 signed with the public key itself as the HMAC secret: the
    // classic confusion, refused.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut point = vec![4u8];
    point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged =
        jsonwebtoken::encode(&header, &claims(300, ""), &EncodingKey::from_secret(&point)).unwrap();
    assert!(matches!(
        check.check(&with_bearer(&forged)).await,
        Err(Denied::Unauthenticated(_))
    ));
    // The genuine token relabelled with another family or curve.
    let t = token(&key, "k1", claims(300, ""));
    let (_, rest) = t.split_once('.').unwrap();
    for alg in ["RS256", "ES384"] {
        let header = b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#));
        let relabelled = format!("{header}.{rest}");
        assert!(
            matches!(
                check.check(&with_bearer(&relabelled)).await,
                Err(Denied::Unauthenticated(_))
            ),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn a_symmetric_key_in_the_jwks_verifies_nothing() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let jwk = serde_json::json!({"kty":"oct","kid":"h","k":
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)});
    let check = bearer(serde_json::json!([jwk]), None);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("h".into());
    let t =
        jsonwebtoken::encode(&header, &claims(300, ""), &EncodingKey::from_secret(secret)).unwrap();
    assert!(matches!(
        check.check(&with_bearer(&t)).await,
        Err(Denied::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn a_jwks_url_is_fetched_on_first_use_and_again_for_a_rotated_key() {
    let (k1, jwk1) = key_pair("k1");
    let (k2, jwk2) = key_pair("k2");
    let served = std::sync::Arc::new(std::sync::Mutex::new(serde_json::json!({ "keys": [jwk1] })));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let (served, fetches) = (served.clone(), fetches.clone());
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (served, fetches) = (served.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = served.lock().unwrap().to_string();
                    body
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let check = Check::from_config(&RestAuth::Bearer {
        jwks_file: None,
        jwks_url: Some(format!("http://{addr}/jwks")),
        introspection_url: None,
        client_id: None,
        client_secret: None,
        introspection_cache: crate::config::Span(Duration::from_secs(60)),
        idp_ca: None,
        issuer: None,
        audience: None,
        scope: None,
    })
    .unwrap();
    let fetched = || fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched(), 0, "not fetched before a token needs it");
    let t1 = token(&k1, "k1", claims(300, ""));
    assert_eq!(check.check(&with_bearer(&t1)).await, Ok(()));
    assert_eq!(check.check(&with_bearer(&t1)).await, Ok(()));
    assert_eq!(fetched(), 1, "kept, not fetched per request");
    // Rotated at the identity provider: the new kid is fetched once, then
    // an unknown kid does not fetch again within 30 s.
    *served.lock().unwrap() = serde_json::json!({ "keys": [jwk2] });
    let Check::Bearer(b) = &check else {
        unreachable!()
    };
    b.keys.lock().await.1 = Some(Instant::now() - REFETCH_EVERY);
    let t2 = token(&k2, "k2", claims(300, ""));
    assert_eq!(check.check(&with_bearer(&t2)).await, Ok(()));
    assert_eq!(fetched(), 2);
    let t3 = token(&k2, "k3", claims(300, ""));
    assert!(check.check(&with_bearer(&t3)).await.is_err());
    assert_eq!(fetched(), 2, "an unknown kid within 30 s fetches nothing");
}
