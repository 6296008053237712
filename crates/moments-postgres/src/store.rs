//! The PostgreSQL implementation of the store ports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool::Runtime;
use diesel::connection::InstrumentationEvent;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AsyncConnection as _, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    SimpleAsyncConnection as _,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};
use moments_domain::InfraError;
use moments_domain::audit::AuditEvent;
use moments_domain::authz::{Permission, Role, RoleName, assemble_roles};
use moments_domain::ids::{SessionId, UserId};
use moments_domain::ports::{
    CreateRoleError, CreateUserError, HealthProbe, RoleChange, SessionStore,
    UpdateProfileStoreError, UserStore,
};
use moments_domain::profile::ProfileChange;
use moments_domain::session::{
    NewRefreshToken, NewSession, RefreshTokenRecord, Session, TokenDigest,
};
use moments_domain::user::{NewUser, User};
use moments_domain::value::{Email, PasswordHash, Username};
use uuid::Uuid;

use crate::audit::insert_events;
use crate::models::{
    NewPasswordRow, NewUserRoleRow, NewUserRow, RefreshTokenRow, SessionRow, UserRow,
    like_prefix_pattern,
};
use crate::schema::{
    api_keys, password_credentials, refresh_tokens, role_permissions, roles, sessions, user_roles,
    users,
};

/// The migrations in `migrations/postgres`, embedded in the binary.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// How to reach PostgreSQL and how long to wait for it.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://…` connection URL (may hold a password; never printed).
    pub url: String,
    /// Largest number of pooled connections.
    pub pool_size: usize,
    /// Budget for one store operation: waiting for a connection (and opening one) plus the
    /// queries. Past it the operation fails as unavailable.
    pub operation_timeout: Duration,
}

impl PgConfig {
    /// Defaults: 16 connections, 2 s per operation.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            operation_timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"[redacted]")
            .field("pool_size", &self.pool_size)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// Failure to set up the store or run migrations.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The pool could not be built.
    #[error("cannot build the PostgreSQL pool: {0}")]
    Pool(String),
    /// The database could not be reached.
    #[error("PostgreSQL is not reachable: {0}")]
    Unreachable(String),
    /// A migration failed.
    #[error("PostgreSQL migration failed: {0}")]
    Migrate(String),
}

/// The PostgreSQL store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// Connections for the feed's statement only, planned generically (docs/decisions.md, 27):
    /// PostgreSQL would otherwise re-plan it for every page. Other statements stay on `pool`,
    /// where a generic plan could be poor (a `LIKE` prefix, a skewed filter).
    feed_pool: Pool<AsyncPgConnection>,
    operation_timeout: Duration,
    queries: Arc<AtomicU64>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("status", &self.pool.status())
            .field("feed_status", &self.feed_pool.status())
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// A pool whose connections count their statements in `queries` and, with `plan_cache_mode`,
/// run with that setting.
fn build_pool(
    config: &PgConfig,
    queries: &Arc<AtomicU64>,
    plan_cache_mode: Option<&'static str>,
) -> Result<Pool<AsyncPgConnection>, PgStoreError> {
    let counter = Arc::clone(queries);
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // No test query on every checkout: that would be a second round trip for every one-query
    // request. A connection that died is found by its first failing query, answered 503, and
    // dropped by the pool (docs/decisions.md, 24).
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let counter = Arc::clone(&counter);
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            if let Some(mode) = plan_cache_mode {
                conn.batch_execute(&format!("SET plan_cache_mode = {mode}"))
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            }
            conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        with_connect_timeout(&config.url, config.operation_timeout),
        manager_config,
    );
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.operation_timeout))
        .create_timeout(Some(config.operation_timeout))
        .recycle_timeout(Some(config.operation_timeout))
        .build()
        .map_err(|e| PgStoreError::Pool(e.to_string()))
}

/// Adds `connect_timeout` (whole seconds, at least 1) unless the URL sets one.
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}connect_timeout={}",
        timeout.as_secs().max(1)
    )
}

