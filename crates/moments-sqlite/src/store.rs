//! The SQLite implementation of the store ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::{InstrumentationEvent, SimpleConnection as _};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
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

use crate::audit::insert_events;
use crate::models::{
    NewPasswordRow, NewUserRoleRow, NewUserRow, RefreshTokenRow, SessionRow, UserRow,
    like_prefix_pattern, parse_uuid, uuid_text,
};
use crate::schema::{
    api_keys, password_credentials, refresh_tokens, role_permissions, roles, sessions, user_roles,
    users,
};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

/// Where the database lives and how it is accessed.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file; its directory must exist.
    pub path: PathBuf,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long a writer waits for the database lock before giving up.
    pub busy_timeout: Duration,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
}

impl SqliteConfig {
    /// Defaults for a file: 8 connections, 5 s busy timeout, 2 s acquire timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            pool_size: 8,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// Failure to open or migrate the database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteStoreError {
    /// The file could not be opened.
    #[error("cannot open SQLite database {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: r2d2::Error,
    },
    /// A migration failed.
    #[error("SQLite migration failed: {0}")]
    Migrate(String),
}

#[derive(Debug)]
struct Pragmas {
    busy_timeout_ms: u128,
    queries: Arc<AtomicU64>,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            self.busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        let queries = Arc::clone(&self.queries);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                queries.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }
}

/// The SQLite store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    queries: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("state", &self.pool.state())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Blocking: call it at start-up.
    pub fn open(config: &SqliteConfig) -> Result<Self, SqliteStoreError> {
        let url = config.path.to_string_lossy().into_owned();
        let queries = Arc::new(AtomicU64::new(0));
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.acquire_timeout)
            // A connection to a local file does not go stale: no `SELECT 1` before every use.
            .test_on_check_out(false)
            .connection_customizer(Box::new(Pragmas {
                busy_timeout_ms: config.busy_timeout.as_millis(),
                queries: Arc::clone(&queries),
            }))
            .build(ConnectionManager::<SqliteConnection>::new(&url))
            .map_err(|source| SqliteStoreError::Open { path: url, source })?;
        Ok(Self { pool, queries })
    }

    /// Statements sent to the database since the store was opened (connection set-up
    /// included): what tests count to prove a page is one query.
    pub fn queries_issued(&self) -> u64 {
        AtomicU64::load(&self.queries, Ordering::Relaxed)
    }

    /// Applies pending migrations. Blocking: call it at start-up.
    pub fn migrate(&self) -> Result<(), SqliteStoreError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| SqliteStoreError::Migrate(e.to_string()))?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| SqliteStoreError::Migrate(e.to_string()))?;
        Ok(())
    }

    /// Runs `work` with a pooled connection on a blocking thread.
    pub(crate) async fn run<T, E>(
        &self,
        work: impl FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<InfraError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| InfraError::unavailable("database", e))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| InfraError::internal(format!("database task failed: {e}")))?
    }
}

pub(crate) fn db_error(e: DieselError) -> InfraError {
    match &e {
        DieselError::DatabaseError(_, info)
            if info.message().contains("database is locked") || info.message().contains("busy") =>
        {
            InfraError::unavailable("database", e)
        }
        _ => InfraError::Internal(Box::new(e)),
    }
}

impl From<CreateTx> for CreateUserError {
    fn from(e: CreateTx) -> Self {
        match e {
            CreateTx::UnknownRole(role) => Self::UnknownRole(role),
            CreateTx::Diesel(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                info,
            )) => {
                // SQLite names the columns, not the constraint:
                // "UNIQUE constraint failed: users.email_key".
                let message = info.message();
                if message.contains("users.email_key") {
                    Self::EmailTaken
                } else if message.contains("users.username") {
                    Self::UsernameTaken
                } else if message.contains("oauth_identities.provider, oauth_identities.subject") {
                    Self::IdentityTaken
                } else {
                    InfraError::internal(message.to_owned()).into()
                }
            }
            CreateTx::Diesel(e) => db_error(e).into(),
        }
    }
}

/// Errors inside a create-user transaction.
pub(crate) enum CreateTx {
    Diesel(DieselError),
    UnknownRole(RoleName),
}

