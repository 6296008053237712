//! Posts and votes on SQLite.
//!
//! The same design as the PostgreSQL adapter: one statement per read (posts, authors, the
//! viewer's vote), counters kept by triggers on votes, keyset pages on the feed indexes. Vote
//! changes run in `BEGIN IMMEDIATE` transactions, which SQLite serialises.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::Sqlite;
use moments_domain::InfraError;
use moments_domain::ids::{PostId, UserId};
use moments_domain::ports::PostStore;
use moments_domain::post::{
    Author, MediaUrl, MediaUrls, NewPost, Post, PostContent, PostEdit, PostFilter, PostPosition,
    VoteSummary, VoteTotals, VoteValue,
};
use moments_domain::value::Username;

use crate::models::{corrupt, parse_uuid, uuid_text};
use crate::schema::{posts, users, votes};
use crate::store::{SqliteStore, db_error};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = posts, check_for_backend(Sqlite))]
struct PostRow {
    id: String,
    content: String,
    media_urls: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    upvotes: i64,
    downvotes: i64,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Sqlite))]
struct AuthorRow {
    id: String,
    username: String,
    display_name: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = posts)]
struct NewPostRow {
    id: String,
    author_id: String,
    content: String,
    media_urls: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = posts)]
struct PostChanges {
    content: Option<String>,
    media_urls: Option<String>,
    updated_at: NaiveDateTime,
}

fn urls_json(urls: &MediaUrls) -> String {
    serde_json::Value::from_iter(
        urls.as_slice()
            .iter()
            .map(|url| serde_json::Value::from(url.as_str())),
    )
    .to_string()
}

fn urls_from_json(text: &str) -> Result<MediaUrls, InfraError> {
    let urls: Vec<String> = serde_json::from_str(text).map_err(|e| corrupt("media_urls", e))?;
    Ok(MediaUrls::from_trusted(
        urls.into_iter().map(MediaUrl::from_trusted).collect(),
    ))
}

fn author_from(row: AuthorRow) -> Result<Author, InfraError> {
    Ok(Author {
        id: UserId::from_uuid(parse_uuid(&row.id)?),
        username: Username::parse(&row.username).map_err(|e| corrupt("username", e))?,
        display_name: row.display_name,
    })
}

type PostRecord = (PostRow, AuthorRow, Option<i16>);

fn post_from((post, author, vote): PostRecord) -> Result<Post, InfraError> {
    Ok(Post {
        id: PostId::from_uuid(parse_uuid(&post.id)?),
        author: author_from(author)?,
        content: PostContent::from_trusted(post.content),
        media_urls: urls_from_json(&post.media_urls)?,
        created_at: post.created_at.and_utc(),
        updated_at: post.updated_at.and_utc(),
        votes: VoteTotals {
            upvotes: post.upvotes,
            downvotes: post.downvotes,
        },
        my_vote: VoteValue::from_stored(vote),
    })
}

/// Posts of enabled authors, each with its author and `viewer`'s vote (see the PostgreSQL
/// adapter: without a viewer the join looks up an id no account has).
#[diesel::dsl::auto_type]
fn readable_posts(viewer: String) -> _ {
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
fn posts_before(viewer: String, at: NaiveDateTime, id: String) -> _ {
    let readable: readable_posts = readable_posts(viewer);
    readable
        .filter(posts::created_at.le(at))
        .filter(posts::created_at.lt(at).or(posts::id.lt(id)))
        .order((posts::created_at.desc(), posts::id.desc()))
}

/// A position after every post: the start of a first page (the last second of year 9999).
const LATEST: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(at) => at,
    None => panic!("year 9999 is in range"),
};

fn viewer_id(viewer: Option<UserId>) -> String {
    uuid_text(viewer.map_or(uuid::Uuid::nil(), |v| v.as_uuid()))
}

fn find(
    conn: &mut SqliteConnection,
    id: &str,
    viewer: Option<UserId>,
) -> Result<Option<PostRecord>, DieselError> {
    readable_posts(viewer_id(viewer))
        .filter(posts::id.eq(id))
        .select((
            PostRow::as_select(),
            AuthorRow::as_select(),
            votes::value.nullable(),
        ))
        .first(conn)
        .optional()
}

