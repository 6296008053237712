//! `/posts`, `/users/{id}/posts` and `/posts/{id}/vote`: posts, the feed and votes.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use moments_domain::ids::{PostId, UserId};
use moments_domain::page::Page;
use moments_domain::post::{
    AuthorPostsError, ChangePostError, CreatePostError, MediaUrl, MediaUrls, Post, PostContent,
    PostEdit, VoteError, VoteSummary, VoteValue,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, Caller, Permitted, PostsWrite, Viewer};
use crate::problem::{self, Problem};
use crate::routes::endpoint;
use crate::routes::users::{list_error, list_query, page_limit};
use crate::validation::Fields;

/// A new post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePostRequest {
    /// Plain text. Markup is removed (tags dropped with their text kept; script and style
    /// dropped whole), then the text is trimmed: 1 to 5000 characters must remain.
    #[schema(example = "First light over the harbour")]
    pub content: String,
    /// Up to 9 absolute http(s) URLs of at most 2048 characters (for example from
    /// `POST /api/v1/media`).
    #[serde(default)]
    #[schema(example = json!(["https://moments.example.com/media/0193a6c4d2e87c1f9a3b5d7e9f1a2b3c.png"]))]
    pub media_urls: Vec<String>,
}

/// A change to a post: each field present replaces the stored one; absent or null ones stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePostRequest {
    /// New text, under the rules of creation.
    #[serde(default)]
    pub content: Option<String>,
    /// New media URLs (`[]` removes them all), under the rules of creation.
    #[serde(default)]
    pub media_urls: Option<Vec<String>>,
}

/// The author shown with a post.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorResponse {
    /// The account.
    pub id: Uuid,
    /// Its username.
    #[schema(example = "alice")]
    pub username: String,
    /// Its display name; null if unset.
    pub display_name: Option<String>,
}

/// A post.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostResponse {
    /// The post's id.
    pub id: Uuid,
    /// Who wrote it.
    pub author: AuthorResponse,
    /// Plain text (never contains an HTML tag).
    pub content: String,
    /// Media URLs, in the order given.
    pub media_urls: Vec<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was last edited (`created_at` if never).
    pub updated_at: DateTime<Utc>,
    /// `upvotes - downvotes`.
    pub score: i64,
    /// Up votes.
    pub upvotes: i64,
    /// Down votes.
    pub downvotes: i64,
    /// Your vote: 1, -1, or null (no vote, or not signed in).
    #[schema(value_type = Option<i8>, example = 1)]
    pub my_vote: Option<i8>,
}

fn vote_number(vote: Option<VoteValue>) -> Option<i8> {
    vote.map(|v| match v {
        VoteValue::Up => 1,
        VoteValue::Down => -1,
    })
}

impl From<Post> for PostResponse {
    fn from(post: Post) -> Self {
        Self {
            id: post.id.as_uuid(),
            author: AuthorResponse {
                id: post.author.id.as_uuid(),
                username: post.author.username.as_str().to_owned(),
                display_name: post.author.display_name,
            },
            content: post.content.as_str().to_owned(),
            media_urls: post
                .media_urls
                .as_slice()
                .iter()
                .map(|url| url.as_str().to_owned())
                .collect(),
            created_at: post.created_at,
            updated_at: post.updated_at,
            score: post.votes.score(),
            upvotes: post.votes.upvotes,
            downvotes: post.votes.downvotes,
            my_vote: vote_number(post.my_vote),
        }
    }
}

/// A page of posts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostPage {
    /// Posts, newest first.
    pub items: Vec<PostResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A vote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// 1 (up) or -1 (down).
    #[schema(example = 1)]
    pub value: i64,
}

/// A post's votes after yours.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteSummaryResponse {
    /// The post.
    pub post_id: Uuid,
    /// `upvotes - downvotes`.
    pub score: i64,
    /// Up votes.
    pub upvotes: i64,
    /// Down votes.
    pub downvotes: i64,
    /// Your vote now: 1, -1 or null.
    #[schema(value_type = Option<i8>, example = 1)]
    pub my_vote: Option<i8>,
}

impl From<VoteSummary> for VoteSummaryResponse {
    fn from(summary: VoteSummary) -> Self {
        Self {
            post_id: summary.post_id.as_uuid(),
            score: summary.votes.score(),
            upvotes: summary.votes.upvotes,
            downvotes: summary.votes.downvotes,
            my_vote: vote_number(summary.my_vote),
        }
    }
}

fn post_not_found() -> ApiError {
    ApiError::new(&problem::NOT_FOUND, "no such post")
}

/// Parses the path; an id that is not a UUID names no post.
fn post_id(raw: &str) -> Result<PostId, ApiError> {
    Uuid::parse_str(raw)
        .map(PostId::from_uuid)
        .map_err(|_| post_not_found())
}

