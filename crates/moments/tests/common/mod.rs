//! Shared test support: an application over a real store (SQLite file or PostgreSQL
//! database), and helpers to call it through the actix router.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![expect(clippy::expect_used, reason = "test helpers")]

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test;
use moments::config::Config;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use moments::wiring::{Migrations, Store, build_state_with_clock};
use moments_crypto::Argon2Config;
use moments_domain::ports::{Clock, SystemClock};
use moments_http::{AppState, HttpConfig};
use moments_postgres::testing::TestDatabase;
use serde_json::{Value, json};

/// A strong secret for tests.
pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
/// A browser origin the test app allows.
pub const ALLOWED_ORIGIN: &str = "https://app.example.com";
/// A password that meets the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// Generates one test per case on SQLite and one on PostgreSQL; each case is an
/// `async fn(TestApp)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $case() {
                    let Some(app) = super::sqlite_app().await else { return };
                    super::$case(app).await;
                }
            )+
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $case() {
                    let Some(app) = super::postgres_app().await else { return };
                    super::$case(app).await;
                }
            )+
        }
    };
}

/// The system clock moved by an adjustable offset.
#[derive(Debug, Default)]
pub struct TestClock(Mutex<TimeDelta>);

impl TestClock {
    /// Moves time forward.
    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().expect("clock") += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + *self.0.lock().expect("clock")
    }
}

/// An application state over a store, its clock, and whatever keeps the store alive.
pub struct TestApp {
    pub state: AppState,
    pub http: HttpConfig,
    pub clock: Arc<TestClock>,
    pub store: Store,
    _guard: Box<dyn std::any::Any>,
}

/// Quotas no ordinary test reaches: tests of the limits set their own.
const UNLIMITED: &[(&str, &str)] = &[
    ("MOMENTS_RATE_LIMIT_LOGIN", "1000000/1s"),
    ("MOMENTS_RATE_LIMIT_REGISTER", "1000000/1s"),
    ("MOMENTS_RATE_LIMIT_REFRESH", "1000000/1s"),
    ("MOMENTS_RATE_LIMIT_READ", "1000000/1s"),
    ("MOMENTS_RATE_LIMIT_WRITE", "1000000/1s"),
    ("MOMENTS_RATE_LIMIT_UPLOAD", "1000000/1s"),
    ("MOMENTS_LOGIN_THROTTLE", "1000000/1s"),
];

fn config(vars: &[(&str, String)]) -> Config {
    let mut map: HashMap<&str, String> = UNLIMITED
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect();
    map.extend(vars.iter().cloned());
    let mut config = Config::from_lookup(|name| map.get(name).cloned()).expect("test config");
    // Cheap hashing keeps tests fast; the production parameters are covered by the crypto tests.
    config.argon2 = Argon2Config {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        max_concurrent: 4,
    };
    config
}

async fn app_over(vars: &[(&str, String)], guard: Box<dyn std::any::Any>) -> TestApp {
    let config = config(vars);
    let store = Store::open(&config, Migrations::Apply)
        .await
        .expect("store");
    let clock = Arc::new(TestClock::default());
    let (state, http) = build_state_with_clock(&config, &store, clock.clone()).expect("state");
    let poller = moments::wiring::spawn_revocation_sync(
        &config,
        state.accounts.clone(),
        config.revocation_poll,
    )
    .expect("revocation sync");
    TestApp {
        state,
        http,
        clock,
        store,
        _guard: Box::new((poller, guard)),
    }
}

/// An application on a fresh SQLite file.
pub async fn sqlite_app() -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = [
        ("MOMENTS_DATA_DIR", dir.path().display().to_string()),
        ("MOMENTS_JWT_SECRET", SECRET.to_owned()),
        ("MOMENTS_CORS_ORIGINS", ALLOWED_ORIGIN.to_owned()),
    ];
    Some(app_over(&vars, Box::new(dir)).await)
}

