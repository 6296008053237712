//! Upgrading an existing database: the OAuth migration rebuilds `users` (SQLite cannot drop
//! `NOT NULL` in place); every row and every reference must survive it.

#![expect(clippy::unwrap_used, reason = "tests")]

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Email {
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
}

fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

#[test]
fn the_users_rebuild_keeps_rows_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("upgrade.db").display().to_string();
    let mut conn = SqliteConnection::establish(&url).unwrap();
    conn.batch_execute("PRAGMA foreign_keys = ON;").unwrap();
    // The schema as it was before OAuth (five migrations), with data in it.
    for _ in 0..5 {
        conn.run_next_migration(MIGRATIONS).unwrap();
    }
    conn.batch_execute(
        "INSERT INTO users (id, username, email, email_key, email_verified, disabled, created_at, updated_at, authz_changed_at)
             VALUES ('u1', 'alice', 'Alice@Example.com', 'alice@example.com', 1, 0, '2026-01-01 00:00:00', '2026-01-02 00:00:00', '2026-01-03 00:00:00');
         INSERT INTO password_credentials (user_id, hash, updated_at) VALUES ('u1', 'hash', '2026-01-01 00:00:00');
         INSERT INTO user_roles (user_id, role_name, granted_at) VALUES ('u1', 'user', '2026-01-01 00:00:00');
         INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) VALUES ('s1', 'u1', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2027-01-01 00:00:00');",
    )
    .unwrap();

    let applied = conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert!(!applied.is_empty());

    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM users WHERE id = 'u1' AND username = 'alice' AND email_key = 'alice@example.com' AND email_verified = 1 AND authz_changed_at IS NOT NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pragma_foreign_key_check"
        ),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT foreign_keys AS n FROM pragma_foreign_keys"
        ),
        1,
        "enforcement is back on"
    );
    // An address-less account now fits, twice.
    conn.batch_execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u2', 'bob', '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO users (id, username, created_at, updated_at) VALUES ('u3', 'carol', '2026-01-01 00:00:00', '2026-01-01 00:00:00');",
    )
    .unwrap();
    let email = diesel::sql_query("SELECT email FROM users WHERE id = 'u2'")
        .get_result::<Email>(&mut conn)
        .unwrap();
    assert_eq!(email.email, None);
    // The old tables still reference the rebuilt one: deleting the account cascades.
    conn.batch_execute("DELETE FROM users WHERE id = 'u1';")
        .unwrap();
    for table in ["password_credentials", "user_roles", "sessions"] {
        assert_eq!(
            count(&mut conn, &format!("SELECT count(*) AS n FROM {table}")),
            0,
            "{table}"
        );
    }
    // And a reference to a missing account is still refused.
    let orphan = conn.batch_execute(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) VALUES ('s2', 'nobody', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2027-01-01 00:00:00');",
    );
    assert!(orphan.is_err());
}
