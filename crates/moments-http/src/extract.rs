//! Extractors: JSON bodies with problem+json errors, the authenticated caller, client info.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use moments_domain::account::{Actor, AuthenticateError};
use moments_domain::api_key::ApiKeyAuthError;
use moments_domain::session::ClientInfo;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, key_not_accepted, unauthenticated};
use crate::problem::{self, FieldError};

/// Largest accepted JSON body.
pub const JSON_LIMIT: usize = 64 * 1024;

/// A JSON request body. Unlike `web::Json`, every failure is a precise problem: 415 for a
/// missing or non-JSON content type, 413 past [`JSON_LIMIT`], 400 for malformed JSON, and 422
/// naming the field for unknown, missing or mistyped fields.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Turns a serde error into a field error: serde_json names unknown and missing fields in its
/// message, and serde_path_to_error gives the path of the value that did not fit (for a missing
/// field, the path of its parent).
fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let message = error.to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let join = |field: String| {
        if path == "." || path.is_empty() {
            field
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = quoted("unknown field `") {
        // The path already ends at the unknown key.
        let field = if path == "." || path.is_empty() {
            field
        } else {
            path.to_owned()
        };
        return FieldError {
            field,
            code: "unknown_field".into(),
            message: "is not a known field".into(),
        };
    }
    if let Some(field) = quoted("missing field `") {
        return FieldError {
            field: join(field),
            code: "required".into(),
            message: "is required".into(),
        };
    }
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    FieldError {
        field: if path == "." {
            "body".into()
        } else {
            path.to_owned()
        },
        code: "invalid_type".into(),
        message,
    }
}

/// Parses a JSON body (already size-limited) into `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::new(
            &problem::MALFORMED_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::validation(vec![field_error(&path, &inner)])
            }
            _ => malformed(&inner),
        }
    })?;
    // Trailing characters after the value make the whole body malformed.
    de.end().map_err(|e| malformed(&e))?;
    // Every request body of the API is an object; serde would also fill a struct from an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field(
            "body",
            "invalid_type",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(std::future::ready(Err(ApiError::new(
                &problem::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON with Content-Type: application/json",
            ))));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > JSON_LIMIT) {
            return Box::pin(std::future::ready(Err(too_large())));
        }
        let body = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = body.await.map_err(|e| match e.as_error::<PayloadError>() {
                Some(PayloadError::Overflow) => too_large(),
                _ => ApiError::new(
                    &problem::MALFORMED_REQUEST,
                    "the request body could not be read",
                ),
            })?;
            // Chunked bodies declare no length up front.
            if bytes.len() > JSON_LIMIT {
                return Err(too_large());
            }
            parse_json(&bytes).map(ApiJson)
        })
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        &problem::PAYLOAD_TOO_LARGE,
        format!("JSON bodies are limited to {} KiB", JSON_LIMIT / 1024),
    )
}

/// The header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The outcome of authenticating the request's `X-API-Key`, which needs a database look-up and
/// so is done by [`resolve_api_key`] before the handler's extractors run.
#[derive(Debug, Clone)]
struct ResolvedKey(Result<Actor, ApiError>);

/// Middleware: authenticates an `X-API-Key` header (when there is no bearer token, which takes
/// precedence) and leaves the outcome for the extractors, which decide whether the route
/// accepts keys at all. Requests without a key cost nothing.
pub async fn resolve_api_key(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let presented = (!req.headers().contains_key(header::AUTHORIZATION))
        .then(|| req.headers().get(API_KEY_HEADER))
        .flatten()
        .map(|v| v.to_str().map(|s| s.trim().to_owned()));
    if let Some(presented) = presented {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let outcome = match (presented, state) {
            (Ok(key), Some(state)) => state
                .accounts
                .authenticate_key(&key, client_info(req.request()))
                .await
                .map_err(ApiError::from),
            (Err(_), _) => Err(ApiError::from(ApiKeyAuthError::Invalid)),
            (_, None) => Err(ApiError::internal(&"application state missing")),
        };
        req.extensions_mut().insert(ResolvedKey(outcome));
    }
    next.call(req).await
}

