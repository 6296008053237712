//! Route handlers, one module per resource.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod docs;
pub mod media;
pub mod oauth;
pub mod ops;
pub mod posts;
pub mod roles;
pub mod users;

use actix_web::{HttpResponse, Resource, web};

/// A resource whose unsupported methods answer 405 (rendered as problem+json by the edge),
/// rather than falling through to 404.
pub(crate) fn endpoint(path: &str) -> Resource {
    web::resource(path).default_service(web::to(HttpResponse::MethodNotAllowed))
}
