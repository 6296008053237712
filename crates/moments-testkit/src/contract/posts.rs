//! The post and vote part of the store contract.

use std::collections::HashSet;

use chrono::TimeDelta;
use futures_util::future::join_all;
use moments_domain::audit::AuditKind;
use moments_domain::ids::{PostId, UserId};
use moments_domain::post::{
    MediaUrl, MediaUrls, NewPost, Post, PostContent, PostEdit, PostFilter, VoteTotals, VoteValue,
};
use moments_domain::user::User;
use uuid::Uuid;

use super::{StoreUnderTest, unique};
use crate::builders::{event, new_user, now};

impl StoreUnderTest {
    async fn author(&self) -> User {
        let name = unique("author");
        self.users
            .create_user(new_user(&name, &format!("{name}@example.com")))
            .await
            .unwrap()
    }

    async fn post_by(&self, author: UserId, text: &str) -> Post {
        self.posts
            .create_post(&new_post(author, text, now()))
            .await
            .unwrap()
            .unwrap()
    }

    async fn totals(&self, post: PostId) -> VoteTotals {
        self.posts
            .find_post(post, None)
            .await
            .unwrap()
            .unwrap()
            .votes
    }
}

/// A new post of `author` at `at`.
pub fn new_post(author: UserId, text: &str, at: chrono::DateTime<chrono::Utc>) -> NewPost {
    NewPost {
        id: PostId::from_uuid(Uuid::now_v7()),
        author,
        content: PostContent::parse(text).unwrap(),
        media_urls: MediaUrls::default(),
        created_at: at,
    }
}

fn urls(list: &[&str]) -> MediaUrls {
    MediaUrls::new(list.iter().map(|u| MediaUrl::parse(u).unwrap()).collect()).unwrap()
}

/// A post reads back with its author, URLs in order and no votes; unknown and disabled
/// authors cannot post, and a disabled author's posts disappear.
pub async fn posts_round_trip_with_their_authors(store: &StoreUnderTest) {
    let author = store.author().await;
    let mut new = new_post(author.id, "a < b & c, \"quoted\" 🎉", now());
    new.media_urls = urls(&["https://cdn.example.com/b.png", "http://example.com/a.gif"]);
    let created = store.posts.create_post(&new).await.unwrap().unwrap();
    let found = store.posts.find_post(new.id, None).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert_eq!(found.content.as_str(), "a < b & c, \"quoted\" 🎉");
    assert_eq!(found.author.id, author.id);
    assert_eq!(found.author.username, author.username);
    assert_eq!(
        found
            .media_urls
            .as_slice()
            .iter()
            .map(MediaUrl::as_str)
            .collect::<Vec<_>>(),
        ["https://cdn.example.com/b.png", "http://example.com/a.gif"]
    );
    assert_eq!((found.votes, found.my_vote), (VoteTotals::default(), None));
    assert_eq!(found.created_at, new.created_at);
    assert_eq!(found.updated_at, new.created_at);

    let unknown = PostId::from_uuid(Uuid::now_v7());
    assert!(
        store
            .posts
            .find_post(unknown, None)
            .await
            .unwrap()
            .is_none()
    );
    let ghost = new_post(UserId::from_uuid(Uuid::now_v7()), "nobody", now());
    assert!(store.posts.create_post(&ghost).await.unwrap().is_none());
    assert!(
        store
            .posts
            .find_post(ghost.id, None)
            .await
            .unwrap()
            .is_none()
    );

    store
        .users
        .set_disabled(author.id, true, now(), &event(AuditKind::UserDisabled))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.posts.find_post(new.id, None).await.unwrap().is_none(),
        "a disabled author's posts are hidden"
    );
    let late = new_post(author.id, "after disabling", now());
    assert!(store.posts.create_post(&late).await.unwrap().is_none());
    store
        .users
        .set_disabled(author.id, false, now(), &event(AuditKind::UserEnabled))
        .await
        .unwrap()
        .unwrap();
    assert!(store.posts.find_post(new.id, None).await.unwrap().is_some());
    assert!(
        store
            .posts
            .find_post(late.id, None)
            .await
            .unwrap()
            .is_none()
    );
}

