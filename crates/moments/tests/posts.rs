//! Posts, the feed and votes over HTTP on SQLite and PostgreSQL: every route's success and
//! failure paths, ownership, validation, keyset pages, and the one query a page costs.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use chrono::TimeDelta;
use common::*;
use serde_json::{Value, json};

on_both_stores!(
    posts_are_created_read_edited_and_deleted,
    content_and_urls_are_validated_and_markup_removed,
    only_authors_edit_and_authors_or_moderators_delete,
    the_feed_pages_newest_first_with_sealed_cursors,
    votes_are_idempotent_and_move_the_totals,
    a_feed_page_is_one_database_query,
);

fn token(pair: &Value) -> String {
    pair["access_token"].as_str().unwrap().to_owned()
}

fn create(token: &str, body: Value) -> test::TestRequest {
    with_token(
        test::TestRequest::post()
            .uri("/api/v1/posts")
            .set_json(body),
        token,
    )
}

fn patch(token: &str, id: &str, body: Value) -> test::TestRequest {
    with_token(
        test::TestRequest::patch()
            .uri(&format!("/api/v1/posts/{id}"))
            .set_json(body),
        token,
    )
}

fn delete(token: &str, path: &str) -> test::TestRequest {
    with_token(test::TestRequest::delete().uri(path), token)
}

fn vote(token: &str, id: &str, body: Value) -> test::TestRequest {
    with_token(
        test::TestRequest::put()
            .uri(&format!("/api/v1/posts/{id}/vote"))
            .set_json(body),
        token,
    )
}

fn id_of(reply: &Reply) -> String {
    reply.body["id"].as_str().unwrap().to_owned()
}

fn contents(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["content"].as_str().unwrap().to_owned())
        .collect()
}

async fn posts_are_created_read_edited_and_deleted(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let ann = register(&app, "ann_writer").await;
    let pair = login(&app, "ann_writer").await;
    let ann_token = token(&pair);

    let created = send(
        &app,
        create(
            &ann_token,
            json!({"content": "  Hello, harbour  ", "media_urls": ["https://cdn.example.com/a.png"]}),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let id = id_of(&created);
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/posts/{id}").as_str())
    );
    let body = &created.body;
    assert_eq!(body["content"], "Hello, harbour");
    assert_eq!(body["media_urls"], json!(["https://cdn.example.com/a.png"]));
    assert_eq!(
        body["author"],
        json!({"id": ann["id"], "username": "ann_writer", "display_name": null})
    );
    for (field, value) in [
        ("score", json!(0)),
        ("upvotes", json!(0)),
        ("downvotes", json!(0)),
        ("my_vote", Value::Null),
    ] {
        assert_eq!(body.get(field), Some(&value), "{field} in {body:#}");
    }
    assert_eq!(body["created_at"], body["updated_at"]);

    let read = get(&app, &format!("/api/v1/posts/{id}"), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);
    // Under /api (latest version) too.
    let latest = get(&app, &format!("/api/posts/{id}"), None).await;
    assert_eq!(latest.body["id"], created.body["id"]);

    clock.advance(TimeDelta::seconds(30));
    let edited = send(
        &app,
        patch(&ann_token, &id, json!({"content": "<em>Edited</em>"})),
    )
    .await;
    assert_eq!(edited.status, 200, "{:#}", edited.body);
    assert_eq!(edited.body["content"], "Edited");
    assert_eq!(edited.body["media_urls"], created.body["media_urls"]);
    assert_eq!(edited.body["created_at"], created.body["created_at"]);
    assert_ne!(edited.body["updated_at"], created.body["updated_at"]);
    let emptied = send(&app, patch(&ann_token, &id, json!({"media_urls": []}))).await;
    assert_eq!(emptied.body["media_urls"], json!([]));
    assert_eq!(emptied.body["content"], "Edited");
    let unchanged = send(&app, patch(&ann_token, &id, json!({}))).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(unchanged.body["updated_at"], emptied.body["updated_at"]);

    let path = format!("/api/v1/posts/{id}");
    let deleted = send(&app, delete(&ann_token, &path)).await;
    assert_eq!(deleted.status, 204);
    get(&app, &path, None).await.problem(404, "not_found");
    send(&app, delete(&ann_token, &path))
        .await
        .problem(404, "not_found");
    send(&app, patch(&ann_token, &id, json!({"content": "back?"})))
        .await
        .problem(404, "not_found");
    get(&app, "/api/v1/posts/not-a-uuid", None)
        .await
        .problem(404, "not_found");
    // Writing needs credentials.
    send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/posts")
            .set_json(json!({"content": "anonymous"})),
    )
    .await
    .problem(401, "unauthenticated");
    let feed = get(&app, "/api/v1/posts", None).await;
    assert_eq!(feed.body["items"], json!([]));
}

