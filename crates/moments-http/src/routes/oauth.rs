//! Sign-in through identity providers and account linking: `/auth/oauth/...`.
//!
//! The browser is bound to its authorization attempt by a cookie holding a random secret (the
//! server keeps only a digest of it with the attempt): a provider response replayed into
//! another browser, or a victim's browser fed an attacker's response, fails the check.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use moments_domain::oauth::{
    CallbackError, CallbackFailure, CallbackOutcome, CallbackParams, ExchangeError, StartError,
    Started, UnlinkError, with_param,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{TokenPairResponse, token_pair};
use super::endpoint;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, client_info};
use crate::problem::{self, FieldError, Problem};

/// The cookie that binds an authorization attempt to the browser that started it.
pub const BINDING_COOKIE: &str = "moments_oauth";

/// A configured provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderResponse {
    /// The name in paths (`/auth/oauth/{name}/start`).
    #[schema(example = "google")]
    pub name: String,
    /// What to show on the sign-in button.
    #[schema(example = "Google")]
    pub display_name: String,
}

/// The configured providers (all of them: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderPage {
    /// Every configured provider, in configuration order.
    pub items: Vec<ProviderResponse>,
    /// Always null.
    pub next_cursor: Option<String>,
}

/// Where the browser goes after the sign-in.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnTo {
    /// A URL from `MOMENTS_OAUTH_RETURN_TO_ALLOWLIST`, matched exactly. The callback redirects
    /// there with a one-time `code` (or `error`). Without it the callback answers with the
    /// token pair itself.
    pub return_to: Option<String>,
}

/// Where to send the browser to link a provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationUrlResponse {
    /// The provider's authorization URL.
    pub authorization_url: String,
}

/// The provider's authorization response (query of a GET, form of a `form_post`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The `state` sent with the authorization request.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// An error instead of a code (`access_denied`, ...).
    pub error: Option<String>,
    /// The provider's explanation of `error`.
    pub error_description: Option<String>,
    /// The issuer of the response (RFC 9207).
    pub iss: Option<String>,
}

/// A provider linked to the signed-in account (a link flow's callback without `return_to`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedResponse {
    /// The provider now linked.
    #[schema(example = "github")]
    pub linked: String,
}

/// What a callback without `return_to` answers: the token pair of a sign-in, or the provider
/// of a link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackResponse {
    /// A sign-in.
    SignedIn(TokenPairResponse),
    /// A link.
    Linked(LinkedResponse),
}

/// The one-time code from the callback redirect.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The `code` parameter of the redirect to `return_to`.
    pub code: String,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeRequest { code: [redacted] }")
    }
}

fn binding(req: &HttpRequest) -> Option<String> {
    req.cookie(BINDING_COOKIE).map(|c| c.value().to_owned())
}

/// The binding cookie for a new secret: HTTP-only, for the API paths, for the attempt's
/// lifetime. Over HTTPS it is `SameSite=None; Secure` so a provider's `form_post` (a
/// cross-site POST) carries it; over plain HTTP (development) `SameSite=Lax`.
fn binding_cookie(state: &AppState, secret: &str) -> Cookie<'static> {
    let secure = state.public_url.starts_with("https://");
    Cookie::build(BINDING_COOKIE, secret.to_owned())
        .path("/api")
        .http_only(true)
        .secure(secure)
        .same_site(if secure {
            SameSite::None
        } else {
            SameSite::Lax
        })
        .max_age(time::Duration::minutes(10))
        .finish()
}

fn with_binding(
    state: &AppState,
    mut response: actix_web::HttpResponseBuilder,
    started: &Started,
) -> actix_web::HttpResponseBuilder {
    if let Some(secret) = &started.new_binding {
        response.cookie(binding_cookie(state, secret.expose()));
    }
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response
}

fn query<T: for<'de> Deserialize<'de> + Default>(req: &HttpRequest) -> T {
    serde_urlencoded_lenient(req.query_string())
}