/// Edits replace only the fields given and move `updated_at`; deleting removes the post.
pub async fn posts_are_edited_and_deleted(store: &StoreUnderTest) {
    let author = store.author().await;
    let post = store.post_by(author.id, "first words").await;
    let later = post.created_at + TimeDelta::seconds(5);
    let edit = PostEdit {
        content: None,
        media_urls: Some(urls(&["https://example.com/x.webp"])),
    };
    let edited = store
        .posts
        .update_post(post.id, &edit, later, author.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.content.as_str(), "first words");
    assert_eq!(edited.media_urls.as_slice().len(), 1);
    assert_eq!(
        (edited.created_at, edited.updated_at),
        (post.created_at, later)
    );
    let edit = PostEdit {
        content: Some(PostContent::parse("second words").unwrap()),
        media_urls: Some(MediaUrls::default()),
    };
    let edited = store
        .posts
        .update_post(post.id, &edit, later, author.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.content.as_str(), "second words");
    assert!(edited.media_urls.as_slice().is_empty());
    assert_eq!(
        store.posts.find_post(post.id, None).await.unwrap().unwrap(),
        edited
    );

    let voter = store.author().await;
    store
        .posts
        .set_vote(post.id, voter.id, Some(VoteValue::Up), now())
        .await
        .unwrap()
        .unwrap();
    assert!(store.posts.delete_post(post.id).await.unwrap());
    assert!(!store.posts.delete_post(post.id).await.unwrap());
    assert!(
        store
            .posts
            .find_post(post.id, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .posts
            .update_post(post.id, &edit, later, author.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .posts
            .set_vote(post.id, voter.id, Some(VoteValue::Down), now())
            .await
            .unwrap()
            .is_none(),
        "no vote on a deleted post"
    );
    let feed = store
        .posts
        .list_posts(PostFilter::Author(author.id), None, 10, None)
        .await
        .unwrap();
    assert!(feed.is_empty());
}

/// Pages walk newest first by `(created_at, id)` with no gap or repeat, ties included, each
/// page one statement; an author's list holds only their posts.
pub async fn posts_page_newest_first_one_query_per_page(store: &StoreUnderTest) {
    let (alice, bob) = (store.author().await, store.author().await);
    let start = now();
    let mut expected = Vec::new();
    for i in 0..23_i64 {
        // Three posts share each instant, so ties are broken by id.
        let at = start + TimeDelta::milliseconds(i / 3);
        let author = if i % 2 == 0 { alice.id } else { bob.id };
        let post = store
            .posts
            .create_post(&new_post(author, &format!("post {i}"), at))
            .await
            .unwrap()
            .unwrap();
        expected.push(post);
    }
    expected.sort_by_key(|p| std::cmp::Reverse(p.position_key()));

    let walk = |filter: PostFilter| async move {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let before = (store.queries)();
            let page = store
                .posts
                .list_posts(filter, after, 5, Some(alice.id))
                .await
                .unwrap();
            assert_eq!((store.queries)() - before, 1, "one statement per page");
            let Some(last) = page.last() else { break };
            after = Some(last.position());
            seen.extend(page);
        }
        seen
    };
    let feed = walk(PostFilter::Everyone).await;
    let ids = |posts: &[Post]| posts.iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(&feed), ids(&expected));
    let alices = walk(PostFilter::Author(alice.id)).await;
    let expected_alice: Vec<_> = expected
        .iter()
        .filter(|p| p.author.id == alice.id)
        .cloned()
        .collect();
    assert_eq!(ids(&alices), ids(&expected_alice));
    assert_eq!(alices.len(), 12);
}

/// A post's place in a newest-first list as a sortable tuple.
trait PositionKey {
    fn position_key(&self) -> (chrono::DateTime<chrono::Utc>, Uuid);
}

impl PositionKey for Post {
    fn position_key(&self) -> (chrono::DateTime<chrono::Utc>, Uuid) {
        (self.created_at, self.id.as_uuid())
    }
}

