//! Posts and votes on PostgreSQL.
//!
//! Every read is one statement: posts joined to their authors (disabled authors filtered out)
//! and left-joined to the viewer's vote through the votes primary key; totals are counters on
//! the post row, kept by the `votes_count` trigger. Pages walk `posts_feed_idx` or
//! `posts_author_feed_idx` from the cursor's position, so a deep page costs what the first does.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use moments_domain::InfraError;
use moments_domain::ids::{PostId, UserId};
use moments_domain::ports::PostStore;
use moments_domain::post::{
    Author, MediaUrl, MediaUrls, NewPost, Post, PostContent, PostEdit, PostFilter, PostPosition,
    VoteSummary, VoteTotals, VoteValue,
};
use moments_domain::value::Username;
use uuid::Uuid;

use crate::models::corrupt;
use crate::schema::{posts, users, votes};
use crate::store::{PgStore, db_error};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = posts, check_for_backend(Pg))]
struct PostRow {
    id: Uuid,
    content: String,
    media_urls: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    upvotes: i64,
    downvotes: i64,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
struct AuthorRow {
    id: Uuid,
    username: String,
    display_name: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = posts)]
struct NewPostRow<'a> {
    id: Uuid,
    author_id: Uuid,
    content: &'a str,
    media_urls: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = posts)]
struct PostChanges<'a> {
    content: Option<&'a str>,
    media_urls: Option<serde_json::Value>,
    updated_at: DateTime<Utc>,
}

fn urls_json(urls: &MediaUrls) -> serde_json::Value {
    urls.as_slice()
        .iter()
        .map(|url| serde_json::Value::from(url.as_str()))
        .collect()
}

fn urls_from_json(value: serde_json::Value) -> Result<MediaUrls, InfraError> {
    let urls: Vec<String> = serde_json::from_value(value).map_err(|e| corrupt("media_urls", e))?;
    Ok(MediaUrls::from_trusted(
        urls.into_iter().map(MediaUrl::from_trusted).collect(),
    ))
}

fn author_from(row: AuthorRow) -> Result<Author, InfraError> {
    Ok(Author {
        id: UserId::from_uuid(row.id),
        username: Username::parse(&row.username).map_err(|e| corrupt("username", e))?,
        display_name: row.display_name,
    })
}

type PostRecord = (PostRow, AuthorRow, Option<i16>);

fn post_from((post, author, vote): PostRecord) -> Result<Post, InfraError> {
    Ok(Post {
        id: PostId::from_uuid(post.id),
        author: author_from(author)?,
        content: PostContent::from_trusted(post.content),
        media_urls: urls_from_json(post.media_urls)?,
        created_at: post.created_at,
        updated_at: post.updated_at,
        votes: VoteTotals {
            upvotes: post.upvotes,
            downvotes: post.downvotes,
        },
        my_vote: VoteValue::from_stored(vote),
    })
}

/// Posts of enabled authors, each with its author and `viewer`'s vote. Without a viewer the
/// join looks up the nil id, which no account has (ids are UUIDv7), so `my_vote` is null.
#[diesel::dsl::auto_type]
fn readable_posts(viewer: Uuid) -> _ {
    posts::table
        .inner_join(users::table.on(users::id.eq(posts::author_id)))
        .left_join(votes::table.on(votes::post_id.eq(posts::id).and(votes::user_id.eq(viewer))))
        .filter(users::disabled.eq(false))
}

/// [`readable_posts`] strictly after the keyset position `(at, id)`, newest first.
/// `at <= t` bounds the index walk; the second condition breaks ties within a microsecond by id.
/// The shape never changes (a first page starts from [`LATEST`]), so the statement is prepared
/// once per connection and cached.
#[diesel::dsl::auto_type(no_type_alias)]
fn posts_before(viewer: Uuid, at: DateTime<Utc>, id: Uuid) -> _ {
    let readable: readable_posts = readable_posts(viewer);
    readable
        .filter(posts::created_at.le(at))
        .filter(posts::created_at.lt(at).or(posts::id.lt(id)))
        .order((posts::created_at.desc(), posts::id.desc()))
}

/// A query whose `LIMIT` is written into the SQL text instead of bound.
///
/// PostgreSQL plans a prepared statement for its parameters at every execution unless told to
/// plan it generically, and the feed's plan cost about 0.5 ms for 0.1 ms of execution. The feed
/// therefore runs on connections set to `plan_cache_mode = force_generic_plan`
/// (`PgStore::feed_conn`), and its generic plan is only the index walk when the limit is known:
/// with a bound limit the planner expects a tenth of the table and gathers it in parallel. So
/// the limit is part of the text (one statement per page size, at most 101 per connection).
/// An author's page stays on the ordinary pool with a bound limit and custom plans.
#[derive(Debug)]
struct LiteralLimit<Q> {
    query: Q,
    limit: i64,
}

impl<Q> QueryId for LiteralLimit<Q> {
    type QueryId = ();
    // Cached by its SQL text, which includes the limit.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for LiteralLimit<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for LiteralLimit<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(&format!(" LIMIT {}", self.limit));
        Ok(())
    }
}

/// A position after every post: the start of a first page (the last second of year 9999).
const LATEST: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(at) => at,
    None => panic!("year 9999 is in range"),
};

fn viewer_id(viewer: Option<UserId>) -> Uuid {
    viewer.map_or(Uuid::nil(), |v| v.as_uuid())
}

