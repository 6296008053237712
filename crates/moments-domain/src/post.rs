//! Posts, the feed and votes.
//!
//! A post is plain text (markup removed on the way in by a real HTML parser) with up to nine
//! media URLs. The feed and an author's posts are keyset pages on `(created_at, id)`, newest
//! first, each one store query that brings the posts, their authors, their vote totals and the
//! caller's own vote together. Vote totals are counters the store keeps in the transaction of
//! the vote (docs/decisions.md explains why, with the measurements).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};

use crate::account::Actor;
use crate::error::InfraError;
use crate::ids::{PostId, UserId};
use crate::page::{ListError, Page, open_cursor, seal_page};
use crate::ports::{Clock, CursorCodec, IdGenerator, PostStore, UserStore};
use crate::value::{InvalidValue, Username};

/// The permission to create posts and edit or delete one's own.
pub const WRITE_PERMISSION: &str = "posts:write";
/// The permission to delete anyone's post.
pub const MODERATE_PERMISSION: &str = "posts:moderate";

/// The text of a post: markup removed, trimmed, 1 to 5000 characters.
///
/// Markup is removed by an HTML5 parser (ammonia on html5ever), never by pattern matching:
/// tags are dropped with the text inside them kept, `script`, `style` and `template` are dropped
/// with their contents, and character references are decoded, so the result holds no tag and
/// text that is not markup (`a < b & c`) is kept exactly. Line breaks come back as `\n`, as an
/// HTML parser normalises them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostContent(String);

/// How many times markup removal runs before giving up: each run undoes one level of escaped
/// markup (`&lt;b&gt;` is text the first time and a tag the second), and text that is still
/// changing after this many is refused rather than stored with a tag in it.
const MARKUP_PASSES: usize = 4;

static MARKUP_REMOVER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder.clean_content_tags(HashSet::from(["script", "style", "template"]));
    builder
});