/// The caller of a route that takes an access token only (`user` in the API guide).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Actor);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    /// Verifies the token from memory (signature, claims, revocation list), then records the
    /// session's use, which writes at most once a minute per session. A failed write is logged
    /// and does not fail the request. An API key is refused here.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let decision = match bearer(req) {
            Bearer::Missing if req.headers().contains_key(API_KEY_HEADER) => {
                Err(key_not_accepted())
            }
            found => authenticate_bearer(req, found),
        };
        authorized(req, decision)
    }
}

/// The caller of a route that takes an access token or an API key (`either`).
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl From<Authenticated> for Caller {
    fn from(Authenticated(actor): Authenticated) -> Self {
        Self(actor)
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    /// A bearer token if there is one, else the API key the middleware resolved.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        authorized(req, authenticate_either(req))
    }
}

/// The caller of a public route that shows a signed-in caller a little more (their own vote):
/// `None` without credentials. Credentials that are sent must be valid (401 otherwise), so a
/// client learns that its token expired rather than silently seeing less.
#[derive(Debug, Clone)]
pub struct Viewer(pub Option<Actor>);

impl From<Authenticated> for Viewer {
    fn from(Authenticated(actor): Authenticated) -> Self {
        Self(Some(actor))
    }
}

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let headers = req.headers();
        if !headers.contains_key(header::AUTHORIZATION) && !headers.contains_key(API_KEY_HEADER) {
            return Box::pin(std::future::ready(Ok(Self(None))));
        }
        authorized(req, authenticate_either(req))
    }
}

/// Finishes an authorization decided synchronously: a refusal is ready on the first poll, so
/// it wins over the errors of later extractors (a body that fails validation must not answer
/// before "who are you?"); an acceptance then records the session's use.
fn authorized<T: From<Authenticated> + 'static>(
    req: &HttpRequest,
    decision: Result<Authenticated, ApiError>,
) -> Pin<Box<dyn Future<Output = Result<T, ApiError>>>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    Box::pin(async move {
        let authenticated = decision?;
        if let Some(state) = state
            && let Err(e) = state.accounts.touch(&authenticated.0).await
        {
            tracing::warn!(error = %e, "could not record session use");
        }
        Ok(T::from(authenticated))
    })
}

/// What the `Authorization` header holds.
enum Bearer<'a> {
    Missing,
    Malformed,
    Token(&'a str),
}

fn bearer(req: &HttpRequest) -> Bearer<'_> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Bearer::Token(token.trim())
        }
        _ => Bearer::Missing,
    }
}

/// The outcome of verifying the request's bearer token, kept so the rate limiter's look and
/// the extractor's share one verification.
#[derive(Debug, Clone)]
struct BearerOutcome(Result<Authenticated, ApiError>);

fn authenticate_bearer(req: &HttpRequest, found: Bearer<'_>) -> Result<Authenticated, ApiError> {
    if let Some(BearerOutcome(outcome)) = req.extensions().get::<BearerOutcome>() {
        return outcome.clone();
    }
    let outcome = verify_bearer(req, found);
    req.extensions_mut().insert(BearerOutcome(outcome.clone()));
    outcome
}

fn verify_bearer(req: &HttpRequest, found: Bearer<'_>) -> Result<Authenticated, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(&"application state missing"))?;
    match found {
        Bearer::Missing => Err(unauthenticated()),
        Bearer::Malformed => Err(AuthenticateError::Invalid.into()),
        Bearer::Token(token) => Ok(Authenticated(
            state
                .accounts
                .authenticate(token)?
                .with_client(client_info(req)),
        )),
    }
}

/// A bearer token if present, else the key resolved by [`resolve_api_key`].
fn authenticate_either(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    match bearer(req) {
        Bearer::Missing => match req.extensions().get::<ResolvedKey>() {
            Some(ResolvedKey(outcome)) => outcome.clone().map(Authenticated),
            None => Err(unauthenticated()),
        },
        found => authenticate_bearer(req, found),
    }
}

