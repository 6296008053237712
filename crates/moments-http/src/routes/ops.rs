//! Operations: liveness, readiness and the problem type descriptions.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::problem::{self, Problem, ProblemType};
use crate::routes::endpoint;

/// How long readiness waits for each dependency: short enough to answer within 2 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness and the state of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ok`, or `degraded` when an optional dependency is down.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each dependency: `ok` or `down`.
    #[schema(example = json!({"database": "ok", "redis": "ok"}))]
    pub checks: BTreeMap<&'static str, &'static str>,
}

/// A problem type's description.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDescription {
    /// The type URI.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The error code.
    pub error_code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// Short summary.
    pub title: &'static str,
    /// What it means and what to do.
    pub description: &'static str,
}

/// Liveness: 200 while the process can answer.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses((status = 200, description = "The process is alive", body = HealthResponse)),
    security(()))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

/// Readiness: 503 problem+json when a required dependency (the database) does not answer;
/// otherwise 200, `degraded` when an optional one (Redis) is down and the instance serves on
/// its in-process fallback.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "Ready to serve", body = ReadyResponse),
        (status = 503, description = "A required dependency is down", body = Problem, content_type = "application/problem+json"),
    ),
    security(()))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let checks = join_all(state.probes.iter().map(|probe| async move {
        let healthy = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await,
            Ok(Ok(()))
        );
        (probe.name(), probe.required(), healthy)
    }))
    .await;
    let down_required: Vec<&str> = checks
        .iter()
        .filter(|(_, required, ok)| *required && !ok)
        .map(|(name, _, _)| *name)
        .collect();
    if !down_required.is_empty() {
        return Err(ApiError::new(
            &problem::SERVICE_UNAVAILABLE,
            format!("not ready: {} not answering", down_required.join(", ")),
        ));
    }
    let degraded = checks.iter().any(|(_, _, ok)| !ok);
    let checks = checks
        .into_iter()
        .map(|(name, _, ok)| (name, if ok { "ok" } else { "down" }))
        .collect();
    Ok(HttpResponse::Ok().json(ReadyResponse {
        status: if degraded { "degraded" } else { "ok" },
        checks,
    }))
}

/// Describes a problem type (`type` of every error body points here).
#[utoipa::path(get, path = "/problems/{code}", tag = "operations", operation_id = "get_problem",
    params(("code" = String, Path, description = "An `error_code`", example = "validation_failed")),
    responses(
        (status = 200, description = "The problem type", body = ProblemDescription),
        (status = 404, description = "No such problem type", body = Problem, content_type = "application/problem+json"),
    ),
    security(()))]
pub async fn describe_problem(code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let kind = ProblemType::by_code(&code)
        .ok_or_else(|| ApiError::new(&problem::NOT_FOUND, format!("no problem type {code:?}")))?;
    Ok(HttpResponse::Ok().json(ProblemDescription {
        type_uri: kind.type_uri(),
        error_code: kind.code,
        status: kind.status.as_u16(),
        title: kind.title,
        description: kind.description,
    }))
}

/// The public keys that verify access tokens (RFC 7517 JWK Set); `keys` is empty when tokens
/// are signed with a shared secret (HS256).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", operation_id = "get_jwks",
    responses((status = 200, description = "The JWK Set", content_type = "application/json",
        body = Object, example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "…", "kid": "…", "use": "sig", "alg": "EdDSA"}]}))),
    security(()))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            actix_web::http::header::CACHE_CONTROL,
            "public, max-age=300",
        ))
        .body(state.accounts.jwks_json())
}

/// Registers the operations routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/health").route(web::get().to(health)))
        .service(endpoint("/ready").route(web::get().to(ready)))
        .service(endpoint("/problems/{code}").route(web::get().to(describe_problem)))
        .service(endpoint("/.well-known/jwks.json").route(web::get().to(jwks)));
}