/// Parses media URLs, each error naming its index (`media_urls[3]`).
fn media_urls(fields: &mut Fields, raw: &[String]) -> Option<MediaUrls> {
    if raw.len() > MediaUrls::MAX {
        fields.reject(
            "media_urls",
            "too_many",
            format!("at most {} URLs", MediaUrls::MAX),
        );
        return None;
    }
    let parsed: Vec<Option<MediaUrl>> = raw
        .iter()
        .enumerate()
        .map(|(i, url)| fields.check(&format!("media_urls[{i}]"), MediaUrl::parse(url)))
        .collect();
    let urls = parsed.into_iter().collect::<Option<Vec<_>>>()?;
    fields.check("media_urls", MediaUrls::new(urls))
}

/// `limit` (422 naming it when out of range) and `cursor` of a list's query string.
fn list_params(req: &HttpRequest) -> Result<(usize, Option<String>), ApiError> {
    let mut query = list_query(req)?;
    let mut fields = Fields::default();
    let limit = page_limit(&mut fields, query.get("limit"));
    fields.finish()?;
    Ok((limit, query.remove("cursor")))
}

fn page_response(page: Page<Post>) -> HttpResponse {
    HttpResponse::Ok().json(PostPage {
        items: page.items.into_iter().map(PostResponse::from).collect(),
        next_cursor: page.next_cursor,
    })
}

fn change_error(e: ChangePostError, what: &str) -> ApiError {
    match e {
        ChangePostError::NotFound => post_not_found(),
        ChangePostError::Forbidden => ApiError::new(
            &problem::FORBIDDEN,
            format!("only the author of a post may {what} it"),
        ),
        ChangePostError::Infra(e) => e.into(),
    }
}

/// Write a post. Markup in `content` is removed; what remains is trimmed.
#[utoipa::path(
    post, path = "/api/v1/posts", tag = "posts", operation_id = "create_post",
    request_body = CreatePostRequest,
    responses(
        (status = 201, description = "The post", body = PostResponse,
         headers(("Location" = String, description = "The post's URL"))),
        (status = 422, description = "Empty or too long content, a bad or tenth URL", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["posts:write"]), ("api_key" = ["posts:write"])),
)]
pub async fn create_post(
    state: web::Data<AppState>,
    caller: Permitted<PostsWrite>,
    req: HttpRequest,
    ApiJson(body): ApiJson<CreatePostRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let content = fields.check("content", PostContent::parse(&body.content));
    let urls = media_urls(&mut fields, &body.media_urls);
    fields.finish()?;
    let (Some(content), Some(urls)) = (content, urls) else {
        return Err(ApiError::internal(&"validation passed without values"));
    };
    match state.posts.create(caller.actor(), content, urls).await {
        Ok(post) => {
            let location = format!("{}/{}", req.path().trim_end_matches('/'), post.id);
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, location))
                .json(PostResponse::from(post)))
        }
        Err(CreatePostError::Forbidden) => Err(ApiError::new(
            &problem::FORBIDDEN,
            "this action needs the permission posts:write",
        )),
        Err(CreatePostError::Infra(e)) => Err(e.into()),
    }
}

/// The feed: everyone's posts, newest first (keyset pagination: every page costs the same).
#[utoipa::path(
    get, path = "/api/v1/posts", tag = "posts", operation_id = "list_posts",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of the feed", body = PostPage)),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn list_posts(
    state: web::Data<AppState>,
    Viewer(viewer): Viewer,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (limit, cursor) = list_params(&req)?;
    let page = state
        .posts
        .feed(viewer.map(|a| a.user_id), cursor.as_deref(), limit)
        .await
        .map_err(list_error)?;
    Ok(page_response(page))
}

/// One user's posts, newest first.
#[utoipa::path(
    get, path = "/api/v1/users/{id}/posts", tag = "posts", operation_id = "list_user_posts",
    params(
        ("id" = Uuid, Path, description = "The author"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the user's posts", body = PostPage),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn list_user_posts(
    state: web::Data<AppState>,
    Viewer(viewer): Viewer,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, "no such user");
    let author = Uuid::parse_str(&id)
        .map(UserId::from_uuid)
        .map_err(|_| not_found())?;
    let (limit, cursor) = list_params(&req)?;
    let page = state
        .posts
        .by_author(author, viewer.map(|a| a.user_id), cursor.as_deref(), limit)
        .await
        .map_err(|e| match e {
            AuthorPostsError::UnknownUser => not_found(),
            AuthorPostsError::List(e) => list_error(e),
        })?;
    Ok(page_response(page))
}