async fn content_and_urls_are_validated_and_markup_removed(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "val_writer").await;
    let writer = token(&login(&app, "val_writer").await);
    let refused = async |body: Value| send(&app, create(&writer, body)).await.field_errors();

    assert_eq!(
        refused(json!({"content": ""})).await,
        [("content".into(), "required".into())]
    );
    assert_eq!(
        refused(json!({"content": "  \n\t "})).await,
        [("content".into(), "required".into())]
    );
    assert_eq!(
        refused(json!({"content": "<p><b></b></p>"})).await,
        [("content".into(), "required".into())]
    );
    assert_eq!(
        refused(json!({"content": "x".repeat(5001)})).await,
        [("content".into(), "too_long".into())]
    );
    let ten = vec!["https://example.com/a.png"; 10];
    assert_eq!(
        refused(json!({"content": "ok", "media_urls": ten})).await,
        [("media_urls".into(), "too_many".into())]
    );
    assert_eq!(
        refused(json!({"content": "ok", "media_urls": ["https://example.com/a.png", "javascript:alert(1)"]})).await,
        [("media_urls[1]".into(), "unsupported_scheme".into())]
    );
    let long = format!("https://example.com/{}", "a".repeat(2030));
    assert_eq!(
        refused(json!({"content": "ok", "media_urls": ["/relative.png", long]})).await,
        [
            ("media_urls[0]".into(), "invalid_url".into()),
            ("media_urls[1]".into(), "too_long".into())
        ]
    );
    send(
        &app,
        create(&writer, json!({"content": "ok", "title": "extra"})),
    )
    .await
    .problem(422, "validation_failed");
    send(&app, create(&writer, json!({"content": 42})))
        .await
        .problem(422, "validation_failed");
    let feed = get(&app, "/api/v1/posts", None).await;
    assert_eq!(feed.body["items"], json!([]), "nothing stored");

    let accepted = async |content: &str| {
        let reply = send(&app, create(&writer, json!({"content": content}))).await;
        assert_eq!(reply.status, 201, "{:#}", reply.body);
        reply.body["content"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        accepted("<b>bold</b> move<script>alert('x')</script><style>p{}</style>").await,
        "bold move"
    );
    assert_eq!(accepted("a < b & c").await, "a < b & c");
    assert_eq!(
        accepted("<img src=x onerror=alert(1)>caption").await,
        "caption"
    );
    assert_eq!(
        accepted("&lt;script&gt;alert(1)&lt;/script&gt;hi").await,
        "hi"
    );
    assert_eq!(accepted(&"é".repeat(5000)).await.chars().count(), 5000);
    let nine = vec!["https://example.com/a.png"; 9];
    let reply = send(
        &app,
        create(&writer, json!({"content": "nine", "media_urls": nine})),
    )
    .await;
    assert_eq!(reply.status, 201);
    // Edits follow the same rules, and a refused edit changes nothing.
    let id = id_of(&reply);
    let edit = send(
        &app,
        patch(
            &writer,
            &id,
            json!({"content": "", "media_urls": ["ftp://x.test/a"]}),
        ),
    )
    .await;
    assert_eq!(
        edit.field_errors(),
        [
            ("content".into(), "required".into()),
            ("media_urls[0]".into(), "unsupported_scheme".into())
        ]
    );
    let read = get(&app, &format!("/api/v1/posts/{id}"), None).await;
    assert_eq!(read.body["content"], "nine");
    assert_eq!(read.body["media_urls"].as_array().unwrap().len(), 9);
}

