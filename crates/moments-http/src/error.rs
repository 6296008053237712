//! `ApiError`: every error a handler or extractor returns, mapped once from the domain's error
//! enums. The edge middleware renders it as problem+json with the request's id and path.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use moments_domain::InfraError;
use moments_domain::account::{
    AuthenticateError, CurrentUserError, LoginError, RefreshError, RegisterError,
};
use moments_domain::api_key::ApiKeyAuthError;

use crate::problem::{self, FieldError, PROBLEM_JSON, Problem, ProblemType};

/// An error response: a problem type, a detail, field errors and extra headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The problem type (status, code, title).
    pub problem: &'static ProblemType,
    /// Request-specific explanation.
    pub detail: String,
    /// Field errors, for `validation_failed`.
    pub errors: Vec<FieldError>,
    /// `WWW-Authenticate` for 401s.
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After` in seconds, for 429s.
    pub retry_after: Option<u64>,
    /// The request it answers, when known: lets `error_response` render the whole problem.
    pub context: Option<Box<ProblemContext>>,
}

/// The request an error answers: its id and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemContext {
    /// The request id.
    pub request_id: String,
    /// The request path (`instance`).
    pub instance: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.problem.code, self.detail)
    }
}

impl ApiError {
    /// An error of the given type.
    pub fn new(problem: &'static ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem,
            detail: detail.into(),
            errors: Vec::new(),
            www_authenticate: None,
            retry_after: None,
            context: None,
        }
    }

    /// The same error, telling the client when to retry (`Retry-After`, whole seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The same error, bound to the request it answers.
    pub fn with_context(mut self, context: ProblemContext) -> Self {
        self.context = Some(Box::new(context));
        self
    }

    /// The problem body for this error.
    pub fn to_problem(&self) -> Problem {
        let (request_id, instance) = match &self.context {
            Some(c) => (c.request_id.clone(), c.instance.clone()),
            None => (String::new(), String::new()),
        };
        Problem {
            type_uri: self.problem.type_uri(),
            title: self.problem.title.to_owned(),
            status: self.problem.status.as_u16(),
            detail: self.detail.clone(),
            instance,
            error_code: self.problem.code.to_owned(),
            request_id,
            errors: self.errors.clone(),
        }
    }

    /// A 422 naming the invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let detail = format!("invalid fields: {}", fields.join(", "));
        Self {
            errors,
            ..Self::new(&problem::VALIDATION_FAILED, detail)
        }
    }

    /// A 422 for one field.
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }])
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(
        problem: &'static ProblemType,
        detail: &str,
        challenge: &'static str,
    ) -> Self {
        Self {
            www_authenticate: Some(challenge),
            ..Self::new(problem, detail)
        }
    }

    /// 500, with the cause logged here and never shown to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            &problem::INTERNAL_ERROR,
            "an unexpected error occurred; report the request id if it persists",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.problem.status
    }

    /// The problem+json response. Handlers' errors are rendered again by the edge middleware,
    /// which adds the request's id and path; errors raised by the edge itself carry them.
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.problem.status);
        if let Some(challenge) = self.www_authenticate {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        let mut response = response
            .content_type(PROBLEM_JSON)
            .body(serde_json::to_vec(&self.to_problem()).unwrap_or_default());
        if let Some(context) = &self.context {
            crate::middleware::standard_headers(
                response.headers_mut(),
                &context.instance,
                &context.request_id,
            );
        }
        response
    }
}

impl From<InfraError> for ApiError {
    fn from(e: InfraError) -> Self {
        match e {
            InfraError::Unavailable { what, source } => {
                tracing::warn!(dependency = what, error = %source, "dependency unavailable");
                Self::new(
                    &problem::SERVICE_UNAVAILABLE,
                    format!("the {what} is not answering; retry later"),
                )
            }
            InfraError::Internal(source) => Self::internal(&source),
        }
    }
}

const BEARER: &str = "Bearer realm=\"moments\"";
const BEARER_INVALID: &str = "Bearer realm=\"moments\", error=\"invalid_token\"";

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::UsernameTaken => {
                Self::new(&problem::USERNAME_TAKEN, "this username is already taken")
            }
            RegisterError::EmailTaken => Self::new(
                &problem::EMAIL_TAKEN,
                "this e-mail address is already registered",
            ),
            RegisterError::Infra(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => Self::new(
                &problem::INVALID_CREDENTIALS,
                "the login or the password is wrong",
            ),
            LoginError::AccountDisabled => {
                Self::new(&problem::ACCOUNT_DISABLED, "this account has been disabled")
            }
            LoginError::Throttled { retry_after } => {
                let seconds = moments_domain::limit::ceil_secs(retry_after).max(1);
                Self::new(
                    &problem::RATE_LIMITED,
                    format!("too many failed logins for this account; retry in {seconds} s"),
                )
                .with_retry_after(seconds)
            }
            LoginError::Infra(e) => e.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidRefreshToken => Self::new(
                &problem::INVALID_REFRESH_TOKEN,
                "the refresh token is unknown, expired or revoked",
            ),
            RefreshError::RefreshTokenReused => Self::new(
                &problem::REFRESH_TOKEN_REUSED,
                "the refresh token had already been used; the session has been revoked",
            ),
            RefreshError::Infra(e) => e.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::Expired => Self::unauthorized(
                &problem::TOKEN_EXPIRED,
                "the access token has expired",
                BEARER_INVALID,
            ),
            AuthenticateError::Invalid => Self::unauthorized(
                &problem::INVALID_TOKEN,
                "the access token is not valid",
                BEARER_INVALID,
            ),
        }
    }
}

const API_KEY_INVALID: &str = "ApiKey realm=\"moments\"";

impl From<ApiKeyAuthError> for ApiError {
    fn from(e: ApiKeyAuthError) -> Self {
        match e {
            ApiKeyAuthError::Expired => Self::unauthorized(
                &problem::TOKEN_EXPIRED,
                "the API key has expired",
                API_KEY_INVALID,
            ),
            ApiKeyAuthError::Invalid => Self::unauthorized(
                &problem::INVALID_TOKEN,
                "the API key is not valid",
                API_KEY_INVALID,
            ),
            ApiKeyAuthError::Infra(e) => e.into(),
        }
    }
}

impl From<CurrentUserError> for ApiError {
    fn from(e: CurrentUserError) -> Self {
        match e {
            // The token is validly signed but its account is gone: the token is no good.
            CurrentUserError::NotFound => Self::unauthorized(
                &problem::INVALID_TOKEN,
                "the token's account no longer exists",
                BEARER_INVALID,
            ),
            CurrentUserError::Infra(e) => e.into(),
        }
    }
}

/// 401 for a request without credentials.
pub fn unauthenticated() -> ApiError {
    ApiError::unauthorized(
        &problem::UNAUTHENTICATED,
        "this route needs an access token: Authorization: Bearer <token>",
        BEARER,
    )
}

/// 401 for an API key sent to a route that takes access tokens only.
pub fn key_not_accepted() -> ApiError {
    ApiError::unauthorized(
        &problem::UNAUTHENTICATED,
        "this route takes an access token (Authorization: Bearer), not an API key",
        BEARER,
    )
}