/// One post.
#[utoipa::path(
    get, path = "/api/v1/posts/{id}", tag = "posts", operation_id = "get_post",
    params(("id" = Uuid, Path, description = "The post")),
    responses(
        (status = 200, description = "The post", body = PostResponse),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn get_post(
    state: web::Data<AppState>,
    Viewer(viewer): Viewer,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = post_id(&id)?;
    let post = state
        .posts
        .get(id, viewer.map(|a| a.user_id))
        .await?
        .ok_or_else(post_not_found)?;
    Ok(HttpResponse::Ok().json(PostResponse::from(post)))
}

/// Edit your post.
#[utoipa::path(
    patch, path = "/api/v1/posts/{id}", tag = "posts", operation_id = "update_post",
    params(("id" = Uuid, Path, description = "The post")),
    request_body = UpdatePostRequest,
    responses(
        (status = 200, description = "The post as it is now", body = PostResponse),
        (status = 403, description = "Not your post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid content or URLs", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["posts:write"]), ("api_key" = ["posts:write"])),
)]
pub async fn update_post(
    state: web::Data<AppState>,
    Caller(actor): Caller,
    id: web::Path<String>,
    ApiJson(body): ApiJson<UpdatePostRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = post_id(&id)?;
    let mut fields = Fields::default();
    let content = body
        .content
        .map(|raw| fields.check("content", PostContent::parse(&raw)));
    let urls = body.media_urls.map(|raw| media_urls(&mut fields, &raw));
    fields.finish()?;
    let edit = PostEdit {
        content: content.flatten(),
        media_urls: urls.flatten(),
    };
    let post = state
        .posts
        .edit(&actor, id, edit)
        .await
        .map_err(|e| change_error(e, "edit"))?;
    Ok(HttpResponse::Ok().json(PostResponse::from(post)))
}

/// Delete a post: yours, or anyone's with `posts:moderate`. Its votes go with it.
#[utoipa::path(
    delete, path = "/api/v1/posts/{id}", tag = "posts", operation_id = "delete_post",
    params(("id" = Uuid, Path, description = "The post")),
    responses(
        (status = 204, description = "The post is deleted"),
        (status = 403, description = "Not your post, and you are not a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["posts:write"]), ("api_key" = ["posts:write"]), ("bearer" = ["posts:moderate"]), ("api_key" = ["posts:moderate"])),
)]
pub async fn delete_post(
    state: web::Data<AppState>,
    Caller(actor): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = post_id(&id)?;
    state
        .posts
        .delete(&actor, id)
        .await
        .map_err(|e| change_error(e, "delete"))?;
    Ok(HttpResponse::NoContent().finish())
}

fn vote_error(e: VoteError) -> ApiError {
    match e {
        VoteError::NotFound => post_not_found(),
        VoteError::Infra(e) => e.into(),
    }
}

/// Vote on a post: 1 or -1. Idempotent; a second vote replaces the first.
#[utoipa::path(
    put, path = "/api/v1/posts/{id}/vote", tag = "posts", operation_id = "vote_post",
    params(("id" = Uuid, Path, description = "The post")),
    request_body = VoteRequest,
    responses(
        (status = 200, description = "The post's votes now", body = VoteSummaryResponse),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value other than 1 or -1", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn vote_post(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    id: web::Path<String>,
    ApiJson(body): ApiJson<VoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = post_id(&id)?;
    let mut fields = Fields::default();
    let value = fields.check("value", VoteValue::from_i64(body.value));
    fields.finish()?;
    let summary = state
        .posts
        .vote(&actor, id, value)
        .await
        .map_err(vote_error)?;
    Ok(HttpResponse::Ok().json(VoteSummaryResponse::from(summary)))
}

/// Take your vote back. Idempotent: also 200 when there was none.
#[utoipa::path(
    delete, path = "/api/v1/posts/{id}/vote", tag = "posts", operation_id = "clear_vote",
    params(("id" = Uuid, Path, description = "The post")),
    responses(
        (status = 200, description = "The post's votes now", body = VoteSummaryResponse),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn clear_vote(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = post_id(&id)?;
    let summary = state
        .posts
        .vote(&actor, id, None)
        .await
        .map_err(vote_error)?;
    Ok(HttpResponse::Ok().json(VoteSummaryResponse::from(summary)))
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/posts")
            .route(web::post().to(create_post))
            .route(web::get().to(list_posts)),
    )
    .service(
        endpoint("/posts/{id}")
            .route(web::get().to(get_post))
            .route(web::patch().to(update_post))
            .route(web::delete().to(delete_post)),
    )
    .service(
        endpoint("/posts/{id}/vote")
            .route(web::put().to(vote_post))
            .route(web::delete().to(clear_vote)),
    )
    .service(endpoint("/users/{id}/posts").route(web::get().to(list_user_posts)));
}
