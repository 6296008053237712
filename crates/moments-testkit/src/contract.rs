//! The store contract: what every store adapter (PostgreSQL, SQLite) must do. Each function is
//! one case; `store_contract_tests!` turns them into tests for an adapter.

use std::sync::Arc;

use chrono::TimeDelta;
use futures_util::future::join_all;
use moments_domain::audit::{AuditEvent, AuditFilter, AuditKind};
use moments_domain::authz::{Permission, Role, RoleName, builtin_roles};
use moments_domain::ids::{AuditEventId, SessionId, UserId};
use moments_domain::ports::{
    ApiKeyStore, AuditStore, CreateApiKeyStoreError, CreateRoleError, CreateUserError,
    IdentityStore, PostStore, RoleChange, SessionStore, UpdateProfileStoreError, UserStore,
};
use moments_domain::profile::ProfileChange;
use moments_domain::value::{DisplayName, Email, PasswordHash, Username};
use uuid::Uuid;

use crate::builders::{
    default_role, digest, event, new_api_key, new_session, new_user, now, refresh_token,
};

mod identities;
mod posts;
pub use identities::*;
pub use posts::*;

/// A store to test, with whatever keeps its database alive until the test ends.
pub struct StoreUnderTest {
    /// The user store.
    pub users: Arc<dyn UserStore>,
    /// The session store.
    pub sessions: Arc<dyn SessionStore>,
    /// The API key store.
    pub keys: Arc<dyn ApiKeyStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Posts and votes.
    pub posts: Arc<dyn PostStore>,
    /// Identity-provider links.
    pub identities: Arc<dyn IdentityStore>,
    /// Statements the store has sent to its database so far.
    pub queries: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Dropped at the end of the test (a temporary directory, a test database).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for StoreUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreUnderTest")
    }
}

/// Generates one `#[tokio::test]` per contract case. `$make` is an async expression giving
/// `Option<StoreUnderTest>`; `None` skips the case (service unreachable and not required).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            user_round_trips_by_id_username_and_email,
            username_is_unique,
            email_is_unique_case_insensitively,
            concurrent_inserts_of_one_username_have_one_winner,
            concurrent_inserts_of_one_email_have_one_winner,
            password_hash_is_stored_apart_and_optional,
            unknown_role_creates_nothing,
            builtin_roles_match_the_domain,
            session_round_trips_and_is_found_by_digest,
            rotation_retires_the_token_and_stores_the_successor,
            concurrent_rotations_of_one_token_have_one_winner,
            revoked_sessions_do_not_rotate,
            password_hash_can_be_replaced,
            revoking_a_users_sessions_can_keep_one,
            active_sessions_are_live_and_most_recent_first,
            revocations_are_listed_since_a_point,
            touching_a_session_only_moves_forward,
            creating_several_users_is_all_or_nothing,
            roles_are_assigned_and_removed_and_changes_listed,
            custom_roles_are_created_edited_and_deleted,
            accounts_are_disabled_and_enabled,
            users_are_listed_by_literal_prefix_in_pages,
            api_keys_are_found_by_prefix_with_the_owners_permissions,
            api_keys_are_listed_and_revoked_by_their_owner_only,
            touching_a_key_writes_at_most_once_per_interval,
            audit_events_page_newest_first_past_ten_thousand,
            events_are_written_only_with_their_changes,
            a_change_whose_event_cannot_be_written_does_not_happen,
            profiles_change_with_unique_addresses,
            posts_round_trip_with_their_authors,
            posts_are_edited_and_deleted,
            posts_page_newest_first_one_query_per_page,
            votes_move_totals_by_the_difference,
            concurrent_votes_keep_exact_totals,
            accounts_are_created_with_their_identity,
            concurrent_creations_of_one_identity_have_one_winner,
            links_are_unique_per_identity_and_per_provider,
            unlinking_keeps_a_way_to_sign_in,
            concurrent_unlinks_leave_a_way_to_sign_in,
            touching_an_identity_notes_its_use,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::contract::$case(&store).await;
            }
        )+
    };
}

fn unique(prefix: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Look-ups by id, username and e-mail (any case) return the stored account; unknown ones
/// return `None`.
pub async fn user_round_trips_by_id_username_and_email(store: &StoreUnderTest) {
    let name = unique("alice");
    let new = new_user(&name, &format!("{name}@Example.COM"));
    let created = store.users.create_user(new.clone()).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.username, new.username);
    assert_eq!(
        created.email.as_ref().map(Email::as_str),
        Some(format!("{name}@Example.COM").as_str())
    );
    assert_eq!(created.created_at, new.created_at);
    assert!(!created.disabled);
    assert!(!created.email_verified);

    let by_id = store.users.find_user_by_id(new.id).await.unwrap().unwrap();
    assert_eq!(by_id, created);
    let by_name = store
        .users
        .find_user_by_username(&new.username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name, created);
    let shouted = Email::parse(&format!("{}@EXAMPLE.com", name.to_uppercase())).unwrap();
    let by_email = store
        .users
        .find_user_by_email(&shouted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email, created);

    let nobody = UserId::from_uuid(Uuid::now_v7());
    assert!(store.users.find_user_by_id(nobody).await.unwrap().is_none());
    let other = Username::parse(&unique("nobody")).unwrap();
    assert!(
        store
            .users
            .find_user_by_username(&other)
            .await
            .unwrap()
            .is_none()
    );
    let other = Email::parse("nobody@example.org").unwrap();
    assert!(
        store
            .users
            .find_user_by_email(&other)
            .await
            .unwrap()
            .is_none()
    );

    let roles = store.users.roles_of(new.id).await.unwrap();
    assert_eq!(
        roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        vec![default_role()]
    );
}

