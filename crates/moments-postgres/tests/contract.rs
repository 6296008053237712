//! The store contract suite on PostgreSQL, a fresh database per test.

use std::sync::Arc;

use moments_postgres::testing::TestDatabase;
use moments_testkit::StoreUnderTest;

async fn pg_store() -> Option<StoreUnderTest> {
    let db = TestDatabase::create().await?;
    let store = Arc::new(db.store());
    Some(StoreUnderTest {
        users: store.clone(),
        sessions: store.clone(),
        keys: store.clone(),
        audit: store.clone(),
        posts: store.clone(),
        identities: store.clone(),
        queries: Arc::new(move || store.queries_issued()),
        guard: Box::new(db),
    })
}

moments_testkit::store_contract_tests!(pg_store());
