//! Importing accounts from another system, on SQLite and PostgreSQL: bcrypt hashes sign in and
//! are upgraded to argon2id; a file with any bad line imports nothing and names every one.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use common::*;
use moments::commands::parse_import;
use moments_domain::import::ImportError;
use moments_domain::value::Username;
use serde_json::json;

on_both_stores!(
    bcrypt_accounts_sign_in_and_are_rehashed,
    a_bad_line_imports_nothing_and_every_bad_line_is_named,
);

fn bcrypt(password: &str) -> String {
    // Cost 4 keeps the test fast; passlib's $2b$ prefix, as FastAPI systems store them.
    bcrypt::hash(password, 4).unwrap()
}

async fn bcrypt_accounts_sign_in_and_are_rehashed(t: TestApp) {
    let file = format!(
        "{}\n\n{}\n",
        json!({"username": "Legacy_Lou", "email": "lou@example.com", "password_hash": bcrypt(PASSWORD), "display_name": " Lou "}),
        json!({"username": "mod_mo", "email": "mo@example.com", "password_hash": bcrypt(PASSWORD).replacen("$2b$", "$2y$", 1), "roles": ["moderator"]}),
    );
    assert_eq!(
        t.state
            .accounts
            .import_users(parse_import(&file))
            .await
            .unwrap(),
        2
    );
    let users = t.store.users();
    let lou = users
        .find_user_by_username(&Username::parse("legacy_lou").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lou.display_name.as_deref(), Some("Lou"));
    assert!(
        users
            .password_hash(lou.id)
            .await
            .unwrap()
            .unwrap()
            .as_str()
            .starts_with("$2b$")
    );

    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let pair = login(&app, "legacy_lou").await;
    let stored = users.password_hash(lou.id).await.unwrap().unwrap();
    assert!(
        stored.as_str().starts_with("$argon2id$"),
        "rehashed at login: {}",
        &stored.as_str()[..10]
    );
    // The upgraded hash verifies the same password.
    login(&app, "lou@example.com").await;
    let me = get(&app, "/api/v1/auth/me", pair["access_token"].as_str()).await;
    assert_eq!(me.body["roles"], json!(["user"]));
    let mo = login(&app, "mod_mo").await;
    let me = get(&app, "/api/v1/auth/me", mo["access_token"].as_str()).await;
    assert_eq!(me.body["roles"], json!(["moderator", "user"]));
    // A wrong password is still wrong, and nothing is rehashed for it.
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "mod_mo", "password": "not the right one"}),
    )
    .await
    .problem(401, "invalid_credentials");
}

async fn a_bad_line_imports_nothing_and_every_bad_line_is_named(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    register(&app, "taken").await;
    let good = json!({"username": "fine_user", "email": "fine@example.com", "password_hash": bcrypt(PASSWORD)});
    let lines = [
        good.to_string(),                                                                         // 1
        "{not json".to_owned(),                                                                   // 2
        json!({"username": "x1", "email": "x1@example.com", "password_hash": bcrypt(PASSWORD), "admin": true}).to_string(), // 3
        json!({"username": "bad email", "email": "nope", "password_hash": bcrypt(PASSWORD)}).to_string(), // 4
        json!({"username": "plain_pw", "email": "plain@example.com", "password_hash": "hunter2"}).to_string(), // 5
        json!({"username": "roleless", "email": "r@example.com", "password_hash": bcrypt(PASSWORD), "roles": ["wizard"]}).to_string(), // 6
        json!({"username": "FINE_USER", "email": "other@example.com", "password_hash": bcrypt(PASSWORD)}).to_string(), // 7
        json!({"username": "taken", "email": "t2@example.com", "password_hash": bcrypt(PASSWORD)}).to_string(), // 8
        json!({"username": "dup_mail", "email": "FINE@example.com", "password_hash": bcrypt(PASSWORD)}).to_string(), // 9
    ];
    let result = t
        .state
        .accounts
        .import_users(parse_import(&lines.join("\n")))
        .await;
    let Err(ImportError::Invalid(errors)) = result else {
        panic!("expected invalid lines: {result:?}")
    };
    let by_line: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
    let expect = [
        (2, "not a valid record"),
        (3, "unknown field `admin`"),
        (4, "email"),
        (5, "password_hash"),
        (6, "role \"wizard\" does not exist"),
        (7, "repeats line 1"),
        (8, "already taken"),
        (9, "repeats line 1"),
    ];
    assert_eq!(by_line.len(), expect.len(), "{by_line:#?}");
    for ((line, reason), (want_line, want)) in by_line.iter().zip(expect) {
        assert_eq!(*line, want_line);
        assert!(
            reason.contains(want),
            "line {line}: {reason:?} should mention {want:?}"
        );
    }
    // Nothing was imported, not even the good line.
    let fine = t
        .store
        .users()
        .find_user_by_username(&Username::parse("fine_user").unwrap())
        .await
        .unwrap();
    assert!(fine.is_none());
}
