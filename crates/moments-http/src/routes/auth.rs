//! `/auth`: registration, login, refresh, logout and the current user.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use moments_domain::account::{ChangePasswordError, Registration, RevokeSessionError};
use moments_domain::ids::SessionId;
use moments_domain::session::TokenPair;
use moments_domain::user::{Me, User};
use moments_domain::value::{Email, Password, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, Caller, client_info};
use crate::problem::{self, Problem};
use crate::routes::endpoint;
use crate::validation::Fields;

/// `Debug` for request and response bodies holding secrets: the secret fields print as
/// `[redacted]`.
macro_rules! redacted_debug {
    ($type:ident { $($field:ident),* } hides { $($secret:ident),* }) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &"[redacted]"))*
                    .finish()
            }
        }
    };
}

redacted_debug!(RegisterRequest { username, email } hides { password });
redacted_debug!(LoginRequest { login } hides { password });
redacted_debug!(RefreshRequest {} hides { refresh_token });
redacted_debug!(TokenPairResponse { token_type, expires_in, refresh_expires_in } hides { access_token, refresh_token });

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3 to 32 characters of `[a-z0-9_]` after NFKC normalisation and lowercasing.
    #[schema(example = "alice")]
    pub username: String,
    /// E-mail address; unique, compared case-insensitively.
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// 12 to 128 characters, not one of the most common passwords.
    #[schema(example = "correct horse battery staple", format = Password)]
    pub password: String,
}

impl RegisterRequest {
    fn parse(&self) -> Result<Registration, ApiError> {
        let mut fields = Fields::default();
        let username = fields.check("username", Username::parse(&self.username));
        let email = fields.check("email", Email::parse(&self.email));
        let password = fields.check("password", Password::parse(&self.password));
        fields.finish()?;
        match (username, email, password) {
            (Some(username), Some(email), Some(password)) => Ok(Registration {
                username,
                email,
                password,
            }),
            _ => Err(ApiError::internal(&"validation passed without values")),
        }
    }
}

/// A user account, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// The account's id (UUIDv7).
    pub id: Uuid,
    /// Normalised username.
    pub username: String,
    /// E-mail address as entered; `null` for an account made through a provider that gave
    /// none (X never does).
    pub email: Option<String>,
    /// Name to show instead of the username, if set.
    pub display_name: Option<String>,
    /// Whether the address has been verified.
    pub email_verified: bool,
    /// Whether the account is disabled (it cannot sign in).
    pub disabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.as_uuid(),
            username: user.username.as_str().to_owned(),
            email: user.email.as_ref().map(|e| e.as_str().to_owned()),
            display_name: user.display_name.clone(),
            email_verified: user.email_verified,
            disabled: user.disabled,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// The signed-in user: the account plus roles, permissions and sign-in methods.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The account.
    #[serde(flatten)]
    pub user: UserResponse,
    /// Roles held.
    #[schema(example = json!(["user"]))]
    pub roles: Vec<String>,
    /// Permissions granted by those roles (`resource:action`).
    #[schema(example = json!(["posts:write"]))]
    pub permissions: Vec<String>,
    /// Whether the account can sign in with a password.
    pub has_password: bool,
    /// Linked identity providers.
    pub providers: Vec<String>,
}

impl From<Me> for MeResponse {
    fn from(me: Me) -> Self {
        Self {
            user: UserResponse::from(&me.user),
            roles: me.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            permissions: me
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            has_password: me.has_password,
            providers: me.providers,
        }
    }
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or e-mail address.
    #[schema(example = "alice")]
    pub login: String,
    /// The password.
    #[schema(example = "correct horse battery staple", format = Password)]
    pub password: String,
}

/// A refresh token to exchange or revoke.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last token pair.
    pub refresh_token: String,
}

/// A new access token and refresh token.
#[derive(Serialize, ToSchema)]
pub struct TokenPairResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque token for `POST /auth/refresh`; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Seconds until the refresh token expires.
    #[schema(example = 604800)]
    pub refresh_expires_in: i64,
}

/// The 200 answer of every sign-in: the token pair, never cached.
pub(crate) fn token_pair(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(TokenPairResponse {
            access_token: pair.access_token.expose().to_owned(),
            refresh_token: pair.refresh_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_expires_in: pair.refresh_expires_in,
        })
}

/// Create an account.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth", operation_id = "register",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account was created with the `user` role", body = UserResponse),
        (status = 409, description = "`username_taken` or `email_taken`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn register(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let registration = body.parse()?;
    let user = state.accounts.register(registration).await?;
    Ok(HttpResponse::Created().json(UserResponse::from(&user)))
}

/// Sign in with a username or e-mail address and a password.
///
/// An unknown account and a wrong password get the same answer in the same time. A disabled
/// account is reported only after the right password.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: a new session", body = TokenPairResponse),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.required("login", &body.login);
    fields.required("password", &body.password);
    let password = fields.check("password", Password::for_verification(&body.password));
    fields.finish()?;
    let Some(password) = password else {
        return Err(ApiError::internal(&"validation passed without a password"));
    };
    let pair = state
        .accounts
        .login(body.login.trim(), &password, client_info(&req))
        .await?;
    Ok(token_pair(pair))
}

/// Exchange a refresh token for a new token pair.
///
/// The presented token stops working. Presenting an already exchanged token again revokes the
/// whole session (`refresh_token_reused`).
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth", operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPairResponse),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.required("refresh_token", &body.refresh_token);
    fields.finish()?;
    let pair = state
        .accounts
        .refresh(&body.refresh_token, &client_info(&req))
        .await?;
    Ok(token_pair(pair))
}