/// An application over extra settings on top of a strong secret and a temporary data directory.
pub async fn app_with(extra: &[(&str, String)]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut vars = vec![
        ("MOMENTS_DATA_DIR", dir.path().display().to_string()),
        ("MOMENTS_JWT_SECRET", SECRET.to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    app_over(&vars, Box::new(dir)).await
}

/// An application over the SQLite store in `dir` with exactly these settings (besides the
/// data directory): for restarts with changed configuration.
pub async fn app_in(dir: &std::path::Path, settings: &[(&str, String)]) -> TestApp {
    let mut vars = vec![("MOMENTS_DATA_DIR", dir.display().to_string())];
    vars.extend(settings.iter().cloned());
    app_over(&vars, Box::new(())).await
}

/// Two application instances over one fresh store, each with its revocation poller running,
/// like two processes behind a load balancer. `postgres` picks the store.
pub async fn twin_apps(postgres: bool) -> Option<(TestApp, TestApp)> {
    twin_apps_with(postgres, &[]).await
}

/// [`twin_apps`] with extra settings for both instances.
pub async fn twin_apps_with(
    postgres: bool,
    extra: &[(&str, String)],
) -> Option<(TestApp, TestApp)> {
    let (vars, guard): (Vec<(&str, String)>, Box<dyn std::any::Any>) = if postgres {
        let db = TestDatabase::create().await?;
        (vec![("DATABASE_URL", db.url().to_owned())], Box::new(db))
    } else {
        let dir = tempfile::tempdir().expect("tempdir");
        (
            vec![("MOMENTS_DATA_DIR", dir.path().display().to_string())],
            Box::new(dir),
        )
    };
    let mut vars = vars;
    vars.push(("MOMENTS_JWT_SECRET", SECRET.to_owned()));
    vars.extend(extra.iter().cloned());
    let a = app_over(&vars, guard).await;
    let b = app_over(&vars, Box::new(())).await;
    Some((a, b))
}

/// An application on a fresh PostgreSQL database (`None`: skipped, PostgreSQL unreachable).
pub async fn postgres_app() -> Option<TestApp> {
    let db = TestDatabase::create().await?;
    let vars = [
        ("DATABASE_URL", db.url().to_owned()),
        ("MOMENTS_JWT_SECRET", SECRET.to_owned()),
        ("MOMENTS_CORS_ORIGINS", ALLOWED_ORIGIN.to_owned()),
    ];
    Some(app_over(&vars, Box::new(db)).await)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json body with this status and code, and returns it.
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{:#}",
            self.body
        );
        assert_eq!(self.body["error_code"], code, "{:#}", self.body);
        assert_eq!(self.body["status"], status);
        assert_eq!(self.body["type"], format!("/problems/{code}"));
        for field in ["title", "detail", "instance", "request_id"] {
            assert!(
                self.body[field].is_string(),
                "problem lacks {field}: {:#}",
                self.body
            );
        }
        assert_eq!(
            Some(self.body["request_id"].as_str().unwrap_or_default()),
            self.header("x-request-id")
        );
        &self.body
    }

    /// The field errors of a 422, as (field, code) pairs.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.problem(422, "validation_failed");
        self.body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap_or_default().to_owned(),
                    e["code"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// Sends a request and reads the reply.
pub async fn send<S, B>(app: &S, req: test::TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let raw = test::read_body(res).await.to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

/// POSTs JSON.
pub async fn post<S, B>(app: &S, path: &str, body: Value) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send(app, test::TestRequest::post().uri(path).set_json(body)).await
}

/// The request, sent with a bearer token.
pub fn with_token(req: test::TestRequest, token: &str) -> test::TestRequest {
    req.insert_header(("authorization", format!("Bearer {token}")))
}

/// GETs with an optional bearer token.
pub async fn get<S, B>(app: &S, path: &str, token: Option<&str>) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let req = test::TestRequest::get().uri(path);
    send(
        app,
        match token {
            Some(token) => with_token(req, token),
            None => req,
        },
    )
    .await
}

/// Registers an account and returns its JSON.
pub async fn register<S, B>(app: &S, username: &str) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let reply = post(app, "/api/v1/auth/register", json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    reply.body
}

/// Logs in and returns the token pair.
pub async fn login<S, B>(app: &S, login: &str) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let reply = post(
        app,
        "/api/v1/auth/login",
        json!({"login": login, "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    reply.body
}

/// Exchanges a refresh token.
pub async fn refresh<S, B>(app: &S, token: &serde_json::Value) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    post(
        app,
        "/api/v1/auth/refresh",
        json!({ "refresh_token": token }),
    )
    .await
}

/// Revokes the session of a refresh token.
pub async fn logout<S, B>(app: &S, token: &serde_json::Value) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    post(
        app,
        "/api/v1/auth/logout",
        json!({ "refresh_token": token }),
    )
    .await
}

/// Creates an account holding the `admin` role (as `moments admin create-user --admin` does).
pub async fn create_admin(state: &AppState, username: &str) {
    use moments_domain::account::Registration;
    use moments_domain::authz::RoleName;
    use moments_domain::value::{Email, Password, Username};
    let registration = Registration {
        username: Username::parse(username).expect("username"),
        email: Email::parse(&format!("{username}@example.com")).expect("email"),
        password: Password::parse(PASSWORD).expect("password"),
    };
    let admin = RoleName::parse("admin").expect("role");
    state
        .accounts
        .register_with_roles(registration, &[admin])
        .await
        .expect("admin");
}

/// Settings that put an application on the test Redis under a fresh key prefix, with short
/// timeouts (`None`: skipped, Redis unreachable and not required). Give two instances the same
/// settings to have them share state.
pub async fn redis_vars() -> Option<Vec<(&'static str, String)>> {
    let redis = moments_redis::testing::test_redis().await?;
    Some(vec![
        ("REDIS_URL", redis.url),
        ("MOMENTS_REDIS_PREFIX", redis.prefix),
        ("MOMENTS_REDIS_TIMEOUT_MS", "500".to_owned()),
        ("MOMENTS_REDIS_RETRY_MS", "200".to_owned()),
    ])
}
