//! `POST /api/v1/media` (upload an image) and `GET /media/{key}` (serve it).

use actix_multipart::{Multipart, MultipartError};
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use futures_util::StreamExt as _;
use moments_domain::media::{MediaKey, UploadError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::problem::{self, Problem};
use crate::routes::endpoint;

/// An uploaded image.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaResponse {
    /// Its id.
    pub id: Uuid,
    /// Where it is served (absolute; use it in a post's `media_urls`).
    #[schema(example = "https://moments.example.com/media/0193a6c4d2e87c1f9a3b5d7e9f1a2b3c.png")]
    pub url: String,
    /// Its type, decided by its content.
    #[schema(example = "image/png")]
    pub content_type: String,
    /// Size in bytes.
    pub size: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The multipart form of an upload (for the document; the handler reads the stream).
#[derive(Debug, ToSchema)]
pub struct MediaUpload {
    /// The image: PNG, JPEG, GIF or WebP, decided by its bytes (the file name and declared type
    /// are ignored).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

fn multipart_error(e: MultipartError) -> ApiError {
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible
        | MultipartError::BoundaryMissing => ApiError::new(
            &problem::UNSUPPORTED_MEDIA_TYPE,
            "the body must be multipart/form-data with the image in the field `file`",
        ),
        other => ApiError::new(
            &problem::MALFORMED_REQUEST,
            format!("the multipart body is malformed: {other}"),
        ),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        &problem::PAYLOAD_TOO_LARGE,
        format!("the file is larger than {limit} bytes"),
    )
}

/// Reads the one field `file`, stopping as soon as it passes `limit` bytes.
async fn read_file(mut form: Multipart, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut file: Option<Vec<u8>> = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(multipart_error)?;
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            return Err(ApiError::field(
                &name,
                "unknown_field",
                "the only field is `file`",
            ));
        }
        if file.is_some() {
            return Err(ApiError::field(
                "file",
                "duplicate_field",
                "send one file per request",
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(multipart_error)?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        file = Some(bytes);
    }
    file.ok_or_else(|| ApiError::field("file", "required", "the field `file` is missing"))
}

/// Upload an image. Its type is decided by its content; it is stored under a new random key.
#[utoipa::path(
    post, path = "/api/v1/media", tag = "media", operation_id = "upload_media",
    request_body(content = MediaUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The stored image", body = MediaResponse,
         headers(("Location" = String, description = "Where it is served"))),
        (status = 400, description = "`malformed_request`: a broken multipart body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: larger than the size limit (10 MiB by default)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: not a well-formed PNG, JPEG, GIF or WebP, or not multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: no `file` field, another field, or more pixels than the limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn upload_media(
    state: web::Data<AppState>,
    _caller: Authenticated,
    form: Multipart,
) -> Result<HttpResponse, ApiError> {
    let limit = state.media.limits().max_bytes;
    let bytes = read_file(form, limit).await?;
    let media = match state.media.upload(bytes).await {
        Ok(media) => media,
        Err(UploadError::TooLarge(limit)) => return Err(too_large(limit)),
        Err(UploadError::Unsupported(e)) => {
            return Err(ApiError::new(
                &problem::UNSUPPORTED_MEDIA_TYPE,
                e.to_string(),
            ));
        }
        Err(UploadError::TooManyPixels { width, height, max }) => {
            return Err(ApiError::field(
                "file",
                "too_many_pixels",
                format!("{width} x {height} pixels is more than the limit of {max}"),
            ));
        }
        Err(UploadError::Infra(e)) => return Err(e.into()),
    };
    let url = format!(
        "{}/media/{}",
        state.public_url.trim_end_matches('/'),
        media.key.as_str()
    );
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, url.clone()))
        .json(MediaResponse {
            id: media.id,
            url,
            content_type: media.kind.content_type().to_owned(),
            size: media.size,
            width: media.dimensions.0,
            height: media.dimensions.1,
        }))
}

/// An uploaded image, with its stored type. Keys never change, so it may be cached for good.
#[utoipa::path(
    get, path = "/media/{key}", tag = "media", operation_id = "get_media",
    params(("key" = String, Path, description = "The key from the upload's `url`", example = "0193a6c4d2e87c1f9a3b5d7e9f1a2b3c.png")),
    responses(
        (status = 200, description = "The image, with `X-Content-Type-Options: nosniff`",
         content(("image/png"), ("image/jpeg"), ("image/gif"), ("image/webp"))),
        (status = 404, description = "No such image", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_media(
    state: web::Data<AppState>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, "no such image");
    let key = MediaKey::parse(&key).ok_or_else(not_found)?;
    let (bytes, kind) = state.media.fetch(&key).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type(kind.content_type())
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ]))
        // Even if a browser were talked into rendering it as a page, it could run nothing.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ))
        .insert_header((header::CONTENT_DISPOSITION, "inline"))
        .body(bytes))
}

/// Registers the upload route (under the API scopes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/media").route(web::post().to(upload_media)));
}

/// Registers the serving route (at the root, outside the API).
pub fn configure_serving(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/media/{key}")
            .wrap(actix_web::middleware::from_fn(
                crate::rate_limit::limit_rate,
            ))
            .route(web::get().to(get_media)),
    );
}