/// Parses a query or form leniently: providers add parameters of their own (`scope`,
/// `session_state`, `authuser`, ...), which are ignored; an unparsable one reads as absent.
fn serde_urlencoded_lenient<T: for<'de> Deserialize<'de> + Default>(raw: &str) -> T {
    let pairs: serde_json::Map<String, serde_json::Value> =
        url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    serde_json::from_value(serde_json::Value::Object(pairs)).unwrap_or_default()
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::UnknownProvider => {
                ApiError::new(&problem::NOT_FOUND, "no such identity provider")
            }
            StartError::ReturnToNotAllowed => ApiError::validation(vec![FieldError {
                field: "return_to".into(),
                code: "not_allowed".into(),
                message: "is not on the server's list of return URLs".into(),
            }]),
            StartError::Provider(e) => {
                tracing::warn!(error = %e, "identity provider unavailable");
                ApiError::new(
                    &problem::PROVIDER_UNAVAILABLE,
                    "the identity provider is not answering; retry later",
                )
            }
            StartError::Infra(e) => e.into(),
        }
    }
}

impl From<CallbackError> for ApiError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::UnknownProvider => {
                ApiError::new(&problem::NOT_FOUND, "no such identity provider")
            }
            CallbackError::InvalidState => ApiError::new(
                &problem::INVALID_OAUTH_STATE,
                "this response does not belong to a sign-in started in this browser; start again",
            ),
            CallbackError::Denied(error) => {
                tracing::info!(%error, "identity provider denied the authorization");
                ApiError::new(
                    &problem::OAUTH_FAILED,
                    "the identity provider refused the sign-in",
                )
            }
            CallbackError::Rejected(reason) => {
                tracing::warn!(%reason, "identity provider response rejected");
                ApiError::new(
                    &problem::OAUTH_FAILED,
                    "the identity provider's answer failed validation",
                )
            }
            CallbackError::Unavailable(e) => {
                tracing::warn!(error = %e, "identity provider unavailable");
                ApiError::new(
                    &problem::PROVIDER_UNAVAILABLE,
                    "the identity provider is not answering; retry later",
                )
            }
            CallbackError::AccountDisabled => {
                ApiError::new(&problem::ACCOUNT_DISABLED, "this account has been disabled")
            }
            CallbackError::EmailTaken => ApiError::new(
                &problem::EMAIL_TAKEN,
                "an account already uses this e-mail address: sign in to it and link the provider",
            ),
            CallbackError::IdentityTaken => ApiError::new(
                &problem::CONFLICT,
                "this identity is linked to another account",
            ),
            CallbackError::ProviderLinked => ApiError::new(
                &problem::CONFLICT,
                "another identity of this provider is linked to the account: unlink it first",
            ),
            CallbackError::AccountGone => ApiError::new(
                &problem::CONFLICT,
                "the account that started the link is disabled or gone",
            ),
            CallbackError::Infra(e) => e.into(),
        }
    }
}

/// List the configured identity providers.
#[utoipa::path(
    get, path = "/api/v1/auth/oauth/providers", tag = "auth", operation_id = "list_oauth_providers",
    responses((status = 200, description = "The configured providers", body = ProviderPage)),
    security(()),
)]
pub async fn list_providers(state: web::Data<AppState>) -> HttpResponse {
    let items = state
        .oauth
        .providers()
        .into_iter()
        .map(|p| ProviderResponse {
            name: p.name,
            display_name: p.display_name,
        })
        .collect();
    HttpResponse::Ok().json(ProviderPage {
        items,
        next_cursor: None,
    })
}

