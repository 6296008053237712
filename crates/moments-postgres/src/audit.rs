//! API keys and the audit log on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use moments_domain::InfraError;
use moments_domain::api_key::{ApiKey, ApiKeyCredential, NewApiKey};
use moments_domain::audit::{AuditEvent, AuditFilter, AuditKind};
use moments_domain::authz::Permission;
use moments_domain::ids::{ApiKeyId, AuditEventId, UserId};
use moments_domain::ports::{ApiKeyStore, AuditStore, CreateApiKeyStoreError};
use moments_domain::session::{ClientInfo, TokenDigest};
use uuid::Uuid;

use crate::schema::{api_keys, audit_events, role_permissions, user_roles, users};
use crate::store::{PgStore, db_error};

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AuditEventRow {
    id: Uuid,
    type_: String,
    actor_id: Option<Uuid>,
    target_id: Option<Uuid>,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: DateTime<Utc>,
    details: serde_json::Value,
}

impl AuditEventRow {
    fn from_domain(event: &AuditEvent) -> Self {
        Self {
            id: event.id.as_uuid(),
            type_: event.kind.as_str().to_owned(),
            actor_id: event.actor.map(|id| id.as_uuid()),
            target_id: event.target.map(|id| id.as_uuid()),
            ip: event.client.ip.clone(),
            user_agent: event.client.user_agent.clone(),
            created_at: event.at,
            details: serde_json::Value::Object(event.details.clone()),
        }
    }

    fn into_domain(self) -> Result<AuditEvent, InfraError> {
        Ok(AuditEvent {
            id: AuditEventId::from_uuid(self.id),
            kind: AuditKind::parse(&self.type_).ok_or_else(|| {
                InfraError::internal(format!("stored audit event type {:?}", self.type_))
            })?,
            actor: self.actor_id.map(UserId::from_uuid),
            target: self.target_id.map(UserId::from_uuid),
            client: ClientInfo {
                ip: self.ip,
                user_agent: self.user_agent,
            },
            at: self.created_at,
            details: match self.details {
                serde_json::Value::Object(map) => map,
                other => {
                    return Err(InfraError::internal(format!(
                        "stored audit details are not an object: {other}"
                    )));
                }
            },
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
    rows.sort_by_key(|row| std::cmp::Reverse(row.id));
    rows.dedup_by(|a, b| a.id == b.id);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    rows
}

/// Writes events inside the caller's transaction.
pub(crate) async fn insert_events<'a>(
    conn: &mut AsyncPgConnection,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<(), DieselError> {
    let rows: Vec<AuditEventRow> = events.into_iter().map(AuditEventRow::from_domain).collect();
    // PostgreSQL allows 65 535 bound parameters per statement; 8 columns a row.
    for chunk in rows.chunks(4000) {
        diesel::insert_into(audit_events::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
struct ApiKeyRow {
    id: Uuid,
    owner_id: Uuid,
    name: String,
    prefix: String,
    digest: Vec<u8>,
    scopes: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    fn from_domain(new: &NewApiKey) -> Self {
        let key = &new.key;
        Self {
            id: key.id.as_uuid(),
            owner_id: key.owner.as_uuid(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            digest: new.digest.as_bytes().to_vec(),
            scopes: key
                .scopes
                .iter()
                .map(Permission::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }

    fn into_domain(self) -> Result<(ApiKey, TokenDigest), InfraError> {
        let key = ApiKey {
            id: ApiKeyId::from_uuid(self.id),
            owner: UserId::from_uuid(self.owner_id),
            name: self.name,
            prefix: self.prefix,
            scopes: self
                .scopes
                .split_whitespace()
                .map(parse_permission)
                .collect::<Result<_, _>>()?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        };
        Ok((key, TokenDigest::from_bytes(self.digest)))
    }
}

fn parse_permission(text: &str) -> Result<Permission, InfraError> {
    Permission::parse(text)
        .map_err(|e| InfraError::internal(format!("stored permission {text:?}: {e}")))
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        event: &AuditEvent,
    ) -> Result<(), CreateApiKeyStoreError> {
        let row = &ApiKeyRow::from_domain(key);
        let result = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                Ok::<_, InfraError>(
                    conn.transaction::<_, DieselError, _>(async |conn| {
                        diesel::insert_into(api_keys::table)
                            .values(row)
                            .execute(conn)
                            .await?;
                        insert_events(conn, [event]).await
                    })
                    .await,
                )
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
        // One query: the key, its owner's state, and one row per permission the owner holds.
        let rows: Vec<(ApiKeyRow, bool, Option<String>)> = self
            .timed(async {
                let conn = &mut *self.conn().await?;
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
                    .await
                    .map_err(db_error)
            })
            .await?;
        let mut owner_permissions = Vec::new();
        let mut found = None;
        for (row, disabled, permission) in rows {
            if let Some(permission) = permission {
                owner_permissions.push(parse_permission(&permission)?);
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
        self.timed(async {
            let conn = &mut *self.conn().await?;
            api_keys::table
                .filter(api_keys::owner_id.eq(owner.as_uuid()))
                .filter(api_keys::revoked_at.is_null())
                .order(api_keys::id.desc())
                .select(ApiKeyRow::as_select())
                .load(conn)
                .await
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
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                let revoked = diesel::update(
                    api_keys::table
                        .find(id.as_uuid())
                        .filter(api_keys::owner_id.eq(owner.as_uuid()))
                        .filter(api_keys::revoked_at.is_null()),
                )
                .set(api_keys::revoked_at.eq(now))
                .execute(conn)
                .await?
                    == 1;
                if revoked {
                    insert_events(conn, [event]).await?;
                }
                Ok(revoked)
            })
            .await
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
        self.timed(async {
            let conn = &mut *self.conn().await?;
            diesel::update(
                api_keys::table.find(id.as_uuid()).filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.lt(not_before)),
                ),
            )
            .set(api_keys::last_used_at.eq(at))
            .execute(conn)
            .await
            .map(drop)
            .map_err(db_error)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit_events(&self, events: &[AuditEvent]) -> Result<(), InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| insert_events(conn, events).await)
                .await
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let page = |user: Option<(UserColumn, Uuid)>| {
            let mut query = audit_events::table.into_boxed();
            match user {
                Some((UserColumn::Actor, user)) => {
                    query = query.filter(audit_events::actor_id.eq(user));
                }
                Some((UserColumn::Target, user)) => {
                    query = query.filter(audit_events::target_id.eq(user));
                }
                None => {}
            }
            if let Some(kind) = filter.kind {
                query = query.filter(audit_events::type_.eq(kind.as_str()));
            }
            if let Some(before) = before {
                query = query.filter(audit_events::id.lt(before.as_uuid()));
            }
            query
                .order(audit_events::id.desc())
                .limit(limit)
                .select(AuditEventRow::as_select())
        };
        let rows = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                // A user filter is two index walks (as actor, as target) merged, never an OR
                // that would scan the log for a user with few events.
                let rows = match filter.user {
                    Some(user) => {
                        let user = user.as_uuid();
                        let mut rows: Vec<AuditEventRow> = page(Some((UserColumn::Actor, user)))
                            .load(conn)
                            .await
                            .map_err(db_error)?;
                        rows.extend(
                            page(Some((UserColumn::Target, user)))
                                .load::<AuditEventRow>(conn)
                                .await
                                .map_err(db_error)?,
                        );
                        rows
                    }
                    None => page(None).load(conn).await.map_err(db_error)?,
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