/// Undoes the escaping of the HTML serialiser, which is all that is left in text it wrote.
fn unescape_serialised(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The text of `raw` with every tag removed; `None` when escaped markup is nested too deeply
/// to remove in [`MARKUP_PASSES`] runs.
fn plain_text(raw: &str) -> Option<String> {
    let mut text = raw.to_owned();
    for _ in 0..MARKUP_PASSES {
        let next = unescape_serialised(&MARKUP_REMOVER.clean(&text).to_string());
        if next == text {
            return Some(next);
        }
        text = next;
    }
    None
}

impl PostContent {
    /// Longest accepted content, in characters, after markup removal and trimming.
    pub const MAX_LEN: usize = 5000;

    /// Removes markup, trims and checks the length.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let text = plain_text(raw).ok_or_else(|| {
            InvalidValue::new(
                "nested_markup",
                "contains escaped markup nested too deeply to remove",
            )
        })?;
        let trimmed = text.trim();
        let len = trimmed.chars().count();
        if len == 0 {
            return Err(InvalidValue::new(
                "required",
                "must contain text (markup and surrounding white space do not count)",
            ));
        }
        if len > Self::MAX_LEN {
            return Err(InvalidValue::new(
                "too_long",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Content read back from a store, which only ever holds parsed content.
    pub fn from_trusted(text: String) -> Self {
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute `http` or `https` URL of at most 2048 characters, without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUrl(String);

impl MediaUrl {
    /// Longest accepted URL, in characters (as sent and as normalised).
    pub const MAX_LEN: usize = 2048;

    /// Parses and normalises (lowercase scheme and host, percent-encoding) a URL.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let too_long = || {
            InvalidValue::new(
                "too_long",
                format!("must be at most {} characters", Self::MAX_LEN),
            )
        };
        if raw.chars().count() > Self::MAX_LEN {
            return Err(too_long());
        }
        let url = url::Url::parse(raw.trim()).map_err(|_| {
            InvalidValue::new("invalid_url", "must be an absolute http or https URL")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidValue::new(
                "unsupported_scheme",
                "must be an http or https URL",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidValue::new("invalid_url", "must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidValue::new(
                "credentials_not_allowed",
                "must not carry a user name or password",
            ));
        }
        let normalised = String::from(url);
        if normalised.chars().count() > Self::MAX_LEN {
            return Err(too_long());
        }
        Ok(Self(normalised))
    }

    /// A URL read back from a store, which only ever holds parsed URLs.
    pub fn from_trusted(url: String) -> Self {
        Self(url)
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The media URLs of a post: at most nine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaUrls(Vec<MediaUrl>);

impl MediaUrls {
    /// Most URLs a post may carry.
    pub const MAX: usize = 9;

    /// Checks the count; each URL is parsed on its own (its errors name its index).
    pub fn new(urls: Vec<MediaUrl>) -> Result<Self, InvalidValue> {
        if urls.len() > Self::MAX {
            return Err(InvalidValue::new(
                "too_many",
                format!("at most {} URLs", Self::MAX),
            ));
        }
        Ok(Self(urls))
    }

    /// URLs read back from a store.
    pub fn from_trusted(urls: Vec<MediaUrl>) -> Self {
        Self(urls)
    }

    /// The URLs, in the order given.
    pub fn as_slice(&self) -> &[MediaUrl] {
        &self.0
    }
}

/// One vote: up (1) or down (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoteValue {
    /// +1.
    Up,
    /// -1.
    Down,
}

impl VoteValue {
    /// 1 or -1, as stored and as shown.
    pub const fn as_i16(self) -> i16 {
        match self {
            Self::Up => 1,
            Self::Down => -1,
        }
    }

    /// A vote as a store keeps it (`None`, or a value other than 1 and -1: no vote).
    pub const fn from_stored(value: Option<i16>) -> Option<Self> {
        match value {
            Some(1) => Some(Self::Up),
            Some(-1) => Some(Self::Down),
            _ => None,
        }
    }

    /// The vote of 1 or -1; anything else is refused.
    pub fn from_i64(value: i64) -> Result<Self, InvalidValue> {
        match value {
            1 => Ok(Self::Up),
            -1 => Ok(Self::Down),
            _ => Err(InvalidValue::new("invalid_vote", "must be 1 or -1")),
        }
    }
}

/// A post to store.
#[derive(Debug, Clone)]
pub struct NewPost {
    /// New id.
    pub id: PostId,
    /// Who wrote it.
    pub author: UserId,
    /// The text.
    pub content: PostContent,
    /// Media URLs.
    pub media_urls: MediaUrls,
    /// When (also its first `updated_at`).
    pub created_at: DateTime<Utc>,
}

impl NewPost {
    /// The post as stored, with its author: no votes yet, never edited.
    pub fn published_by(self, author: Author) -> Post {
        Post {
            id: self.id,
            author,
            content: self.content,
            media_urls: self.media_urls,
            created_at: self.created_at,
            updated_at: self.created_at,
            votes: VoteTotals::default(),
            my_vote: None,
        }
    }
}

/// An edit: each field present is replaced.
#[derive(Debug, Clone, Default)]
pub struct PostEdit {
    /// New text.
    pub content: Option<PostContent>,
    /// New media URLs.
    pub media_urls: Option<MediaUrls>,
}

/// The author of a post as shown with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The account.
    pub id: UserId,
    /// Its username.
    pub username: Username,
    /// Its display name.
    pub display_name: Option<String>,
}

/// Vote totals of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoteTotals {
    /// Up votes.
    pub upvotes: i64,
    /// Down votes.
    pub downvotes: i64,
}

impl VoteTotals {
    /// Up votes minus down votes.
    pub const fn score(&self) -> i64 {
        self.upvotes - self.downvotes
    }
}

/// A post as read: with its author, its totals and the viewer's own vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// Id.
    pub id: PostId,
    /// Who wrote it.
    pub author: Author,
    /// The text.
    pub content: PostContent,
    /// Media URLs.
    pub media_urls: MediaUrls,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was last edited (`created_at` if never).
    pub updated_at: DateTime<Utc>,
    /// Vote totals.
    pub votes: VoteTotals,
    /// The viewer's vote; `None` without a viewer or without a vote.
    pub my_vote: Option<VoteValue>,
}

impl Post {
    /// Where the post sits in a newest-first list.
    pub const fn position(&self) -> PostPosition {
        PostPosition {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// A post's votes after a vote was cast or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteSummary {
    /// The post.
    pub post_id: PostId,
    /// Its totals.
    pub votes: VoteTotals,
    /// The voter's vote now.
    pub my_vote: Option<VoteValue>,
}

/// The keyset position of a post in a newest-first list: `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostPosition {
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Id (breaks ties between posts of the same microsecond).
    pub id: PostId,
}

impl PostPosition {
    fn encode(&self) -> String {
        format!("{} {}", self.created_at.timestamp_micros(), self.id)
    }

    fn decode(key: &str) -> Option<Self> {
        let (micros, id) = key.split_once(' ')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: PostId::from_uuid(uuid::Uuid::parse_str(id).ok()?),
        })
    }
}