#[async_trait]
impl PostStore for SqliteStore {
    async fn create_post(&self, post: &NewPost) -> Result<Option<Post>, InfraError> {
        let row = NewPostRow {
            id: uuid_text(post.id.as_uuid()),
            author_id: uuid_text(post.author.as_uuid()),
            content: post.content.as_str().to_owned(),
            media_urls: urls_json(&post.media_urls),
            created_at: post.created_at.naive_utc(),
            updated_at: post.created_at.naive_utc(),
        };
        let author = self
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let author = users::table
                        .find(&row.author_id)
                        .filter(users::disabled.eq(false))
                        .select(AuthorRow::as_select())
                        .first(conn)
                        .optional()?;
                    if author.is_some() {
                        diesel::insert_into(posts::table)
                            .values(&row)
                            .execute(conn)?;
                    }
                    Ok::<_, DieselError>(author)
                })
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
        let id = uuid_text(id.as_uuid());
        self.run(move |conn| find(conn, &id, viewer).map_err(db_error))
            .await?
            .map(post_from)
            .transpose()
    }

    async fn update_post(
        &self,
        id: PostId,
        edit: &PostEdit,
        now: DateTime<Utc>,
        viewer: UserId,
    ) -> Result<Option<Post>, InfraError> {
        let changes = PostChanges {
            content: edit.content.as_ref().map(|c| c.as_str().to_owned()),
            media_urls: edit.media_urls.as_ref().map(urls_json),
            updated_at: now.naive_utc(),
        };
        let id = uuid_text(id.as_uuid());
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let updated = diesel::update(posts::table.find(&id))
                    .set(&changes)
                    .execute(conn)?;
                if updated == 0 {
                    return Ok(None);
                }
                find(conn, &id, Some(viewer))
            })
            .map_err(db_error)
        })
        .await?
        .map(post_from)
        .transpose()
    }

    async fn delete_post(&self, id: PostId) -> Result<bool, InfraError> {
        let id = uuid_text(id.as_uuid());
        let deleted = self
            .run(move |conn| {
                diesel::delete(posts::table.find(&id))
                    .execute(conn)
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
            .run(move |conn| {
                let (at, id) = after.map_or((LATEST, uuid::Uuid::max()), |a| {
                    (a.created_at, a.id.as_uuid())
                });
                let page = posts_before(viewer_id(viewer), at.naive_utc(), uuid_text(id));
                let select = (
                    PostRow::as_select(),
                    AuthorRow::as_select(),
                    votes::value.nullable(),
                );
                match filter {
                    PostFilter::Everyone => page.limit(limit).select(select).load(conn),
                    PostFilter::Author(author) => page
                        .filter(posts::author_id.eq(uuid_text(author.as_uuid())))
                        .limit(limit)
                        .select(select)
                        .load(conn),
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
        let (post_id, user_id) = (uuid_text(post.as_uuid()), uuid_text(user.as_uuid()));
        let now = now.naive_utc();
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction(|conn| {
                    let visible: Option<String> = posts::table
                        .inner_join(users::table.on(users::id.eq(posts::author_id)))
                        .filter(posts::id.eq(&post_id))
                        .filter(users::disabled.eq(false))
                        .select(posts::id)
                        .first(conn)
                        .optional()?;
                    if visible.is_none() {
                        return Ok(None);
                    }
                    // Triggers move the post's counters by the difference in this transaction.
                    match vote {
                        Some(value) => {
                            diesel::insert_into(votes::table)
                                .values((
                                    votes::post_id.eq(&post_id),
                                    votes::user_id.eq(&user_id),
                                    votes::value.eq(value.as_i16()),
                                    votes::voted_at.eq(now),
                                ))
                                .on_conflict((votes::post_id, votes::user_id))
                                .do_update()
                                .set((votes::value.eq(value.as_i16()), votes::voted_at.eq(now)))
                                .execute(conn)?;
                        }
                        None => {
                            diesel::delete(votes::table.find((&post_id, &user_id)))
                                .execute(conn)?;
                        }
                    }
                    let (upvotes, downvotes) = posts::table
                        .find(&post_id)
                        .select((posts::upvotes, posts::downvotes))
                        .first::<(i64, i64)>(conn)?;
                    Ok::<_, DieselError>(Some(VoteSummary {
                        post_id: post,
                        votes: VoteTotals { upvotes, downvotes },
                        my_vote: vote,
                    }))
                }))
            })
            .await?;
        match result {
            Ok(summary) => Ok(summary),
            Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _))
            | Err(DieselError::NotFound) => Ok(None),
            Err(e) => Err(db_error(e)),
        }
    }
}
