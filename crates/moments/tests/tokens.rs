//! Access tokens through the real router with asymmetric keys: EdDSA and RS256 signing, the
//! published JWK Set, key rotation, and a suite of forged tokens that must all be refused.

#![expect(clippy::unwrap_used, reason = "test helpers")]

mod common;

use actix_web::test;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../moments-crypto/testdata");

fn key(name: &str) -> String {
    format!("{KEYS}/{name}")
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn payload_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn eddsa_and_rs256_sign_and_publish_their_keys() {
    for (file, alg) in [("ed25519-a.pem", "EdDSA"), ("rsa-a.pem", "RS256")] {
        let t = app_with(&[("MOMENTS_JWT_SIGNING_KEY_FILE", key(file))]).await;
        let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
        register(&app, "rita").await;
        let pair = login(&app, "rita").await;
        let access = pair["access_token"].as_str().unwrap();
        let header = header_of(access);
        assert_eq!(header["alg"], alg);
        let jwks = get(&app, "/.well-known/jwks.json", None).await;
        assert_eq!(jwks.status, 200);
        assert_eq!(jwks.header("cache-control"), Some("public, max-age=300"));
        let keys = jwks.body["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], header["kid"]);
        assert_eq!(keys[0]["alg"], alg);
        assert_eq!(get(&app, "/api/v1/auth/me", Some(access)).await.status, 200);
    }
    // HS256: nothing to publish.
    let t = sqlite_app().await.unwrap();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    assert_eq!(
        get(&app, "/.well-known/jwks.json", None).await.body,
        json!({"keys": []})
    );
}

#[actix_web::test]
async fn rotation_accepts_old_tokens_and_signs_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let before = app_with(&[
        ("MOMENTS_DATA_DIR", data.clone()),
        ("MOMENTS_JWT_SIGNING_KEY_FILE", key("ed25519-a.pem")),
    ])
    .await;
    let after = app_with(&[
        ("MOMENTS_DATA_DIR", data),
        ("MOMENTS_JWT_SIGNING_KEY_FILE", key("ed25519-b.pem")),
        ("MOMENTS_JWT_VERIFY_KEY_FILES", key("ed25519-a.pub.pem")),
    ])
    .await;
    let before = test::init_service(moments_http::app(before.state, before.http)).await;
    let after = test::init_service(moments_http::app(after.state, after.http)).await;
    register(&before, "sam").await;
    let old = login(&before, "sam").await;
    // The rotated instance accepts the old key's token and signs with the new key.
    assert_eq!(
        get(&after, "/api/v1/auth/me", old["access_token"].as_str())
            .await
            .status,
        200
    );
    let new = login(&after, "sam").await;
    let (old_kid, new_kid) = (
        header_of(old["access_token"].as_str().unwrap())["kid"].clone(),
        header_of(new["access_token"].as_str().unwrap())["kid"].clone(),
    );
    assert_ne!(old_kid, new_kid);
    let jwks = get(&after, "/.well-known/jwks.json", None).await;
    let kids: Vec<&Value> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, vec![&new_kid, &old_kid]);
    // The instance that never heard of the new key refuses its tokens.
    get(&before, "/api/v1/auth/me", new["access_token"].as_str())
        .await
        .problem(401, "invalid_token");
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[actix_web::test]
async fn forged_tokens_are_all_refused() {
    let t = app_with(&[("MOMENTS_JWT_SIGNING_KEY_FILE", key("ed25519-a.pem"))]).await;
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    register(&app, "tess").await;
    let pair = login(&app, "tess").await;
    let genuine = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&app, "/api/v1/auth/me", Some(&genuine)).await.status,
        200,
        "the baseline works"
    );

    let claims = payload_of(&genuine);
    let kid = header_of(&genuine)["kid"].as_str().unwrap().to_owned();
    let ed_a = EncodingKey::from_ed_pem(&std::fs::read(key("ed25519-a.pem")).unwrap()).unwrap();
    let ed_b = EncodingKey::from_ed_pem(&std::fs::read(key("ed25519-b.pem")).unwrap()).unwrap();
    let public_pem = std::fs::read(key("ed25519-a.pub.pem")).unwrap();
    let header = |alg: Algorithm, kid: Option<&str>, typ: &str| {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_owned);
        h.typ = Some(typ.to_owned());
        h
    };
    let ours = header(Algorithm::EdDSA, Some(&kid), "at+jwt");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        sign(&ours, &c, &ed_a)
    };
    let (head, body, _) = {
        let mut parts = genuine.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            (),
        )
    };
    let now = claims["iat"].as_i64().unwrap();
    let mut edited = claims.clone();
    edited["sub"] = json!(uuid::Uuid::now_v7());

    let forged: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                &json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
                &claims,
            ),
        ),
        (
            "alg None",
            unsigned(
                &json!({"alg": "None", "typ": "at+jwt", "kid": kid}),
                &claims,
            ),
        ),
        (
            "alg NONE",
            unsigned(
                &json!({"alg": "NONE", "typ": "at+jwt", "kid": kid}),
                &claims,
            ),
        ),
        (
            "HS256 keyed with the public key",
            sign(
                &header(Algorithm::HS256, Some(&kid), "at+jwt"),
                &claims,
                &EncodingKey::from_secret(&public_pem),
            ),
        ),
        ("HS256 keyed with the raw public key", {
            let jwks = get(&app, "/.well-known/jwks.json", None).await;
            let x = URL_SAFE_NO_PAD
                .decode(jwks.body["keys"][0]["x"].as_str().unwrap())
                .unwrap();
            sign(
                &header(Algorithm::HS256, Some(&kid), "at+jwt"),
                &claims,
                &EncodingKey::from_secret(&x),
            )
        }),
        ("stripped signature", format!("{head}.{body}.")),
        ("no signature part", format!("{head}.{body}")),
        ("signed with another key", sign(&ours, &claims, &ed_b)),
        (
            "edited payload",
            format!(
                "{head}.{}.{}",
                URL_SAFE_NO_PAD.encode(edited.to_string()),
                genuine.rsplit('.').next().unwrap()
            ),
        ),
        (
            "nbf in the future",
            with(&|c| {
                c["nbf"] = json!(now + 3600);
                c["iat"] = json!(now + 3600);
                c["exp"] = json!(now + 4500);
            }),
        ),
        ("wrong aud", with(&|c| c["aud"] = json!("someone-else"))),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "missing exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "missing sid",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sid");
            }),
        ),
        (
            "an ID token (typ JWT)",
            sign(&header(Algorithm::EdDSA, Some(&kid), "JWT"), &claims, &ed_a),
        ),
        (
            "a refresh token",
            pair["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("a random string", "Zm9vYmFyYmF6".to_owned()),
        (
            "unknown kid",
            sign(
                &header(Algorithm::EdDSA, Some("not-a-key-we-have"), "at+jwt"),
                &claims,
                &ed_a,
            ),
        ),
        (
            "path-like kid",
            sign(
                &header(Algorithm::EdDSA, Some("../../../../etc/passwd"), "at+jwt"),
                &claims,
                &ed_a,
            ),
        ),
        (
            "no kid",
            sign(&header(Algorithm::EdDSA, None, "at+jwt"), &claims, &ed_a),
        ),
        (
            "oversized",
            format!(
                "{head}.{}.{}",
                "A".repeat(10_000),
                genuine.rsplit('.').next().unwrap()
            ),
        ),
    ];
    assert!(forged.len() >= 15);
    for (what, token) in &forged {
        let reply = get(&app, "/api/v1/auth/me", Some(token)).await;
        assert_eq!(reply.status, 401, "{what} was accepted: {:#}", reply.body);
        reply.problem(401, "invalid_token");
    }
    // Expired: a genuine token, fifteen and a half minutes later.
    clock.advance(TimeDelta::seconds(15 * 60 + 31));
    get(&app, "/api/v1/auth/me", Some(&genuine))
        .await
        .problem(401, "token_expired");
    eprintln!("{} forged tokens and an expired one refused", forged.len());
}
