//! The store contract suite on a fresh SQLite file per test.

#![expect(clippy::unwrap_used, reason = "test setup")]

use std::sync::Arc;

use moments_sqlite::{SqliteConfig, SqliteStore};
use moments_testkit::StoreUnderTest;

async fn sqlite_store() -> Option<StoreUnderTest> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("moments.db"))).unwrap();
    store.migrate().unwrap();
    let store = Arc::new(store);
    Some(StoreUnderTest {
        users: store.clone(),
        sessions: store.clone(),
        keys: store.clone(),
        audit: store.clone(),
        posts: store.clone(),
        identities: store.clone(),
        queries: Arc::new(move || store.queries_issued()),
        guard: Box::new(dir),
    })
}

moments_testkit::store_contract_tests!(sqlite_store());