/// Which posts a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFilter {
    /// Everyone's: the feed.
    Everyone,
    /// One author's.
    Author(UserId),
}

/// Why a post could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreatePostError {
    /// The caller lacks `posts:write` (or the account was disabled a moment ago).
    #[error("posts:write is required")]
    Forbidden,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a post could not be edited or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ChangePostError {
    /// No such post (or its author is disabled).
    #[error("unknown post")]
    NotFound,
    /// The caller may not change this post.
    #[error("not allowed to change this post")]
    Forbidden,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a vote could not be cast or cleared.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    /// No such post.
    #[error("unknown post")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an author's posts could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorPostsError {
    /// No such (enabled) account.
    #[error("unknown user")]
    UnknownUser,
    /// The cursor or the store failed.
    #[error(transparent)]
    List(#[from] ListError),
}

impl From<InfraError> for AuthorPostsError {
    fn from(e: InfraError) -> Self {
        Self::List(ListError::Infra(e))
    }
}

/// What the post service needs.
#[derive(Clone)]
pub struct PostPorts {
    /// Posts and votes.
    pub posts: Arc<dyn PostStore>,
    /// Accounts (to tell an unknown author from one without posts).
    pub users: Arc<dyn UserStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdGenerator>,
    /// List cursors.
    pub cursors: Arc<dyn CursorCodec>,
}

impl std::fmt::Debug for PostPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostPorts")
    }
}

/// Posts, the feed and votes.
#[derive(Debug, Clone)]
pub struct PostService {
    ports: PostPorts,
}

impl PostService {
    /// The service over its ports.
    pub fn new(ports: PostPorts) -> Self {
        Self { ports }
    }

    /// Writes a post as the caller, who needs `posts:write`.
    pub async fn create(
        &self,
        actor: &Actor,
        content: PostContent,
        media_urls: MediaUrls,
    ) -> Result<Post, CreatePostError> {
        if !actor.has_permission(WRITE_PERMISSION) {
            return Err(CreatePostError::Forbidden);
        }
        let post = NewPost {
            id: PostId::from_uuid(self.ports.ids.new_id()),
            author: actor.user_id,
            content,
            media_urls,
            created_at: self.ports.clock.now(),
        };
        self.ports
            .posts
            .create_post(&post)
            .await?
            .ok_or(CreatePostError::Forbidden)
    }

    /// One post, with the viewer's vote when there is a viewer; `None` for an unknown post or
    /// one whose author is disabled.
    pub async fn get(
        &self,
        id: PostId,
        viewer: Option<UserId>,
    ) -> Result<Option<Post>, InfraError> {
        self.ports.posts.find_post(id, viewer).await
    }

    /// Edits a post. Only its author may, holding `posts:write`; moderators delete, they do not
    /// put words in other people's mouths.
    pub async fn edit(
        &self,
        actor: &Actor,
        id: PostId,
        edit: PostEdit,
    ) -> Result<Post, ChangePostError> {
        let post = self.owned(actor, id).await?;
        if edit.content.is_none() && edit.media_urls.is_none() {
            return Ok(post);
        }
        let now = self.ports.clock.now();
        self.ports
            .posts
            .update_post(id, &edit, now, actor.user_id)
            .await?
            .ok_or(ChangePostError::NotFound)
    }

