//! RFC 9457 problem details: the catalogue of error codes and the response body.

use actix_web::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// One entry of the problem catalogue: a stable code, its status, title and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// The stable `error_code`; the problem's `type` is `/problems/{code}`.
    pub code: &'static str,
    /// HTTP status.
    pub status: StatusCode,
    /// Short, fixed summary.
    pub title: &'static str,
    /// What it means and what a client should do, served at `/problems/{code}`.
    pub description: &'static str,
}

macro_rules! problems {
    ($($ident:ident = ($code:literal, $status:ident, $title:literal, $description:literal);)+) => {
        $(
            #[doc = $description]
            pub const $ident: ProblemType = ProblemType {
                code: $code,
                status: StatusCode::$status,
                title: $title,
                description: $description,
            };
        )+
        /// Every problem type the API returns.
        pub const CATALOGUE: &[ProblemType] = &[$($ident),+];
    };
}

problems! {
    VALIDATION_FAILED = ("validation_failed", UNPROCESSABLE_ENTITY, "Validation failed",
        "The request was well-formed but some fields were invalid; `errors` names each field, a stable code and a message.");
    MALFORMED_REQUEST = ("malformed_request", BAD_REQUEST, "Malformed request",
        "The request body or parameters could not be parsed (for example invalid JSON).");
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
        "The request body has a content type this route does not accept; JSON routes need `Content-Type: application/json`.");
    PAYLOAD_TOO_LARGE = ("payload_too_large", PAYLOAD_TOO_LARGE, "Payload too large",
        "The request body is larger than this route accepts (64 KiB for JSON).");
    NOT_FOUND = ("not_found", NOT_FOUND, "Not found",
        "No resource exists at this path, or it is not visible to the caller.");
    METHOD_NOT_ALLOWED = ("method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "The resource exists but does not support this HTTP method.");
    UNAUTHENTICATED = ("unauthenticated", UNAUTHORIZED, "Authentication required",
        "The route needs credentials: send `Authorization: Bearer <access token>`.");
    INVALID_CREDENTIALS = ("invalid_credentials", UNAUTHORIZED, "Invalid credentials",
        "The login or the password is wrong. The answer is the same whether or not the account exists.");
    TOKEN_EXPIRED = ("token_expired", UNAUTHORIZED, "Token expired",
        "The access token has expired: obtain a new one with the refresh token.");
    INVALID_TOKEN = ("invalid_token", UNAUTHORIZED, "Invalid token",
        "The access token is not valid for this service (bad signature, type, issuer or audience, or revoked).");
    INVALID_REFRESH_TOKEN = ("invalid_refresh_token", UNAUTHORIZED, "Invalid refresh token",
        "The refresh token is unknown, expired or revoked: sign in again.");
    REFRESH_TOKEN_REUSED = ("refresh_token_reused", UNAUTHORIZED, "Refresh token reused",
        "The refresh token had already been exchanged. As a precaution the whole session has been revoked: sign in again.");
    FORBIDDEN = ("forbidden", FORBIDDEN, "Forbidden",
        "The caller is authenticated but lacks the permission this action needs.");
    USERNAME_TAKEN = ("username_taken", CONFLICT, "Username taken",
        "Another account already uses this username.");
    EMAIL_TAKEN = ("email_taken", CONFLICT, "E-mail address taken",
        "Another account already uses this e-mail address (compared case-insensitively).");
    CONFLICT = ("conflict", CONFLICT, "Conflict",
        "The request conflicts with the current state of the resource.");
    RATE_LIMITED = ("rate_limited", TOO_MANY_REQUESTS, "Too many requests",
        "The rate limit for this route class was exceeded; retry after the number of seconds in `Retry-After`.");
    ACCOUNT_DISABLED = ("account_disabled", FORBIDDEN, "Account disabled",
        "The credentials are right but the account has been disabled by an administrator.");
    INVALID_OAUTH_STATE = ("invalid_oauth_state", BAD_REQUEST, "Invalid OAuth state",
        "The provider's response does not belong to a sign-in this browser started here: its `state` is missing, unknown, already used, expired, from another browser or for another provider. Start again.");
    INVALID_OAUTH_CODE = ("invalid_oauth_code", BAD_REQUEST, "Invalid sign-in code",
        "The one-time code from the sign-in redirect is unknown, already used or expired (it lives one minute). Sign in again.");
    OAUTH_FAILED = ("oauth_failed", UNAUTHORIZED, "Sign-in with the provider failed",
        "The identity provider refused the sign-in, or its answer failed validation (signature, issuer, audience, nonce, expiry, subject). Nothing was created. Start again.");
    PROVIDER_UNAVAILABLE = ("provider_unavailable", BAD_GATEWAY, "Identity provider unavailable",
        "The identity provider did not answer in time or answered with an error. Retry later.");
    SERVICE_UNAVAILABLE = ("service_unavailable", SERVICE_UNAVAILABLE, "Service unavailable",
        "A dependency (such as the database) is not answering. Retry later.");
    INTERNAL_ERROR = ("internal_error", INTERNAL_SERVER_ERROR, "Internal error",
        "An unexpected error occurred. It has been logged with the request id; please report it with that id.");
}

impl ProblemType {
    /// Looks a problem up by code.
    pub fn by_code(code: &str) -> Option<&'static ProblemType> {
        CATALOGUE.iter().find(|p| p.code == code)
    }

    /// The problem for a bare status (responses produced outside our handlers).
    pub fn for_status(status: StatusCode) -> &'static ProblemType {
        match status {
            StatusCode::NOT_FOUND => &NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED => &METHOD_NOT_ALLOWED,
            StatusCode::PAYLOAD_TOO_LARGE => &PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => &UNSUPPORTED_MEDIA_TYPE,
            StatusCode::UNAUTHORIZED => &UNAUTHENTICATED,
            StatusCode::FORBIDDEN => &FORBIDDEN,
            StatusCode::CONFLICT => &CONFLICT,
            StatusCode::UNPROCESSABLE_ENTITY => &VALIDATION_FAILED,
            StatusCode::TOO_MANY_REQUESTS => &RATE_LIMITED,
            StatusCode::SERVICE_UNAVAILABLE => &SERVICE_UNAVAILABLE,
            s if s.is_client_error() => &MALFORMED_REQUEST,
            _ => &INTERNAL_ERROR,
        }
    }

    /// The problem's `type` URI, relative to the server.
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.code)
    }
}

/// One invalid field of a 422 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a JSON path for nested fields (`password`, `media_urls[2]`).
    pub field: String,
    /// Stable code: `required`, `too_short`, `too_long`, `invalid_format`, `invalid_characters`,
    /// `too_common`, `unknown_field`, `invalid_type`, …
    pub code: String,
    /// Human explanation.
    pub message: String,
}

/// An RFC 9457 problem (`application/problem+json`), as every error response carries it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/{error_code}`; a GET there describes the problem.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation_failed")]
    pub type_uri: String,
    /// Short, fixed summary of the problem type.
    pub title: String,
    /// The HTTP status.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// Stable machine-readable code.
    #[schema(example = "validation_failed")]
    pub error_code: String,
    /// The request's id, also in the `X-Request-Id` header and every log line of the request.
    pub request_id: String,
    /// Field errors (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub errors: Vec<FieldError>,
}

/// The content type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut codes: Vec<_> = CATALOGUE.iter().map(|p| p.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CATALOGUE.len());
        for p in CATALOGUE {
            assert!(
                p.status.is_client_error() || p.status.is_server_error(),
                "{}",
                p.code
            );
            assert_eq!(ProblemType::by_code(p.code), Some(p));
        }
    }
}