impl From<DieselError> for CreateTx {
    fn from(e: DieselError) -> Self {
        Self::Diesel(e)
    }
}

/// Inserts one account with its credential and roles (inside the caller's transaction).
pub(crate) fn insert_user(
    conn: &mut SqliteConnection,
    user: &NewUser,
) -> Result<UserRow, CreateTx> {
    for role in &user.roles {
        let exists: i64 = roles::table
            .filter(roles::name.eq(role.as_str()))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            return Err(CreateTx::UnknownRole(role.clone()));
        }
    }
    let user_id = uuid_text(user.id.as_uuid());
    let created = user.created_at.naive_utc();
    diesel::insert_into(users::table)
        .values(NewUserRow {
            id: user_id.clone(),
            username: user.username.as_str(),
            email: user.email.as_ref().map(Email::as_str),
            email_key: user.email.as_ref().map(Email::key),
            email_verified: user.email_verified,
            display_name: user.display_name.as_deref(),
            created_at: created,
            updated_at: created,
        })
        .execute(conn)?;
    if let Some(hash) = &user.password_hash {
        diesel::insert_into(password_credentials::table)
            .values(NewPasswordRow {
                user_id: user_id.clone(),
                hash: hash.as_str(),
                updated_at: created,
            })
            .execute(conn)?;
    }
    for role in &user.roles {
        diesel::insert_into(user_roles::table)
            .values(NewUserRoleRow {
                user_id: user_id.clone(),
                role_name: role.as_str(),
                granted_at: created,
            })
            .execute(conn)?;
    }
    Ok(users::table
        .find(&user_id)
        .select(UserRow::as_select())
        .first(conn)?)
}