async fn only_authors_edit_and_authors_or_moderators_delete(t: TestApp) {
    create_admin(&t.state, "mod_admin").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "own_author").await;
    register(&app, "own_other").await;
    let author = token(&login(&app, "own_author").await);
    let other = token(&login(&app, "own_other").await);
    let admin = token(&login(&app, "mod_admin").await);
    let post = send(&app, create(&author, json!({"content": "mine"}))).await;
    let id = id_of(&post);
    let path = format!("/api/v1/posts/{id}");

    send(&app, patch(&other, &id, json!({"content": "hijacked"})))
        .await
        .problem(403, "forbidden");
    send(
        &app,
        patch(&admin, &id, json!({"content": "moderated words"})),
    )
    .await
    .problem(403, "forbidden");
    send(&app, delete(&other, &path))
        .await
        .problem(403, "forbidden");
    let read = get(&app, &path, None).await;
    assert_eq!(read.body, post.body, "nothing changed");

    // A key with posts:write writes as its owner; without it, it cannot.
    let key = async |scopes: Value| {
        let req = test::TestRequest::post()
            .uri("/api/v1/api-keys")
            .set_json(json!({"name": "poster", "scopes": scopes}));
        let reply = send(&app, with_token(req, &author)).await;
        assert_eq!(reply.status, 201, "{:#}", reply.body);
        reply.body["key"].as_str().unwrap().to_owned()
    };
    let writing_key = key(json!(["posts:write"])).await;
    let by_key = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/posts")
            .insert_header(("x-api-key", writing_key.as_str()))
            .set_json(json!({"content": "from a script"})),
    )
    .await;
    assert_eq!(by_key.status, 201, "{:#}", by_key.body);
    assert_eq!(by_key.body["author"]["username"], "own_author");
    let idle_key = key(json!([])).await;
    send(
        &app,
        test::TestRequest::patch()
            .uri(&path)
            .insert_header(("x-api-key", idle_key.as_str()))
            .set_json(json!({"content": "via idle key"})),
    )
    .await
    .problem(403, "forbidden");

    // A moderator deletes anyone's post.
    let removed = send(&app, delete(&admin, &path)).await;
    assert_eq!(removed.status, 204);
    get(&app, &path, None).await.problem(404, "not_found");
}

