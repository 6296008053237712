//! Identity-provider links on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use moments_domain::InfraError;
use moments_domain::audit::AuditEvent;
use moments_domain::ids::UserId;
use moments_domain::oauth::{Identity, LinkOutcome, ProviderName, UnlinkOutcome};
use moments_domain::ports::{CreateUserError, IdentityStore};
use moments_domain::user::{NewUser, User};
use uuid::Uuid;

use crate::audit::insert_events;
use crate::models::corrupt;
use crate::schema::{oauth_identities, password_credentials, users};
use crate::store::{CreateTx, PgStore, db_error, insert_user};

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = oauth_identities, check_for_backend(diesel::pg::Pg))]
struct IdentityRow {
    provider: String,
    subject: String,
    user_id: Uuid,
    email: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
}

impl IdentityRow {
    fn from_domain(identity: &Identity) -> Self {
        Self {
            provider: identity.provider.as_str().to_owned(),
            subject: identity.subject.clone(),
            user_id: identity.user_id.as_uuid(),
            email: identity.email.clone(),
            created_at: identity.created_at,
            last_used_at: identity.last_used_at,
        }
    }

    fn into_domain(self) -> Result<Identity, InfraError> {
        Ok(Identity {
            provider: ProviderName::parse(&self.provider).map_err(|e| corrupt("provider", e))?,
            subject: self.subject,
            user_id: UserId::from_uuid(self.user_id),
            email: self.email,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn find_identity(
        &self,
        provider: &ProviderName,
        subject: &str,
    ) -> Result<Option<Identity>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            oauth_identities::table
                .find((provider.as_str(), subject))
                .select(IdentityRow::as_select())
                .first(conn)
                .await
                .optional()
                .map_err(db_error)?
                .map(IdentityRow::into_domain)
                .transpose()
        })
        .await
    }

    async fn identities_of(&self, user: UserId) -> Result<Vec<Identity>, InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            oauth_identities::table
                .filter(oauth_identities::user_id.eq(user.as_uuid()))
                .order(oauth_identities::provider)
                .select(IdentityRow::as_select())
                .load(conn)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(IdentityRow::into_domain)
                .collect()
        })
        .await
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &Identity,
        event: &AuditEvent,
    ) -> Result<User, CreateUserError> {
        let row = IdentityRow::from_domain(identity);
        let result: Result<_, CreateTx> = self
            .timed(async {
                let conn = &mut *self.conn().await?;
                conn.transaction::<_, CreateTx, _>(async |conn| {
                    let created = insert_user(conn, &user).await?;
                    diesel::insert_into(oauth_identities::table)
                        .values(&row)
                        .execute(conn)
                        .await?;
                    insert_events(conn, [event]).await?;
                    Ok(created)
                })
                .await
            })
            .await;
        Ok(result?.into_domain()?)
    }

    async fn link_identity(
        &self,
        identity: &Identity,
        event: &AuditEvent,
    ) -> Result<LinkOutcome, InfraError> {
        let row = IdentityRow::from_domain(identity);
        self.timed(async {
            let conn = &mut *self.conn().await?;
            let result = conn
                .transaction::<_, DieselError, _>(async |conn| {
                    let inserted = diesel::insert_into(oauth_identities::table)
                        .values(&row)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if inserted == 1 {
                        insert_events(conn, [event]).await?;
                        return Ok(LinkOutcome::Linked);
                    }
                    // Either the identity is linked (to this account or another), or this
                    // account has another identity at the provider.
                    let owner: Option<Uuid> = oauth_identities::table
                        .find((&row.provider, &row.subject))
                        .select(oauth_identities::user_id)
                        .first(conn)
                        .await
                        .optional()?;
                    Ok(match owner {
                        Some(owner) if owner == row.user_id => LinkOutcome::AlreadyLinked,
                        Some(_) => LinkOutcome::TakenByOther,
                        None => LinkOutcome::ProviderLinked,
                    })
                })
                .await;
            match result {
                Ok(outcome) => Ok(outcome),
                // The account or the identity vanished under us: nothing was linked.
                Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                    Ok(LinkOutcome::TakenByOther)
                }
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn touch_identity(
        &self,
        provider: &ProviderName,
        subject: &str,
        email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.timed(async {
            let conn = &mut *self.conn().await?;
            diesel::update(oauth_identities::table.find((provider.as_str(), subject)))
                .set((
                    oauth_identities::email.eq(email),
                    oauth_identities::last_used_at.eq(now),
                ))
                .execute(conn)
                .await
                .map(|_| ())
                .map_err(db_error)
        })
        .await
    }

    async fn unlink_identity(
        &self,
        user: UserId,
        provider: &ProviderName,
        event: &AuditEvent,
    ) -> Result<UnlinkOutcome, InfraError> {
        let user = user.as_uuid();
        self.timed(async {
            let conn = &mut *self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                // Serialises concurrent unlinks of one account: each sees the other's result.
                let exists = users::table
                    .find(user)
                    .select(users::id)
                    .for_update()
                    .first::<Uuid>(conn)
                    .await
                    .optional()?;
                if exists.is_none() {
                    return Ok(UnlinkOutcome::NotLinked);
                }
                let providers: Vec<String> = oauth_identities::table
                    .filter(oauth_identities::user_id.eq(user))
                    .select(oauth_identities::provider)
                    .load(conn)
                    .await?;
                if !providers.iter().any(|p| p == provider.as_str()) {
                    return Ok(UnlinkOutcome::NotLinked);
                }
                let has_password = password_credentials::table
                    .find(user)
                    .count()
                    .get_result::<i64>(conn)
                    .await?
                    > 0;
                if !has_password && providers.len() == 1 {
                    return Ok(UnlinkOutcome::LastMethod);
                }
                diesel::delete(
                    oauth_identities::table
                        .filter(oauth_identities::user_id.eq(user))
                        .filter(oauth_identities::provider.eq(provider.as_str())),
                )
                .execute(conn)
                .await?;
                insert_events(conn, [event]).await?;
                Ok(UnlinkOutcome::Unlinked)
            })
            .await
            .map_err(db_error)
        })
        .await
    }
}