fn insert_permissions(
    conn: &mut SqliteConnection,
    role: &str,
    permissions: &[Permission],
) -> Result<(), DieselError> {
    for permission in permissions {
        diesel::insert_into(role_permissions::table)
            .values((
                role_permissions::role_name.eq(role),
                role_permissions::permission.eq(permission.as_str()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Records an authorization change for every holder of the role.
fn mark_holders_changed(
    conn: &mut SqliteConnection,
    role: &str,
    now: chrono::NaiveDateTime,
) -> Result<(), DieselError> {
    let holders = user_roles::table
        .filter(user_roles::role_name.eq(role))
        .select(user_roles::user_id);
    diesel::update(users::table.filter(users::id.eq_any(holders)))
        .set(users::authz_changed_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// `Some(outcome)` when the user or the role does not exist; `None` to go ahead.
fn role_change_preflight(
    conn: &mut SqliteConnection,
    user: &str,
    role: &str,
) -> Result<Option<RoleChange>, DieselError> {
    let user_exists: i64 = users::table
        .filter(users::id.eq(user))
        .count()
        .get_result(conn)?;
    if user_exists == 0 {
        return Ok(Some(RoleChange::UnknownUser));
    }
    let role_exists: i64 = roles::table
        .filter(roles::name.eq(role))
        .count()
        .get_result(conn)?;
    Ok((role_exists == 0).then_some(RoleChange::UnknownRole))
}

/// Stamps the user's authorization change when `rows` were affected.
fn record_change(
    conn: &mut SqliteConnection,
    user: &str,
    rows: usize,
    now: chrono::NaiveDateTime,
    event: &AuditEvent,
) -> Result<RoleChange, DieselError> {
    if rows == 0 {
        return Ok(RoleChange::Unchanged);
    }
    diesel::update(users::table.find(user))
        .set(users::authz_changed_at.eq(now))
        .execute(conn)?;
    insert_events(conn, [event])?;
    Ok(RoleChange::Changed)
}

fn load_roles(conn: &mut SqliteConnection, names: &[String]) -> Result<Vec<Role>, DieselError> {
    let rows: Vec<(String, String, bool)> = roles::table
        .filter(roles::name.eq_any(names))
        .select((roles::name, roles::description, roles::builtin))
        .order(roles::name)
        .load(conn)?;
    let grants: Vec<(String, String)> = role_permissions::table
        .filter(role_permissions::role_name.eq_any(names))
        .select((role_permissions::role_name, role_permissions::permission))
        .load(conn)?;
    Ok(assemble_roles(rows, grants))
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_users(&self, new_users: Vec<NewUser>) -> Result<Vec<User>, CreateUserError> {
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction::<_, CreateTx, _>(|conn| {
                    new_users
                        .iter()
                        .map(|user| insert_user(conn, user))
                        .collect::<Result<Vec<_>, _>>()
                }))
            })
            .await?;
        match result {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<Result<_, _>>()?),
            Err(e) => Err(e.into()),
        }
    }

    async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        let id = uuid_text(id.as_uuid());
        self.find_user(move |q| q.filter(users::id.eq(id))).await
    }

    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>, InfraError> {
        let name = username.as_str().to_owned();
        self.find_user(move |q| q.filter(users::username.eq(name)))
            .await
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError> {
        let key = email.key().to_owned();
        self.find_user(move |q| q.filter(users::email_key.eq(key)))
            .await
    }

    async fn password_hash(&self, id: UserId) -> Result<Option<PasswordHash>, InfraError> {
        let id = uuid_text(id.as_uuid());
        self.run(move |conn| {
            password_credentials::table
                .find(id)
                .select(password_credentials::hash)
                .first::<String>(conn)
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
        let row = (
            uuid_text(id.as_uuid()),
            hash.as_str().to_owned(),
            now.naive_utc(),
        );
        self.run(move |conn| {
            let (user_id, hash, at) = row;
            upsert_password(conn, &user_id, &hash, at).map_err(db_error)
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
        let user = uuid_text(id.as_uuid());
        let keep = keep.map_or_else(String::new, |k| uuid_text(k.as_uuid()));
        let hash = hash.as_str().to_owned();
        let now = now.naive_utc();
        let event = event.clone();
        let ids = self
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    upsert_password(conn, &user, &hash, now)?;
                    let ids = revoke_sessions_of(conn, &user, &keep, now)?;
                    insert_events(conn, [&event])?;
                    Ok(ids)
                })
                .map_err(db_error)
            })
            .await?;
        session_ids(ids)
    }

    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<User>, UpdateProfileStoreError> {
        let id = uuid_text(id.as_uuid());
        let change = change.clone();
        let event = event.clone();
        let now = now.naive_utc();
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction(|conn| {
                    let Some((current_key, verified)) = users::table
                        .find(&id)
                        .select((users::email_key, users::email_verified))
                        .first::<(Option<String>, bool)>(conn)
                        .optional()?
                    else {
                        return Ok(None);
                    };
                    if let Some(name) = &change.display_name {
                        diesel::update(users::table.find(&id))
                            .set(users::display_name.eq(name.as_ref().map(|n| n.as_str())))
                            .execute(conn)?;
                    }
                    if let Some(email) = &change.email {
                        let key = email.key();
                        diesel::update(users::table.find(&id))
                            .set((
                                users::email.eq(email.as_str()),
                                users::email_verified
                                    .eq(verified && current_key.as_deref() == Some(key)),
                                users::email_key.eq(key),
                            ))
                            .execute(conn)?;
                    }
                    let row = diesel::update(users::table.find(&id))
                        .set(users::updated_at.eq(now))
                        .returning(UserRow::as_returning())
                        .get_result(conn)?;
                    insert_events(conn, [&event])?;
                    Ok(Some(row))
                }))
            })
            .await?;
        match result {
            Ok(row) => Ok(row.map(UserRow::into_domain).transpose()?),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                if info.message().contains("users.email_key") =>
            {
                Err(UpdateProfileStoreError::EmailTaken)
            }
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, InfraError> {
        let id = uuid_text(id.as_uuid());
        self.run(move |conn| {
            let names: Vec<String> = user_roles::table
                .filter(user_roles::user_id.eq(id))
                .select(user_roles::role_name)
                .load(conn)
                .map_err(db_error)?;
            load_roles(conn, &names).map_err(db_error)
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
        let after = after.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
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
                query = query.filter(users::username.gt(after));
            }
            query
                .order(users::username)
                .limit(limit)
                .select(UserRow::as_select())
                .load(conn)
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
        let id = uuid_text(id.as_uuid());
        let now = now.naive_utc();
        let event = event.clone();
        let found = self
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let Some(row) = diesel::update(users::table.find(&id))
                        .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .optional()?
                    else {
                        return Ok(None);
                    };
                    let mut revoked = Vec::new();
                    if disabled {
                        revoked = revoke_sessions_of(conn, &id, "", now)?;
                        diesel::update(
                            api_keys::table
                                .filter(api_keys::owner_id.eq(&id))
                                .filter(api_keys::revoked_at.is_null()),
                        )
                        .set(api_keys::revoked_at.eq(now))
                        .execute(conn)?;
                    }
                    insert_events(conn, [&event])?;
                    Ok(Some((row, revoked)))
                })
                .map_err(db_error)
            })
            .await?;
        found
            .map(|(row, revoked)| Ok((row.into_domain()?, session_ids(revoked)?)))
            .transpose()
    }

    async fn list_roles(&self) -> Result<Vec<Role>, InfraError> {
        self.run(|conn| {
            let names: Vec<String> = roles::table
                .select(roles::name)
                .load(conn)
                .map_err(db_error)?;
            load_roles(conn, &names).map_err(db_error)
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
        let event = event.clone();
        let (user, role, now) = (
            uuid_text(user.as_uuid()),
            role.as_str().to_owned(),
            now.naive_utc(),
        );
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let Some(outcome) = role_change_preflight(conn, &user, &role)? else {
                    let inserted = diesel::insert_into(user_roles::table)
                        .values(NewUserRoleRow {
                            user_id: user.clone(),
                            role_name: &role,
                            granted_at: now,
                        })
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                    return record_change(conn, &user, inserted, now, &event);
                };
                Ok(outcome)
            })
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
        let event = event.clone();
        let (user, role, now) = (
            uuid_text(user.as_uuid()),
            role.as_str().to_owned(),
            now.naive_utc(),
        );
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let Some(outcome) = role_change_preflight(conn, &user, &role)? else {
                    let deleted = diesel::delete(
                        user_roles::table
                            .filter(user_roles::user_id.eq(&user))
                            .filter(user_roles::role_name.eq(&role)),
                    )
                    .execute(conn)?;
                    return record_change(conn, &user, deleted, now, &event);
                };
                Ok(outcome)
            })
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
        let role = role.clone();
        let event = event.clone();
        let now = now.naive_utc();
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction(|conn| {
                    diesel::insert_into(roles::table)
                        .values((
                            roles::name.eq(role.name.as_str()),
                            roles::description.eq(&role.description),
                            roles::builtin.eq(false),
                            roles::created_at.eq(now),
                        ))
                        .execute(conn)?;
                    insert_permissions(conn, role.name.as_str(), &role.permissions)?;
                    insert_events(conn, [&event])
                }))
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
        let event = event.clone();
        let name = name.as_str().to_owned();
        let description = description.map(str::to_owned);
        let permissions = permissions.map(<[Permission]>::to_vec);
        let now = now.naive_utc();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let exists: i64 = roles::table
                    .filter(roles::name.eq(&name))
                    .count()
                    .get_result(conn)?;
                if exists == 0 {
                    return Ok(None);
                }
                if let Some(description) = &description {
                    diesel::update(roles::table.find(&name))
                        .set(roles::description.eq(description))
                        .execute(conn)?;
                }
                if let Some(permissions) = &permissions {
                    diesel::delete(
                        role_permissions::table.filter(role_permissions::role_name.eq(&name)),
                    )
                    .execute(conn)?;
                    insert_permissions(conn, &name, permissions)?;
                    mark_holders_changed(conn, &name, now)?;
                }
                insert_events(conn, [&event])?;
                Ok(load_roles(conn, std::slice::from_ref(&name))?.pop())
            })
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
        let name = name.as_str().to_owned();
        let now = now.naive_utc();
        let event = event.clone();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                mark_holders_changed(conn, &name, now)?;
                let deleted = diesel::delete(roles::table.find(&name)).execute(conn)? == 1;
                if deleted {
                    insert_events(conn, [&event])?;
                }
                Ok(deleted)
            })
            .map_err(db_error)
        })
        .await
    }

    async fn authz_changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, InfraError> {
        let since = since.naive_utc();
        let rows: Vec<(String, Option<chrono::NaiveDateTime>)> = self
            .run(move |conn| {
                users::table
                    .filter(users::authz_changed_at.gt(since))
                    .select((users::id, users::authz_changed_at))
                    .load(conn)
                    .map_err(db_error)
            })
            .await?;
        stamped(rows)
    }

    async fn find_role(&self, name: &RoleName) -> Result<Option<Role>, InfraError> {
        let name = name.as_str().to_owned();
        self.run(move |conn| Ok(load_roles(conn, &[name]).map_err(db_error)?.pop()))
            .await
    }
}