    /// Deletes a post and its votes: its author (holding `posts:write`) or a moderator
    /// (`posts:moderate`).
    pub async fn delete(&self, actor: &Actor, id: PostId) -> Result<(), ChangePostError> {
        if !actor.has_permission(MODERATE_PERMISSION) {
            self.owned(actor, id).await?;
        }
        if self.ports.posts.delete_post(id).await? {
            Ok(())
        } else {
            Err(ChangePostError::NotFound)
        }
    }

    /// The post, if the caller wrote it and may still write. A caller who may not write at
    /// all is refused before the post is looked for.
    async fn owned(&self, actor: &Actor, id: PostId) -> Result<Post, ChangePostError> {
        if !actor.has_permission(WRITE_PERMISSION) {
            return Err(ChangePostError::Forbidden);
        }
        let post = self
            .ports
            .posts
            .find_post(id, Some(actor.user_id))
            .await?
            .ok_or(ChangePostError::NotFound)?;
        // The author of a post never changes, so this check cannot go stale before the write.
        if post.author.id != actor.user_id {
            return Err(ChangePostError::Forbidden);
        }
        Ok(post)
    }

    /// Casts (`Some`) or clears (`None`) the caller's vote. Idempotent: the same vote twice
    /// changes nothing, and clearing a vote that is not there is not an error.
    pub async fn vote(
        &self,
        actor: &Actor,
        id: PostId,
        vote: Option<VoteValue>,
    ) -> Result<VoteSummary, VoteError> {
        let now = self.ports.clock.now();
        self.ports
            .posts
            .set_vote(id, actor.user_id, vote, now)
            .await?
            .ok_or(VoteError::NotFound)
    }

