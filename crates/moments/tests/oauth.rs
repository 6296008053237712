//! Sign-in through identity providers, end to end: the real router and adapter against the
//! fake provider over real HTTP, on both stores and both short-lived state stores.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::test;
use common::*;
use moments_domain::audit::{AuditFilter, AuditKind};
use moments_domain::ids::UserId;
use moments_domain::value::Username;
use moments_oauth::ProviderKind;
use moments_oauth::testing::{CLIENT_ID, CLIENT_SECRET, FakeProvider, FakeUser, Misbehaviour};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://moments.example";
const RETURN_TO: &str = "https://app.example.com/signed-in";

/// The fakes of every kind, and the settings that configure them as `okta` (OpenID Connect),
/// `github`, `facebook` and `x`.
struct Providers {
    okta: FakeProvider,
    github: FakeProvider,
    facebook: FakeProvider,
    x: FakeProvider,
}

impl Providers {
    async fn start() -> Self {
        Self {
            okta: FakeProvider::start(ProviderKind::Oidc).await,
            github: FakeProvider::start(ProviderKind::Github).await,
            facebook: FakeProvider::start(ProviderKind::Facebook).await,
            x: FakeProvider::start(ProviderKind::X).await,
        }
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("MOMENTS_PUBLIC_URL", PUBLIC_URL.to_owned()),
            (
                "MOMENTS_OAUTH_PROVIDERS",
                "okta,github,facebook,x".to_owned(),
            ),
            ("MOMENTS_OAUTH_RETURN_TO_ALLOWLIST", RETURN_TO.to_owned()),
            ("MOMENTS_OAUTH_OKTA_KIND", "oidc".to_owned()),
            ("MOMENTS_OAUTH_OKTA_ISSUER", self.okta.issuer().to_owned()),
            ("MOMENTS_OAUTH_OKTA_DISPLAY_NAME", "Okta".to_owned()),
        ];
        for (prefix, fake) in [
            ("MOMENTS_OAUTH_GITHUB", &self.github),
            ("MOMENTS_OAUTH_FACEBOOK", &self.facebook),
            ("MOMENTS_OAUTH_X", &self.x),
        ] {
            let base = fake.issuer();
            for (suffix, value) in [
                ("AUTH_URL", format!("{base}/authorize")),
                ("TOKEN_URL", format!("{base}/token")),
                ("API_URL", base.to_owned()),
            ] {
                vars.push((leak(format!("{prefix}_{suffix}")), value));
            }
        }
        for prefix in [
            "MOMENTS_OAUTH_OKTA",
            "MOMENTS_OAUTH_GITHUB",
            "MOMENTS_OAUTH_FACEBOOK",
            "MOMENTS_OAUTH_X",
        ] {
            vars.push((leak(format!("{prefix}_CLIENT_ID")), CLIENT_ID.to_owned()));
            vars.push((
                leak(format!("{prefix}_CLIENT_SECRET")),
                CLIENT_SECRET.to_owned(),
            ));
        }
        vars
    }
}

/// Setting names live as long as the test.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// A browser: keeps the binding cookie it is given.
#[derive(Default, Clone)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    fn request(&self, req: test::TestRequest) -> test::TestRequest {
        match &self.cookie {
            Some(cookie) => req.insert_header(("cookie", format!("moments_oauth={cookie}"))),
            None => req,
        }
    }

    fn keep_cookie(&mut self, reply: &Reply) {
        if let Some(set) = reply.header("set-cookie") {
            let value = set
                .strip_prefix("moments_oauth=")
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            self.cookie = Some(value.to_owned());
            assert!(set.contains("HttpOnly"), "{set}");
            assert!(
                set.contains("Secure") && set.contains("SameSite=None"),
                "{set}"
            );
        }
    }
}

/// The path and query of an absolute URL of this service.
fn local(url: &str) -> String {
    url.strip_prefix(PUBLIC_URL).unwrap().to_owned()
}

