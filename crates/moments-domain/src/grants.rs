//! Current roles and permissions of users whose authorization changed recently, kept in memory
//! so access tokens issued before a change stop carrying stale permissions, without a database
//! query per request.
//!
//! A token carries the roles and permissions of when it was issued. When a user's roles change
//! (on any instance), the store records when; every instance polls for such changes
//! ([`crate::AccountService::sync_changes`], every second) and keeps the user's current grant
//! here; tokens issued before the change are judged by it instead. Entries are kept only as
//! long as such a token could still be valid.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Utc};

use crate::authz::{Permission, RoleName};
use crate::ids::UserId;

/// A user's roles and permissions as of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When the user's authorization changed.
    pub changed_at: DateTime<Utc>,
    /// Roles held since.
    pub roles: Vec<RoleName>,
    /// Permissions held since.
    pub permissions: Vec<Permission>,
}

/// Recent grants by user, with the newest change time seen (the watermark).
#[derive(Debug)]
pub struct CurrentGrants {
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    grants: HashMap<UserId, Grant>,
    watermark: DateTime<Utc>,
}

impl CurrentGrants {
    /// Empty, asking the store for changes after `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                grants: HashMap::new(),
                watermark: start,
            }),
        }
    }

    /// The user's grant if it changed after a token issued at `issued_at` (so the token's own
    /// claims are stale).
    pub fn newer_than(&self, user: UserId, issued_at: DateTime<Utc>) -> Option<Grant> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .grants
            .get(&user)
            .filter(|grant| grant.changed_at >= issued_at)
            .cloned()
    }

    /// Records grants (a later change replaces an earlier one) and forgets those at or before
    /// `forget_before`.
    pub fn merge(
        &self,
        grants: impl IntoIterator<Item = (UserId, Grant)>,
        forget_before: DateTime<Utc>,
    ) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for (user, grant) in grants {
            inner.watermark = inner.watermark.max(grant.changed_at);
            match inner.grants.get(&user) {
                Some(known) if known.changed_at > grant.changed_at => {}
                _ => {
                    inner.grants.insert(user, grant);
                }
            }
        }
        inner
            .grants
            .retain(|_, grant| grant.changed_at > forget_before);
    }

    /// The newest change time seen.
    pub fn watermark(&self) -> DateTime<Utc> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .watermark
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use uuid::Uuid;

    use super::*;

    fn grant(at: DateTime<Utc>, role: &str) -> Grant {
        Grant {
            changed_at: at,
            roles: vec![RoleName::parse(role).unwrap()],
            permissions: vec![],
        }
    }

    #[test]
    fn judges_only_tokens_issued_before_the_change() {
        let t0 = Utc::now();
        let grants = CurrentGrants::new(t0 - TimeDelta::minutes(16));
        let user = UserId::from_uuid(Uuid::now_v7());
        grants.merge([(user, grant(t0, "user"))], t0 - TimeDelta::minutes(16));
        assert!(
            grants
                .newer_than(user, t0 - TimeDelta::seconds(5))
                .is_some()
        );
        assert!(
            grants
                .newer_than(user, t0 + TimeDelta::seconds(5))
                .is_none()
        );
        // An older change never replaces a newer one; the watermark only moves forward.
        grants.merge(
            [(user, grant(t0 - TimeDelta::seconds(1), "admin"))],
            t0 - TimeDelta::minutes(16),
        );
        assert_eq!(
            grants
                .newer_than(user, t0 - TimeDelta::seconds(5))
                .unwrap()
                .roles[0]
                .as_str(),
            "user"
        );
        assert_eq!(grants.watermark(), t0);
        // Old entries are forgotten.
        grants.merge([], t0 + TimeDelta::seconds(1));
        assert!(
            grants
                .newer_than(user, t0 - TimeDelta::seconds(5))
                .is_none()
        );
    }
}
