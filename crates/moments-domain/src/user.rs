//! User accounts.

use chrono::{DateTime, Utc};

use crate::authz::{Permission, Role, RoleName};
use crate::ids::UserId;
use crate::value::{Email, PasswordHash, Username};

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// Unique, normalised username.
    pub username: Username,
    /// Unique (case-insensitively) e-mail address; `None` for an account made through a
    /// provider that gave none (X never does).
    pub email: Option<Email>,
    /// Optional name to show instead of the username.
    pub display_name: Option<String>,
    /// Whether the address has been verified.
    pub email_verified: bool,
    /// A disabled account cannot sign in.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a store needs to create an account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Id chosen by the caller (UUIDv7).
    pub id: UserId,
    /// Username.
    pub username: Username,
    /// E-mail address, if known.
    pub email: Option<Email>,
    /// Whether the provider that vouched for the account verified the address.
    pub email_verified: bool,
    /// Optional display name.
    pub display_name: Option<String>,
    /// The password hash; `None` for accounts that sign in only through a provider.
    pub password_hash: Option<PasswordHash>,
    /// Roles given at creation.
    pub roles: Vec<RoleName>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The signed-in user's own view: the account plus what it may do.
#[derive(Debug, Clone)]
pub struct Me {
    /// The account.
    pub user: User,
    /// Names of the roles held.
    pub roles: Vec<RoleName>,
    /// Union of the roles' permissions, sorted and without duplicates.
    pub permissions: Vec<Permission>,
    /// Whether the account has a password (accounts made through a provider may not).
    pub has_password: bool,
    /// Names of linked identity providers.
    pub providers: Vec<String>,
}

/// Flattens roles into their names and the sorted union of their permissions.
pub fn role_grants(roles: &[Role]) -> (Vec<RoleName>, Vec<Permission>) {
    let names = roles.iter().map(|r| r.name.clone()).collect();
    let mut permissions: Vec<Permission> = roles
        .iter()
        .flat_map(|r| r.permissions.iter().cloned())
        .collect();
    permissions.sort();
    permissions.dedup();
    (names, permissions)
}
