//! End to end: the real `moments` binary on port 0, driven over HTTP.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use moments_postgres::testing::TestDatabase;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// A running server, stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    base: String,
    logs: mpsc::Receiver<String>,
}

fn moments(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moments"));
    for var in [
        "DATABASE_URL",
        "MOMENTS_ENV",
        "MOMENTS_JWT_SECRET",
        "MOMENTS_LISTEN",
        "MOMENTS_PUBLIC_URL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("MOMENTS_LISTEN", "127.0.0.1:0")
        .env("MOMENTS_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .envs(envs.iter().copied());
    cmd
}

impl Server {
    fn start(envs: &[(&str, &str)]) -> Self {
        let mut child = moments(envs)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moments");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let base = loop {
            let line = logs
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("server did not start: {seen:#?}"));
            if let Some(at) = line.find("listening on http://") {
                break line[at + "listening on ".len()..].trim().to_owned();
            }
            seen.push(line);
        };
        Self { child, base, logs }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the remaining log lines.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "moments exited with {exit}");
        self.logs.try_iter().collect()
    }
}

async fn call(
    client: &awc::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let mut res = match body {
        Some(body) => req.send_json(&body).await.expect("request"),
        None => req.send().await.expect("request"),
    };
    let bytes = res.body().await.expect("body");
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// register → login → me → refresh → logout, as a client would with curl.
async fn account_round_trip(base: &str, username: &str) -> Value {
    let client = awc::Client::default();
    let (status, user) = call(&client, "POST", &format!("{base}/api/v1/auth/register"), None,
        Some(json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}))).await;
    assert_eq!(status, 201, "{user}");
    let (status, pair) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({"login": username, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{pair}");
    let (status, me) = call(
        &client,
        "GET",
        &format!("{base}/api/v1/auth/me"),
        pair["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!((status, &me["id"]), (200, &user["id"]));
    let (status, next) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/auth/refresh"),
        None,
        Some(json!({"refresh_token": pair["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    let (status, _) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/auth/logout"),
        None,
        Some(json!({"refresh_token": next["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, problem) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/auth/refresh"),
        None,
        Some(json!({"refresh_token": next["refresh_token"]})),
    )
    .await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (401, Some("invalid_refresh_token"))
    );
    next
}

#[actix_web::test]
async fn embedded_default_serves_and_keeps_its_key_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&[("MOMENTS_DATA_DIR", dir)]);
    let logged_out = account_round_trip(&server.base, "alice").await;
    let (_, pair) = call(
        &awc::Client::default(),
        "POST",
        &format!("{}/api/v1/auth/login", server.base),
        None,
        Some(json!({"login": "alice", "password": PASSWORD})),
    )
    .await;
    let (status, ready) = call(
        &awc::Client::default(),
        "GET",
        &format!("{}/ready", server.base),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, ready["checks"]["database"].as_str()),
        (200, Some("ok"))
    );
    let logs = server.stop();
    assert!(logs.iter().any(|l| l.contains("stopped")), "{logs:#?}");
    assert!(data.path().join("moments.db").exists());
    assert!(data.path().join("jwt-secret").exists());

    // A restart keeps the accounts and the signing key: the old access token still verifies…
    let server = Server::start(&[("MOMENTS_DATA_DIR", dir)]);
    let (status, me) = call(
        &awc::Client::default(),
        "GET",
        &format!("{}/api/v1/auth/me", server.base),
        pair["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!((status, me["username"].as_str()), (200, Some("alice")));
    // …and the revocations: the logged-out session's access token stays refused.
    let (status, problem) = call(
        &awc::Client::default(),
        "GET",
        &format!("{}/api/v1/auth/me", server.base),
        logged_out["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (401, Some("invalid_token"))
    );
    server.stop();
}

#[test]
fn production_refuses_to_start_without_a_strong_secret() {
    let data = tempfile::tempdir().unwrap();
    let out = moments(&[
        ("MOMENTS_ENV", "production"),
        ("MOMENTS_DATA_DIR", data.path().to_str().unwrap()),
    ])
    .arg("serve")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MOMENTS_JWT_SECRET"), "{stderr}");
    let out = moments(&[
        ("MOMENTS_ENV", "production"),
        ("MOMENTS_JWT_SECRET", "too-short"),
    ])
    .arg("serve")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
}

#[test]
fn openapi_command_prints_the_document() {
    let out = moments(&[]).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/auth/login"]["post"].is_object());
}

#[actix_web::test]
async fn postgres_needs_migrate_then_serves() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let secret = "e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    let envs = [("DATABASE_URL", db.url()), ("MOMENTS_JWT_SECRET", secret)];

    // Behind on migrations: refuse, and say what to do.
    let out = moments(&envs).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("moments migrate"), "{stderr}");

    let out = moments(&envs).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The first administrator, from the CLI; the password comes on standard input.
    let mut admin = moments(&envs)
        .args([
            "admin",
            "create-user",
            "--username",
            "root_admin",
            "--email",
            "admin@example.com",
            "--password-stdin",
            "--admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(admin.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    }
    let out = admin.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["admin"], true);

    let server = Server::start(&envs);
    account_round_trip(&server.base, "bob").await;
    let client = awc::Client::default();
    let (_, pair) = call(
        &client,
        "POST",
        &format!("{}/api/v1/auth/login", server.base),
        None,
        Some(json!({"login": "admin@example.com", "password": PASSWORD})),
    )
    .await;
    let (status, me) = call(
        &client,
        "GET",
        &format!("{}/api/v1/auth/me", server.base),
        pair["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["roles"], json!(["admin", "user"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("roles:assign"))
    );
    server.stop();
}

#[test]
fn create_user_rejects_a_weak_password_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let mut child = moments(&[("MOMENTS_DATA_DIR", data.path().to_str().unwrap())])
        .args([
            "admin",
            "create-user",
            "--username",
            "weak",
            "--email",
            "weak@example.com",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "password1234").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
}

#[test]
fn import_users_is_all_or_nothing_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let good =
        json!({"username": "imported", "email": "imported@example.com", "password_hash": hash});
    let bad = json!({"username": "x", "email": "x@example.com", "password_hash": hash});
    let file = data.path().join("users.jsonl");

    std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
    let out = moments(&[("MOMENTS_DATA_DIR", dir)])
        .args(["admin", "import-users", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("users.jsonl:2: username must be at least 3 characters"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing imported: 1 invalid line(s)"),
        "{stderr}"
    );

    std::fs::write(&file, format!("{good}\n")).unwrap();
    let out = moments(&[("MOMENTS_DATA_DIR", dir)])
        .args(["admin", "import-users", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report, json!({"imported": 1}));
}

#[actix_web::test]
async fn a_server_on_redis_reports_it_and_limits_through_it() {
    let Some(redis) = moments_redis::testing::test_redis().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        ("MOMENTS_DATA_DIR", data.path().to_str().unwrap()),
        ("REDIS_URL", &redis.url),
        ("MOMENTS_REDIS_PREFIX", &redis.prefix),
        ("MOMENTS_RATE_LIMIT_REGISTER", "1/600s"),
    ]);
    let client = awc::Client::default();
    let (status, ready) = call(
        &client,
        "GET",
        &format!("{}/ready", server.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ready,
        json!({"status": "ok", "checks": {"database": "ok", "redis": "ok"}})
    );
    account_round_trip(&server.base, "fern").await;
    let (status, refused) = call(
        &client,
        "POST",
        &format!("{}/api/v1/auth/register", server.base),
        None,
        Some(json!({"username": "gus", "email": "gus@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 429, "{refused:#}");
    assert_eq!(refused["error_code"], "rate_limited");
    let logs = server.stop();
    assert!(!logs.iter().any(|l| l.contains("ERROR")), "{logs:#?}");
}
