//! Readiness and request behaviour while PostgreSQL is unreachable: a TCP proxy between the
//! application and the database is cut and restored, so the outage is real for the pool.

#![expect(clippy::unwrap_used, reason = "test helpers")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::test;
use common::*;
use moments_postgres::testing::TestDatabase;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Forwards connections to the database while up; while down, refuses new ones and cuts the
/// open ones.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` with host:port replaced.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, rest) = rest.split_once('@').map_or(("", rest), |(a, r)| (a, r));
    let (hostport, path) = rest.split_once('/').unwrap();
    let at = if auth.is_empty() {
        String::new()
    } else {
        format!("{auth}@")
    };
    (format!("{scheme}://{at}{addr}/{path}"), hostport.to_owned())
}

#[actix_web::test]
async fn ready_and_requests_fail_fast_while_postgres_is_down_and_recover() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (_, target) = through(db.url(), "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target).await;
    let (url, _) = through(db.url(), proxy.addr);
    let t = app_with(&[("DATABASE_URL", url)]).await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;

    assert_eq!(get(&app, "/ready", None).await.status, 200);
    register(&app, "ivy").await;

    proxy.down();
    let started = Instant::now();
    let reply = get(&app, "/ready", None).await;
    let took = started.elapsed();
    reply.problem(503, "service_unavailable");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("database"),
        "{:#}",
        reply.body
    );
    assert!(took < Duration::from_secs(2), "readiness took {took:?}");

    // Routes that need the database answer 503 too, never 500, never a hang.
    let started = Instant::now();
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ivy", "password": PASSWORD}),
    )
    .await;
    reply.problem(503, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "login took {:?}",
        started.elapsed()
    );
    // Liveness does not depend on the database.
    assert_eq!(get(&app, "/health", None).await.status, 200);

    proxy.up();
    let started = Instant::now();
    loop {
        let reply = get(&app, "/ready", None).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not ready 5 s after the database returned: {:#}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ivy", "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
}