impl PgStore {
    /// Builds the pools. Connections are opened on demand, so this succeeds while the database
    /// is down; [`PgStore::pending_migrations`] is the start-up reachability check.
    pub fn connect(config: &PgConfig) -> Result<Self, PgStoreError> {
        let queries = Arc::new(AtomicU64::new(0));
        Ok(Self {
            pool: build_pool(config, &queries, None)?,
            feed_pool: build_pool(config, &queries, Some("force_generic_plan"))?,
            operation_timeout: config.operation_timeout,
            queries,
        })
    }

    /// Statements sent to the database since the store was built (migrations included): what
    /// tests count to prove a page is one query.
    pub fn queries_issued(&self) -> u64 {
        AtomicU64::load(&self.queries, Ordering::Relaxed)
    }

    /// Applies pending migrations and returns the names of those applied.
    pub async fn migrate(&self) -> Result<Vec<String>, PgStoreError> {
        self.with_harness(|harness| {
            harness
                .run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Names of the migrations the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, PgStoreError> {
        self.with_harness(|harness| {
            harness
                .pending_migrations(MIGRATIONS)
                .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
        })
        .await
    }

    async fn with_harness<T: Send + 'static>(
        &self,
        work: impl FnOnce(
            &mut AsyncMigrationHarness<
                diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>,
            >,
        ) -> diesel::migration::Result<T>
        + Send
        + 'static,
    ) -> Result<T, PgStoreError> {
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| PgStoreError::Unreachable(e.to_string()))?;
        // The harness drives the async connection with block_on: keep it off the executor.
        tokio::task::spawn_blocking(move || {
            let mut harness = AsyncMigrationHarness::new(conn);
            work(&mut harness).map_err(|e| PgStoreError::Migrate(e.to_string()))
        })
        .await
        .map_err(|e| PgStoreError::Migrate(e.to_string()))?
    }

    /// A pooled connection (waits at most the pool's timeouts).
    pub(crate) async fn conn(
        &self,
    ) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, InfraError>
    {
        self.pool
            .get()
            .await
            .map_err(|e| InfraError::unavailable("database", e))
    }

    /// A connection of the feed pool, whose statements are planned once and reused.
    pub(crate) async fn feed_conn(
        &self,
    ) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, InfraError>
    {
        self.feed_pool
            .get()
            .await
            .map_err(|e| InfraError::unavailable("database", e))
    }

    /// Bounds a whole store operation (connection and queries) by the operation timeout.
    pub(crate) async fn timed<T, E: From<InfraError>>(
        &self,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.operation_timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(InfraError::unavailable("database", "operation timed out").into()),
        }
    }
}

pub(crate) fn db_error(e: DieselError) -> InfraError {
    let connection_lost = match &e {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            message.contains("connection") || message.contains("terminating")
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    };
    if connection_lost {
        InfraError::unavailable("database", e)
    } else {
        InfraError::Internal(Box::new(e))
    }
}

pub(crate) enum CreateTx {
    Diesel(DieselError),
    UnknownRole(RoleName),
    Infra(InfraError),
}

impl From<DieselError> for CreateTx {
    fn from(e: DieselError) -> Self {
        Self::Diesel(e)
    }
}

impl From<InfraError> for CreateTx {
    fn from(e: InfraError) -> Self {
        Self::Infra(e)
    }
}

impl From<CreateTx> for CreateUserError {
    fn from(e: CreateTx) -> Self {
        match e {
            CreateTx::UnknownRole(role) => Self::UnknownRole(role),
            CreateTx::Diesel(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                info,
            )) => match info.constraint_name() {
                Some("users_username_unique") => Self::UsernameTaken,
                Some("users_email_key_unique") => Self::EmailTaken,
                Some("oauth_identities_pkey") => Self::IdentityTaken,
                _ => InfraError::internal(info.message().to_owned()).into(),
            },
            CreateTx::Infra(e) => e.into(),
            CreateTx::Diesel(e) => db_error(e).into(),
        }
    }
}