impl SqliteStore {
    async fn find_user(
        &self,
        filter: impl FnOnce(
            users::BoxedQuery<'static, diesel::sqlite::Sqlite>,
        ) -> users::BoxedQuery<'static, diesel::sqlite::Sqlite>
        + Send
        + 'static,
    ) -> Result<Option<User>, InfraError> {
        self.run(move |conn| {
            filter(users::table.into_boxed())
                .select(UserRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .map(UserRow::into_domain)
                .transpose()
        })
        .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, new: NewSession, event: &AuditEvent) -> Result<(), InfraError> {
        let event = event.clone();
        self.run(move |conn| {
            let session = SessionRow::from_domain(&new.session);
            let token = token_row(&new.refresh_token, &session.id);
            conn.immediate_transaction(|conn| {
                diesel::insert_into(sessions::table)
                    .values(&session)
                    .execute(conn)?;
                diesel::insert_into(refresh_tokens::table)
                    .values(&token)
                    .execute(conn)?;
                insert_events(conn, [&event])
            })
            .map_err(db_error)
        })
        .await
    }

    async fn find_session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        let id = uuid_text(id.as_uuid());
        self.run(move |conn| {
            sessions::table
                .find(id)
                .select(SessionRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .map(SessionRow::into_domain)
                .transpose()
        })
        .await
    }

    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<RefreshTokenRecord>, InfraError> {
        let digest = digest.as_bytes().to_vec();
        self.run(move |conn| {
            let found = refresh_tokens::table
                .inner_join(sessions::table)
                .filter(refresh_tokens::digest.eq(digest))
                .select((RefreshTokenRow::as_select(), SessionRow::as_select()))
                .first::<(RefreshTokenRow, SessionRow)>(conn)
                .optional()
                .map_err(db_error)?;
            found
                .map(|(token, session)| {
                    Ok(RefreshTokenRecord {
                        id: token.token_id()?,
                        issued_at: token.issued_at.and_utc(),
                        expires_at: token.expires_at.and_utc(),
                        rotated_at: token.rotated_at.map(|t| t.and_utc()),
                        session: session.into_domain()?,
                    })
                })
                .transpose()
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
        let now = now.naive_utc();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let live_sessions = sessions::table
                    .filter(sessions::revoked_at.is_null())
                    .select(sessions::id);
                let retired: Option<String> = diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::digest.eq(current))
                        .filter(refresh_tokens::rotated_at.is_null())
                        .filter(refresh_tokens::session_id.eq_any(live_sessions)),
                )
                .set(refresh_tokens::rotated_at.eq(now))
                .returning(refresh_tokens::session_id)
                .get_result(conn)
                .optional()?;
                let Some(session_id) = retired else {
                    return Ok(false);
                };
                diesel::insert_into(refresh_tokens::table)
                    .values(token_row(&successor, &session_id))
                    .execute(conn)?;
                diesel::update(sessions::table.find(&session_id))
                    .set(sessions::last_used_at.eq(now))
                    .execute(conn)?;
                Ok(true)
            })
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
        let id = uuid_text(id.as_uuid());
        let now = now.naive_utc();
        let event = event.cloned();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let revoked = diesel::update(
                    sessions::table
                        .find(id)
                        .filter(sessions::revoked_at.is_null()),
                )
                .set(sessions::revoked_at.eq(now))
                .execute(conn)?
                    == 1;
                if revoked {
                    insert_events(conn, &event)?;
                }
                Ok(revoked)
            })
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
        let user = uuid_text(user.as_uuid());
        let keep = keep.map_or_else(String::new, |k| uuid_text(k.as_uuid()));
        let now = now.naive_utc();
        let event = event.clone();
        let ids = self
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let ids = revoke_sessions_of(conn, &user, &keep, now)?;
                    insert_events(conn, [&event])?;
                    Ok(ids)
                })
                .map_err(db_error)
            })
            .await?;
        session_ids(ids)
    }

    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError> {
        let user = uuid_text(user.as_uuid());
        let now = now.naive_utc();
        self.run(move |conn| {
            sessions::table
                .filter(sessions::user_id.eq(user))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .order((sessions::last_used_at.desc(), sessions::id.desc()))
                .select(SessionRow::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(SessionRow::into_domain)
                .collect()
        })
        .await
    }

    async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(SessionId, DateTime<Utc>)>, InfraError> {
        let since = since.naive_utc();
        let rows: Vec<(String, Option<chrono::NaiveDateTime>)> = self
            .run(move |conn| {
                sessions::table
                    .filter(sessions::revoked_at.gt(since))
                    .select((sessions::id, sessions::revoked_at))
                    .load(conn)
                    .map_err(db_error)
            })
            .await?;
        stamped(rows)
    }

    async fn touch_session(&self, id: SessionId, at: DateTime<Utc>) -> Result<(), InfraError> {
        let id = uuid_text(id.as_uuid());
        let at = at.naive_utc();
        self.run(move |conn| {
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::last_used_at.lt(at)),
            )
            .set(sessions::last_used_at.eq(at))
            .execute(conn)
            .map(drop)
            .map_err(db_error)
        })
        .await
    }
}

