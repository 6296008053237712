//! The signed-in user's own profile: display name and e-mail address. Nothing else about an
//! account (roles, permissions, disabled) can be changed through it.

use serde_json::json;

use crate::account::{AccountService, Actor};
use crate::audit::AuditKind;
use crate::error::InfraError;
use crate::ports::UpdateProfileStoreError;
use crate::user::User;
use crate::value::{DisplayName, Email};

/// What to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<DisplayName>>,
    /// A new address (its verification is reset when it differs from the current one other
    /// than by case).
    pub email: Option<Email>,
}

impl ProfileChange {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.email.is_none()
    }
}

/// Why a profile could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateProfileError {
    /// Another account has the address.
    #[error("email taken")]
    EmailTaken,
    /// The caller's account no longer exists.
    #[error("account not found")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AccountService {
    /// Changes the caller's own display name and/or e-mail address, recording `user.updated`
    /// (with the previous address when it changes).
    pub async fn update_profile(
        &self,
        actor: &Actor,
        change: ProfileChange,
    ) -> Result<User, UpdateProfileError> {
        let current = self
            .users()
            .find_user_by_id(actor.user_id)
            .await?
            .ok_or(UpdateProfileError::NotFound)?;
        if change.is_empty() {
            return Ok(current);
        }
        let now = self.now();
        let mut details = json!({});
        if let Some(name) = &change.display_name {
            details["display_name"] = json!(name.as_ref().map(DisplayName::as_str));
        }
        if let Some(email) = &change.email {
            details["email"] = json!(email.as_str());
            details["previous_email"] = json!(current.email.as_ref().map(Email::as_str));
        }
        let event = self.event(
            AuditKind::ProfileUpdated,
            Some(actor),
            Some(actor.user_id),
            now,
            details,
        );
        match self
            .users()
            .update_profile(actor.user_id, &change, now, &event)
            .await
        {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(UpdateProfileError::NotFound),
            Err(UpdateProfileStoreError::EmailTaken) => Err(UpdateProfileError::EmailTaken),
            Err(UpdateProfileStoreError::Infra(e)) => Err(e.into()),
        }
    }
}
