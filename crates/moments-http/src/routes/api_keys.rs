//! `/api-keys`: the caller's API keys.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use moments_domain::api_key::{
    ApiKey, ApiKeyName, ApiKeyRequest, CreateApiKeyError, RevokeApiKeyError,
};
use moments_domain::ids::ApiKeyId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated};
use crate::problem::{self, Problem};
use crate::routes::endpoint;
use crate::routes::roles::check_permissions;
use crate::validation::Fields;

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// What the key is for (1 to 100 characters).
    #[schema(example = "CI deploys")]
    pub name: String,
    /// Permissions from the catalogue, each held by you. At each use the key may do only what
    /// both its scopes and your permissions at that moment allow.
    #[schema(example = json!(["posts:write"]))]
    pub scopes: Vec<String>,
    /// When the key stops working (RFC 3339, in the future); absent or null: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    /// The key's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The key's first characters, to recognise it (not a secret, not enough to use it).
    #[schema(example = "mk_Yb3kQ9xW2mLp")]
    pub prefix: String,
    /// What it may do.
    #[schema(example = json!(["posts:write"]))]
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; null: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (recorded at most once a minute); null: never.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyResponse {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.as_uuid(),
            name: key.name,
            prefix: key.prefix,
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A key just created, with the secret: shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    /// The key record.
    #[serde(flatten)]
    pub key_record: ApiKeyResponse,
    /// The key itself: send it as `X-API-Key`. Store it now; it cannot be shown again.
    #[schema(example = "mk_Yb3kQ9xW2mLpR7tVc0aN4sD8fG1hJ5kL6zX9qW3eR2t")]
    pub key: String,
}

/// The caller's keys (all of them: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    /// Keys that are not revoked (expired ones included), newest first.
    pub items: Vec<ApiKeyResponse>,
    /// Always null.
    pub next_cursor: Option<String>,
}

fn key_not_found() -> ApiError {
    ApiError::new(&problem::NOT_FOUND, "no such API key")
}

/// Create an API key with some of your permissions. The response holds the key once.
#[utoipa::path(
    post, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "create_api_key",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The key, with its secret (shown only now)", body = CreatedApiKeyResponse),
        (status = 403, description = "A scope you do not hold", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create_api_key(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let name = fields.check("name", ApiKeyName::parse(&body.name));
    let scopes = check_permissions(&mut fields, "scopes", &body.scopes);
    fields.finish()?;
    let Some(name) = name else {
        return Err(ApiError::internal(&"validation passed without values"));
    };
    let request = ApiKeyRequest {
        name,
        scopes,
        expires_at: body.expires_at,
    };
    match state.accounts.create_api_key(&actor, request).await {
        Ok(created) => Ok(HttpResponse::Created().json(CreatedApiKeyResponse {
            key: created.secret.expose().to_owned(),
            key_record: ApiKeyResponse::from(created.key),
        })),
        Err(CreateApiKeyError::ScopeNotHeld(scope)) => Err(ApiError::new(
            &problem::FORBIDDEN,
            format!("you do not hold {scope}, so a key of yours cannot have it"),
        )),
        Err(CreateApiKeyError::UnknownScope(scope)) => Err(ApiError::field(
            "scopes",
            "unknown_permission",
            format!("{scope} is not in the catalogue"),
        )),
        Err(CreateApiKeyError::ExpiryInPast) => Err(ApiError::field(
            "expires_at",
            "in_past",
            "must be in the future",
        )),
        Err(CreateApiKeyError::NeedsSession) => Err(ApiError::new(
            &problem::FORBIDDEN,
            "API keys are created with an access token, not with another key",
        )),
        Err(CreateApiKeyError::Infra(e)) => Err(e.into()),
    }
}

/// Your API keys (never their secrets).
#[utoipa::path(
    get, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    responses((status = 200, description = "Your keys", body = ApiKeyPage)),
    security(("bearer" = [])),
)]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let items = state
        .accounts
        .api_keys(&actor)
        .await?
        .into_iter()
        .map(ApiKeyResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(ApiKeyPage {
        items,
        next_cursor: None,
    }))
}

/// Revoke one of your API keys. It stops working at once, on every instance.
#[utoipa::path(
    delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "The key is revoked"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&id)
        .map(ApiKeyId::from_uuid)
        .map_err(|_| key_not_found())?;
    match state.accounts.revoke_api_key(&actor, id).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(RevokeApiKeyError::NotFound) => Err(key_not_found()),
        Err(RevokeApiKeyError::Infra(e)) => Err(e.into()),
    }
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/api-keys")
            .route(web::post().to(create_api_key))
            .route(web::get().to(list_api_keys)),
    )
    .service(endpoint("/api-keys/{id}").route(web::delete().to(revoke_api_key)));
}