#[async_trait]
impl PostStore for PgStore {
    async fn create_post(&self, post: &NewPost) -> Result<Option<Post>, InfraError> {
        let row = NewPostRow {
            id: post.id.as_uuid(),
            author_id: post.author.as_uuid(),
            content: post.content.as_str(),
            media_urls: urls_json(&post.media_urls),
            created_at: post.created_at,
            updated_at: post.created_at,
        };
        let row = &row;
        let author = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    // The author's row is share-locked so it cannot be disabled mid-way.
                    let author = users::table
                        .find(row.author_id)
                        .filter(users::disabled.eq(false))
                        .select(AuthorRow::as_select())
                        .for_key_share()
                        .first(conn)
                        .await
                        .optional()?;
                    if author.is_some() {
                        diesel::insert_into(posts::table)
                            .values(row)
                            .execute(conn)
                            .await?;
                    }
                    Ok(author)
                })
                .await
                .map_err(db_error)
            })
            .await?;
        author
            .map(|author| Ok(post.clone().published_by(author_from(author)?)))
            .transpose()
    }

    async fn find_post(
        &self,
        id: PostId,
        viewer: Option<UserId>,
    ) -> Result<Option<Post>, InfraError> {
        let record: Option<PostRecord> = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                readable_posts(viewer_id(viewer))
                    .filter(posts::id.eq(id.as_uuid()))
                    .select((
                        PostRow::as_select(),
                        AuthorRow::as_select(),
                        votes::value.nullable(),
                    ))
                    .first(conn)
                    .await
                    .optional()
                    .map_err(db_error)
            })
            .await?;
        record.map(post_from).transpose()
    }

    async fn update_post(
        &self,
        id: PostId,
        edit: &PostEdit,
        now: DateTime<Utc>,
        viewer: UserId,
    ) -> Result<Option<Post>, InfraError> {
        let changes = PostChanges {
            content: edit.content.as_ref().map(PostContent::as_str),
            media_urls: edit.media_urls.as_ref().map(urls_json),
            updated_at: now,
        };
        let changes = &changes;
        let updated = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                diesel::update(posts::table.find(id.as_uuid()))
                    .set(changes)
                    .execute(conn)
                    .await
                    .map_err(db_error)
            })
            .await?;
        if updated == 0 {
            return Ok(None);
        }
        self.find_post(id, Some(viewer)).await
    }

    async fn delete_post(&self, id: PostId) -> Result<bool, InfraError> {
        let deleted = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                diesel::delete(posts::table.find(id.as_uuid()))
                    .execute(conn)
                    .await
                    .map_err(db_error)
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn list_posts(
        &self,
        filter: PostFilter,
        after: Option<PostPosition>,
        limit: usize,
        viewer: Option<UserId>,
    ) -> Result<Vec<Post>, InfraError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let records: Vec<PostRecord> = self
            .timed(async {
                let (at, id) =
                    after.map_or((LATEST, Uuid::max()), |a| (a.created_at, a.id.as_uuid()));
                let page = posts_before(viewer_id(viewer), at, id);
                let select = (
                    PostRow::as_select(),
                    AuthorRow::as_select(),
                    votes::value.nullable(),
                );
                match filter {
                    PostFilter::Everyone => {
                        let conn = &mut *self.feed_conn().await?;
                        LiteralLimit {
                            query: page.select(select),
                            limit,
                        }
                        .load(conn)
                        .await
                    }
                    PostFilter::Author(author) => {
                        let conn = &mut *self.conn().await?;
                        page.filter(posts::author_id.eq(author.as_uuid()))
                            .limit(limit)
                            .select(select)
                            .load(conn)
                            .await
                    }
                }
                .map_err(db_error)
            })
            .await?;
        records.into_iter().map(post_from).collect()
    }

    async fn set_vote(
        &self,
        post: PostId,
        user: UserId,
        vote: Option<VoteValue>,
        now: DateTime<Utc>,
    ) -> Result<Option<VoteSummary>, InfraError> {
        let (post_id, user_id) = (post.as_uuid(), user.as_uuid());
        let result = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                Ok::<_, InfraError>(
                    conn.transaction::<_, DieselError, _>(async |conn| {
                        let visible: Option<Uuid> = posts::table
                            .inner_join(users::table.on(users::id.eq(posts::author_id)))
                            .filter(posts::id.eq(post_id))
                            .filter(users::disabled.eq(false))
                            .select(posts::id)
                            .first(conn)
                            .await
                            .optional()?;
                        if visible.is_none() {
                            return Ok(None);
                        }
                        // The votes_count trigger moves the post's counters by the difference
                        // in this transaction; concurrent votes on the post queue on its row.
                        match vote {
                            Some(value) => {
                                diesel::insert_into(votes::table)
                                    .values((
                                        votes::post_id.eq(post_id),
                                        votes::user_id.eq(user_id),
                                        votes::value.eq(value.as_i16()),
                                        votes::voted_at.eq(now),
                                    ))
                                    .on_conflict((votes::post_id, votes::user_id))
                                    .do_update()
                                    .set((votes::value.eq(value.as_i16()), votes::voted_at.eq(now)))
                                    .execute(conn)
                                    .await?;
                            }
                            None => {
                                diesel::delete(votes::table.find((post_id, user_id)))
                                    .execute(conn)
                                    .await?;
                            }
                        }
                        let (upvotes, downvotes) = posts::table
                            .find(post_id)
                            .select((posts::upvotes, posts::downvotes))
                            .first::<(i64, i64)>(conn)
                            .await?;
                        Ok(Some(VoteSummary {
                            post_id: post,
                            votes: VoteTotals { upvotes, downvotes },
                            my_vote: vote,
                        }))
                    })
                    .await,
                )
            })
            .await?;
        match result {
            Ok(summary) => Ok(summary),
            // The post was deleted between the check and the vote.
            Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _))
            | Err(DieselError::NotFound) => Ok(None),
            Err(e) => Err(db_error(e)),
        }
    }
}