/// Inserts one account with its credential and roles (inside the caller's transaction).
pub(crate) async fn insert_user(
    conn: &mut AsyncPgConnection,
    user: &NewUser,
) -> Result<UserRow, CreateTx> {
    for role in &user.roles {
        let exists: i64 = roles::table
            .filter(roles::name.eq(role.as_str()))
            .count()
            .get_result(conn)
            .await?;
        if exists == 0 {
            return Err(CreateTx::UnknownRole(role.clone()));
        }
    }
    let id = user.id.as_uuid();
    diesel::insert_into(users::table)
        .values(NewUserRow {
            id,
            username: user.username.as_str(),
            email: user.email.as_ref().map(Email::as_str),
            email_key: user.email.as_ref().map(Email::key),
            email_verified: user.email_verified,
            display_name: user.display_name.as_deref(),
            created_at: user.created_at,
            updated_at: user.created_at,
        })
        .execute(conn)
        .await?;
    if let Some(hash) = &user.password_hash {
        diesel::insert_into(password_credentials::table)
            .values(NewPasswordRow {
                user_id: id,
                hash: hash.as_str(),
                updated_at: user.created_at,
            })
            .execute(conn)
            .await?;
    }
    for role in &user.roles {
        diesel::insert_into(user_roles::table)
            .values(NewUserRoleRow {
                user_id: id,
                role_name: role.as_str(),
                granted_at: user.created_at,
            })
            .execute(conn)
            .await?;
    }
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .await?)
}