/// A second account with a taken username is refused, whatever the case it was typed in.
pub async fn username_is_unique(store: &StoreUnderTest) {
    let name = unique("bob");
    store
        .users
        .create_user(new_user(&name, &format!("{name}@a.example")))
        .await
        .unwrap();
    let again = new_user(&name.to_uppercase(), &format!("{name}@b.example"));
    let err = store.users.create_user(again.clone()).await.unwrap_err();
    assert!(matches!(err, CreateUserError::UsernameTaken), "{err:?}");
    assert!(
        store
            .users
            .find_user_by_id(again.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// A second account with a taken e-mail address, in any case, is refused.
pub async fn email_is_unique_case_insensitively(store: &StoreUnderTest) {
    let name = unique("carol");
    store
        .users
        .create_user(new_user(&name, &format!("{name}@example.com")))
        .await
        .unwrap();
    let again = new_user(
        &unique("carol2"),
        &format!("{}@EXAMPLE.COM", name.to_uppercase()),
    );
    let err = store.users.create_user(again.clone()).await.unwrap_err();
    assert!(matches!(err, CreateUserError::EmailTaken), "{err:?}");
    assert!(
        store
            .users
            .find_user_by_id(again.id)
            .await
            .unwrap()
            .is_none()
    );
}

const RACERS: usize = 16;

/// Of many concurrent inserts of one username, exactly one wins; the rest are told the name is
/// taken.
pub async fn concurrent_inserts_of_one_username_have_one_winner(store: &StoreUnderTest) {
    let name = unique("dave");
    let attempts = (0..RACERS).map(|i| {
        let users = Arc::clone(&store.users);
        let user = new_user(&name, &format!("{name}.{i}@example.com"));
        tokio::spawn(async move { users.create_user(user).await })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, CreateUserError::UsernameTaken), "{r:?}");
    }
}

/// Of many concurrent inserts of one e-mail address in different cases, exactly one wins.
pub async fn concurrent_inserts_of_one_email_have_one_winner(store: &StoreUnderTest) {
    let base = unique("erin");
    let attempts = (0..RACERS).map(|i| {
        let users = Arc::clone(&store.users);
        let local = if i % 2 == 0 {
            base.to_uppercase()
        } else {
            base.clone()
        };
        let user = new_user(&format!("{base}_{i}"), &format!("{local}@Example.com"));
        tokio::spawn(async move { users.create_user(user).await })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, CreateUserError::EmailTaken), "{r:?}");
    }
}

/// The password hash comes back exactly; an account without one has `None`.
pub async fn password_hash_is_stored_apart_and_optional(store: &StoreUnderTest) {
    let name = unique("frank");
    let with = new_user(&name, &format!("{name}@example.com"));
    store.users.create_user(with.clone()).await.unwrap();
    assert_eq!(
        store.users.password_hash(with.id).await.unwrap(),
        with.password_hash
    );

    let name = unique("grace");
    let mut without = new_user(&name, &format!("{name}@example.com"));
    without.password_hash = None;
    store.users.create_user(without.clone()).await.unwrap();
    assert_eq!(store.users.password_hash(without.id).await.unwrap(), None);
    let nobody = UserId::from_uuid(Uuid::now_v7());
    assert_eq!(store.users.password_hash(nobody).await.unwrap(), None);
}

/// Creating an account with a role that does not exist fails and leaves nothing behind.
pub async fn unknown_role_creates_nothing(store: &StoreUnderTest) {
    let name = unique("heidi");
    let mut user = new_user(&name, &format!("{name}@example.com"));
    user.roles.push(RoleName::parse("no-such-role").unwrap());
    let err = store.users.create_user(user.clone()).await.unwrap_err();
    assert!(
        matches!(err, CreateUserError::UnknownRole(ref r) if r.as_str() == "no-such-role"),
        "{err:?}"
    );
    assert!(
        store
            .users
            .find_user_by_id(user.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .users
            .find_user_by_username(&user.username)
            .await
            .unwrap()
            .is_none()
    );
}

/// The seeded built-in roles hold exactly the permissions the domain defines.
pub async fn builtin_roles_match_the_domain(store: &StoreUnderTest) {
    for expected in builtin_roles() {
        let stored = store.users.find_role(&expected.name).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&expected), "role {}", expected.name);
    }
    let missing = RoleName::parse("no-such-role").unwrap();
    assert!(store.users.find_role(&missing).await.unwrap().is_none());
    let mut expected = builtin_roles();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(store.users.list_roles().await.unwrap(), expected);
}

impl StoreUnderTest {
    async fn find_user(&self, id: UserId) -> Option<moments_domain::user::User> {
        self.users.find_user_by_id(id).await.unwrap()
    }
}

/// An event of `kind` about `user`.
fn targeted(kind: AuditKind, user: UserId) -> AuditEvent {
    AuditEvent {
        target: Some(user),
        ..event(kind)
    }
}

