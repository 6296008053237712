//! The edge: request ids, API version headers, security headers, panic capture, request logs,
//! and problem+json rendering of every error response, whoever produced it.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use futures_util::FutureExt as _;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::error::{ApiError, ProblemContext};
use crate::problem::{self, PROBLEM_JSON, ProblemType};

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The API version every `/api` response carries.
pub const API_VERSION: HeaderName = HeaderName::from_static("x-api-version");
/// Set when a request used `/api/…` without a version and got the latest.
pub const API_VERSION_DEFAULTED: HeaderName = HeaderName::from_static("x-api-version-defaulted");

/// The id of the current request, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client-supplied id is kept when it is 1 to 128 characters of `[A-Za-z0-9._-]`.
fn sane_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The outermost middleware. See the module docs.
pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let path = req.path().to_owned();
    let method = req.method().clone();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
    let context = || ProblemContext {
        request_id: request_id.clone(),
        instance: path.clone(),
    };

    let outcome = AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut res = match outcome {
        Ok(Ok(res)) => res.map_into_boxed_body(),
        // The request is gone (it moved into the inner service), so these two answer through
        // an error that renders itself with the request's context.
        Ok(Err(error)) => {
            let api = match error.as_error::<ApiError>() {
                Some(api) => api.clone(),
                None => from_foreign_error(&error),
            };
            span.in_scope(|| {
                tracing::info!(status = api.problem.status.as_u16(), "request failed")
            });
            return Err(api.with_context(context()).into());
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            span.in_scope(|| tracing::error!(panic = %message, "request handler panicked"));
            let api = ApiError::new(
                &problem::INTERNAL_ERROR,
                problem::INTERNAL_ERROR.description,
            );
            return Err(api.with_context(context()).into());
        }
    };

    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        res = render_problem(res, &method, &path, &request_id);
    }
    standard_headers(res.headers_mut(), &path, &request_id);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status = status.as_u16(), elapsed_ms, "request finished"));
    Ok(res)
}

/// Headers every response carries: the request id, security headers and, under `/api`, the
/// API version (and `no-store` unless the route chose a cache policy).
pub fn standard_headers(headers: &mut HeaderMap, path: &str, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if path == "/api" || path.starts_with("/api/") {
        headers.insert(API_VERSION, HeaderValue::from_static("1"));
        if !(path == "/api/v1" || path.starts_with("/api/v1/")) {
            headers.insert(API_VERSION_DEFAULTED, HeaderValue::from_static("true"));
        }
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// An error from outside our code (actix, a middleware) as a problem: 5xx details stay hidden.
fn from_foreign_error(error: &actix_web::Error) -> ApiError {
    let status = error.as_response_error().status_code();
    let kind = ProblemType::for_status(status);
    if status.is_server_error() {
        tracing::error!(error = %error, "internal error");
        ApiError::new(kind, kind.description)
    } else {
        ApiError::new(kind, error.to_string())
    }
}

fn render_problem(
    res: ServiceResponse<BoxBody>,
    method: &actix_web::http::Method,
    path: &str,
    request_id: &str,
) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let api = match res.response().error() {
        Some(error) => match error.as_error::<ApiError>() {
            Some(api) => api.clone(),
            None => from_foreign_error(error),
        },
        // Responses without an error: the router's 404 and 405.
        None => {
            let kind = ProblemType::for_status(status);
            let detail = match status.as_u16() {
                404 => format!("no resource at {path}"),
                405 => format!("{path} does not support {method}"),
                _ => kind.description.to_owned(),
            };
            ApiError::new(kind, detail)
        }
    };
    let mut problem = api.to_problem();
    problem.status = status.as_u16();
    problem.instance = path.to_owned();
    problem.request_id = request_id.to_owned();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    res.map_body(|head, _| {
        head.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        head.headers_mut().remove(header::CONTENT_LENGTH);
        BoxBody::new(body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::test as actix_test;
    use actix_web::{App, HttpResponse, web};

    async fn panics() -> HttpResponse {
        panic!("boom with a secret inside")
    }

    #[actix_web::test]
    async fn panics_become_500_problems_without_internals() {
        let app = actix_test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(edge))
                .route("/api/v1/panic", web::get().to(panics)),
        )
        .await;
        let req = actix_test::TestRequest::get()
            .uri("/api/v1/panic")
            .insert_header(("x-request-id", "trace-me"))
            .to_request();
        // The edge answers through an error that renders itself.
        let err = match actix_test::try_call_service(&app, req).await {
            Ok(res) => panic!("expected an error, got {}", res.status()),
            Err(err) => err,
        };
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers().get("content-type").unwrap(), PROBLEM_JSON);
        assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-me");
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error_code"], "internal_error");
        assert_eq!(json["request_id"], "trace-me");
        assert_eq!(json["instance"], "/api/v1/panic");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }

    #[test]
    fn request_ids_are_sanitised() {
        assert!(sane_request_id("abc-123_DEF.4"));
        assert!(sane_request_id(&"a".repeat(128)));
        for bad in ["", "with space", "new\nline", "<script>", &"a".repeat(129)] {
            assert!(!sane_request_id(bad), "{bad:?}");
        }
    }
}