async fn the_feed_pages_newest_first_with_sealed_cursors(t: TestApp) {
    create_admin(&t.state, "feed_admin").await;
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let ann = register(&app, "feed_ann").await;
    let bob = register(&app, "feed_bob").await;
    let ann_token = token(&login(&app, "feed_ann").await);
    let bob_token = token(&login(&app, "feed_bob").await);
    for i in 0..45 {
        let writer = if i % 3 == 0 { &bob_token } else { &ann_token };
        let reply = send(
            &app,
            create(writer, json!({"content": format!("post {i}")})),
        )
        .await;
        assert_eq!(reply.status, 201);
        if i % 2 == 0 {
            clock.advance(TimeDelta::milliseconds(1));
        }
    }

    let mut seen = Vec::new();
    let mut uri = "/api/v1/posts".to_owned();
    let mut sizes = Vec::new();
    loop {
        let page = get(&app, &uri, None).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        sizes.push(page.body["items"].as_array().unwrap().len());
        seen.extend(contents(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/posts?cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(sizes, [20, 20, 5]);
    let expected: Vec<String> = (0..45).rev().map(|i| format!("post {i}")).collect();
    assert_eq!(seen, expected, "newest first, each once");

    let small = get(&app, "/api/v1/posts?limit=2", None).await;
    assert_eq!(contents(&small.body), ["post 44", "post 43"]);
    let cursor = small.body["next_cursor"].as_str().unwrap().to_owned();
    for bad in ["limit=0", "limit=101", "limit=ten"] {
        let reply = get(&app, &format!("/api/v1/posts?{bad}"), None).await;
        assert_eq!(reply.field_errors()[0].0, "limit", "{bad}");
    }
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "made-up", &cursor[..cursor.len() / 2]] {
        let reply = get(&app, &format!("/api/v1/posts?cursor={bad}"), None).await;
        assert_eq!(
            reply.field_errors(),
            [("cursor".into(), "invalid_cursor".into())]
        );
    }
    // A feed cursor does not open an author's list, nor one author's list another's.
    let ann_id = ann["id"].as_str().unwrap();
    let bob_id = bob["id"].as_str().unwrap();
    let reply = get(
        &app,
        &format!("/api/v1/users/{ann_id}/posts?cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(reply.field_errors()[0].0, "cursor");

    let bobs = get(
        &app,
        &format!("/api/v1/users/{bob_id}/posts?limit=100"),
        None,
    )
    .await;
    assert_eq!(bobs.status, 200);
    let expected_bob: Vec<String> = (0..45)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("post {i}"))
        .collect();
    assert_eq!(contents(&bobs.body), expected_bob);
    assert!(bobs.body["next_cursor"].is_null());
    let bob_page = get(&app, &format!("/api/v1/users/{bob_id}/posts?limit=3"), None).await;
    let bob_cursor = bob_page.body["next_cursor"].as_str().unwrap();
    let reply = get(
        &app,
        &format!("/api/v1/users/{ann_id}/posts?cursor={bob_cursor}"),
        None,
    )
    .await;
    assert_eq!(reply.field_errors()[0].0, "cursor");
    let next = get(
        &app,
        &format!("/api/v1/users/{bob_id}/posts?limit=3&cursor={bob_cursor}"),
        None,
    )
    .await;
    assert_eq!(contents(&next.body), ["post 33", "post 30", "post 27"]);

    let nobody = uuid::Uuid::now_v7();
    get(&app, &format!("/api/v1/users/{nobody}/posts"), None)
        .await
        .problem(404, "not_found");
    get(&app, "/api/v1/users/nobody/posts", None)
        .await
        .problem(404, "not_found");

    // A disabled author's posts leave the feed, and their list is not found.
    let admin = token(&login(&app, "feed_admin").await);
    let req = test::TestRequest::patch()
        .uri(&format!("/api/v1/users/{bob_id}"))
        .set_json(json!({"disabled": true}));
    assert_eq!(send(&app, with_token(req, &admin)).await.status, 200);
    let feed = get(&app, "/api/v1/posts?limit=100", None).await;
    assert_eq!(feed.body["items"].as_array().unwrap().len(), 30);
    get(&app, &format!("/api/v1/users/{bob_id}/posts"), None)
        .await
        .problem(404, "not_found");
}

async fn votes_are_idempotent_and_move_the_totals(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "vote_author").await;
    register(&app, "vote_ann").await;
    register(&app, "vote_bob").await;
    let author = token(&login(&app, "vote_author").await);
    let ann = token(&login(&app, "vote_ann").await);
    let bob = token(&login(&app, "vote_bob").await);
    let post = send(&app, create(&author, json!({"content": "vote on me"}))).await;
    let id = id_of(&post);

    let summary = |reply: &Reply| {
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        assert_eq!(reply.body["post_id"], id.as_str());
        (
            reply.body["score"].as_i64().unwrap(),
            reply.body["upvotes"].as_i64().unwrap(),
            reply.body["downvotes"].as_i64().unwrap(),
            reply.body["my_vote"].as_i64(),
        )
    };
    let up = send(&app, vote(&ann, &id, json!({"value": 1}))).await;
    assert_eq!(summary(&up), (1, 1, 0, Some(1)));
    let again = send(&app, vote(&ann, &id, json!({"value": 1}))).await;
    assert_eq!(summary(&again), (1, 1, 0, Some(1)), "idempotent");
    let bob_down = send(&app, vote(&bob, &id, json!({"value": -1}))).await;
    assert_eq!(summary(&bob_down), (0, 1, 1, Some(-1)));
    let flipped = send(&app, vote(&ann, &id, json!({"value": -1}))).await;
    assert_eq!(summary(&flipped), (-2, 0, 2, Some(-1)));

    let path = format!("/api/v1/posts/{id}");
    let as_ann = get(&app, &path, Some(&ann)).await;
    assert_eq!(
        (as_ann.body["my_vote"].clone(), as_ann.body["score"].clone()),
        (json!(-1), json!(-2))
    );
    let as_author = get(&app, &path, Some(&author)).await;
    assert_eq!(as_author.body["my_vote"], Value::Null);
    let anonymous = get(&app, &path, None).await;
    assert_eq!(anonymous.body["my_vote"], Value::Null);
    let feed = get(&app, "/api/v1/posts", Some(&bob)).await;
    assert_eq!(feed.body["items"][0]["my_vote"], -1);
    assert_eq!(feed.body["items"][0]["downvotes"], 2);
    // A bad token on a public route is refused, not ignored.
    get(&app, &path, Some("not-a-token"))
        .await
        .problem(401, "invalid_token");

    let cleared = send(&app, delete(&ann, &format!("{path}/vote"))).await;
    assert_eq!(summary(&cleared), (-1, 0, 1, None));
    let cleared_again = send(&app, delete(&ann, &format!("{path}/vote"))).await;
    assert_eq!(summary(&cleared_again), (-1, 0, 1, None), "idempotent");

    for bad in [
        json!({"value": 0}),
        json!({"value": 2}),
        json!({"value": "1"}),
        json!({}),
    ] {
        let reply = send(&app, vote(&ann, &id, bad.clone())).await;
        reply.problem(422, "validation_failed");
    }
    send(
        &app,
        test::TestRequest::put()
            .uri(&format!("{path}/vote"))
            .set_json(json!({"value": 1})),
    )
    .await
    .problem(401, "unauthenticated");
    let nobody = uuid::Uuid::now_v7().to_string();
    send(&app, vote(&ann, &nobody, json!({"value": 1})))
        .await
        .problem(404, "not_found");
    send(&app, delete(&ann, &format!("/api/v1/posts/{nobody}/vote")))
        .await
        .problem(404, "not_found");

    // Deleting the post takes its votes with it.
    assert_eq!(send(&app, delete(&author, &path)).await.status, 204);
    send(&app, vote(&bob, &id, json!({"value": 1})))
        .await
        .problem(404, "not_found");
}

async fn a_feed_page_is_one_database_query(t: TestApp) {
    let store = t.store.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "count_ann").await;
    register(&app, "count_bob").await;
    let ann = token(&login(&app, "count_ann").await);
    let bob = register_and_vote_setup(&app, &ann).await;
    // Warm up: the first signed-in request records the session's use (once a minute).
    get(&app, "/api/v1/posts?limit=5", Some(&bob)).await;
    let page = get(&app, "/api/v1/posts?limit=5", None).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let deep = format!("/api/v1/posts?limit=5&cursor={cursor}");

    for (uri, viewer) in [
        ("/api/v1/posts?limit=5", None),
        ("/api/v1/posts?limit=5", Some(bob.as_str())),
        (deep.as_str(), Some(bob.as_str())),
    ] {
        // The revocation poller queries the store in the background about once a second, so
        // the fewest statements seen over a few tries is what the page costs.
        let mut fewest = u64::MAX;
        for _ in 0..5 {
            let before = store.queries_issued();
            let reply = get(&app, uri, viewer).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body["items"].as_array().unwrap().len(), 5);
            fewest = fewest.min(store.queries_issued() - before);
        }
        assert_eq!(fewest, 1, "{uri} as {viewer:?}");
    }
}

/// Ten posts by `writer`, voted on by a new user whose token is returned.
async fn register_and_vote_setup<S, B>(app: &S, writer: &str) -> String
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    register(app, "count_voter").await;
    let voter = token(&login(app, "count_voter").await);
    for i in 0..10 {
        let post = send(
            app,
            create(writer, json!({"content": format!("counted {i}")})),
        )
        .await;
        let reply = send(app, vote(&voter, &id_of(&post), json!({"value": 1}))).await;
        assert_eq!(reply.status, 200);
    }
    voter
}