/// Sign out: revoke the session the refresh token belongs to.
///
/// Answers 204 also for an unknown or already revoked token (RFC 7009): either way the token
/// no longer works.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth", operation_id = "logout",
    request_body = RefreshRequest,
    responses((status = 204, description = "The session is revoked")),
    security(()),
)]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.required("refresh_token", &body.refresh_token);
    fields.finish()?;
    state
        .accounts
        .logout(&body.refresh_token, &client_info(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in user, with roles, permissions and sign-in methods.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth", operation_id = "get_me",
    responses((status = 200, description = "The caller's account", body = MeResponse)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn me(
    state: web::Data<AppState>,
    Caller(actor): Caller,
) -> Result<HttpResponse, ApiError> {
    let me = state.accounts.current_user(&actor).await?;
    Ok(HttpResponse::Ok().json(MeResponse::from(me)))
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session's id.
    pub id: Uuid,
    /// When the user signed in.
    pub created_at: DateTime<Utc>,
    /// When the session was last used (refreshed, or an access token used; recorded at most
    /// once a minute).
    pub last_used_at: DateTime<Utc>,
    /// The `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// The client address at sign-in.
    pub ip: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

/// A page of sessions (all of them: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// The sessions, most recently used first.
    pub items: Vec<SessionResponse>,
    /// Always null: the list is never split.
    pub next_cursor: Option<String>,
}

/// The current and the new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(format = Password)]
    pub current_password: String,
    /// The new password: 12 to 128 characters, not a common one.
    #[schema(format = Password)]
    pub new_password: String,
}

redacted_debug!(ChangePasswordRequest {} hides { current_password, new_password });

/// The caller's live sessions.
#[utoipa::path(
    get, path = "/api/v1/auth/sessions", tag = "auth", operation_id = "list_sessions",
    responses((status = 200, description = "Live sessions, most recently used first", body = SessionPage)),
    security(("bearer" = [])),
)]
pub async fn list_sessions(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let items = state
        .accounts
        .sessions(&actor)
        .await?
        .into_iter()
        .map(|view| SessionResponse {
            id: view.session.id.as_uuid(),
            created_at: view.session.created_at,
            last_used_at: view.session.last_used_at,
            user_agent: view.session.client.user_agent,
            ip: view.session.client.ip,
            current: view.current,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SessionPage {
        items,
        next_cursor: None,
    }))
}

/// Revoke one of the caller's sessions: its refresh token stops working at once and its access
/// tokens within seconds, on every instance.
#[utoipa::path(
    delete, path = "/api/v1/auth/sessions/{id}", tag = "auth", operation_id = "revoke_session",
    params(("id" = Uuid, Path, description = "A session id from the sessions list")),
    responses(
        (status = 204, description = "The session is revoked"),
        (status = 404, description = "No such session among the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_session(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, "no such session");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match state
        .accounts
        .revoke_own_session(&actor, SessionId::from_uuid(id))
        .await
    {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(RevokeSessionError::NotFound) => Err(not_found()),
        Err(RevokeSessionError::Infra(e)) => Err(e.into()),
    }
}

/// Sign out everywhere: revoke every session of the caller, this one included.
#[utoipa::path(
    post, path = "/api/v1/auth/logout-all", tag = "auth", operation_id = "logout_all",
    responses((status = 204, description = "Every session is revoked")),
    security(("bearer" = [])),
)]
pub async fn logout_all(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<HttpResponse, ApiError> {
    state.accounts.logout_all(&actor).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Change the password. The caller's other sessions are revoked; this one stays signed in.
#[utoipa::path(
    post, path = "/api/v1/auth/password", tag = "auth", operation_id = "change_password",
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "The password is changed")),
    security(("bearer" = [])),
)]
pub async fn change_password(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.required("current_password", &body.current_password);
    let current = fields.check(
        "current_password",
        Password::for_verification(&body.current_password),
    );
    let new = fields.check("new_password", Password::parse(&body.new_password));
    fields.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(ApiError::internal(&"validation passed without values"));
    };
    match state.accounts.change_password(&actor, &current, &new).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(ChangePasswordError::WrongCurrentPassword) => Err(ApiError::field(
            "current_password",
            "incorrect",
            "is not the current password",
        )),
        Err(ChangePasswordError::NotFound) => Err(ApiError::from(
            moments_domain::account::CurrentUserError::NotFound,
        )),
        Err(ChangePasswordError::Infra(e)) => Err(e.into()),
    }
}

/// Registers the `/auth` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/auth/register").route(web::post().to(register)))
        .service(endpoint("/auth/login").route(web::post().to(login)))
        .service(endpoint("/auth/refresh").route(web::post().to(refresh)))
        .service(endpoint("/auth/logout").route(web::post().to(logout)))
        .service(endpoint("/auth/logout-all").route(web::post().to(logout_all)))
        .service(endpoint("/auth/me").route(web::get().to(me)))
        .service(endpoint("/auth/password").route(web::post().to(change_password)))
        .service(endpoint("/auth/sessions").route(web::get().to(list_sessions)))
        .service(endpoint("/auth/sessions/{id}").route(web::delete().to(revoke_session)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_bodies_do_not_print() {
        let login = LoginRequest {
            login: "alice".into(),
            password: "hunter2hunter2".into(),
        };
        let register = RegisterRequest {
            username: "alice".into(),
            email: "a@example.com".into(),
            password: "hunter2hunter2".into(),
        };
        let pair = TokenPairResponse {
            access_token: "eyJaccess".into(),
            refresh_token: "refreshsecret".into(),
            token_type: "Bearer",
            expires_in: 900,
            refresh_expires_in: 60,
        };
        let printed = format!("{login:?} {register:?} {pair:?}");
        for secret in ["hunter2", "eyJaccess", "refreshsecret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("alice"));
    }
}
