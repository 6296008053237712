//! API keys and the audit log on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use moments_domain::InfraError;
use moments_domain::api_key::{ApiKey, ApiKeyCredential, NewApiKey};
use moments_domain::audit::{AuditEvent, AuditFilter, AuditKind};
use moments_domain::authz::Permission;
use moments_domain::ids::{ApiKeyId, AuditEventId, UserId};
use moments_domain::ports::{ApiKeyStore, AuditStore, CreateApiKeyStoreError};
use moments_domain::session::{ClientInfo, TokenDigest};

use crate::models::{parse_uuid, uuid_text};
use crate::schema::{api_keys, audit_events, role_permissions, user_roles, users};
use crate::store::{SqliteStore, db_error};

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::sqlite::Sqlite))]
pub(crate) struct AuditEventRow {
    id: String,
    type_: String,
    actor_id: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: NaiveDateTime,
    details: String,
}

impl AuditEventRow {
    pub(crate) fn from_domain(event: &AuditEvent) -> Self {
        Self {
            id: uuid_text(event.id.as_uuid()),
            type_: event.kind.as_str().to_owned(),
            actor_id: event.actor.map(|id| uuid_text(id.as_uuid())),
            target_id: event.target.map(|id| uuid_text(id.as_uuid())),
            ip: event.client.ip.clone(),
            user_agent: event.client.user_agent.clone(),
            created_at: event.at.naive_utc(),
            details: serde_json::Value::Object(event.details.clone()).to_string(),
        }
    }

    fn into_domain(self) -> Result<AuditEvent, InfraError> {
        let user = |id: Option<String>| {
            id.map(|id| parse_uuid(&id).map(UserId::from_uuid))
                .transpose()
        };
        Ok(AuditEvent {
            id: AuditEventId::from_uuid(parse_uuid(&self.id)?),
            kind: AuditKind::parse(&self.type_).ok_or_else(|| {
                InfraError::internal(format!("stored audit event type {:?}", self.type_))
            })?,
            actor: user(self.actor_id)?,
            target: user(self.target_id)?,
            client: ClientInfo {
                ip: self.ip,
                user_agent: self.user_agent,
            },
            at: self.created_at.and_utc(),
            details: serde_json::from_str(&self.details)
                .map_err(|e| InfraError::internal(format!("stored audit details: {e}")))?,
        })
    }
}

/// Which user column a page walks.
#[derive(Debug, Clone, Copy)]
enum UserColumn {
    Actor,
    Target,
}

/// Merges pages newest first, without the events found twice (the user as actor and target).
fn newest_first(mut rows: Vec<AuditEventRow>, limit: i64) -> Vec<AuditEventRow> {
    rows.sort_by_key(|row| std::cmp::Reverse(row.id.clone()));
    rows.dedup_by(|a, b| a.id == b.id);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    rows
}

/// Writes events inside the caller's transaction.
pub(crate) fn insert_events<'a>(
    conn: &mut SqliteConnection,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<(), DieselError> {
    let rows: Vec<AuditEventRow> = events.into_iter().map(AuditEventRow::from_domain).collect();
    // SQLite limits bound parameters per statement (32 766); 8 columns a row.
    for chunk in rows.chunks(1000) {
        diesel::insert_into(audit_events::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::sqlite::Sqlite))]
struct ApiKeyRow {
    id: String,
    owner_id: String,
    name: String,
    prefix: String,
    digest: Vec<u8>,
    scopes: String,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    last_used_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
}

impl ApiKeyRow {
    fn from_domain(new: &NewApiKey) -> Self {
        let key = &new.key;
        Self {
            id: uuid_text(key.id.as_uuid()),
            owner_id: uuid_text(key.owner.as_uuid()),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            digest: new.digest.as_bytes().to_vec(),
            scopes: join_scopes(&key.scopes),
            created_at: key.created_at.naive_utc(),
            expires_at: key.expires_at.map(|at| at.naive_utc()),
            last_used_at: key.last_used_at.map(|at| at.naive_utc()),
            revoked_at: key.revoked_at.map(|at| at.naive_utc()),
        }
    }

    fn into_domain(self) -> Result<(ApiKey, TokenDigest), InfraError> {
        let key = ApiKey {
            id: ApiKeyId::from_uuid(parse_uuid(&self.id)?),
            owner: UserId::from_uuid(parse_uuid(&self.owner_id)?),
            name: self.name,
            prefix: self.prefix,
            scopes: split_scopes(&self.scopes)?,
            created_at: self.created_at.and_utc(),
            expires_at: self.expires_at.map(|at| at.and_utc()),
            last_used_at: self.last_used_at.map(|at| at.and_utc()),
            revoked_at: self.revoked_at.map(|at| at.and_utc()),
        };
        Ok((key, TokenDigest::from_bytes(self.digest)))
    }
}