/// Sets the account's password hash, inside the caller's transaction.
fn upsert_password(
    conn: &mut SqliteConnection,
    user_id: &str,
    hash: &str,
    at: chrono::NaiveDateTime,
) -> Result<(), DieselError> {
    diesel::insert_into(password_credentials::table)
        .values(NewPasswordRow {
            user_id: user_id.to_owned(),
            hash,
            updated_at: at,
        })
        .on_conflict(password_credentials::user_id)
        .do_update()
        .set((
            password_credentials::hash.eq(hash),
            password_credentials::updated_at.eq(at),
        ))
        .execute(conn)
        .map(drop)
}

/// Revokes the user's live sessions except `keep` (an empty id matches no session, so `""`
/// keeps nothing), inside the caller's transaction; returns the ids revoked.
fn revoke_sessions_of(
    conn: &mut SqliteConnection,
    user: &str,
    keep: &str,
    now: chrono::NaiveDateTime,
) -> Result<Vec<String>, DieselError> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep)),
    )
    .set(sessions::revoked_at.eq(now))
    .returning(sessions::id)
    .get_results(conn)
}

/// `(id, time)` rows of a "changed since" query as domain ids; rows without a time are skipped.
fn stamped<T: From<uuid::Uuid>>(
    rows: Vec<(String, Option<chrono::NaiveDateTime>)>,
) -> Result<Vec<(T, DateTime<Utc>)>, InfraError> {
    rows.into_iter()
        .filter_map(|(id, at)| Some((id, at?)))
        .map(|(id, at)| Ok((T::from(parse_uuid(&id)?), at.and_utc())))
        .collect()
}

fn session_ids(ids: Vec<String>) -> Result<Vec<SessionId>, InfraError> {
    ids.iter()
        .map(|id| parse_uuid(id).map(SessionId::from_uuid))
        .collect()
}

fn token_row(token: &NewRefreshToken, session_id: &str) -> RefreshTokenRow {
    RefreshTokenRow {
        id: uuid_text(token.id.as_uuid()),
        session_id: session_id.to_owned(),
        digest: token.digest.as_bytes().to_vec(),
        issued_at: token.issued_at.naive_utc(),
        expires_at: token.expires_at.naive_utc(),
        rotated_at: None,
    }
}

#[async_trait]
impl HealthProbe for SqliteStore {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), InfraError> {
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(db_error))
            .await
    }
}
