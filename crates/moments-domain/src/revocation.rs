//! The revoked sessions every instance keeps in memory, so an access token of a revoked session
//! is refused without a database query per request.
//!
//! Access tokens name their session (`sid`). A session revoked on this instance is added at
//! once; sessions revoked elsewhere arrive through [`crate::AccountService::sync_revocations`],
//! which the server calls every second, so every instance refuses them within a few seconds.
//! Entries are kept only as long as an access token issued before the revocation could still be
//! valid (the access-token lifetime plus leeway).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Utc};

use crate::ids::SessionId;

/// Revoked sessions, with the time of the newest revocation seen (the watermark).
#[derive(Debug)]
pub struct RevocationList {
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    revoked: HashMap<SessionId, DateTime<Utc>>,
    watermark: DateTime<Utc>,
}

impl RevocationList {
    /// An empty list that will ask the store for revocations after `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                revoked: HashMap::new(),
                watermark: start,
            }),
        }
    }

    /// Whether the session is known to be revoked. The hot path: one read lock, one lookup.
    pub fn contains(&self, id: SessionId) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .contains_key(&id)
    }

    /// Adds revocations and forgets those at or before `forget_before`.
    pub fn merge(
        &self,
        revocations: impl IntoIterator<Item = (SessionId, DateTime<Utc>)>,
        forget_before: DateTime<Utc>,
    ) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for (id, at) in revocations {
            inner.watermark = inner.watermark.max(at);
            inner.revoked.insert(id, at);
        }
        inner.revoked.retain(|_, at| *at > forget_before);
    }

    /// The newest revocation time seen.
    pub fn watermark(&self) -> DateTime<Utc> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .watermark
    }

    /// How many revoked sessions are held.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn holds_recent_revocations_and_forgets_old_ones() {
        let t0 = Utc::now();
        let list = RevocationList::new(t0);
        let (a, b) = (
            SessionId::from_uuid(Uuid::now_v7()),
            SessionId::from_uuid(Uuid::now_v7()),
        );
        list.merge(
            [(a, t0 + TimeDelta::seconds(1))],
            t0 - TimeDelta::minutes(16),
        );
        assert!(list.contains(a) && !list.contains(b));
        assert_eq!(list.watermark(), t0 + TimeDelta::seconds(1));
        list.merge(
            [(b, t0 + TimeDelta::seconds(5))],
            t0 + TimeDelta::seconds(2),
        );
        assert!(!list.contains(a), "older than the horizon: forgotten");
        assert!(list.contains(b));
        assert_eq!(list.len(), 1);
        // The watermark never moves back.
        list.merge([(a, t0)], t0 - TimeDelta::minutes(16));
        assert_eq!(list.watermark(), t0 + TimeDelta::seconds(5));
    }
}
