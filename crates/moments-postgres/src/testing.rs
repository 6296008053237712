//! A fresh PostgreSQL database per test, cloned from a migrated template.
//!
//! The template is named after a hash of `migrations/postgres`, so it is rebuilt whenever a
//! migration changes and reused otherwise; cloning it costs a few milliseconds where migrating
//! would cost far more. Concurrent test processes coordinate through an advisory lock.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::path::Path;

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{PgConfig, PgStore};

/// The variable naming the server tests use (an admin URL; default
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub const URL_VAR: &str = "MOMENTS_TEST_DATABASE_URL";

/// The admin URL tests connect with.
pub fn admin_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Hash of every file under `migrations/postgres`, in path order.
fn migrations_fingerprint() -> String {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    files.push(path);
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.strip_prefix(&root).unwrap_or(&file).hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// A database that exists for one test and is dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a migrated database. `None` when PostgreSQL is unreachable and the run does not
    /// require it (a loud banner says so); panics when it is required
    /// (`MOMENTS_TEST_REQUIRE_SERVICES=1`).
    pub async fn create() -> Option<Self> {
        Self::create_from(true).await
    }

    /// Creates an empty database, with no migrations applied (for testing `moments migrate`).
    pub async fn create_empty() -> Option<Self> {
        Self::create_from(false).await
    }

    async fn create_from(migrated: bool) -> Option<Self> {
        let admin_url = admin_url();
        let mut admin = match AsyncPgConnection::establish(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                moments_testkit::services::unreachable_service("PostgreSQL", &admin_url, &e);
                return None;
            }
        };
        let template = if migrated {
            let template = format!("moments_template_{}", migrations_fingerprint());
            ensure_template(&mut admin, &admin_url, &template).await;
            template
        } else {
            "template0".to_owned()
        };
        let name = format!("moments_test_{}", Uuid::now_v7().simple());
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        Some(Self {
            url: url_for(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this database.
    pub fn store(&self) -> PgStore {
        PgStore::connect(&PgConfig::new(self.url.clone()))
            .unwrap_or_else(|e| panic!("pool for {}: {e}", self.name))
    }
}

async fn ensure_template(admin: &mut AsyncPgConnection, admin_url: &str, template: &str) {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    // One builder at a time across processes; the others wait, then find it built.
    diesel::sql_query("SELECT pg_advisory_lock(7283940117)")
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("advisory lock: {e}"));
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(template)
            .get_result(admin)
            .await
            .unwrap_or_else(|e| panic!("looking up {template}: {e}"));
    if !found.exists {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            diesel::sql_query(statement)
                .execute(admin)
                .await
                .unwrap_or_else(|e| panic!("preparing {building}: {e}"));
        }
        let store = PgStore::connect(&PgConfig::new(url_for(admin_url, &building)))
            .unwrap_or_else(|e| panic!("pool for {building}: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrating {building}: {e}"));
        drop(store);
        // The pool's connections close in the background; make sure none is left, since a
        // database with sessions cannot be renamed or used as a template.
        for statement in [
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
            ),
            format!("ALTER DATABASE {building} RENAME TO {template}"),
        ] {
            diesel::sql_query(statement)
                .execute(admin)
                .await
                .unwrap_or_else(|e| panic!("finishing {building}: {e}"));
        }
    }
    diesel::sql_query("SELECT pg_advisory_unlock(7283940117)")
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("advisory unlock: {e}"));
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&admin_url).await.ok()?;
                diesel::sql_query(statement).execute(&mut admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}",
                self.name
            );
        }
    }
}