/// The ids of the events of `kind` that name `user`, newest first.
pub(crate) async fn events_about(
    store: &StoreUnderTest,
    user: UserId,
    kind: AuditKind,
) -> Vec<AuditEventId> {
    let filter = AuditFilter {
        user: Some(user),
        kind: Some(kind),
    };
    store
        .audit
        .list_audit_events(&filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn some_user(store: &StoreUnderTest) -> UserId {
    let name = unique("sam");
    let user = new_user(&name, &format!("{name}@example.com"));
    store.users.create_user(user.clone()).await.unwrap();
    user.id
}

/// A session comes back whole through its refresh token's digest.
pub async fn session_round_trips_and_is_found_by_digest(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let d = digest();
    let new = new_session(user, d.clone());
    store
        .sessions
        .create_session(new.clone(), &event(AuditKind::LoginSucceeded))
        .await
        .unwrap();

    let record = store
        .sessions
        .find_refresh_token(&d)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.id, new.refresh_token.id);
    assert_eq!(record.issued_at, new.refresh_token.issued_at);
    assert_eq!(record.expires_at, new.refresh_token.expires_at);
    assert_eq!(record.rotated_at, None);
    assert_eq!(record.session, new.session);
    assert_eq!(
        store.sessions.find_session(new.session.id).await.unwrap(),
        Some(new.session)
    );

    assert!(
        store
            .sessions
            .find_refresh_token(&digest())
            .await
            .unwrap()
            .is_none()
    );
    let unknown = SessionId::from_uuid(Uuid::now_v7());
    assert!(
        store
            .sessions
            .find_session(unknown)
            .await
            .unwrap()
            .is_none()
    );
}

/// Rotation marks the token rotated, stores the successor in the same session, records use,
/// and refuses a second rotation of the same token.
pub async fn rotation_retires_the_token_and_stores_the_successor(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let first = digest();
    let new = new_session(user, first.clone());
    store
        .sessions
        .create_session(new.clone(), &event(AuditKind::LoginSucceeded))
        .await
        .unwrap();

    let later = now() + TimeDelta::seconds(5);
    let second = digest();
    assert!(
        store
            .sessions
            .rotate_refresh_token(&first, refresh_token(second.clone()), later)
            .await
            .unwrap()
    );

    let old = store
        .sessions
        .find_refresh_token(&first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.rotated_at, Some(later));
    let successor = store
        .sessions
        .find_refresh_token(&second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(successor.rotated_at, None);
    assert_eq!(successor.session.id, new.session.id);
    assert_eq!(successor.session.last_used_at, later);

    let third = digest();
    assert!(
        !store
            .sessions
            .rotate_refresh_token(&first, refresh_token(third.clone()), later)
            .await
            .unwrap()
    );
    assert!(
        store
            .sessions
            .find_refresh_token(&third)
            .await
            .unwrap()
            .is_none(),
        "a refused rotation stores nothing"
    );
    assert!(
        !store
            .sessions
            .rotate_refresh_token(&digest(), refresh_token(digest()), later)
            .await
            .unwrap()
    );
}

/// Of many concurrent rotations of one token exactly one succeeds and one successor exists.
pub async fn concurrent_rotations_of_one_token_have_one_winner(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let first = digest();
    store
        .sessions
        .create_session(
            new_session(user, first.clone()),
            &event(AuditKind::LoginSucceeded),
        )
        .await
        .unwrap();
    let successors: Vec<_> = (0..RACERS).map(|_| digest()).collect();
    let attempts = successors.iter().cloned().map(|next| {
        let sessions = Arc::clone(&store.sessions);
        let first = first.clone();
        tokio::spawn(async move {
            sessions
                .rotate_refresh_token(&first, refresh_token(next), now())
                .await
        })
    });
    let results: Vec<bool> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|won| **won).count(), 1, "{results:?}");
    let mut stored = 0;
    for d in &successors {
        stored += usize::from(
            store
                .sessions
                .find_refresh_token(d)
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(stored, 1);
}

/// A revoked session is reported revoked, cannot be revoked twice, and its tokens do not rotate.
pub async fn revoked_sessions_do_not_rotate(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let d = digest();
    let new = new_session(user, d.clone());
    store
        .sessions
        .create_session(new.clone(), &event(AuditKind::LoginSucceeded))
        .await
        .unwrap();
    let at = now();
    assert!(
        store
            .sessions
            .revoke_session(new.session.id, at, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .sessions
            .revoke_session(new.session.id, at, None)
            .await
            .unwrap()
    );
    let record = store
        .sessions
        .find_refresh_token(&d)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.session.revoked_at, Some(at));
    assert!(
        !store
            .sessions
            .rotate_refresh_token(&d, refresh_token(digest()), at)
            .await
            .unwrap()
    );
    let unknown = SessionId::from_uuid(Uuid::now_v7());
    assert!(
        !store
            .sessions
            .revoke_session(unknown, at, None)
            .await
            .unwrap()
    );
}

/// Setting a password replaces the hash, or creates the credential of an account without one.
pub async fn password_hash_can_be_replaced(store: &StoreUnderTest) {
    let name = unique("lena");
    let mut user = new_user(&name, &format!("{name}@example.com"));
    user.password_hash = None;
    store.users.create_user(user.clone()).await.unwrap();
    let first = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$first");
    store
        .users
        .set_password_hash(user.id, &first, now())
        .await
        .unwrap();
    assert_eq!(
        store.users.password_hash(user.id).await.unwrap(),
        Some(first)
    );
    let second = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$second");
    store
        .users
        .set_password_hash(user.id, &second, now())
        .await
        .unwrap();
    assert_eq!(
        store.users.password_hash(user.id).await.unwrap(),
        Some(second)
    );
}

async fn sessions_of(store: &StoreUnderTest, user: UserId, n: usize) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let new = new_session(user, digest());
        ids.push(new.session.id);
        store
            .sessions
            .create_session(new, &event(AuditKind::LoginSucceeded))
            .await
            .unwrap();
    }
    ids
}

/// Revoking a user's sessions revokes all but the one kept, touches nobody else's, and
/// returns exactly the sessions it revoked.
pub async fn revoking_a_users_sessions_can_keep_one(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let other = some_user(store).await;
    let mine = sessions_of(store, user, 3).await;
    let theirs = sessions_of(store, other, 1).await;
    let at = now();
    let mut revoked = store
        .sessions
        .revoke_user_sessions(user, Some(mine[0]), at, &event(AuditKind::Logout))
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![mine[1], mine[2]];
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(
        store
            .sessions
            .find_session(mine[0])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .sessions
            .find_session(theirs[0])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .sessions
            .revoke_user_sessions(user, Some(mine[0]), at, &event(AuditKind::Logout))
            .await
            .unwrap()
            .is_empty()
    );
    let all = store
        .sessions
        .revoke_user_sessions(user, None, at, &event(AuditKind::Logout))
        .await
        .unwrap();
    assert_eq!(all, vec![mine[0]]);
}

