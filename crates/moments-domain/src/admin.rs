//! Administration: accounts (list, public profile, disable) and roles (create, edit, delete,
//! assign), with the rule that nobody grants, or takes away, permissions they do not hold.

use serde_json::json;

use crate::account::{AccountService, Actor};
use crate::audit::AuditKind;
use crate::authz::{Permission, Role, RoleName};
use crate::error::InfraError;
use crate::ids::UserId;
pub use crate::page::{ListError, Page};
use crate::page::{open_cursor, seal_page};
use crate::ports::{CreateRoleError, RoleChange};
use crate::user::{User, role_grants};

/// Why a role could not be assigned or removed.
#[derive(Debug, thiserror::Error)]
pub enum RoleAssignmentError {
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// No such role.
    #[error("unknown role")]
    UnknownRole,
    /// The role grants a permission the caller does not hold.
    #[error("the role grants {0}, which the caller does not hold")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a role could not be created, edited or deleted.
#[derive(Debug, thiserror::Error)]
pub enum RoleEditError {
    /// A role of that name exists.
    #[error("role exists")]
    Exists,
    /// No such role.
    #[error("unknown role")]
    NotFound,
    /// Built-in roles cannot be deleted, nor their permissions changed.
    #[error("built-in role")]
    Builtin,
    /// The change involves a permission the caller does not hold.
    #[error("the change involves {0}, which the caller does not hold")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an account could not be disabled or enabled.
#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    /// No such account.
    #[error("unknown user")]
    NotFound,
    /// Callers cannot disable themselves (nobody locks the last administrator out by mistake).
    #[error("cannot disable oneself")]
    OwnAccount,
    /// The account holds a permission the caller does not.
    #[error("the account holds {0}, which the caller does not")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AccountService {
    /// [`crate::page::open_cursor`] with this service's codec.
    pub(crate) fn open_cursor(
        &self,
        list: &str,
        binding: &str,
        cursor: Option<&str>,
    ) -> Result<Option<String>, ListError> {
        open_cursor(&*self.ports.cursors, list, binding, cursor)
    }

    /// [`crate::page::seal_page`] with this service's codec.
    pub(crate) fn page<T>(
        &self,
        list: &str,
        binding: &str,
        items: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> String,
    ) -> Page<T> {
        seal_page(&*self.ports.cursors, list, binding, items, limit, key)
    }

    /// An account's public profile; `None` for unknown (and disabled) accounts.
    pub async fn public_profile(&self, id: UserId) -> Result<Option<User>, InfraError> {
        Ok(self
            .ports
            .users
            .find_user_by_id(id)
            .await?
            .filter(|user| !user.disabled))
    }

    /// Accounts by username, `limit` a page, optionally those whose username or e-mail starts
    /// with `query` (case-insensitive). Keyset pagination: the cursor carries the last username,
    /// sealed and bound to the query, so a page deep in the list costs what the first costs and
    /// a cursor cannot be altered or reused for another query.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<User>, ListError> {
        let prefix = query.map(|q| q.trim().to_lowercase()).unwrap_or_default();
        let after = self.open_cursor("users", &prefix, cursor)?;
        let filter = (!prefix.is_empty()).then_some(prefix.as_str());
        let items = self
            .ports
            .users
            .list_users(filter, after.as_deref(), limit + 1)
            .await?;
        Ok(self.page("users", &prefix, items, limit, |user| {
            user.username.as_str().to_owned()
        }))
    }

