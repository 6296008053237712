//! The HTTP conventions of the API guide, through the real router: problem+json for every
//! error, versioning headers, request ids, body rules, CORS, operations and documentation.

mod common;

use actix_web::test;
use common::*;
use serde_json::json;

macro_rules! app {
    () => {{
        let t = sqlite_app().await.expect("sqlite app");
        test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await
    }};
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = app!();
    get(&app, "/nope", None).await.problem(404, "not_found");
    get(&app, "/api/v1/nope", None)
        .await
        .problem(404, "not_found");
    let reply = send(&app, test::TestRequest::delete().uri("/api/v1/auth/login")).await;
    reply.problem(405, "method_not_allowed");
    let reply = get(&app, "/api/v1/auth/register", None).await;
    reply.problem(405, "method_not_allowed");
    assert_eq!(reply.body["instance"], "/api/v1/auth/register");
}

#[actix_web::test]
async fn json_body_rules() {
    let app = app!();
    // 415: no content type, or not JSON.
    let reply = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .set_payload(r#"{"login":"a","password":"b"}"#),
    )
    .await;
    reply.problem(415, "unsupported_media_type");
    let reply = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .insert_header(("content-type", "text/plain"))
            .set_payload("hi"),
    )
    .await;
    reply.problem(415, "unsupported_media_type");
    // A +json media type and a charset parameter are JSON.
    let reply = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .set_payload(r#"{"login":"nobody","password":"whatever it is"}"#),
    )
    .await;
    reply.problem(401, "invalid_credentials");
    // 413 past 64 KiB, whether or not the length is declared up front.
    let big = json!({"login": "x".repeat(70 * 1024), "password": "y"});
    post(&app, "/api/v1/auth/login", big)
        .await
        .problem(413, "payload_too_large");
    // 400 for malformed JSON.
    for body in [
        "{",
        "not json",
        r#"{"login": "a", "password": "b"} trailing"#,
        "",
    ] {
        let reply = send(
            &app,
            test::TestRequest::post()
                .uri("/api/v1/auth/login")
                .insert_header(("content-type", "application/json"))
                .set_payload(body),
        )
        .await;
        reply.problem(400, "malformed_request");
    }
    // 422 naming unknown and mistyped fields.
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "a", "password": "b", "remember": true}),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("remember".into(), "unknown_field".into())]
    );
    for body in [json!(42), json!(["nobody", "whatever it is"])] {
        let reply = post(&app, "/api/v1/auth/login", body).await;
        assert_eq!(reply.field_errors()[0].1, "invalid_type");
    }
}

#[actix_web::test]
async fn versioned_and_defaulted_routes() {
    let app = app!();
    let versioned = post(&app, "/api/v1/auth/logout", json!({"refresh_token": "x"})).await;
    assert_eq!(versioned.status, 204);
    assert_eq!(versioned.header("x-api-version"), Some("1"));
    assert_eq!(versioned.header("x-api-version-defaulted"), None);
    let defaulted = post(&app, "/api/auth/logout", json!({"refresh_token": "x"})).await;
    assert_eq!(defaulted.status, 204);
    assert_eq!(defaulted.header("x-api-version"), Some("1"));
    assert_eq!(defaulted.header("x-api-version-defaulted"), Some("true"));
    // Errors carry the headers too.
    let error = get(&app, "/api/auth/me", None).await;
    error.problem(401, "unauthenticated");
    assert_eq!(error.header("x-api-version-defaulted"), Some("true"));
    // Operations routes are not versioned.
    assert_eq!(
        get(&app, "/health", None).await.header("x-api-version"),
        None
    );
}