async fn insert_permissions(
    conn: &mut AsyncPgConnection,
    role: &str,
    permissions: &[Permission],
) -> Result<(), DieselError> {
    for permission in permissions {
        diesel::insert_into(role_permissions::table)
            .values((
                role_permissions::role_name.eq(role),
                role_permissions::permission.eq(permission.as_str()),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// `(id, time)` rows of a "changed since" query as domain ids; rows without a time are skipped.
fn stamped<T: From<Uuid>>(rows: Vec<(Uuid, Option<DateTime<Utc>>)>) -> Vec<(T, DateTime<Utc>)> {
    rows.into_iter()
        .filter_map(|(id, at)| Some((T::from(id), at?)))
        .collect()
}

/// Records an authorization change for every holder of the role.
async fn mark_holders_changed(
    conn: &mut AsyncPgConnection,
    role: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let holders = user_roles::table
        .filter(user_roles::role_name.eq(role))
        .select(user_roles::user_id);
    diesel::update(users::table.filter(users::id.eq_any(holders)))
        .set(users::authz_changed_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// `Some(outcome)` when the user or the role does not exist; `None` to go ahead.
async fn role_change_preflight(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role: &str,
) -> Result<Option<RoleChange>, DieselError> {
    let user_exists: i64 = users::table
        .filter(users::id.eq(user))
        .count()
        .get_result(conn)
        .await?;
    if user_exists == 0 {
        return Ok(Some(RoleChange::UnknownUser));
    }
    let role_exists: i64 = roles::table
        .filter(roles::name.eq(role))
        .count()
        .get_result(conn)
        .await?;
    Ok((role_exists == 0).then_some(RoleChange::UnknownRole))
}

/// Stamps the user's authorization change when `rows` were affected.
async fn record_change(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    rows: usize,
    now: DateTime<Utc>,
    event: &AuditEvent,
) -> Result<RoleChange, DieselError> {
    if rows == 0 {
        return Ok(RoleChange::Unchanged);
    }
    diesel::update(users::table.find(user))
        .set(users::authz_changed_at.eq(now))
        .execute(conn)
        .await?;
    insert_events(conn, [event]).await?;
    Ok(RoleChange::Changed)
}

/// Sets the account's password hash, inside the caller's transaction.
async fn upsert_password(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    diesel::insert_into(password_credentials::table)
        .values(NewPasswordRow {
            user_id: user,
            hash,
            updated_at: now,
        })
        .on_conflict(password_credentials::user_id)
        .do_update()
        .set((
            password_credentials::hash.eq(hash),
            password_credentials::updated_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Revokes the user's live sessions except `keep` (the nil id matches no session, so
/// `Uuid::nil()` keeps nothing), inside the caller's transaction; returns the ids revoked.
async fn revoke_sessions_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    keep: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SessionId>, DieselError> {
    let ids: Vec<Uuid> = diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep)),
    )
    .set(sessions::revoked_at.eq(now))
    .returning(sessions::id)
    .get_results(conn)
    .await?;
    Ok(ids.into_iter().map(SessionId::from_uuid).collect())
}

async fn load_roles(
    conn: &mut AsyncPgConnection,
    names: &[String],
) -> Result<Vec<Role>, DieselError> {
    let rows: Vec<(String, String, bool)> = roles::table
        .filter(roles::name.eq_any(names))
        .select((roles::name, roles::description, roles::builtin))
        .order(roles::name)
        .load(conn)
        .await?;
    let grants: Vec<(String, String)> = role_permissions::table
        .filter(role_permissions::role_name.eq_any(names))
        .select((role_permissions::role_name, role_permissions::permission))
        .load(conn)
        .await?;
    Ok(assemble_roles(rows, grants))
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_users(&self, new_users: Vec<NewUser>) -> Result<Vec<User>, CreateUserError> {
        let new_users = &new_users;
        let result: Result<Vec<UserRow>, CreateTx> = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                conn.transaction::<_, CreateTx, _>(async |conn| {
                    let mut rows = Vec::with_capacity(new_users.len());
                    for user in new_users {
                        rows.push(insert_user(conn, user).await?);
                    }
                    Ok(rows)
                })
                .await
            })
            .await;
        match result {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<Result<_, _>>()?),
            Err(e) => Err(e.into()),
        }
    }

    async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        self.find_user(users::table.filter(users::id.eq(id.as_uuid())).into_boxed())
            .await
    }

    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>, InfraError> {
        let name = username.as_str().to_owned();
        self.find_user(users::table.filter(users::username.eq(name)).into_boxed())
            .await
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError> {
        let key = email.key().to_owned();
        self.find_user(users::table.filter(users::email_key.eq(key)).into_boxed())
            .await
    }

    async fn password_hash(&self, id: UserId) -> Result<Option<PasswordHash>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            password_credentials::table
                .find(id.as_uuid())
                .select(password_credentials::hash)
                .first::<String>(conn)
                .await
                .optional()
                .map(|hash| hash.map(PasswordHash::new))
                .map_err(db_error)
        })
        .await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            upsert_password(conn, id.as_uuid(), hash.as_str(), now)
                .await
                .map_err(db_error)
        })
        .await
    }

    async fn change_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<SessionId>, InfraError> {
        let keep = keep.map_or(Uuid::nil(), |k| k.as_uuid());
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                upsert_password(conn, id.as_uuid(), hash.as_str(), now).await?;
                let revoked = revoke_sessions_of(conn, id.as_uuid(), keep, now).await?;
                insert_events(conn, [event]).await?;
                Ok(revoked)
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<User>, UpdateProfileStoreError> {
        let id = id.as_uuid();
        let result = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                Ok::<_, InfraError>(
                    conn.transaction::<_, DieselError, _>(async |conn| {
                        let Some((current_key, verified)) = users::table
                            .find(id)
                            .select((users::email_key, users::email_verified))
                            .for_update()
                            .first::<(Option<String>, bool)>(conn)
                            .await
                            .optional()?
                        else {
                            return Ok(None);
                        };
                        if let Some(name) = &change.display_name {
                            diesel::update(users::table.find(id))
                                .set(users::display_name.eq(name.as_ref().map(|n| n.as_str())))
                                .execute(conn)
                                .await?;
                        }
                        if let Some(email) = &change.email {
                            let key = email.key();
                            diesel::update(users::table.find(id))
                                .set((
                                    users::email.eq(email.as_str()),
                                    users::email_verified
                                        .eq(verified && current_key.as_deref() == Some(key)),
                                    users::email_key.eq(key),
                                ))
                                .execute(conn)
                                .await?;
                        }
                        let row = diesel::update(users::table.find(id))
                            .set(users::updated_at.eq(now))
                            .returning(UserRow::as_returning())
                            .get_result(conn)
                            .await?;
                        insert_events(conn, [event]).await?;
                        Ok(Some(row))
                    })
                    .await,
                )
            })
            .await?;
        match result {
            Ok(row) => Ok(row.map(UserRow::into_domain).transpose()?),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                if info.constraint_name() == Some("users_email_key_unique") =>
            {
                Err(UpdateProfileStoreError::EmailTaken)
            }
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            let names: Vec<String> = user_roles::table
                .filter(user_roles::user_id.eq(id.as_uuid()))
                .select(user_roles::role_name)
                .load(conn)
                .await
                .map_err(db_error)?;
            load_roles(conn, &names).await.map_err(db_error)
        })
        .await
    }

    async fn list_users(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<User>, InfraError> {
        let pattern = prefix.map(like_prefix_pattern);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.timed(async {
            let conn = &mut *self.conn().await?;
            let mut query = users::table.into_boxed();
            if let Some(pattern) = &pattern {
                query = query.filter(
                    users::username
                        .like(pattern.clone())
                        .escape('\\')
                        .or(users::email_key.like(pattern.clone()).escape('\\')),
                );
            }
            if let Some(after) = after {
                query = query.filter(users::username.gt(after.to_owned()));
            }
            query
                .order(users::username)
                .limit(limit)
                .select(UserRow::as_select())
                .load(conn)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(UserRow::into_domain)
                .collect()
        })
        .await
    }

    async fn set_disabled(
        &self,
        id: UserId,
        disabled: bool,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<(User, Vec<SessionId>)>, InfraError> {
        let id = id.as_uuid();
        let found = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let Some(row) = diesel::update(users::table.find(id))
                        .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?
                    else {
                        return Ok(None);
                    };
                    let mut revoked = Vec::new();
                    if disabled {
                        revoked = revoke_sessions_of(conn, id, Uuid::nil(), now).await?;
                        diesel::update(
                            api_keys::table
                                .filter(api_keys::owner_id.eq(id))
                                .filter(api_keys::revoked_at.is_null()),
                        )
                        .set(api_keys::revoked_at.eq(now))
                        .execute(conn)
                        .await?;
                    }
                    insert_events(conn, [event]).await?;
                    Ok(Some((row, revoked)))
                })
                .await
                .map_err(db_error)
            })
            .await?;
        found
            .map(|(row, revoked)| Ok((row.into_domain()?, revoked)))
            .transpose()
    }

    async fn list_roles(&self) -> Result<Vec<Role>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            let names: Vec<String> = roles::table
                .select(roles::name)
                .load(conn)
                .await
                .map_err(db_error)?;
            load_roles(conn, &names).await.map_err(db_error)
        })
        .await
    }

    async fn assign_role(
        &self,
        user: UserId,
        role: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<RoleChange, InfraError> {
        let (user, role) = (user.as_uuid(), role.as_str());
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                if let Some(outcome) = role_change_preflight(conn, user, role).await? {
                    return Ok(outcome);
                }
                let inserted = diesel::insert_into(user_roles::table)
                    .values(NewUserRoleRow {
                        user_id: user,
                        role_name: role,
                        granted_at: now,
                    })
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                record_change(conn, user, inserted, now, event).await
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn remove_role(
        &self,
        user: UserId,
        role: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<RoleChange, InfraError> {
        let (user, role) = (user.as_uuid(), role.as_str());
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                if let Some(outcome) = role_change_preflight(conn, user, role).await? {
                    return Ok(outcome);
                }
                let deleted = diesel::delete(
                    user_roles::table
                        .filter(user_roles::user_id.eq(user))
                        .filter(user_roles::role_name.eq(role)),
                )
                .execute(conn)
                .await?;
                record_change(conn, user, deleted, now, event).await
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn create_role(
        &self,
        role: &Role,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), CreateRoleError> {
        let result = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                Ok::<_, InfraError>(
                    conn.transaction::<_, DieselError, _>(async |conn| {
                        diesel::insert_into(roles::table)
                            .values((
                                roles::name.eq(role.name.as_str()),
                                roles::description.eq(&role.description),
                                roles::builtin.eq(false),
                                roles::created_at.eq(now),
                            ))
                            .execute(conn)
                            .await?;
                        insert_permissions(conn, role.name.as_str(), &role.permissions).await?;
                        insert_events(conn, [event]).await
                    })
                    .await,
                )
            })
            .await?;
        match result {
            Ok(()) => Ok(()),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(CreateRoleError::Exists)
            }
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn update_role(
        &self,
        name: &RoleName,
        description: Option<&str>,
        permissions: Option<&[Permission]>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<Role>, InfraError> {
        let name = name.as_str();
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                let exists: i64 = roles::table
                    .filter(roles::name.eq(name))
                    .count()
                    .get_result(conn)
                    .await?;
                if exists == 0 {
                    return Ok(None);
                }
                if let Some(description) = description {
                    diesel::update(roles::table.find(name))
                        .set(roles::description.eq(description))
                        .execute(conn)
                        .await?;
                }
                if let Some(permissions) = permissions {
                    diesel::delete(
                        role_permissions::table.filter(role_permissions::role_name.eq(name)),
                    )
                    .execute(conn)
                    .await?;
                    insert_permissions(conn, name, permissions).await?;
                    mark_holders_changed(conn, name, now).await?;
                }
                insert_events(conn, [event]).await?;
                Ok(load_roles(conn, &[name.to_owned()]).await?.pop())
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn delete_role(
        &self,
        name: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let name = name.as_str();
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                mark_holders_changed(conn, name, now).await?;
                let deleted = diesel::delete(roles::table.find(name))
                    .execute(conn)
                    .await?
                    == 1;
                if deleted {
                    insert_events(conn, [event]).await?;
                }
                Ok(deleted)
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn authz_changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            users::table
                .filter(users::authz_changed_at.gt(since))
                .select((users::id, users::authz_changed_at))
                .load::<(Uuid, Option<DateTime<Utc>>)>(conn)
                .await
                .map(stamped)
                .map_err(db_error)
        })
        .await
    }

    async fn find_role(&self, name: &RoleName) -> Result<Option<Role>, InfraError> {
        let names = [name.as_str().to_owned()];
        self.timed(async {
            let conn = &mut *self.conn().await?;
            Ok(load_roles(conn, &names).await.map_err(db_error)?.pop())
        })
        .await
    }
}

impl PgStore {
    async fn find_user(
        &self,
        query: users::BoxedQuery<'static, Pg>,
    ) -> Result<Option<User>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            query
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()
                .map_err(db_error)?
                .map(UserRow::into_domain)
                .transpose()
        })
        .await
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, new: NewSession, event: &AuditEvent) -> Result<(), InfraError> {
        let session = SessionRow::from_domain(&new.session);
        let token = RefreshTokenRow::new(&new.refresh_token, session.id);
        let (session, token) = (&session, &token);
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                diesel::insert_into(sessions::table)
                    .values(session)
                    .execute(conn)
                    .await?;
                diesel::insert_into(refresh_tokens::table)
                    .values(token)
                    .execute(conn)
                    .await?;
                insert_events(conn, [event]).await
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn find_session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            sessions::table
                .find(id.as_uuid())
                .select(SessionRow::as_select())
                .first(conn)
                .await
                .optional()
                .map(|row| row.map(SessionRow::into_domain))
                .map_err(db_error)
        })
        .await
    }

    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<RefreshTokenRecord>, InfraError> {
        let digest = digest.as_bytes().to_vec();
        self.timed(async {
            let conn = &mut *self.conn().await?;
            let found = refresh_tokens::table
                .inner_join(sessions::table)
                .filter(refresh_tokens::digest.eq(digest))
                .select((RefreshTokenRow::as_select(), SessionRow::as_select()))
                .first::<(RefreshTokenRow, SessionRow)>(conn)
                .await
                .optional()
                .map_err(db_error)?;
            Ok(found.map(|(token, session)| RefreshTokenRecord {
                id: token.id.into(),
                issued_at: token.issued_at,
                expires_at: token.expires_at,
                rotated_at: token.rotated_at,
                session: session.into_domain(),
            }))
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        current: &TokenDigest,
        successor: NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let current = current.as_bytes().to_vec();
        let successor = &successor;
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                let live_sessions = sessions::table
                    .filter(sessions::revoked_at.is_null())
                    .select(sessions::id);
                // Row locking makes concurrent rotations of one token queue here; each
                // re-checks `rotated_at IS NULL` after the winner commits, and finds nothing.
                let retired: Option<Uuid> = diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::digest.eq(current))
                        .filter(refresh_tokens::rotated_at.is_null())
                        .filter(refresh_tokens::session_id.eq_any(live_sessions)),
                )
                .set(refresh_tokens::rotated_at.eq(now))
                .returning(refresh_tokens::session_id)
                .get_result(conn)
                .await
                .optional()?;
                let Some(session_id) = retired else {
                    return Ok(false);
                };
                diesel::insert_into(refresh_tokens::table)
                    .values(RefreshTokenRow::new(successor, session_id))
                    .execute(conn)
                    .await?;
                diesel::update(sessions::table.find(session_id))
                    .set(sessions::last_used_at.eq(now))
                    .execute(conn)
                    .await?;
                Ok(true)
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn revoke_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        event: Option<&AuditEvent>,
    ) -> Result<bool, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                let revoked = diesel::update(
                    sessions::table
                        .find(id.as_uuid())
                        .filter(sessions::revoked_at.is_null()),
                )
                .set(sessions::revoked_at.eq(now))
                .execute(conn)
                .await?
                    == 1;
                if revoked {
                    insert_events(conn, event).await?;
                }
                Ok(revoked)
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<SessionId>, InfraError> {
        let keep = keep.map_or(Uuid::nil(), |k| k.as_uuid());
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                let revoked = revoke_sessions_of(conn, user.as_uuid(), keep, now).await?;
                insert_events(conn, [event]).await?;
                Ok(revoked)
            })
            .await
            .map_err(db_error)
        })
        .await
    }

    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            sessions::table
                .filter(sessions::user_id.eq(user.as_uuid()))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .order((sessions::last_used_at.desc(), sessions::id.desc()))
                .select(SessionRow::as_select())
                .load(conn)
                .await
                .map(|rows| rows.into_iter().map(SessionRow::into_domain).collect())
                .map_err(db_error)
        })
        .await
    }

    async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(SessionId, DateTime<Utc>)>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            sessions::table
                .filter(sessions::revoked_at.gt(since))
                .select((sessions::id, sessions::revoked_at))
                .load::<(Uuid, Option<DateTime<Utc>>)>(conn)
                .await
                .map(stamped)
                .map_err(db_error)
        })
        .await
    }

    async fn touch_session(&self, id: SessionId, at: DateTime<Utc>) -> Result<(), InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            diesel::update(
                sessions::table
                    .find(id.as_uuid())
                    .filter(sessions::last_used_at.lt(at)),
            )
            .set(sessions::last_used_at.eq(at))
            .execute(conn)
            .await
            .map(drop)
            .map_err(db_error)
        })
        .await
    }
}

#[async_trait]
impl HealthProbe for PgStore {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            diesel::select(1.into_sql::<diesel::sql_types::Integer>())
                .get_result::<i32>(conn)
                .await
                .map(drop)
                .map_err(db_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_once() {
        let t = Duration::from_secs(2);
        assert_eq!(
            with_connect_timeout("postgres://h/db", t),
            "postgres://h/db?connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable", t),
            "postgres://h/db?sslmode=disable&connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=9", t),
            "postgres://h/db?connect_timeout=9"
        );
    }
}