/// The active sessions are the user's unrevoked, unexpired ones, most recently used first.
pub async fn active_sessions_are_live_and_most_recent_first(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let ids = sessions_of(store, user, 3).await;
    let mut expired = new_session(user, digest());
    expired.session.expires_at = now() - TimeDelta::seconds(1);
    store
        .sessions
        .create_session(expired, &event(AuditKind::LoginSucceeded))
        .await
        .unwrap();
    store
        .sessions
        .revoke_session(ids[2], now(), None)
        .await
        .unwrap();
    store
        .sessions
        .touch_session(ids[0], now() + TimeDelta::seconds(30))
        .await
        .unwrap();
    let active = store.sessions.active_sessions(user, now()).await.unwrap();
    let listed: Vec<SessionId> = active.iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![ids[0], ids[1]]);
    let nobody = UserId::from_uuid(Uuid::now_v7());
    assert!(
        store
            .sessions
            .active_sessions(nobody, now())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Revocations after a point are listed with their times; earlier ones are not.
pub async fn revocations_are_listed_since_a_point(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let ids = sessions_of(store, user, 3).await;
    let t0 = now();
    store
        .sessions
        .revoke_session(ids[0], t0, None)
        .await
        .unwrap();
    let t1 = t0 + TimeDelta::seconds(10);
    store
        .sessions
        .revoke_session(ids[1], t1, None)
        .await
        .unwrap();
    let listed = store.sessions.revoked_since(t0).await.unwrap();
    assert!(listed.contains(&(ids[1], t1)), "{listed:?}");
    assert!(
        !listed.iter().any(|(id, _)| *id == ids[0] || *id == ids[2]),
        "{listed:?}"
    );
    let later = store.sessions.revoked_since(t1).await.unwrap();
    assert!(!later.iter().any(|(id, _)| *id == ids[1]));
}

/// `touch_session` records use, and never moves last use backwards.
pub async fn touching_a_session_only_moves_forward(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let id = sessions_of(store, user, 1).await[0];
    let later = now() + TimeDelta::minutes(5);
    store.sessions.touch_session(id, later).await.unwrap();
    assert_eq!(
        store
            .sessions
            .find_session(id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        later
    );
    store
        .sessions
        .touch_session(id, later - TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .sessions
            .find_session(id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        later
    );
}

/// A batch of accounts is created whole or not at all.
pub async fn creating_several_users_is_all_or_nothing(store: &StoreUnderTest) {
    let (a, b) = (unique("batch_a"), unique("batch_b"));
    let first = new_user(&a, &format!("{a}@example.com"));
    let second = new_user(&b, &format!("{b}@example.com"));
    let clash = new_user(&a.to_uppercase(), &format!("{a}.other@example.com"));
    let err = store
        .users
        .create_users(vec![first.clone(), second.clone(), clash])
        .await
        .unwrap_err();
    assert!(matches!(err, CreateUserError::UsernameTaken), "{err:?}");
    for user in [&first, &second] {
        assert!(
            store
                .users
                .find_user_by_id(user.id)
                .await
                .unwrap()
                .is_none()
        );
    }
    let created = store
        .users
        .create_users(vec![first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        created.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
}

/// Assigning and removing roles is idempotent, reports unknown users and roles, and lists the
/// user among recent authorization changes.
pub async fn roles_are_assigned_and_removed_and_changes_listed(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let moderator = RoleName::parse("moderator").unwrap();
    let before = now() - TimeDelta::seconds(1);
    let at = now();
    assert_eq!(
        store
            .users
            .assign_role(user, &moderator, at, &event(AuditKind::RoleAssigned))
            .await
            .unwrap(),
        RoleChange::Changed
    );
    assert_eq!(
        store
            .users
            .assign_role(user, &moderator, at, &event(AuditKind::RoleAssigned))
            .await
            .unwrap(),
        RoleChange::Unchanged
    );
    let names: Vec<String> = store
        .users
        .roles_of(user)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["moderator", "user"]);
    let changed = store.users.authz_changed_since(before).await.unwrap();
    assert!(changed.contains(&(user, at)), "{changed:?}");
    assert!(
        !store
            .users
            .authz_changed_since(at)
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| *id == user)
    );

    let later = at + TimeDelta::seconds(1);
    assert_eq!(
        store
            .users
            .remove_role(user, &moderator, later, &event(AuditKind::RoleRemoved))
            .await
            .unwrap(),
        RoleChange::Changed
    );
    assert_eq!(
        store
            .users
            .remove_role(user, &moderator, later, &event(AuditKind::RoleRemoved))
            .await
            .unwrap(),
        RoleChange::Unchanged
    );
    assert_eq!(store.users.roles_of(user).await.unwrap().len(), 1);
    assert!(
        store
            .users
            .authz_changed_since(at)
            .await
            .unwrap()
            .contains(&(user, later))
    );

    let nobody = UserId::from_uuid(Uuid::now_v7());
    assert_eq!(
        store
            .users
            .assign_role(nobody, &moderator, at, &event(AuditKind::RoleAssigned))
            .await
            .unwrap(),
        RoleChange::UnknownUser
    );
    let ghost = RoleName::parse("ghost").unwrap();
    assert_eq!(
        store
            .users
            .assign_role(user, &ghost, at, &event(AuditKind::RoleAssigned))
            .await
            .unwrap(),
        RoleChange::UnknownRole
    );
    assert_eq!(
        store
            .users
            .remove_role(user, &ghost, at, &event(AuditKind::RoleRemoved))
            .await
            .unwrap(),
        RoleChange::UnknownRole
    );
}

/// Custom roles: created once, edited (a permission change is recorded for holders), deleted
/// (taken from holders, recorded).
pub async fn custom_roles_are_created_edited_and_deleted(store: &StoreUnderTest) {
    let name = RoleName::parse(&unique("editor").replace('_', "-")).unwrap();
    let write = Permission::parse("posts:write").unwrap();
    let moderate = Permission::parse("posts:moderate").unwrap();
    let role = Role {
        name: name.clone(),
        description: "Edits".into(),
        permissions: vec![write.clone()],
        builtin: false,
    };
    store
        .users
        .create_role(&role, now(), &event(AuditKind::RoleCreated))
        .await
        .unwrap();
    assert!(matches!(
        store
            .users
            .create_role(&role, now(), &event(AuditKind::RoleCreated))
            .await,
        Err(CreateRoleError::Exists)
    ));
    assert_eq!(
        store.users.find_role(&name).await.unwrap(),
        Some(role.clone())
    );

    let holder = some_user(store).await;
    store
        .users
        .assign_role(holder, &name, now(), &event(AuditKind::RoleAssigned))
        .await
        .unwrap();
    let t1 = now() + TimeDelta::seconds(5);
    let both = [moderate.clone(), write.clone()];
    let updated = store
        .users
        .update_role(
            &name,
            Some("Edits and moderates"),
            Some(&both),
            t1,
            &event(AuditKind::RoleUpdated),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.permissions, both);
    assert_eq!(updated.description, "Edits and moderates");
    assert!(
        store
            .users
            .authz_changed_since(t1 - TimeDelta::seconds(1))
            .await
            .unwrap()
            .contains(&(holder, t1))
    );
    let renamed = store
        .users
        .update_role(
            &name,
            Some("Only the text"),
            None,
            t1,
            &event(AuditKind::RoleUpdated),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        renamed.permissions, both,
        "a description change keeps the permissions"
    );
    let ghost = RoleName::parse("ghost-role").unwrap();
    assert!(
        store
            .users
            .update_role(&ghost, Some("x"), None, t1, &event(AuditKind::RoleUpdated))
            .await
            .unwrap()
            .is_none()
    );

    let t2 = t1 + TimeDelta::seconds(5);
    assert!(
        store
            .users
            .delete_role(&name, t2, &event(AuditKind::RoleDeleted))
            .await
            .unwrap()
    );
    assert!(
        !store
            .users
            .delete_role(&name, t2, &event(AuditKind::RoleDeleted))
            .await
            .unwrap()
    );
    assert!(store.users.find_role(&name).await.unwrap().is_none());
    let held: Vec<String> = store
        .users
        .roles_of(holder)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(held, ["user"]);
    assert!(
        store
            .users
            .authz_changed_since(t1)
            .await
            .unwrap()
            .contains(&(holder, t2))
    );
}

/// Disabling an account revokes its live sessions and keys and records the event, in one
/// transaction; re-enabling brings none of them back. Only that account changes.
pub async fn accounts_are_disabled_and_enabled(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let other = some_user(store).await;
    let sessions = sessions_of(store, user, 2).await;
    let others_sessions = sessions_of(store, other, 1).await;
    let key = new_api_key(user, &["posts:write"]);
    store
        .keys
        .create_api_key(&key, &event(AuditKind::ApiKeyCreated))
        .await
        .unwrap();
    let others_key = new_api_key(other, &[]);
    store
        .keys
        .create_api_key(&others_key, &event(AuditKind::ApiKeyCreated))
        .await
        .unwrap();
    let later = now() + TimeDelta::seconds(5);
    let disabling = targeted(AuditKind::UserDisabled, user);
    let (disabled, mut revoked) = store
        .users
        .set_disabled(user, true, later, &disabling)
        .await
        .unwrap()
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.updated_at, later);
    revoked.sort();
    assert_eq!(revoked, sessions);
    assert!(
        store
            .sessions
            .active_sessions(user, now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .sessions
            .active_sessions(other, now())
            .await
            .unwrap()
            .len(),
        1
    );
    let found = store
        .keys
        .find_api_key(&key.key.prefix)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.key.revoked_at, Some(later));
    assert!(found.owner_disabled);
    let others = store
        .keys
        .find_api_key(&others_key.key.prefix)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (others.key.revoked_at, others.owner_disabled),
        (None, false)
    );
    assert!(store.find_user(other).await.is_some_and(|u| !u.disabled));
    assert_eq!(
        events_about(store, user, AuditKind::UserDisabled).await,
        [disabling.id]
    );

    let enabling = targeted(AuditKind::UserEnabled, user);
    let (enabled, revoked) = store
        .users
        .set_disabled(user, false, later, &enabling)
        .await
        .unwrap()
        .unwrap();
    assert!(!enabled.disabled && revoked.is_empty());
    // Nothing comes back to life.
    assert!(
        store
            .sessions
            .active_sessions(user, now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.keys.list_api_keys(user).await.unwrap().is_empty());
    assert_eq!(
        events_about(store, user, AuditKind::UserEnabled).await,
        [enabling.id]
    );
    assert_eq!(others_sessions.len(), 1);

    let nobody = UserId::from_uuid(Uuid::now_v7());
    let ghost = targeted(AuditKind::UserDisabled, nobody);
    assert!(
        store
            .users
            .set_disabled(nobody, true, later, &ghost)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        events_about(store, nobody, AuditKind::UserDisabled)
            .await
            .is_empty()
    );
}

/// Listing by prefix matches usernames and e-mail keys literally (`_` is no wildcard), and
/// pages after a username join up without gaps or repeats.
pub async fn users_are_listed_by_literal_prefix_in_pages(store: &StoreUnderTest) {
    let p = unique("pre").replace('_', "");
    for name in [
        format!("{p}_b2"),
        format!("{p}_a1"),
        format!("{p}_c3"),
        format!("{p}xa"),
    ] {
        store
            .users
            .create_user(new_user(&name, &format!("{name}@example.com")))
            .await
            .unwrap();
    }
    let by_mail = unique("mail");
    store
        .users
        .create_user(new_user(&by_mail, &format!("{p}_mail@example.com")))
        .await
        .unwrap();

    let prefix = format!("{p}_");
    let all: Vec<String> = store
        .users
        .list_users(Some(&prefix), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|u| u.username.to_string())
        .collect();
    let mut expected = vec![
        format!("{p}_a1"),
        format!("{p}_b2"),
        format!("{p}_c3"),
        by_mail.clone(),
    ];
    expected.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(
        sorted, expected,
        "`_` matched literally; e-mail prefixes match too"
    );

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .users
            .list_users(Some(&prefix), after.as_deref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|u| u.username.to_string());
        paged.extend(page.into_iter().map(|u| u.username.to_string()));
    }
    assert_eq!(paged, all, "pages join up in the store's order");
    let everyone = store.users.list_users(None, None, 1000).await.unwrap();
    assert!(everyone.len() >= 5);
}

/// A key is found by its prefix in one look-up with its digest, its owner's state and the
/// owner's current permissions (the union of their roles, without duplicates), revoked or not.
pub async fn api_keys_are_found_by_prefix_with_the_owners_permissions(store: &StoreUnderTest) {
    let owner = some_user(store).await;
    let moderator = RoleName::parse("moderator").unwrap();
    store
        .users
        .assign_role(
            owner,
            &moderator,
            now(),
            &targeted(AuditKind::RoleAssigned, owner),
        )
        .await
        .unwrap();
    let mut key = new_api_key(owner, &["posts:moderate", "posts:write"]);
    key.key.expires_at = Some(now() + TimeDelta::days(30));
    let created = targeted(AuditKind::ApiKeyCreated, owner);
    store.keys.create_api_key(&key, &created).await.unwrap();

    let found = store
        .keys
        .find_api_key(&key.key.prefix)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.key, key.key);
    assert_eq!(found.digest, key.digest);
    assert!(!found.owner_disabled);
    let held: Vec<&str> = found
        .owner_permissions
        .iter()
        .map(Permission::as_str)
        .collect();
    // user (posts:write) + moderator (posts:write, posts:moderate, users:read), deduplicated.
    assert_eq!(held, ["posts:moderate", "posts:write", "users:read"]);
    assert!(
        store
            .keys
            .find_api_key("mk_000000000000")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        events_about(store, owner, AuditKind::ApiKeyCreated).await,
        [created.id]
    );

    // A second key with the same prefix is refused and records nothing.
    let mut twin = new_api_key(owner, &[]);
    twin.key.prefix = key.key.prefix.clone();
    let refused = targeted(AuditKind::ApiKeyCreated, owner);
    assert!(matches!(
        store.keys.create_api_key(&twin, &refused).await,
        Err(CreateApiKeyStoreError::PrefixTaken)
    ));
    assert_eq!(
        events_about(store, owner, AuditKind::ApiKeyCreated).await,
        [created.id]
    );

    // An owner without roles has no permissions, and the key is still found.
    let bare = some_user(store).await;
    for role in [default_role()] {
        store
            .users
            .remove_role(bare, &role, now(), &event(AuditKind::RoleRemoved))
            .await
            .unwrap();
    }
    let bare_key = new_api_key(bare, &["posts:write"]);
    store
        .keys
        .create_api_key(&bare_key, &event(AuditKind::ApiKeyCreated))
        .await
        .unwrap();
    let found = store
        .keys
        .find_api_key(&bare_key.key.prefix)
        .await
        .unwrap()
        .unwrap();
    assert!(found.owner_permissions.is_empty());
    assert_eq!(found.key.scopes, bare_key.key.scopes);
}

