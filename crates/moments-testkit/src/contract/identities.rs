//! The identity-provider part of the store contract.

use chrono::TimeDelta;
use futures_util::future::join_all;
use moments_domain::audit::{AuditEvent, AuditKind};
use moments_domain::ids::UserId;
use moments_domain::oauth::{Identity, LinkOutcome, ProviderName, UnlinkOutcome};
use moments_domain::ports::CreateUserError;
use moments_domain::user::NewUser;

use super::{StoreUnderTest, events_about, unique};
use crate::builders::{event, new_user, now};

fn provider(name: &str) -> ProviderName {
    ProviderName::parse(name).unwrap()
}

fn identity(provider_name: &str, subject: &str, user: UserId) -> Identity {
    Identity {
        provider: provider(provider_name),
        subject: subject.to_owned(),
        user_id: user,
        email: Some(format!("{subject}@provider.example")),
        created_at: now(),
        last_used_at: now(),
    }
}

/// A provider-made account: no password, no e-mail address.
fn provider_user(name: &str) -> NewUser {
    NewUser {
        email: None,
        password_hash: None,
        ..new_user(name, &format!("{name}@unused.example"))
    }
}

fn linked_event(user: UserId) -> AuditEvent {
    AuditEvent {
        actor: Some(user),
        target: Some(user),
        ..event(AuditKind::OAuthLinked)
    }
}

fn unlinked_event(user: UserId) -> AuditEvent {
    AuditEvent {
        actor: Some(user),
        target: Some(user),
        ..event(AuditKind::OAuthUnlinked)
    }
}

/// An account created with its identity has it linked, with its event; it may have no e-mail
/// address, and several such accounts coexist. The same identity cannot create a second account.
pub async fn accounts_are_created_with_their_identity(store: &StoreUnderTest) {
    let name = unique("oidc");
    let new = provider_user(&name);
    let id = new.id;
    let subject = unique("sub");
    let link = identity("google", &subject, id);
    let created = store
        .identities
        .create_user_with_identity(new, &link, &linked_event(id))
        .await
        .unwrap();
    assert_eq!(created.email, None);
    assert_eq!(
        store.users.find_user_by_id(id).await.unwrap(),
        Some(created)
    );
    assert_eq!(store.users.password_hash(id).await.unwrap(), None);
    let found = store
        .identities
        .find_identity(&provider("google"), &subject)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, link);
    assert_eq!(
        store.identities.identities_of(id).await.unwrap(),
        vec![link.clone()]
    );
    assert_eq!(
        events_about(store, id, AuditKind::OAuthLinked).await.len(),
        1
    );

    // A second address-less account is fine (no e-mail uniqueness between absent addresses).
    let other = unique("x");
    let other_user = provider_user(&other);
    let other_id = other_user.id;
    store
        .identities
        .create_user_with_identity(
            other_user,
            &identity("x", &unique("sub"), other_id),
            &linked_event(other_id),
        )
        .await
        .unwrap();

    // The same identity again: refused, and no account or event is left behind.
    let again = provider_user(&unique("dup"));
    let again_id = again.id;
    let username = again.username.clone();
    let refused = store
        .identities
        .create_user_with_identity(
            again,
            &identity("google", &subject, again_id),
            &linked_event(again_id),
        )
        .await;
    assert!(
        matches!(refused, Err(CreateUserError::IdentityTaken)),
        "{refused:?}"
    );
    assert_eq!(
        store.users.find_user_by_username(&username).await.unwrap(),
        None
    );
    assert!(
        events_about(store, again_id, AuditKind::OAuthLinked)
            .await
            .is_empty()
    );

    // An unknown identity is not found.
    assert_eq!(
        store
            .identities
            .find_identity(&provider("google"), "nobody")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .identities
            .identities_of(UserId::from_uuid(uuid::Uuid::now_v7()))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Of concurrent creations for one new identity, exactly one creates an account.
pub async fn concurrent_creations_of_one_identity_have_one_winner(store: &StoreUnderTest) {
    let subject = unique("sub");
    let attempts = (0..8).map(|_| {
        let new = provider_user(&unique("race"));
        let id = new.id;
        let link = identity("github", &subject, id);
        async move {
            store
                .identities
                .create_user_with_identity(new, &link, &linked_event(id))
                .await
        }
    });
    let results = join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Err(CreateUserError::IdentityTaken)))
        .count();
    assert_eq!((won, taken), (1, 7), "{results:?}");
}

