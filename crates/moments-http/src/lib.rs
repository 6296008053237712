#![doc = include_str!("../README.md")]

pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod routes;
mod validation;

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::{App, web};
use moments_domain::media::MediaService;
use moments_domain::ports::HealthProbe;
use moments_domain::{AccountService, OAuthService, PostService};

pub use error::ApiError;
pub use openapi::ApiDoc;
pub use rate_limit::{RateLimitPolicies, RateLimits, RouteClass, TrustedProxies};

/// What handlers share: the domain services and the readiness probes.
#[derive(Clone)]
pub struct AppState {
    /// Accounts and sessions.
    pub accounts: AccountService,
    /// Sign-in through identity providers and account linking.
    pub oauth: OAuthService,
    /// Posts, the feed and votes.
    pub posts: PostService,
    /// Uploaded images.
    pub media: MediaService,
    /// The external base URL (`MOMENTS_PUBLIC_URL`), for absolute links such as media URLs.
    pub public_url: String,
    /// Dependencies whose health decides readiness.
    pub probes: Vec<Arc<dyn HealthProbe>>,
    /// The rate limiter and its policies.
    pub rate_limits: RateLimits,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: TrustedProxies,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field(
                "probes",
                &self.probes.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// HTTP settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Origins allowed to call the API from a browser (exact matches). Empty: none.
    pub cors_origins: Vec<String>,
}

fn cors(config: &HttpConfig) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-api-key"),
            middleware::REQUEST_ID,
        ])
        .expose_headers([
            middleware::REQUEST_ID,
            middleware::API_VERSION,
            middleware::API_VERSION_DEFAULTED,
            header::RETRY_AFTER,
            rate_limit::RATE_LIMIT,
            rate_limit::RATE_LIMIT_POLICY,
        ])
        .max_age(3600);
    for origin in &config.cors_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// The API routes, mounted under `/api/v1` and, as the latest version, under `/api`.
fn api(cfg: &mut web::ServiceConfig) {
    routes::auth::configure(cfg);
    routes::oauth::configure(cfg);
    routes::roles::configure(cfg);
    routes::users::configure(cfg);
    routes::api_keys::configure(cfg);
    routes::audit::configure(cfg);
    routes::posts::configure(cfg);
    routes::media::configure(cfg);
}

/// The whole application: routes, middleware, limits and error rendering.
pub fn app(
    state: AppState,
    config: HttpConfig,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .app_data(web::PayloadConfig::new(extract::JSON_LIMIT))
        .wrap(cors(&config))
        .wrap(actix_web::middleware::from_fn(middleware::edge))
        .service(
            web::scope("/api/v1")
                .wrap(actix_web::middleware::from_fn(rate_limit::limit_rate))
                .wrap(actix_web::middleware::from_fn(extract::resolve_api_key))
                .configure(api),
        )
        .service(
            web::scope("/api")
                .wrap(actix_web::middleware::from_fn(rate_limit::limit_rate))
                .wrap(actix_web::middleware::from_fn(extract::resolve_api_key))
                .configure(api),
        )
        .configure(routes::media::configure_serving)
        .configure(routes::ops::configure)
        .configure(routes::docs::configure)
}