/// Owners list their live keys newest first; only the owner revokes a key, once, and the
/// revocation is recorded with it.
pub async fn api_keys_are_listed_and_revoked_by_their_owner_only(store: &StoreUnderTest) {
    let owner = some_user(store).await;
    let stranger = some_user(store).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let key = new_api_key(owner, &["posts:write"]);
        ids.push(key.key.id);
        store
            .keys
            .create_api_key(&key, &event(AuditKind::ApiKeyCreated))
            .await
            .unwrap();
    }
    let listed: Vec<_> = store
        .keys
        .list_api_keys(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, ids.iter().rev().copied().collect::<Vec<_>>());
    assert!(store.keys.list_api_keys(stranger).await.unwrap().is_empty());

    let at = now();
    let by_stranger = targeted(AuditKind::ApiKeyRevoked, stranger);
    assert!(
        !store
            .keys
            .revoke_api_key(ids[0], stranger, at, &by_stranger)
            .await
            .unwrap()
    );
    assert!(
        events_about(store, stranger, AuditKind::ApiKeyRevoked)
            .await
            .is_empty()
    );
    let revoking = targeted(AuditKind::ApiKeyRevoked, owner);
    assert!(
        store
            .keys
            .revoke_api_key(ids[0], owner, at, &revoking)
            .await
            .unwrap()
    );
    let again = targeted(AuditKind::ApiKeyRevoked, owner);
    assert!(
        !store
            .keys
            .revoke_api_key(ids[0], owner, at, &again)
            .await
            .unwrap()
    );
    assert_eq!(
        events_about(store, owner, AuditKind::ApiKeyRevoked).await,
        [revoking.id]
    );
    let listed: Vec<_> = store
        .keys
        .list_api_keys(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, [ids[2], ids[1]]);
}