fn join_scopes(scopes: &[Permission]) -> String {
    scopes
        .iter()
        .map(Permission::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_scopes(text: &str) -> Result<Vec<Permission>, InfraError> {
    text.split_whitespace()
        .map(|p| {
            Permission::parse(p)
                .map_err(|e| InfraError::internal(format!("stored scope {p:?}: {e}")))
        })
        .collect()
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        event: &AuditEvent,
    ) -> Result<(), CreateApiKeyStoreError> {
        let row = ApiKeyRow::from_domain(key);
        let event = event.clone();
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction(|conn| {
                    diesel::insert_into(api_keys::table)
                        .values(&row)
                        .execute(conn)?;
                    insert_events(conn, [&event])
                }))
            })
            .await?;
        match result {
            Ok(()) => Ok(()),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(CreateApiKeyStoreError::PrefixTaken)
            }
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<ApiKeyCredential>, InfraError> {
        let prefix = prefix.to_owned();
        // One query: the key, its owner's state, and one row per permission the owner holds.
        let rows: Vec<(ApiKeyRow, bool, Option<String>)> = self
            .run(move |conn| {
                api_keys::table
                    .inner_join(users::table)
                    .left_join(user_roles::table.on(user_roles::user_id.eq(api_keys::owner_id)))
                    .left_join(
                        role_permissions::table
                            .on(role_permissions::role_name.eq(user_roles::role_name)),
                    )
                    .filter(api_keys::prefix.eq(prefix))
                    .select((
                        ApiKeyRow::as_select(),
                        users::disabled,
                        role_permissions::permission.nullable(),
                    ))
                    .load(conn)
                    .map_err(db_error)
            })
            .await?;
        let mut owner_permissions = Vec::new();
        let mut found = None;
        for (row, disabled, permission) in rows {
            if let Some(permission) = permission {
                owner_permissions.push(Permission::parse(&permission).map_err(|e| {
                    InfraError::internal(format!("stored permission {permission:?}: {e}"))
                })?);
            }
            if found.is_none() {
                found = Some((row, disabled));
            }
        }
        let Some((row, owner_disabled)) = found else {
            return Ok(None);
        };
        owner_permissions.sort();
        owner_permissions.dedup();
        let (key, digest) = row.into_domain()?;
        Ok(Some(ApiKeyCredential {
            key,
            digest,
            owner_disabled,
            owner_permissions,
        }))
    }

    async fn list_api_keys(&self, owner: UserId) -> Result<Vec<ApiKey>, InfraError> {
        let owner = uuid_text(owner.as_uuid());
        self.run(move |conn| {
            api_keys::table
                .filter(api_keys::owner_id.eq(owner))
                .filter(api_keys::revoked_at.is_null())
                .order(api_keys::id.desc())
                .select(ApiKeyRow::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(|row| row.into_domain().map(|(key, _)| key))
                .collect()
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        owner: UserId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let (id, owner, now) = (
            uuid_text(id.as_uuid()),
            uuid_text(owner.as_uuid()),
            now.naive_utc(),
        );
        let event = event.clone();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| {
                let revoked = diesel::update(
                    api_keys::table
                        .find(id)
                        .filter(api_keys::owner_id.eq(owner))
                        .filter(api_keys::revoked_at.is_null()),
                )
                .set(api_keys::revoked_at.eq(now))
                .execute(conn)?;
                if revoked == 1 {
                    insert_events(conn, [&event])?;
                }
                Ok(revoked == 1)
            })
            .map_err(db_error)
        })
        .await
    }

    async fn touch_api_key(
        &self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let (id, at, not_before) = (
            uuid_text(id.as_uuid()),
            at.naive_utc(),
            not_before.naive_utc(),
        );
        self.run(move |conn| {
            diesel::update(
                api_keys::table.find(id).filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.lt(not_before)),
                ),
            )
            .set(api_keys::last_used_at.eq(at))
            .execute(conn)
            .map(drop)
            .map_err(db_error)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit_events(&self, events: &[AuditEvent]) -> Result<(), InfraError> {
        let events = events.to_vec();
        self.run(move |conn| {
            conn.immediate_transaction(|conn| insert_events(conn, &events))
                .map_err(db_error)
        })
        .await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<AuditEventId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, InfraError> {
        let user = filter.user.map(|u| uuid_text(u.as_uuid()));
        let kind = filter.kind.map(AuditKind::as_str);
        let before = before.map(|b| uuid_text(b.as_uuid()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .run(move |conn| {
                let page = |by: Option<UserColumn>, conn: &mut SqliteConnection| {
                    let mut query = audit_events::table.into_boxed();
                    match (by, &user) {
                        (Some(UserColumn::Actor), Some(user)) => {
                            query = query.filter(audit_events::actor_id.eq(user.clone()));
                        }
                        (Some(UserColumn::Target), Some(user)) => {
                            query = query.filter(audit_events::target_id.eq(user.clone()));
                        }
                        _ => {}
                    }
                    if let Some(kind) = kind {
                        query = query.filter(audit_events::type_.eq(kind));
                    }
                    if let Some(before) = &before {
                        query = query.filter(audit_events::id.lt(before.clone()));
                    }
                    query
                        .order(audit_events::id.desc())
                        .limit(limit)
                        .select(AuditEventRow::as_select())
                        .load(conn)
                };
                // A user filter is two index walks (as actor, as target) merged, never an OR
                // that would scan the log for a user with few events.
                let rows = if user.is_some() {
                    let mut rows = page(Some(UserColumn::Actor), conn).map_err(db_error)?;
                    rows.extend(page(Some(UserColumn::Target), conn).map_err(db_error)?);
                    rows
                } else {
                    page(None, conn).map_err(db_error)?
                };
                Ok::<_, InfraError>(rows)
            })
            .await?;
        newest_first(rows, limit)
            .into_iter()
            .map(AuditEventRow::into_domain)
            .collect()
    }
}
