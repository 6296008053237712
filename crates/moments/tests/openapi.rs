//! The OpenAPI document: a snapshot keeps it from drifting silently (docs/openapi.json is the
//! published copy), and every documented operation exists in the router.

mod common;

use actix_web::test as actix_test;
use common::*;
use utoipa::OpenApi as _;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn document_matches_the_snapshot() {
    let current = moments_http::ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &current).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        stored == current,
        "the OpenAPI document changed; review the change and run `UPDATE_SNAPSHOTS=1 cargo test -p moments --test openapi` \
         (or `just snapshots`) to accept it"
    );
}

#[test]
fn document_is_openapi_3_1_with_bearer_security() {
    let doc = serde_json::to_value(moments_http::ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/api/v1/auth/me"]["get"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    for schema in [
        "Problem",
        "FieldError",
        "TokenPairResponse",
        "UserResponse",
        "MeResponse",
        "RegisterRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

#[actix_web::test]
async fn every_documented_operation_is_routed() {
    let t = sqlite_app().await.unwrap();
    let app = actix_test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let doc = serde_json::to_value(moments_http::ApiDoc::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 8, "{paths:?}");
    for (path, item) in paths {
        let concrete = path.replace("{code}", "not_found");
        for method in item.as_object().unwrap().keys() {
            let method =
                actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = send(
                &app,
                actix_test::TestRequest::default()
                    .method(method.clone())
                    .uri(&concrete),
            )
            .await;
            assert!(
                reply.status != 405
                    && !(reply.status == 404
                        && reply.body["detail"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("no resource")),
                "{method} {path} is documented but not routed: {}",
                reply.status
            );
        }
    }
}