/// A key's last use is written only when none is recorded at or after `not_before`.
pub async fn touching_a_key_writes_at_most_once_per_interval(store: &StoreUnderTest) {
    let owner = some_user(store).await;
    let key = new_api_key(owner, &[]);
    store
        .keys
        .create_api_key(&key, &event(AuditKind::ApiKeyCreated))
        .await
        .unwrap();
    let last_used = async || {
        store
            .keys
            .find_api_key(&key.key.prefix)
            .await
            .unwrap()
            .unwrap()
            .key
            .last_used_at
    };
    let t0 = now();
    store
        .keys
        .touch_api_key(key.key.id, t0, t0 - TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(t0));
    let t1 = t0 + TimeDelta::seconds(30);
    store
        .keys
        .touch_api_key(key.key.id, t1, t1 - TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(t0), "written twice within a minute");
    let t2 = t0 + TimeDelta::seconds(61);
    store
        .keys
        .touch_api_key(key.key.id, t2, t2 - TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(t2));
}

/// More than 10 000 events page newest first, with no gap or repeat, and the filters by user
/// (as actor or as target) and by type hold on every page.
pub async fn audit_events_page_newest_first_past_ten_thousand(store: &StoreUnderTest) {
    let alice = some_user(store).await;
    let bob = some_user(store).await;
    let kinds = [
        AuditKind::LoginFailed,
        AuditKind::RoleAssigned,
        AuditKind::Logout,
    ];
    let events: Vec<AuditEvent> = (0..10_050)
        .map(|i| {
            let (actor, target) = match i % 3 {
                0 => (Some(alice), Some(bob)),
                1 => (Some(bob), Some(bob)),
                _ => (None, Some(alice)),
            };
            AuditEvent {
                actor,
                target,
                details: serde_json::json!({ "n": i }).as_object().cloned().unwrap(),
                ..event(kinds[i % 3])
            }
        })
        .collect();
    store.audit.record_audit_events(&events).await.unwrap();

    let page_through = async |filter: AuditFilter| {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .audit
                .list_audit_events(&filter, before, 100)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            seen.extend(page);
        }
        seen
    };
    let all = page_through(AuditFilter::default()).await;
    assert_eq!(all.len(), 10_050);
    assert!(
        all.windows(2).all(|w| w[0].id > w[1].id),
        "not newest first"
    );
    assert_eq!(all[0], events[10_049]);
    assert_eq!(all[10_049], events[0]);

    let about_alice = page_through(AuditFilter {
        user: Some(alice),
        kind: None,
    })
    .await;
    // Alice acts in i % 3 == 0 and is the target in i % 3 == 2.
    assert_eq!(about_alice.len(), 3350 + 3350);
    assert!(
        about_alice
            .iter()
            .all(|e| e.actor == Some(alice) || e.target == Some(alice))
    );

    let bob_logouts = page_through(AuditFilter {
        user: Some(bob),
        kind: Some(AuditKind::Logout),
    })
    .await;
    assert!(bob_logouts.is_empty());
    let failures = page_through(AuditFilter {
        user: None,
        kind: Some(AuditKind::LoginFailed),
    })
    .await;
    assert_eq!(failures.len(), 3350);
    assert!(failures.iter().all(|e| e.kind == AuditKind::LoginFailed));
}