#[actix_web::test]
async fn request_ids_are_echoed_or_made() {
    let app = app!();
    let reply = send(
        &app,
        test::TestRequest::get()
            .uri("/health")
            .insert_header(("x-request-id", "client-id-123")),
    )
    .await;
    assert_eq!(reply.header("x-request-id"), Some("client-id-123"));
    let reply = send(
        &app,
        test::TestRequest::get()
            .uri("/nope")
            .insert_header(("x-request-id", "bad id <script>")),
    )
    .await;
    let made = reply.header("x-request-id").unwrap().to_owned();
    assert_ne!(made, "bad id <script>");
    assert!(uuid::Uuid::parse_str(&made).is_ok());
    assert_eq!(reply.body["request_id"], made);
    let a = get(&app, "/health", None).await;
    let b = get(&app, "/health", None).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[actix_web::test]
async fn security_headers_on_every_response() {
    let app = app!();
    for path in ["/health", "/nope", "/api/v1/auth/me", "/redoc"] {
        let reply = get(&app, path, None).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
    }
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "hank", "email": "hank@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[actix_web::test]
async fn cors_allows_only_configured_origins() {
    let app = app!();
    let preflight = |origin: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/api/v1/auth/login")
            .insert_header(("origin", origin.to_owned()))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header(("access-control-request-headers", "content-type"))
    };
    let allowed = send(&app, preflight(ALLOWED_ORIGIN)).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let refused = send(&app, preflight("https://evil.example")).await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    let simple = send(
        &app,
        test::TestRequest::get()
            .uri("/health")
            .insert_header(("origin", ALLOWED_ORIGIN)),
    )
    .await;
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert!(
        simple
            .header("access-control-expose-headers")
            .unwrap()
            .contains("x-request-id")
    );
}

#[actix_web::test]
async fn problem_types_are_described() {
    let app = app!();
    for code in [
        "validation_failed",
        "invalid_credentials",
        "refresh_token_reused",
        "service_unavailable",
    ] {
        let reply = get(&app, &format!("/problems/{code}"), None).await;
        assert_eq!(reply.status, 200, "{code}");
        assert_eq!(reply.body["error_code"], code);
        assert_eq!(reply.body["type"], format!("/problems/{code}"));
        assert!(reply.body["description"].as_str().unwrap().len() > 20);
    }
    get(&app, "/problems/no_such_problem", None)
        .await
        .problem(404, "not_found");
    // Every type URI in an error body resolves.
    let error = get(&app, "/api/v1/auth/me", None).await;
    let described = get(&app, error.body["type"].as_str().unwrap(), None).await;
    assert_eq!(described.body["status"], 401);
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = app!();
    let health = get(&app, "/health", None).await;
    assert_eq!(
        (health.status.as_u16(), health.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = get(&app, "/ready", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.body,
        json!({"status": "ok", "checks": {"database": "ok"}})
    );
}

#[actix_web::test]
async fn documentation_is_served_without_the_network() {
    let app = app!();
    let spec = get(&app, "/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"], "3.1.0");

    let redirect = get(&app, "/docs", None).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/docs/"));
    let swagger = get(&app, "/docs/", None).await;
    assert_eq!(swagger.status, 200);
    let html = String::from_utf8(swagger.raw.clone()).unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Its assets come from the binary, not a CDN.
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let reply = get(&app, asset, None).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(reply.raw.len() > 100, "{asset}");
    }
    let initializer =
        String::from_utf8(get(&app, "/docs/swagger-initializer.js", None).await.raw).unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");

    let redoc = get(&app, "/redoc", None).await;
    assert_eq!(redoc.status, 200);
    let html = String::from_utf8(redoc.raw).unwrap();
    assert!(html.contains(r#"spec-url="/openapi.json""#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "ReDoc must not load anything remote: {html}"
    );
    let script = get(&app, "/redoc/redoc.standalone.js", None).await;
    assert_eq!(script.status, 200);
    assert!(
        script.raw.len() > 500_000,
        "the standalone bundle is served"
    );
    assert!(
        script
            .header("content-type")
            .unwrap()
            .starts_with("application/javascript")
    );
}