    /// Disables or re-enables an account. The caller must hold every permission the account
    /// holds. Disabling revokes every session of the account (refresh tokens at once, access
    /// tokens within seconds everywhere); enabling does not bring them back.
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        user: UserId,
        disabled: bool,
    ) -> Result<User, DisableError> {
        if disabled && user == actor.user_id {
            return Err(DisableError::OwnAccount);
        }
        let (_, held) = role_grants(&self.ports.users.roles_of(user).await?);
        if let Some(missing) = held.iter().find(|p| !actor.has_permission(p.as_str())) {
            return Err(DisableError::Escalation(missing.clone()));
        }
        let now = self.ports.clock.now();
        let kind = if disabled {
            AuditKind::UserDisabled
        } else {
            AuditKind::UserEnabled
        };
        let event = self.event(kind, Some(actor), Some(user), now, json!({}));
        let (updated, revoked) = self
            .ports
            .users
            .set_disabled(user, disabled, now, &event)
            .await?
            .ok_or(DisableError::NotFound)?;
        self.refuse_sessions(revoked, now).await;
        Ok(updated)
    }

    /// Creates a custom role. The caller must hold every permission it grants.
    pub async fn create_role(&self, actor: &Actor, role: Role) -> Result<Role, RoleEditError> {
        Self::require_all(actor, &role.permissions)?;
        let role = Role {
            builtin: false,
            ..role
        };
        let now = self.ports.clock.now();
        let event = self.event(
            AuditKind::RoleCreated,
            Some(actor),
            None,
            now,
            json!({ "role": role.name.as_str(), "permissions": names(&role.permissions) }),
        );
        match self.ports.users.create_role(&role, now, &event).await {
            Ok(()) => Ok(role),
            Err(CreateRoleError::Exists) => Err(RoleEditError::Exists),
            Err(CreateRoleError::Infra(e)) => Err(e.into()),
        }
    }

    /// Edits a role: its description, and (custom roles only) its permissions, replaced as a
    /// set. The caller must hold every permission the role grants before and after. Holders'
    /// existing tokens follow at once here and within seconds elsewhere.
    pub async fn update_role(
        &self,
        actor: &Actor,
        name: &RoleName,
        description: Option<&str>,
        permissions: Option<Vec<Permission>>,
    ) -> Result<Role, RoleEditError> {
        let current = self
            .ports
            .users
            .find_role(name)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if let Some(permissions) = &permissions {
            if current.builtin {
                return Err(RoleEditError::Builtin);
            }
            Self::require_all(actor, &current.permissions)?;
            Self::require_all(actor, permissions)?;
        }
        let now = self.ports.clock.now();
        let mut details = json!({ "role": name.as_str() });
        if let Some(description) = description {
            details["description"] = json!(description);
        }
        if let Some(permissions) = &permissions {
            details["permissions"] = json!(names(permissions));
            details["previous_permissions"] = json!(names(&current.permissions));
        }
        let event = self.event(AuditKind::RoleUpdated, Some(actor), None, now, details);
        let updated = self
            .ports
            .users
            .update_role(name, description, permissions.as_deref(), now, &event)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if permissions.is_some() {
            self.sync_grants().await?;
        }
        Ok(updated)
    }

    /// Deletes a custom role, taking it from its holders. The caller must hold every permission
    /// it grants.
    pub async fn delete_role(&self, actor: &Actor, name: &RoleName) -> Result<(), RoleEditError> {
        let role = self
            .ports
            .users
            .find_role(name)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if role.builtin {
            return Err(RoleEditError::Builtin);
        }
        Self::require_all(actor, &role.permissions)?;
        let now = self.ports.clock.now();
        let event = self.event(
            AuditKind::RoleDeleted,
            Some(actor),
            None,
            now,
            json!({ "role": name.as_str(), "permissions": names(&role.permissions) }),
        );
        if !self.ports.users.delete_role(name, now, &event).await? {
            return Err(RoleEditError::NotFound);
        }
        self.sync_grants().await?;
        Ok(())
    }

    fn require_all(actor: &Actor, permissions: &[Permission]) -> Result<(), RoleEditError> {
        match permissions
            .iter()
            .find(|p| !actor.has_permission(p.as_str()))
        {
            Some(missing) => Err(RoleEditError::Escalation(missing.clone())),
            None => Ok(()),
        }
    }

    /// Gives a user a role. The caller must hold every permission the role grants (nobody
    /// grants what they do not hold); the change reaches the user's existing access tokens at
    /// once on this instance and within seconds on the others.
    pub async fn assign_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
    ) -> Result<(), RoleAssignmentError> {
        self.change_role(actor, user, role, true).await
    }

    /// Takes a role from a user, under the same rule as [`AccountService::assign_role`].
    pub async fn remove_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
    ) -> Result<(), RoleAssignmentError> {
        self.change_role(actor, user, role, false).await
    }

    async fn change_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
        assign: bool,
    ) -> Result<(), RoleAssignmentError> {
        let Some(found) = self.ports.users.find_role(role).await? else {
            return Err(RoleAssignmentError::UnknownRole);
        };
        if let Some(missing) = found
            .permissions
            .iter()
            .find(|p| !actor.has_permission(p.as_str()))
        {
            return Err(RoleAssignmentError::Escalation(missing.clone()));
        }
        let now = self.ports.clock.now();
        let kind = if assign {
            AuditKind::RoleAssigned
        } else {
            AuditKind::RoleRemoved
        };
        let event = self.event(
            kind,
            Some(actor),
            Some(user),
            now,
            json!({ "role": role.as_str() }),
        );
        let outcome = if assign {
            self.ports
                .users
                .assign_role(user, role, now, &event)
                .await?
        } else {
            self.ports
                .users
                .remove_role(user, role, now, &event)
                .await?
        };
        match outcome {
            RoleChange::Changed => {
                let grant = self.current_grant(user, now).await?;
                self.grants
                    .merge([(user, grant)], now - Self::horizon(&self.ports));
                Ok(())
            }
            RoleChange::Unchanged => Ok(()),
            RoleChange::UnknownUser => Err(RoleAssignmentError::UnknownUser),
            RoleChange::UnknownRole => Err(RoleAssignmentError::UnknownRole),
        }
    }

    /// Every role with its permissions, sorted by name.
    pub async fn roles(&self) -> Result<Vec<crate::authz::Role>, InfraError> {
        self.ports.users.list_roles().await
    }

    /// A role by name.
    pub async fn role(&self, name: &RoleName) -> Result<Option<crate::authz::Role>, InfraError> {
        self.ports.users.find_role(name).await
    }
}

fn names(permissions: &[Permission]) -> Vec<&str> {
    permissions.iter().map(Permission::as_str).collect()
}