fn params(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

macro_rules! flow {
    ($app:expr) => {
        Flow { app: &$app }
    };
}

/// Drives the browser's side of a flow against one router.
struct Flow<'a, S> {
    app: &'a S,
}

impl<S, B> Flow<'_, S>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    /// `GET start`: the provider's authorization URL.
    async fn start(
        &self,
        browser: &mut Browser,
        provider: &str,
        return_to: Option<&str>,
    ) -> String {
        let mut uri = format!("/api/v1/auth/oauth/{provider}/start");
        if let Some(to) = return_to {
            uri.push_str(&format!("?return_to={}", urlencode(to)));
        }
        let reply = send(
            self.app,
            browser.request(test::TestRequest::get().uri(&uri)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FOUND, "{:#}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        browser.keep_cookie(&reply);
        reply.header("location").unwrap().to_owned()
    }

    /// The provider's redirect arriving back here.
    async fn callback(&self, browser: &Browser, callback_url: &str) -> Reply {
        send(
            self.app,
            browser.request(test::TestRequest::get().uri(&local(callback_url))),
        )
        .await
    }

    /// A whole sign-in without `return_to`: the callback's reply.
    async fn sign_in(&self, fake: &FakeProvider, provider: &str) -> Reply {
        let mut browser = Browser::default();
        let authorization = self.start(&mut browser, provider, None).await;
        let callback = fake.authorize(&authorization).await;
        self.callback(&browser, &callback).await
    }

    async fn me(&self, token: &str) -> Value {
        let reply = get(self.app, "/api/v1/auth/me", Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        reply.body
    }

    async fn link(&self, fake: &FakeProvider, provider: &str, token: &str) -> Reply {
        let mut browser = Browser::default();
        let reply = send(
            self.app,
            with_token(
                test::TestRequest::post().uri(&format!("/api/v1/auth/oauth/{provider}/link/start")),
                token,
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        browser.keep_cookie(&reply);
        let callback = fake
            .authorize(reply.body["authorization_url"].as_str().unwrap())
            .await;
        self.callback(&browser, &callback).await
    }

    async fn unlink(&self, provider: &str, token: &str) -> Reply {
        send(
            self.app,
            with_token(
                test::TestRequest::delete().uri(&format!("/api/v1/auth/oauth/{provider}")),
                token,
            ),
        )
        .await
    }

    async fn exchange(&self, code: &str) -> Reply {
        post(
            self.app,
            "/api/v1/auth/oauth/exchange",
            json!({ "code": code }),
        )
        .await
    }
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn token(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn events(state: &moments_http::AppState, user: &str, kind: AuditKind) -> usize {
    let filter = AuditFilter {
        user: Some(UserId::from_uuid(user.parse().unwrap())),
        kind: Some(kind),
    };
    state
        .accounts
        .audit_events(&filter, None, 100)
        .await
        .unwrap()
        .items
        .len()
}

async fn user_exists(app: &TestApp, username: &str) -> bool {
    app.store
        .users()
        .find_user_by_username(&Username::parse(username).unwrap())
        .await
        .unwrap()
        .is_some()
}

/// Sign-up through a provider, sign-in again, a second provider linked and unlinked, the last
/// one kept; the one-time code single use.
async fn round_trip(t: TestApp, providers: &Providers) {
    let state = t.state.clone();
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);

    let listed = get(&app, "/api/v1/auth/oauth/providers", None).await;
    assert_eq!(
        listed.body,
        json!({"items": [
            {"name": "okta", "display_name": "Okta"},
            {"name": "github", "display_name": "GitHub"},
            {"name": "facebook", "display_name": "Facebook"},
            {"name": "x", "display_name": "X"},
        ], "next_cursor": null})
    );

    // Sign-up with return_to: the browser comes back with a one-time code, never a token.
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "okta", Some(RETURN_TO)).await;
    let sent = params(&authorization);
    assert_eq!(sent["code_challenge_method"], "S256");
    assert!(sent.contains_key("nonce") && sent.contains_key("state"));
    assert_eq!(
        sent["redirect_uri"],
        format!("{PUBLIC_URL}/api/v1/auth/oauth/okta/callback")
    );
    let callback = providers.okta.authorize(&authorization).await;
    let reply = f.callback(&browser, &callback).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{:#}", reply.body);
    let back = reply.header("location").unwrap();
    assert!(back.starts_with(&format!("{RETURN_TO}?code=")), "{back}");
    assert!(!back.contains("token"), "{back}");
    let code = params(back)["code"].clone();
    let pair = f.exchange(&code).await;
    let access = token(&pair);
    let again = f.exchange(&code).await;
    again.problem(400, "invalid_oauth_code");

    let me = f.me(&access).await;
    assert_eq!(me["username"], "user_1001");
    assert_eq!(me["email"], "1001@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["display_name"], "User 1001");
    assert_eq!(me["has_password"], false);
    assert_eq!(me["providers"], json!(["okta"]));
    let user_id = me["id"].as_str().unwrap().to_owned();

    // Signing in again reaches the same account.
    let second = f.sign_in(&providers.okta, "okta").await;
    assert_eq!(f.me(&token(&second)).await["id"], user_id.as_str());

    // Link GitHub, then unlink Okta; GitHub, now the only way in, stays.
    providers.github.sign_in_as(FakeUser::new("4242"));
    let linked = f.link(&providers.github, "github", &access).await;
    assert_eq!(linked.status, StatusCode::OK, "{:#}", linked.body);
    assert_eq!(linked.body, json!({"linked": "github"}));
    assert_eq!(f.me(&access).await["providers"], json!(["github", "okta"]));
    let via_github = f.sign_in(&providers.github, "github").await;
    assert_eq!(f.me(&token(&via_github)).await["id"], user_id.as_str());

    assert_eq!(
        f.unlink("okta", &access).await.status,
        StatusCode::NO_CONTENT
    );
    f.unlink("okta", &access).await.problem(404, "not_found");
    f.unlink("github", &access).await.problem(409, "conflict");
    assert_eq!(f.me(&access).await["providers"], json!(["github"]));

    // Okta's identity is free again, but a new account would take this account's address:
    // refused, and nothing is made or linked.
    f.sign_in(&providers.okta, "okta")
        .await
        .problem(409, "email_taken");
    assert_eq!(f.me(&access).await["providers"], json!(["github"]));
    providers.okta.sign_in_as(FakeUser {
        email: Some("other-1001@example.com".into()),
        ..FakeUser::new("1001")
    });
    let fresh = f.sign_in(&providers.okta, "okta").await;
    let fresh = f.me(&token(&fresh)).await;
    assert_ne!(fresh["id"], user_id.as_str());
    let username = fresh["username"].as_str().unwrap();
    assert!(
        username.starts_with("user_1001_") && username.len() == 16,
        "a suffix makes the name unique: {username}"
    );

    assert_eq!(events(&state, &user_id, AuditKind::OAuthLinked).await, 2);
    assert_eq!(events(&state, &user_id, AuditKind::OAuthUnlinked).await, 1);
    assert!(events(&state, &user_id, AuditKind::LoginSucceeded).await >= 3);
    drop(t);
}

#[actix_web::test]
async fn round_trip_on_sqlite() {
    let providers = Providers::start().await;
    round_trip(app_with(&providers.settings()).await, &providers).await;
}

#[actix_web::test]
async fn round_trip_on_postgres() {
    let providers = Providers::start().await;
    let Some((a, _b)) = twin_apps_with(true, &providers.settings()).await else {
        return;
    };
    round_trip(a, &providers).await;
}

/// On Redis, an attempt started on one instance completes on another, and its code is
/// exchanged on a third.
#[actix_web::test]
async fn instances_share_attempts_and_codes_on_redis() {
    let providers = Providers::start().await;
    let Some(mut vars) = redis_vars().await else {
        return;
    };
    vars.extend(providers.settings());
    let Some((a, b)) = twin_apps_with(false, &vars).await else {
        return;
    };
    let a = test::init_service(moments_http::app(a.state, a.http)).await;
    let b = test::init_service(moments_http::app(b.state, b.http)).await;
    let mut browser = Browser::default();
    let authorization = flow!(a).start(&mut browser, "okta", Some(RETURN_TO)).await;
    let callback = providers.okta.authorize(&authorization).await;
    let reply = flow!(b).callback(&browser, &callback).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{:#}", reply.body);
    let code = params(reply.header("location").unwrap())["code"].clone();
    token(&flow!(a).exchange(&code).await);
    flow!(b)
        .exchange(&code)
        .await
        .problem(400, "invalid_oauth_code");
    // The state was spent on instance b: replayed on a, it is refused.
    flow!(a)
        .callback(&browser, &callback)
        .await
        .problem(400, "invalid_oauth_state");
}

/// Every ID token the OpenID Connect relying-party tests call bad is refused, and nothing is
/// created: no account, no session.
#[actix_web::test]
async fn bad_id_tokens_create_nothing() {
    let providers = Providers::start().await;
    let t = app_with(&providers.settings()).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);
    for misbehaviour in [
        Misbehaviour::WrongIssuer,
        Misbehaviour::WrongAudience,
        Misbehaviour::BadSignature,
        Misbehaviour::AlgNone,
        Misbehaviour::HmacSigned,
        Misbehaviour::WrongNonce,
        Misbehaviour::MissingNonce,
        Misbehaviour::Expired,
        Misbehaviour::IssuedLongAgo,
        Misbehaviour::MissingSub,
        Misbehaviour::UnknownKid,
        Misbehaviour::UserinfoSubMismatch,
    ] {
        providers.okta.misbehave(misbehaviour);
        let reply = f.sign_in(&providers.okta, "okta").await;
        reply.problem(401, "oauth_failed");
        assert!(
            !user_exists(&t, "user_1001").await,
            "{misbehaviour:?} made an account"
        );
    }
    // With a return_to, the browser goes back to the app with the error code.
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "okta", Some(RETURN_TO)).await;
    let reply = f
        .callback(&browser, &providers.okta.authorize(&authorization).await)
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.header("location"),
        Some(format!("{RETURN_TO}?error=oauth_failed").as_str())
    );
    // A provider that fails is a 502, not a 500.
    providers.okta.misbehave(Misbehaviour::TokenServerError);
    f.sign_in(&providers.okta, "okta")
        .await
        .problem(502, "provider_unavailable");
    assert!(!user_exists(&t, "user_1001").await);

    providers.okta.misbehave(Misbehaviour::None);
    token(&f.sign_in(&providers.okta, "okta").await);
    assert!(user_exists(&t, "user_1001").await, "behaving again");
    let failures = t
        .state
        .accounts
        .audit_events(
            &AuditFilter {
                user: None,
                kind: Some(AuditKind::LoginFailed),
            },
            None,
            100,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(failures.len(), 13, "each rejected ID token is audited");
    assert!(
        failures
            .iter()
            .all(|e| e.details["reason"] == "oauth_rejected" && e.details["provider"] == "okta")
    );
}

/// The state is single use, bound to the browser that started, and to its provider; codes are
/// single use at the provider; return_to is checked exactly.
#[actix_web::test]
async fn state_code_and_return_to_are_checked() {
    let providers = Providers::start().await;
    let t = app_with(&providers.settings()).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);
    let okta = &providers.okta;

    // Missing and made-up state.
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "okta", None).await;
    let callback = okta.authorize(&authorization).await;
    let code = params(&callback)["code"].clone();
    f.callback(
        &browser,
        &format!("{PUBLIC_URL}/api/v1/auth/oauth/okta/callback?code={code}"),
    )
    .await
    .problem(400, "invalid_oauth_state");
    f.callback(
        &browser,
        &format!("{PUBLIC_URL}/api/v1/auth/oauth/okta/callback?code={code}&state=made-up"),
    )
    .await
    .problem(400, "invalid_oauth_state");
    // The genuine response still works once; replayed, it is refused.
    token(&f.callback(&browser, &callback).await);
    f.callback(&browser, &callback)
        .await
        .problem(400, "invalid_oauth_state");

    // Another browser (no cookie, or its own) cannot complete this browser's attempt.
    let mut victim = Browser::default();
    let authorization = f.start(&mut victim, "okta", None).await;
    let callback = okta.authorize(&authorization).await;
    f.callback(&Browser::default(), &callback)
        .await
        .problem(400, "invalid_oauth_state");
    let mut attacker = Browser::default();
    f.start(&mut attacker, "okta", None).await;
    let authorization = f.start(&mut victim, "okta", None).await;
    let callback = okta.authorize(&authorization).await;
    f.callback(&attacker, &callback)
        .await
        .problem(400, "invalid_oauth_state");

    // A browser keeps its binding across attempts: two tabs both complete.
    let mut tabs = Browser::default();
    let first = f.start(&mut tabs, "okta", None).await;
    let second = f.start(&mut tabs, "okta", None).await;
    let first = okta.authorize(&first).await;
    let second = okta.authorize(&second).await;
    token(&f.callback(&tabs, &second).await);
    token(&f.callback(&tabs, &first).await);

    // Mix-up: GitHub's response delivered to Okta's callback.
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "github", None).await;
    let callback = providers.github.authorize(&authorization).await;
    let mixed = callback.replace("/oauth/github/callback", "/oauth/okta/callback");
    f.callback(&browser, &mixed)
        .await
        .problem(400, "invalid_oauth_state");
    // And an Okta response claiming another issuer (RFC 9207).
    let authorization = f.start(&mut browser, "okta", None).await;
    let callback = okta.authorize(&authorization).await;
    let forged = callback.replace(&urlencode(okta.issuer()), "https%3A%2F%2Fevil.example");
    assert_ne!(forged, callback);
    f.callback(&browser, &forged)
        .await
        .problem(401, "oauth_failed");

    // A code already redeemed, carried by a fresh state: the provider refuses it.
    let authorization = f.start(&mut browser, "okta", None).await;
    let first = okta.authorize(&authorization).await;
    let used = params(&first)["code"].clone();
    token(&f.callback(&browser, &first).await);
    let authorization = f.start(&mut browser, "okta", None).await;
    let state = params(&authorization)["state"].clone();
    let replayed = format!(
        "{PUBLIC_URL}/api/v1/auth/oauth/okta/callback?code={}&state={}",
        urlencode(&used),
        urlencode(&state)
    );
    f.callback(&browser, &replayed)
        .await
        .problem(401, "oauth_failed");

    // The user declining at the provider.
    let authorization = f.start(&mut browser, "okta", Some(RETURN_TO)).await;
    let state = params(&authorization)["state"].clone();
    let reply = f
        .callback(
            &browser,
            &format!(
                "{PUBLIC_URL}/api/v1/auth/oauth/okta/callback?error=access_denied&state={}",
                urlencode(&state)
            ),
        )
        .await;
    assert_eq!(
        reply.header("location"),
        Some(format!("{RETURN_TO}?error=oauth_failed").as_str())
    );

    // return_to must match exactly; unknown providers are 404.
    for bad in [
        "https://evil.example/signed-in",
        "https://app.example.com/signed-in/../x",
        "https://app.example.com/signed-in?next=x",
        "https://app.example.com/",
    ] {
        let reply = get(
            &app,
            &format!("/api/v1/auth/oauth/okta/start?return_to={}", urlencode(bad)),
            None,
        )
        .await;
        reply.problem(422, "validation_failed");
        assert_eq!(
            reply.field_errors(),
            [("return_to".to_owned(), "not_allowed".to_owned())]
        );
    }
    get(&app, "/api/v1/auth/oauth/gitlab/start", None)
        .await
        .problem(404, "not_found");
    f.exchange("made-up")
        .await
        .problem(400, "invalid_oauth_code");
}

/// GitHub, Facebook and X through the router: each makes its own account, with what it gives.
#[actix_web::test]
async fn oauth2_providers_sign_up_with_what_they_give() {
    let providers = Providers::start().await;
    let t = app_with(&providers.settings()).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);
    providers.github.sign_in_as(FakeUser::new("7001"));
    let me = f
        .me(&token(&f.sign_in(&providers.github, "github").await))
        .await;
    assert_eq!(
        (
            me["username"].as_str(),
            me["email"].as_str(),
            me["email_verified"].as_bool()
        ),
        (Some("user_7001"), Some("7001@example.com"), Some(true))
    );
    assert_eq!(me["providers"], json!(["github"]));

    providers.facebook.sign_in_as(FakeUser::new("7002"));
    let me = f
        .me(&token(&f.sign_in(&providers.facebook, "facebook").await))
        .await;
    assert_eq!(me["email"], "7002@example.com");
    assert_eq!(
        me["email_verified"], false,
        "Facebook's address is not taken as verified"
    );
    assert_eq!(me["username"], "user_7002", "from the name");

    providers.x.sign_in_as(FakeUser::new("7003"));
    let me = f.me(&token(&f.sign_in(&providers.x, "x").await)).await;
    assert_eq!(me["email"], Value::Null);
    assert_eq!(me["username"], "user_7003");
    assert_eq!(me["has_password"], false);
}

/// An address alone never takes over an account; with automatic linking on, only an address
/// both sides verified links.
#[actix_web::test]
async fn addresses_do_not_take_over_accounts() {
    let providers = Providers::start().await;
    for auto_link in [false, true] {
        let mut settings = providers.settings();
        settings.push((
            "MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL",
            auto_link.to_string(),
        ));
        let t = app_with(&settings).await;
        let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
        let f = flow!(app);
        // Alice registered with a password: her address is unverified.
        register(&app, "alice").await;
        providers.okta.sign_in_as(FakeUser {
            email: Some("Alice@Example.com".into()),
            ..FakeUser::new("8001")
        });
        f.sign_in(&providers.okta, "okta")
            .await
            .problem(409, "email_taken");
        let alice = login(&app, "alice").await;
        let alice_me = f.me(alice["access_token"].as_str().unwrap()).await;
        assert_eq!(alice_me["providers"], json!([]));

        // Bob came through Okta (a verified address); GitHub verifies the same address.
        providers.okta.sign_in_as(FakeUser::new("8002"));
        let bob = f
            .me(&token(&f.sign_in(&providers.okta, "okta").await))
            .await;
        providers.github.sign_in_as(FakeUser {
            email: Some("8002@example.com".into()),
            ..FakeUser::new("8003")
        });
        let reply = f.sign_in(&providers.github, "github").await;
        if auto_link {
            let me = f.me(&token(&reply)).await;
            assert_eq!(me["id"], bob["id"]);
            assert_eq!(me["providers"], json!(["github", "okta"]));
        } else {
            reply.problem(409, "email_taken");
        }
        // Unverified at the provider: never linked.
        providers.github.sign_in_as(FakeUser {
            email: Some("8002@example.com".into()),
            email_verified: false,
            ..FakeUser::new("8004")
        });
        let reply = f.sign_in(&providers.github, "github").await;
        let me = f.me(&token(&reply)).await;
        assert_ne!(me["id"], bob["id"]);
        assert_eq!(
            me["email"],
            Value::Null,
            "an unverified GitHub address is not given"
        );
    }
}

/// Linking refuses an identity that signs in to another account, and a second identity of a
/// provider already linked; a disabled account cannot sign in through a provider either.
#[actix_web::test]
async fn links_and_disabled_accounts_are_refused() {
    let providers = Providers::start().await;
    let t = app_with(&providers.settings()).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);
    providers.okta.sign_in_as(FakeUser::new("9001"));
    let first = f
        .me(&token(&f.sign_in(&providers.okta, "okta").await))
        .await;

    register(&app, "carol").await;
    let carol = login(&app, "carol").await;
    let carol_token = carol["access_token"].as_str().unwrap();
    f.link(&providers.okta, "okta", carol_token)
        .await
        .problem(409, "conflict");
    providers.okta.sign_in_as(FakeUser::new("9002"));
    assert_eq!(
        f.link(&providers.okta, "okta", carol_token).await.status,
        StatusCode::OK
    );
    providers.okta.sign_in_as(FakeUser::new("9003"));
    f.link(&providers.okta, "okta", carol_token)
        .await
        .problem(409, "conflict");
    // Carol has a password: her only provider may go.
    assert_eq!(
        f.unlink("okta", carol_token).await.status,
        StatusCode::NO_CONTENT
    );

    // Disabled: the identity's account cannot sign in, and its pending code is refused.
    providers.okta.sign_in_as(FakeUser::new("9001"));
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "okta", Some(RETURN_TO)).await;
    let reply = f
        .callback(&browser, &providers.okta.authorize(&authorization).await)
        .await;
    let code = params(reply.header("location").unwrap())["code"].clone();
    let id: UserId = UserId::from_uuid(first["id"].as_str().unwrap().parse().unwrap());
    disable(&t, id).await;
    f.exchange(&code).await.problem(403, "account_disabled");
    f.sign_in(&providers.okta, "okta")
        .await
        .problem(403, "account_disabled");
}