/// Start signing in through a provider: redirects the browser to it.
///
/// A single-use `state`, a PKCE S256 verifier and (OpenID Connect) a `nonce` are made and kept
/// server-side for ten minutes, bound to this browser by an HTTP-only cookie.
#[utoipa::path(
    get, path = "/api/v1/auth/oauth/{provider}/start", tag = "auth", operation_id = "start_oauth",
    params(("provider" = String, Path, description = "A configured provider"), ReturnTo),
    responses(
        (status = 302, description = "To the provider's authorization endpoint", headers(("Location" = String))),
        (status = 404, description = "`not_found`: no such provider", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `return_to` is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params: ReturnTo = query(&req);
    let started = state
        .oauth
        .start(
            &provider,
            params.return_to.as_deref(),
            binding(&req).as_deref(),
        )
        .await?;
    Ok(with_binding(&state, HttpResponse::Found(), &started)
        .insert_header((header::LOCATION, started.authorization_url.clone()))
        .finish())
}

/// Start linking a provider to the signed-in account: the URL to send the browser to.
///
/// Call it from the browser that will visit the URL (it sets the binding cookie; cross-origin
/// callers send credentials).
#[utoipa::path(
    post, path = "/api/v1/auth/oauth/{provider}/link/start", tag = "auth", operation_id = "start_oauth_link",
    params(("provider" = String, Path, description = "A configured provider"), ReturnTo),
    responses(
        (status = 200, description = "Where to send the browser", body = AuthorizationUrlResponse),
        (status = 404, description = "`not_found`: no such provider", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `return_to` is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn start_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(actor): Authenticated,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params: ReturnTo = query(&req);
    let started = state
        .oauth
        .start_link(
            &actor,
            &provider,
            params.return_to.as_deref(),
            binding(&req).as_deref(),
        )
        .await?;
    Ok(
        with_binding(&state, HttpResponse::Ok(), &started).json(AuthorizationUrlResponse {
            authorization_url: started.authorization_url.clone(),
        }),
    )
}

async fn complete(
    state: &AppState,
    req: &HttpRequest,
    provider: &str,
    params: CallbackQuery,
) -> Result<HttpResponse, ApiError> {
    let params = CallbackParams {
        state: params.state,
        code: params.code,
        error: params.error,
        iss: params.iss,
    };
    let outcome = state
        .oauth
        .callback(provider, params, binding(req).as_deref(), client_info(req))
        .await;
    let redirect = |to: &str| {
        HttpResponse::Found()
            .insert_header((header::LOCATION, to.to_owned()))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header(("Referrer-Policy", HeaderValue::from_static("no-referrer")))
            .finish()
    };
    match outcome {
        Ok(CallbackOutcome::SignedIn(pair)) => Ok(token_pair(pair)),
        Ok(CallbackOutcome::Redirect(to)) => Ok(redirect(&to)),
        Ok(CallbackOutcome::Linked {
            redirect: Some(to), ..
        }) => Ok(redirect(&to)),
        Ok(CallbackOutcome::Linked {
            provider,
            redirect: None,
        }) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .json(LinkedResponse {
                linked: provider.as_str().to_owned(),
            })),
        Err(CallbackFailure {
            return_to: Some(to),
            error,
        }) => {
            // The browser goes back to the app with the problem's code.
            let code = ApiError::from(error).problem.code;
            tracing::info!(error_code = code, "OAuth callback failed");
            Ok(redirect(&with_param(&to, "error", code)))
        }
        Err(CallbackFailure {
            return_to: None,
            error,
        }) => Err(error.into()),
    }
}

/// The provider's redirect back (query response mode).
///
/// Nothing is created unless every check passes. With the attempt's `return_to`, redirects
/// there with a one-time `code` to exchange (or `error=<error_code>` on failure); without,
/// answers with the token pair (or, for a link, the linked provider).
#[utoipa::path(
    get, path = "/api/v1/auth/oauth/{provider}/callback", tag = "auth", operation_id = "oauth_callback",
    params(("provider" = String, Path, description = "A configured provider"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in (token pair) or linked", body = CallbackResponse),
        (status = 302, description = "To `return_to` with `code` (or `error`, or `linked`)", headers(("Location" = String))),
        (status = 400, description = "`invalid_oauth_state`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`oauth_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such provider", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` (a new account would take another's address) or `conflict` (a link the account cannot take)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params: CallbackQuery = query(&req);
    complete(&state, &req, &provider, params).await
}

/// The provider's redirect back as a `form_post` (an auto-submitted form).
#[utoipa::path(
    post, path = "/api/v1/auth/oauth/{provider}/callback", tag = "auth", operation_id = "oauth_callback_form_post",
    params(("provider" = String, Path, description = "A configured provider")),
    request_body(content = inline(CallbackForm), content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in (token pair) or linked", body = CallbackResponse),
        (status = 302, description = "To `return_to` with `code` (or `error`, or `linked`)", headers(("Location" = String))),
        (status = 400, description = "`invalid_oauth_state`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`oauth_failed`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn callback_form_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    provider: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(ApiError::new(
            &problem::UNSUPPORTED_MEDIA_TYPE,
            "a form_post callback is application/x-www-form-urlencoded",
        ));
    }
    let params: CallbackQuery =
        serde_urlencoded_lenient(std::str::from_utf8(&body).unwrap_or_default());
    complete(&state, &req, &provider, params).await
}

/// The form of a `form_post` authorization response (the same fields as the query).
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "documents the form; parsed leniently as CallbackQuery"
)]
pub struct CallbackForm {
    /// The `state` sent with the authorization request.
    state: Option<String>,
    /// The authorization code.
    code: Option<String>,
    /// An error instead of a code.
    error: Option<String>,
    /// The issuer of the response (RFC 9207).
    iss: Option<String>,
}

/// Exchange the one-time code of a sign-in redirect for a token pair (a new session).
///
/// Single use; valid for one minute.
#[utoipa::path(
    post, path = "/api/v1/auth/oauth/exchange", tag = "auth", operation_id = "exchange_oauth_code",
    request_body = ExchangeRequest,
    responses(
        (status = 200, description = "Signed in: a new session", body = TokenPairResponse),
        (status = 400, description = "`invalid_oauth_code`: unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn exchange(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<ExchangeRequest>,
) -> Result<HttpResponse, ApiError> {
    match state.oauth.exchange(&body.code, client_info(&req)).await {
        Ok(pair) => Ok(token_pair(pair)),
        Err(ExchangeError::InvalidCode) => Err(ApiError::new(
            &problem::INVALID_OAUTH_CODE,
            "this code is unknown, used or expired; sign in again",
        )),
        Err(ExchangeError::AccountDisabled) => Err(ApiError::new(
            &problem::ACCOUNT_DISABLED,
            "this account has been disabled",
        )),
        Err(ExchangeError::Infra(e)) => Err(e.into()),
    }
}

/// Unlink a provider from the signed-in account.
///
/// Refused with 409 `conflict` when it is the account's last way to sign in (no password and
/// no other provider).
#[utoipa::path(
    delete, path = "/api/v1/auth/oauth/{provider}", tag = "auth", operation_id = "unlink_oauth_provider",
    params(("provider" = String, Path, description = "A linked provider")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "`not_found`: the provider is not linked", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the last way to sign in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn unlink(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match state.oauth.unlink(&actor, &provider).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(UnlinkError::NotLinked) => Err(ApiError::new(
            &problem::NOT_FOUND,
            "this provider is not linked to the account",
        )),
        Err(UnlinkError::LastMethod) => Err(ApiError::new(
            &problem::CONFLICT,
            "this is the account's last way to sign in: set a password or link another provider first",
        )),
        Err(UnlinkError::Infra(e)) => Err(e.into()),
    }
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/auth/oauth/providers").route(web::get().to(list_providers)))
        .service(endpoint("/auth/oauth/exchange").route(web::post().to(exchange)))
        .service(endpoint("/auth/oauth/{provider}/start").route(web::get().to(start)))
        .service(endpoint("/auth/oauth/{provider}/link/start").route(web::post().to(start_link)))
        .service(
            endpoint("/auth/oauth/{provider}/callback")
                .route(web::get().to(callback))
                .route(web::post().to(callback_form_post)),
        )
        .service(endpoint("/auth/oauth/{provider}").route(web::delete().to(unlink)));
}
