//! Identity-provider links on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use moments_domain::InfraError;
use moments_domain::audit::AuditEvent;
use moments_domain::ids::UserId;
use moments_domain::oauth::{Identity, LinkOutcome, ProviderName, UnlinkOutcome};
use moments_domain::ports::{CreateUserError, IdentityStore};
use moments_domain::user::{NewUser, User};

use crate::audit::insert_events;
use crate::models::{corrupt, parse_uuid, uuid_text};
use crate::schema::{oauth_identities, password_credentials, users};
use crate::store::{CreateTx, SqliteStore, db_error, insert_user};

#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = oauth_identities, check_for_backend(diesel::sqlite::Sqlite))]
struct IdentityRow {
    provider: String,
    subject: String,
    user_id: String,
    email: Option<String>,
    created_at: NaiveDateTime,
    last_used_at: NaiveDateTime,
}

impl IdentityRow {
    fn from_domain(identity: &Identity) -> Self {
        Self {
            provider: identity.provider.as_str().to_owned(),
            subject: identity.subject.clone(),
            user_id: uuid_text(identity.user_id.as_uuid()),
            email: identity.email.clone(),
            created_at: identity.created_at.naive_utc(),
            last_used_at: identity.last_used_at.naive_utc(),
        }
    }

    fn into_domain(self) -> Result<Identity, InfraError> {
        Ok(Identity {
            provider: ProviderName::parse(&self.provider).map_err(|e| corrupt("provider", e))?,
            subject: self.subject,
            user_id: UserId::from_uuid(parse_uuid(&self.user_id)?),
            email: self.email,
            created_at: self.created_at.and_utc(),
            last_used_at: self.last_used_at.and_utc(),
        })
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn find_identity(
        &self,
        provider: &ProviderName,
        subject: &str,
    ) -> Result<Option<Identity>, InfraError> {
        let key = (provider.as_str().to_owned(), subject.to_owned());
        self.run(move |conn| {
            oauth_identities::table
                .find(key)
                .select(IdentityRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .map(IdentityRow::into_domain)
                .transpose()
        })
        .await
    }

    async fn identities_of(&self, user: UserId) -> Result<Vec<Identity>, InfraError> {
        let user = uuid_text(user.as_uuid());
        self.run(move |conn| {
            oauth_identities::table
                .filter(oauth_identities::user_id.eq(user))
                .order(oauth_identities::provider)
                .select(IdentityRow::as_select())
                .load(conn)
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
        let event = event.clone();
        let result = self
            .run(move |conn| {
                Ok::<_, InfraError>(conn.immediate_transaction::<_, CreateTx, _>(|conn| {
                    let created = insert_user(conn, &user)?;
                    diesel::insert_into(oauth_identities::table)
                        .values(&row)
                        .execute(conn)?;
                    insert_events(conn, [&event])?;
                    Ok(created)
                }))
            })
            .await?;
        Ok(result?.into_domain()?)
    }

    async fn link_identity(
        &self,
        identity: &Identity,
        event: &AuditEvent,
    ) -> Result<LinkOutcome, InfraError> {
        let row = IdentityRow::from_domain(identity);
        let event = event.clone();
        self.run(move |conn| {
            let result = conn.immediate_transaction::<_, DieselError, _>(|conn| {
                let inserted = diesel::insert_or_ignore_into(oauth_identities::table)
                    .values(&row)
                    .execute(conn)?;
                if inserted == 1 {
                    insert_events(conn, [&event])?;
                    return Ok(LinkOutcome::Linked);
                }
                let owner: Option<String> = oauth_identities::table
                    .find((&row.provider, &row.subject))
                    .select(oauth_identities::user_id)
                    .first(conn)
                    .optional()?;
                Ok(match owner {
                    Some(owner) if owner == row.user_id => LinkOutcome::AlreadyLinked,
                    Some(_) => LinkOutcome::TakenByOther,
                    None => LinkOutcome::ProviderLinked,
                })
            });
            match result {
                Ok(outcome) => Ok(outcome),
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
        let key = (provider.as_str().to_owned(), subject.to_owned());
        let email = email.map(str::to_owned);
        let now = now.naive_utc();
        self.run(move |conn| {
            diesel::update(oauth_identities::table.find(key))
                .set((
                    oauth_identities::email.eq(email),
                    oauth_identities::last_used_at.eq(now),
                ))
                .execute(conn)
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
        let user = uuid_text(user.as_uuid());
        let provider = provider.as_str().to_owned();
        let event = event.clone();
        self.run(move |conn| {
            // An immediate transaction holds the write lock from the start: concurrent unlinks
            // of one account run one after the other.
            conn.immediate_transaction::<_, DieselError, _>(|conn| {
                let exists = users::table
                    .find(&user)
                    .select(users::id)
                    .first::<String>(conn)
                    .optional()?;
                if exists.is_none() {
                    return Ok(UnlinkOutcome::NotLinked);
                }
                let providers: Vec<String> = oauth_identities::table
                    .filter(oauth_identities::user_id.eq(&user))
                    .select(oauth_identities::provider)
                    .load(conn)?;
                if !providers.contains(&provider) {
                    return Ok(UnlinkOutcome::NotLinked);
                }
                let has_password = password_credentials::table
                    .find(&user)
                    .count()
                    .get_result::<i64>(conn)?
                    > 0;
                if !has_password && providers.len() == 1 {
                    return Ok(UnlinkOutcome::LastMethod);
                }
                diesel::delete(
                    oauth_identities::table
                        .filter(oauth_identities::user_id.eq(&user))
                        .filter(oauth_identities::provider.eq(&provider)),
                )
                .execute(conn)?;
                insert_events(conn, [&event])?;
                Ok(UnlinkOutcome::Unlinked)
            })
            .map_err(db_error)
        })
        .await
    }
}