/// Votes are idempotent, move the totals by the difference when changed, clear, and show as
/// the viewer's own vote to that viewer only.
pub async fn votes_move_totals_by_the_difference(store: &StoreUnderTest) {
    let author = store.author().await;
    let post = store.post_by(author.id, "vote on me").await;
    let (ann, ben) = (store.author().await, store.author().await);
    let vote = |user: UserId, value: Option<VoteValue>| async move {
        store
            .posts
            .set_vote(post.id, user, value, now())
            .await
            .unwrap()
            .unwrap()
    };
    let totals = |up, down| VoteTotals {
        upvotes: up,
        downvotes: down,
    };
    let summary = vote(ann.id, Some(VoteValue::Up)).await;
    assert_eq!(
        (summary.votes, summary.my_vote),
        (totals(1, 0), Some(VoteValue::Up))
    );
    assert_eq!(vote(ann.id, Some(VoteValue::Up)).await.votes, totals(1, 0));
    assert_eq!(vote(ben.id, Some(VoteValue::Up)).await.votes, totals(2, 0));
    assert_eq!(
        vote(ann.id, Some(VoteValue::Down)).await.votes,
        totals(1, 1)
    );
    assert_eq!(totals(1, 1).score(), 0);

    let seen_by_ann = store
        .posts
        .find_post(post.id, Some(ann.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_by_ann.my_vote, Some(VoteValue::Down));
    let listed = store
        .posts
        .list_posts(PostFilter::Author(author.id), None, 5, Some(ben.id))
        .await
        .unwrap();
    assert_eq!(listed[0].my_vote, Some(VoteValue::Up));
    assert_eq!(listed[0].votes, totals(1, 1));
    let anonymous = store.posts.find_post(post.id, None).await.unwrap().unwrap();
    assert_eq!(anonymous.my_vote, None);

    let cleared = vote(ann.id, None).await;
    assert_eq!((cleared.votes, cleared.my_vote), (totals(1, 0), None));
    assert_eq!(
        vote(ann.id, None).await.votes,
        totals(1, 0),
        "clearing twice"
    );
    let unknown = PostId::from_uuid(Uuid::now_v7());
    assert!(
        store
            .posts
            .set_vote(unknown, ann.id, Some(VoteValue::Up), now())
            .await
            .unwrap()
            .is_none()
    );
}

/// 100 users voting at once end with exact totals; one user changing their vote 40 times at
/// once ends with totals that match the one vote stored.
pub async fn concurrent_votes_keep_exact_totals(store: &StoreUnderTest) {
    let author = store.author().await;
    let post = store.post_by(author.id, "popular").await;
    let mut voters = Vec::new();
    for _ in 0..100 {
        voters.push(store.author().await.id);
    }
    let outcomes = join_all(voters.iter().enumerate().map(|(i, &voter)| {
        let value = if i % 4 == 0 {
            VoteValue::Down
        } else {
            VoteValue::Up
        };
        let posts = store.posts.clone();
        async move { posts.set_vote(post.id, voter, Some(value), now()).await }
    }))
    .await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Ok(Some(_)))),
        "{outcomes:?}"
    );
    assert_eq!(
        store.totals(post.id).await,
        VoteTotals {
            upvotes: 75,
            downvotes: 25
        }
    );

    let flipper = voters[1];
    let flips = join_all((0..40).map(|i| {
        let value = match i % 3 {
            0 => Some(VoteValue::Up),
            1 => Some(VoteValue::Down),
            _ => None,
        };
        let posts = store.posts.clone();
        async move { posts.set_vote(post.id, flipper, value, now()).await }
    }))
    .await;
    assert!(flips.iter().all(|o| matches!(o, Ok(Some(_)))), "{flips:?}");
    let mine = store
        .posts
        .find_post(post.id, Some(flipper))
        .await
        .unwrap()
        .unwrap();
    // 74 other up votes and 25 down; the flipper's final vote adds to one side or neither.
    let expected = match mine.my_vote {
        Some(VoteValue::Up) => (75, 25),
        Some(VoteValue::Down) => (74, 26),
        None => (74, 25),
    };
    assert_eq!(
        (mine.votes.upvotes, mine.votes.downvotes),
        expected,
        "totals match the stored votes"
    );
    let distinct: HashSet<_> = voters.iter().collect();
    assert_eq!(distinct.len(), 100);
}