async fn disable(t: &TestApp, id: UserId) {
    t.store
        .users()
        .set_disabled(
            id,
            true,
            chrono::Utc::now(),
            &moments_domain::audit::AuditEvent {
                id: moments_domain::ids::AuditEventId::from_uuid(uuid::Uuid::now_v7()),
                kind: AuditKind::UserDisabled,
                actor: None,
                target: Some(id),
                client: Default::default(),
                at: chrono::Utc::now(),
                details: Default::default(),
            },
        )
        .await
        .unwrap()
        .unwrap();
}

/// A `form_post` response (an auto-submitted form) completes like a query one; codes expire.
#[actix_web::test]
async fn form_post_callbacks_and_code_expiry() {
    let providers = Providers::start().await;
    let mut settings = providers.settings();
    settings.push(("MOMENTS_OAUTH_CODE_TTL_SECONDS", "1".to_owned()));
    let t = app_with(&settings).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let f = flow!(app);
    let mut browser = Browser::default();
    let authorization = f.start(&mut browser, "okta", Some(RETURN_TO)).await;
    let callback = providers.okta.authorize(&authorization).await;
    let form = url::Url::parse(&callback)
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let reply = send(
        &app,
        browser.request(
            test::TestRequest::post()
                .uri("/api/v1/auth/oauth/okta/callback")
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(form.clone()),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FOUND, "{:#}", reply.body);
    let code = params(reply.header("location").unwrap())["code"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    f.exchange(&code).await.problem(400, "invalid_oauth_code");

    // JSON is not a form.
    send(
        &app,
        browser.request(
            test::TestRequest::post()
                .uri("/api/v1/auth/oauth/okta/callback")
                .set_json(json!({"state": "x"})),
        ),
    )
    .await
    .problem(415, "unsupported_media_type");
}