/// An identity links to one account, an account to one identity per provider; only a link that
/// happens records its event.
pub async fn links_are_unique_per_identity_and_per_provider(store: &StoreUnderTest) {
    let alice = store.any_user().await;
    let bob = store.any_user().await;
    let subject = unique("sub");
    let link = identity("github", &subject, alice);
    assert_eq!(
        store
            .identities
            .link_identity(&link, &linked_event(alice))
            .await
            .unwrap(),
        LinkOutcome::Linked
    );
    assert_eq!(
        store
            .identities
            .link_identity(&link, &linked_event(alice))
            .await
            .unwrap(),
        LinkOutcome::AlreadyLinked
    );
    assert_eq!(
        store
            .identities
            .link_identity(&identity("github", &subject, bob), &linked_event(bob))
            .await
            .unwrap(),
        LinkOutcome::TakenByOther
    );
    assert_eq!(
        store
            .identities
            .link_identity(
                &identity("github", &unique("sub"), alice),
                &linked_event(alice)
            )
            .await
            .unwrap(),
        LinkOutcome::ProviderLinked
    );
    assert_eq!(
        store
            .identities
            .link_identity(
                &identity("google", &unique("sub"), alice),
                &linked_event(alice)
            )
            .await
            .unwrap(),
        LinkOutcome::Linked
    );
    let providers: Vec<String> = store
        .identities
        .identities_of(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.provider.as_str().to_owned())
        .collect();
    assert_eq!(providers, ["github", "google"]);
    assert!(
        store
            .identities
            .identities_of(bob)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        events_about(store, alice, AuditKind::OAuthLinked)
            .await
            .len(),
        2
    );
    assert!(
        events_about(store, bob, AuditKind::OAuthLinked)
            .await
            .is_empty()
    );
}

/// Unlinking removes a provider unless it is the account's last way to sign in.
pub async fn unlinking_keeps_a_way_to_sign_in(store: &StoreUnderTest) {
    // No password, two providers: one may go, the last may not.
    let id = store.password_less_with("google", "x").await;
    let unlink = |p: &'static str| {
        let event = unlinked_event(id);
        async move {
            store
                .identities
                .unlink_identity(id, &provider(p), &event)
                .await
                .unwrap()
        }
    };
    assert_eq!(unlink("github").await, UnlinkOutcome::NotLinked);
    assert_eq!(unlink("google").await, UnlinkOutcome::Unlinked);
    assert_eq!(unlink("x").await, UnlinkOutcome::LastMethod);
    assert_eq!(unlink("google").await, UnlinkOutcome::NotLinked);
    assert_eq!(store.identities.identities_of(id).await.unwrap().len(), 1);
    assert_eq!(
        events_about(store, id, AuditKind::OAuthUnlinked)
            .await
            .len(),
        1
    );

    // With a password, the only provider may go.
    let with_password = store.any_user().await;
    store
        .identities
        .link_identity(
            &identity("google", &unique("sub"), with_password),
            &linked_event(with_password),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .identities
            .unlink_identity(
                with_password,
                &provider("google"),
                &unlinked_event(with_password)
            )
            .await
            .unwrap(),
        UnlinkOutcome::Unlinked
    );
}

/// Two concurrent unlinks of a password-less account's two providers: one succeeds, the other
/// finds it would be the last way in.
pub async fn concurrent_unlinks_leave_a_way_to_sign_in(store: &StoreUnderTest) {
    for _ in 0..5 {
        let id = store.password_less_with("google", "github").await;
        let outcomes = join_all(["google", "github"].map(|p| {
            let event = unlinked_event(id);
            async move {
                store
                    .identities
                    .unlink_identity(id, &provider(p), &event)
                    .await
                    .unwrap()
            }
        }))
        .await;
        let unlinked = outcomes
            .iter()
            .filter(|o| **o == UnlinkOutcome::Unlinked)
            .count();
        assert_eq!(unlinked, 1, "{outcomes:?}");
        assert!(
            outcomes.contains(&UnlinkOutcome::LastMethod),
            "{outcomes:?}"
        );
        assert_eq!(store.identities.identities_of(id).await.unwrap().len(), 1);
    }
}

/// A sign-in notes the identity's last use and the address the provider gave.
pub async fn touching_an_identity_notes_its_use(store: &StoreUnderTest) {
    let user = store.any_user().await;
    let subject = unique("sub");
    store
        .identities
        .link_identity(&identity("google", &subject, user), &linked_event(user))
        .await
        .unwrap();
    let later = now() + TimeDelta::seconds(5);
    store
        .identities
        .touch_identity(
            &provider("google"),
            &subject,
            Some("new@provider.example"),
            later,
        )
        .await
        .unwrap();
    let found = store
        .identities
        .find_identity(&provider("google"), &subject)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.email.as_deref(), Some("new@provider.example"));
    assert_eq!(found.last_used_at, later);
    assert!(found.created_at < later, "the link's creation time stays");
}

impl StoreUnderTest {
    /// An account made through `first` with `second` linked too: no password.
    async fn password_less_with(&self, first: &str, second: &str) -> UserId {
        let new = provider_user(&unique("solo"));
        let id = new.id;
        self.identities
            .create_user_with_identity(new, &identity(first, &unique("sub"), id), &linked_event(id))
            .await
            .unwrap();
        self.identities
            .link_identity(&identity(second, &unique("sub"), id), &linked_event(id))
            .await
            .unwrap();
        id
    }

    async fn any_user(&self) -> UserId {
        let name = unique("link");
        self.users
            .create_user(new_user(&name, &format!("{name}@example.com")))
            .await
            .unwrap()
            .id
    }
}