    /// The feed: everyone's posts, newest first, `limit` a page.
    pub async fn feed(
        &self,
        viewer: Option<UserId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Post>, ListError> {
        self.list(PostFilter::Everyone, viewer, cursor, limit).await
    }

    /// One author's posts, newest first; [`AuthorPostsError::UnknownUser`] for an unknown or
    /// disabled account (whose posts nobody sees).
    pub async fn by_author(
        &self,
        author: UserId,
        viewer: Option<UserId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Post>, AuthorPostsError> {
        let known = self
            .ports
            .users
            .find_user_by_id(author)
            .await?
            .is_some_and(|user| !user.disabled);
        if !known {
            return Err(AuthorPostsError::UnknownUser);
        }
        Ok(self
            .list(PostFilter::Author(author), viewer, cursor, limit)
            .await?)
    }

    async fn list(
        &self,
        filter: PostFilter,
        viewer: Option<UserId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Post>, ListError> {
        let binding = match filter {
            PostFilter::Everyone => String::new(),
            PostFilter::Author(author) => author.to_string(),
        };
        let cursors = &*self.ports.cursors;
        let after = open_cursor(cursors, "posts", &binding, cursor)?
            .map(|key| PostPosition::decode(&key).ok_or(ListError::InvalidCursor))
            .transpose()?;
        let items = self
            .ports
            .posts
            .list_posts(filter, after, limit + 1, viewer)
            .await?;
        Ok(seal_page(
            cursors,
            "posts",
            &binding,
            items,
            limit,
            |post| post.position().encode(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(raw: &str) -> String {
        PostContent::parse(raw).unwrap().as_str().to_owned()
    }

    #[test]
    fn markup_is_removed_and_its_text_kept() {
        assert_eq!(content("<b>bold</b> and <i>it</i>"), "bold and it");
        assert_eq!(content("<p>one</p><p>two</p>"), "onetwo");
        assert_eq!(content("<a href=\"https://x.test\">link</a>"), "link");
    }

    #[test]
    fn script_and_style_are_dropped_with_their_contents() {
        assert_eq!(content("hi<script>alert(1)</script>!"), "hi!");
        assert_eq!(content("<style>p{}</style>text"), "text");
        assert_eq!(content("<img src=x onerror=alert(1)>text"), "text");
    }

    #[test]
    fn text_that_is_not_markup_is_kept_exactly() {
        for text in [
            "a < b & c",
            "5 > 3 and 2 < 4",
            "x <3 y",
            "AT&T",
            "\"quoted\" 'single'",
            "emoji 🎉 and ünïcödé",
            "line one\nline two",
            "tom & jerry; a&b",
        ] {
            assert_eq!(content(text), text, "{text:?}");
        }
    }

    #[test]
    fn escaped_markup_never_comes_back_as_a_tag() {
        let text = content("&lt;script&gt;alert(1)&lt;/script&gt;ok");
        assert!(!text.contains('<'), "{text:?}");
        assert_eq!(text, "ok");
        let twice = content("&amp;lt;b&amp;gt;bold");
        assert_eq!(twice, "bold");
        let nest = "amp;".repeat(10);
        let deep = format!("&{nest}lt;b&{nest}gt;x");
        assert_eq!(PostContent::parse(&deep).unwrap_err().code, "nested_markup");
    }

    #[test]
    fn content_is_trimmed_and_bounded() {
        assert_eq!(content("  hello \n"), "hello");
        assert_eq!(PostContent::parse("").unwrap_err().code, "required");
        assert_eq!(PostContent::parse("   ").unwrap_err().code, "required");
        assert_eq!(PostContent::parse("<b></b>").unwrap_err().code, "required");
        assert_eq!(
            PostContent::parse(&"é".repeat(5000))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            5000
        );
        assert_eq!(
            PostContent::parse(&"a".repeat(5001)).unwrap_err().code,
            "too_long"
        );
        // Markup does not count towards the limit.
        let wrapped = format!("<b>{}</b>", "a".repeat(5000));
        assert!(PostContent::parse(&wrapped).is_ok());
    }

    #[test]
    fn media_urls_are_absolute_http() {
        assert_eq!(
            MediaUrl::parse("https://CDN.example.com/a.png")
                .unwrap()
                .as_str(),
            "https://cdn.example.com/a.png"
        );
        assert!(MediaUrl::parse("http://example.com/x?y=1#z").is_ok());
        for (raw, code) in [
            ("javascript:alert(1)", "unsupported_scheme"),
            ("JavaScript:alert(1)", "unsupported_scheme"),
            ("data:image/png;base64,AAAA", "unsupported_scheme"),
            ("ftp://example.com/a", "unsupported_scheme"),
            ("/relative/path.png", "invalid_url"),
            ("example.com/a.png", "invalid_url"),
            ("https://", "invalid_url"),
            ("https://user:pw@example.com/a", "credentials_not_allowed"),
        ] {
            assert_eq!(MediaUrl::parse(raw).unwrap_err().code, code, "{raw}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(MediaUrl::parse(&long).unwrap_err().code, "too_long");
        let at_limit = format!("https://example.com/{}", "a".repeat(2048 - 20));
        assert_eq!(MediaUrl::parse(&at_limit).unwrap().as_str().len(), 2048);
    }

    #[test]
    fn at_most_nine_urls() {
        let url = MediaUrl::parse("https://example.com/a.png").unwrap();
        assert!(MediaUrls::new(vec![url.clone(); 9]).is_ok());
        assert_eq!(MediaUrls::new(vec![url; 10]).unwrap_err().code, "too_many");
    }

    #[test]
    fn votes_are_one_or_minus_one() {
        assert_eq!(VoteValue::from_i64(1).unwrap(), VoteValue::Up);
        assert_eq!(VoteValue::from_i64(-1).unwrap(), VoteValue::Down);
        for bad in [0, 2, -2, i64::MAX] {
            assert_eq!(VoteValue::from_i64(bad).unwrap_err().code, "invalid_vote");
        }
    }

    #[test]
    fn positions_survive_their_cursor_key() {
        let position = PostPosition {
            created_at: DateTime::from_timestamp_micros(1_763_700_000_123_456).unwrap(),
            id: PostId::from_uuid(uuid::Uuid::now_v7()),
        };
        assert_eq!(PostPosition::decode(&position.encode()), Some(position));
        assert_eq!(PostPosition::decode("nonsense"), None);
        assert_eq!(PostPosition::decode("12 not-a-uuid"), None);
    }
}