/// The caller the request's credentials name, if they are valid, without recording anything:
/// whom the request counts against for rate limiting.
pub(crate) fn credentials_of(req: &HttpRequest) -> Option<Actor> {
    match bearer(req) {
        Bearer::Missing => req
            .extensions()
            .get::<ResolvedKey>()
            .and_then(|ResolvedKey(outcome)| outcome.as_ref().ok().cloned()),
        Bearer::Malformed => None,
        found => authenticate_bearer(req, found).ok().map(|a| a.0),
    }
}

/// A permission a route requires, as a type, so the requirement is declared in the handler's
/// signature: `Permitted<RolesRead>`.
pub trait RequiredPermission {
    /// `resource:action`.
    const NAME: &'static str;
}

macro_rules! required_permissions {
    ($($(#[$doc:meta])* $ty:ident = $name:literal;)+) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $ty;
            impl RequiredPermission for $ty {
                const NAME: &'static str = $name;
            }
        )+
    };
}

required_permissions! {
    /// `roles:read`.
    RolesRead = "roles:read";
    /// `roles:assign`.
    RolesAssign = "roles:assign";
    /// `roles:write`.
    RolesWrite = "roles:write";
    /// `users:read`.
    UsersRead = "users:read";
    /// `users:write`.
    UsersWrite = "users:write";
    /// `audit:read`.
    AuditRead = "audit:read";
    /// `posts:write`.
    PostsWrite = "posts:write";
}

/// The caller, by access token or API key, who holds the permission `P`; otherwise 401 (no or
/// bad credentials) or 403 `forbidden`. For a key, what it holds is its scopes intersected with
/// what its owner holds now.
#[derive(Debug)]
pub struct Permitted<P>(pub Actor, std::marker::PhantomData<P>);

impl<P> Permitted<P> {
    /// The caller.
    pub fn actor(&self) -> &Actor {
        &self.0
    }
}

impl<P: RequiredPermission + 'static> FromRequest for Permitted<P> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let decision = authenticate_either(req).and_then(|authenticated| {
            if authenticated.0.has_permission(P::NAME) {
                Ok(authenticated)
            } else {
                Err(ApiError::new(
                    &problem::FORBIDDEN,
                    format!("this action needs the permission {}", P::NAME),
                ))
            }
        });
        authorized(req, decision)
    }
}

impl<P> From<Authenticated> for Permitted<P> {
    fn from(Authenticated(actor): Authenticated) -> Self {
        Self(actor, std::marker::PhantomData)
    }
}

/// Where the request came from: the client address (through trusted proxies only, see
/// [`crate::rate_limit::TrustedProxies`]) and the user agent.
pub fn client_info(req: &HttpRequest) -> ClientInfo {
    let ip = crate::rate_limit::client_ip(req).map(|ip| ip.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ClientInfo::new(ip, user_agent)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are only deserialised")]
    struct Body {
        name: String,
        count: u32,
    }

    fn err(json: &str) -> ApiError {
        parse_json::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn well_formed_json_parses() {
        assert!(parse_json::<Body>(br#"{"name": "x", "count": 2}"#).is_ok());
    }

    #[test]
    fn syntax_errors_are_malformed_requests() {
        for bad in ["{", "", "nonsense", r#"{"name": "x", "count": 2} trailing"#] {
            assert_eq!(err(bad).problem.code, "malformed_request", "{bad}");
        }
    }

    #[test]
    fn data_errors_name_the_field() {
        let e = err(r#"{"name": "x", "count": 2, "admin": true}"#);
        assert_eq!(e.problem.code, "validation_failed");
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].code.as_str()),
            ("admin", "unknown_field")
        );
        let e = err(r#"{"name": "x"}"#);
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].code.as_str()),
            ("count", "required")
        );
        let e = err(r#"{"name": "x", "count": "two"}"#);
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].code.as_str()),
            ("count", "invalid_type")
        );
        let e = err(r#"[1, 2]"#);
        assert_eq!(e.errors[0].code, "invalid_type");
        let e = err(r#"["x", 2]"#);
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].code.as_str()),
            ("body", "invalid_type")
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn any_body_is_parsed_or_refused_with_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Err(e) = parse_json::<Body>(&bytes) {
                    prop_assert!(e.problem.status.is_client_error(), "{}", e.problem.code);
                }
            }
        }
    }
}