/// Each audited change writes its event with it; a change that does not happen (unknown
/// session, unknown role, existing role name) writes none.
pub async fn events_are_written_only_with_their_changes(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let kinds_about = async || {
        let filter = AuditFilter {
            user: Some(user),
            kind: None,
        };
        let mut kinds: Vec<&str> = store
            .audit
            .list_audit_events(&filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind.as_str())
            .collect();
        kinds.reverse();
        kinds
    };
    let session = new_session(user, digest());
    store
        .sessions
        .create_session(session.clone(), &targeted(AuditKind::LoginSucceeded, user))
        .await
        .unwrap();
    let at = now();
    let revoke = targeted(AuditKind::SessionRevoked, user);
    assert!(
        store
            .sessions
            .revoke_session(session.session.id, at, Some(&revoke))
            .await
            .unwrap()
    );
    let again = targeted(AuditKind::SessionRevoked, user);
    assert!(
        !store
            .sessions
            .revoke_session(session.session.id, at, Some(&again))
            .await
            .unwrap()
    );
    let ghost = SessionId::from_uuid(Uuid::now_v7());
    assert!(
        !store
            .sessions
            .revoke_session(ghost, at, Some(&again))
            .await
            .unwrap()
    );

    let kept = sessions_of(store, user, 2).await;
    let hash = PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$changed");
    let revoked = store
        .users
        .change_password(
            user,
            &hash,
            Some(kept[0]),
            at,
            &targeted(AuditKind::PasswordChanged, user),
        )
        .await
        .unwrap();
    assert_eq!(revoked, [kept[1]]);
    assert_eq!(store.users.password_hash(user).await.unwrap(), Some(hash));
    store
        .sessions
        .revoke_user_sessions(user, None, at, &targeted(AuditKind::Logout, user))
        .await
        .unwrap();

    let ghost_role = RoleName::parse("no-such-role").unwrap();
    let refused = targeted(AuditKind::RoleAssigned, user);
    assert_eq!(
        store
            .users
            .assign_role(user, &ghost_role, at, &refused)
            .await
            .unwrap(),
        RoleChange::UnknownRole
    );
    // Already held: no change, no event.
    assert_eq!(
        store
            .users
            .assign_role(user, &default_role(), at, &refused)
            .await
            .unwrap(),
        RoleChange::Unchanged
    );
    let builtin = builtin_roles().remove(0);
    let taken = AuditEvent {
        actor: Some(user),
        ..event(AuditKind::RoleCreated)
    };
    assert!(matches!(
        store.users.create_role(&builtin, at, &taken).await,
        Err(CreateRoleError::Exists)
    ));
    let deleting = AuditEvent {
        actor: Some(user),
        ..event(AuditKind::RoleDeleted)
    };
    assert!(
        !store
            .users
            .delete_role(&ghost_role, at, &deleting)
            .await
            .unwrap()
    );
    let updating = AuditEvent {
        actor: Some(user),
        ..event(AuditKind::RoleUpdated)
    };
    assert!(
        store
            .users
            .update_role(&ghost_role, Some("x"), None, at, &updating)
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(
        kinds_about().await,
        [
            "login.succeeded",
            "session.revoked",
            // sessions_of records its sign-ins without naming the user.
            "password.changed",
            "logout",
        ]
    );
}

/// The event and its change are one transaction: when the event cannot be written (here, an
/// id already used), the change does not happen either.
pub async fn a_change_whose_event_cannot_be_written_does_not_happen(store: &StoreUnderTest) {
    let user = some_user(store).await;
    let taken = event(AuditKind::LoginFailed);
    store
        .audit
        .record_audit_events(std::slice::from_ref(&taken))
        .await
        .unwrap();
    let clash = |kind| AuditEvent {
        kind,
        ..taken.clone()
    };

    let session = new_session(user, digest());
    let id = session.session.id;
    assert!(
        store
            .sessions
            .create_session(session, &clash(AuditKind::LoginSucceeded))
            .await
            .is_err()
    );
    assert!(store.sessions.find_session(id).await.unwrap().is_none());

    let moderator = RoleName::parse("moderator").unwrap();
    assert!(
        store
            .users
            .assign_role(user, &moderator, now(), &clash(AuditKind::RoleAssigned))
            .await
            .is_err()
    );
    let held = store.users.roles_of(user).await.unwrap();
    assert!(held.iter().all(|r| r.name != moderator));

    assert!(
        store
            .users
            .set_disabled(user, true, now(), &clash(AuditKind::UserDisabled))
            .await
            .is_err()
    );
    assert!(store.find_user(user).await.is_some_and(|u| !u.disabled));

    let role = Role {
        name: RoleName::parse(&unique("atomic").replace('_', "-")).unwrap(),
        description: "never".into(),
        permissions: vec![],
        builtin: false,
    };
    assert!(
        store
            .users
            .create_role(&role, now(), &clash(AuditKind::RoleCreated))
            .await
            .is_err()
    );
    assert!(store.users.find_role(&role.name).await.unwrap().is_none());

    let key = new_api_key(user, &[]);
    assert!(
        store
            .keys
            .create_api_key(&key, &clash(AuditKind::ApiKeyCreated))
            .await
            .is_err()
    );
    assert!(
        store
            .keys
            .find_api_key(&key.key.prefix)
            .await
            .unwrap()
            .is_none()
    );

    let hash = PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$never");
    assert!(
        store
            .users
            .change_password(user, &hash, None, now(), &clash(AuditKind::PasswordChanged))
            .await
            .is_err()
    );
    assert_ne!(store.users.password_hash(user).await.unwrap(), Some(hash));

    let all = store
        .audit
        .list_audit_events(&AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.iter().filter(|e| e.id == taken.id).count(), 1);
}

/// A profile change sets or clears the display name and moves the e-mail address (its own in
/// another case too), refuses an address another account has, and records its event only when
/// it happens.
pub async fn profiles_change_with_unique_addresses(store: &StoreUnderTest) {
    let name = unique("prof");
    let created = store
        .users
        .create_user(new_user(&name, &format!("{name}@example.com")))
        .await
        .unwrap();
    let other = unique("prof");
    store
        .users
        .create_user(new_user(&other, &format!("{other}@example.com")))
        .await
        .unwrap();
    let later = now() + TimeDelta::seconds(3);
    let change = ProfileChange {
        display_name: Some(Some(DisplayName::parse(" Pat ").unwrap())),
        email: Some(Email::parse(&format!("{}@Example.COM", name.to_uppercase())).unwrap()),
    };
    let first = targeted(AuditKind::ProfileUpdated, created.id);
    let updated = store
        .users
        .update_profile(created.id, &change, later, &first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.display_name.as_deref(), Some("Pat"));
    assert_eq!(updated.email, change.email.clone());
    assert_eq!(updated.updated_at, later);
    assert_eq!(
        store
            .users
            .find_user_by_email(created.email.as_ref().unwrap())
            .await
            .unwrap()
            .map(|u| u.id),
        Some(created.id),
        "still found by the address in any case"
    );

    let taken = ProfileChange {
        display_name: Some(None),
        email: Some(Email::parse(&format!("{other}@example.com")).unwrap()),
    };
    let refused = targeted(AuditKind::ProfileUpdated, created.id);
    assert!(matches!(
        store
            .users
            .update_profile(created.id, &taken, later, &refused)
            .await,
        Err(UpdateProfileStoreError::EmailTaken)
    ));
    let unchanged = store.find_user(created.id).await.unwrap();
    assert_eq!(
        unchanged.display_name.as_deref(),
        Some("Pat"),
        "nothing half-applied"
    );

    let clear = ProfileChange {
        display_name: Some(None),
        email: None,
    };
    let second = targeted(AuditKind::ProfileUpdated, created.id);
    let cleared = store
        .users
        .update_profile(created.id, &clear, later, &second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.display_name, None);
    assert_eq!(
        events_about(store, created.id, AuditKind::ProfileUpdated).await,
        [second.id, first.id]
    );
    let nobody = UserId::from_uuid(Uuid::now_v7());
    let ghost = targeted(AuditKind::ProfileUpdated, nobody);
    assert!(
        store
            .users
            .update_profile(nobody, &clear, later, &ghost)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        events_about(store, nobody, AuditKind::ProfileUpdated)
            .await
            .is_empty()
    );
}
