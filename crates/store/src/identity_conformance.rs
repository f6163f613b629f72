//! The conformance suite every [`IdentityStore`] adapter must pass. Each check takes a fresh,
//! migrated store (which holds only the seeded `default` tenant);
//! [`identity_conformance_suite!`](crate::identity_conformance_suite) turns the list into one
//! `#[tokio::test]` per check for an adapter's factory. [`concurrent_presentations_rotate_once`]
//! needs an `Arc` and a multi-threaded runtime, so adapters run it on their own.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_types::{
    ApiKeyId, ErrorKind, NewApiKey, NewRefreshToken, NewUser, Role, Rotation, Scope, ScopeSet,
    TenantId, User,
};
use uuid::Uuid;

use crate::IdentityStore;

/// Generates one test per identity conformance check, each on a store from `$make` (an async fn
/// returning `Arc<dyn IdentityStore>` or a `Box`).
#[macro_export]
macro_rules! identity_conformance_suite {
    ($make:path) => {
        $crate::identity_conformance_suite!(@each $make,
            tenants_are_created_listed_and_unique, users_are_unique_by_email_and_tenant_scoped,
            roles_are_per_tenant, refresh_tokens_rotate_within_their_family,
            a_second_presentation_within_grace_rotates_again,
            a_replay_after_grace_revokes_the_family, expired_tokens_are_invalid_and_change_nothing,
            logout_revokes_the_family, api_keys_are_named_revoked_and_tenant_scoped);
    };
    (@each $make:path, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let store = $make().await;
                $crate::identity_conformance::$check(&*store).await;
            }
        )+
    };
}

/// A tenant id (panics when invalid).
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

/// A user of `tenant_name` (which must exist) with a fake password hash and the `developer` role.
pub fn new_user(tenant_name: &str, email: &str) -> NewUser {
    NewUser {
        tenant: tenant(tenant_name),
        email: email.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$fake${email}"),
        role: "developer".to_owned(),
    }
}

/// A refresh token whose digest is 32 times `byte`, for `user`, valid for an hour.
pub fn refresh_token(byte: u8, family: Uuid, user: &User) -> NewRefreshToken {
    NewRefreshToken {
        hash: [byte; 32],
        family,
        user: user.id,
        tenant: user.tenant.clone(),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    }
}

/// An API key of `tenant_name` called `name` granting `jobs:read` and `jobs:write`.
pub fn new_api_key(tenant_name: &str, name: &str) -> NewApiKey {
    let id = Uuid::new_v4();
    let mut secret_hash = [0; 32];
    secret_hash[..16].copy_from_slice(id.as_bytes());
    secret_hash[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    NewApiKey {
        id,
        tenant: tenant(tenant_name),
        name: name.to_owned(),
        scopes: ScopeSet::of(&[Scope::JobsRead, Scope::JobsWrite]),
        created_by: "user:test".to_owned(),
        expires_at: None,
        secret_hash,
    }
}

/// Creates tenant `tenant_name` (when missing) and a user in it.
async fn user_in(store: &dyn IdentityStore, tenant_name: &str, email: &str) -> User {
    let id = tenant(tenant_name);
    if store.tenant(&id).await.is_err() {
        store.create_tenant(&id, tenant_name).await.unwrap();
    }
    store
        .create_user(new_user(tenant_name, email))
        .await
        .unwrap()
}

async fn rotate(store: &dyn IdentityStore, presented: u8, next: &NewRefreshToken) -> Rotation {
    rotate_with(store, presented, next, Duration::from_secs(60)).await
}

async fn rotate_with(
    store: &dyn IdentityStore,
    presented: u8,
    next: &NewRefreshToken,
    grace: Duration,
) -> Rotation {
    store
        .rotate_refresh_token(&[presented; 32], next, grace)
        .await
        .expect("rotate")
}

fn rotated(user: &User) -> Rotation {
    Rotation::Rotated {
        user: user.id,
        tenant: user.tenant.clone(),
    }
}

/// A tenant is created, read back and listed (by id, after the seeded `default`); its id is
/// unique; an absent one is `NotFound`.
pub async fn tenants_are_created_listed_and_unique(store: &dyn IdentityStore) {
    let seeded = store.tenant(&TenantId::default_tenant()).await.unwrap();
    assert_eq!(seeded.name, "Default");
    let acme = store.create_tenant(&tenant("acme"), "Acme").await.unwrap();
    assert_eq!((acme.id.as_str(), acme.name.as_str()), ("acme", "Acme"));
    assert!((Utc::now() - acme.created_at).num_seconds().abs() < 60);
    assert_eq!(store.tenant(&tenant("acme")).await.unwrap(), acme);
    let again = store.create_tenant(&tenant("acme"), "Other").await;
    assert_eq!(again.unwrap_err().kind, ErrorKind::AlreadyExists);
    assert_eq!(store.tenant(&tenant("acme")).await.unwrap().name, "Acme");
    store.create_tenant(&tenant("beta"), "Beta").await.unwrap();
    let ids: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["acme", "beta", "default"]);
    let missing = store.tenant(&tenant("nobody")).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
}

/// Emails are unique across tenants; a user needs an existing tenant; log-in finds the user and
/// its hash by email; reads, lists and password changes are scoped by tenant.
pub async fn users_are_unique_by_email_and_tenant_scoped(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    assert_eq!(ada.tenant, tenant("acme"));
    assert_eq!(
        (ada.email.as_str(), ada.role.as_str()),
        ("ada@example.com", "developer")
    );
    assert!(!ada.disabled);
    let zed = user_in(store, "acme", "zed@example.com").await;
    let bob = user_in(store, "beta", "bob@example.com").await;
    assert!(ada.id != zed.id && zed.id != bob.id);

    let dup = store
        .create_user(new_user("beta", "ada@example.com"))
        .await
        .unwrap_err();
    assert_eq!(dup.kind, ErrorKind::AlreadyExists, "{dup}");
    let orphan = store
        .create_user(new_user("nowhere", "eve@example.com"))
        .await
        .unwrap_err();
    assert_eq!(orphan.kind, ErrorKind::NotFound, "{orphan}");
    assert!(
        store
            .user_by_email("eve@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let creds = store
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .expect("found by email");
    assert_eq!(creds.user, ada);
    assert_eq!(
        creds.password_hash,
        new_user("acme", "ada@example.com").password_hash
    );
    assert!(
        store
            .user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let acme = tenant("acme");
    let beta = tenant("beta");
    assert_eq!(store.user(&acme, ada.id).await.unwrap(), ada);
    let foreign = store.user(&beta, ada.id).await.unwrap_err();
    assert_eq!(foreign.kind, ErrorKind::NotFound);
    let unknown = store.user(&acme, Uuid::new_v4()).await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);

    let listed = store.list_users(&acme).await.unwrap();
    assert_eq!(listed, [ada.clone(), zed], "acme's users, by email");
    assert_eq!(store.list_users(&beta).await.unwrap(), [bob]);

    let hijack = store.set_password(&beta, ada.id, "$argon2id$evil").await;
    assert_eq!(hijack.unwrap_err().kind, ErrorKind::NotFound);
    let missing = store
        .set_password(&acme, Uuid::new_v4(), "$argon2id$x")
        .await;
    assert_eq!(missing.unwrap_err().kind, ErrorKind::NotFound);
    let hash = async || {
        store
            .user_by_email("ada@example.com")
            .await
            .unwrap()
            .unwrap()
            .password_hash
    };
    assert_eq!(hash().await, creds.password_hash, "unchanged");
    store
        .set_password(&acme, ada.id, "$argon2id$new")
        .await
        .unwrap();
    assert_eq!(hash().await, "$argon2id$new");
}

/// Custom roles are defined, redefined, read and listed per tenant; another tenant sees none of
/// them; a missing tenant is `NotFound`.
pub async fn roles_are_per_tenant(store: &dyn IdentityStore) {
    let acme = tenant("acme");
    let beta = tenant("beta");
    store.create_tenant(&acme, "Acme").await.unwrap();
    store.create_tenant(&beta, "Beta").await.unwrap();
    let role = |name: &str, scopes: &[Scope]| Role {
        name: name.to_owned(),
        scopes: ScopeSet::of(scopes),
        builtin: false,
    };
    let releaser = role(
        "releaser",
        &[Scope::DeploymentsRead, Scope::DeploymentsPromote],
    );
    assert_eq!(store.put_role(&acme, &releaser).await.unwrap(), releaser);
    let auditor = role("auditor", &[]);
    store.put_role(&acme, &auditor).await.unwrap();
    assert_eq!(store.role(&acme, "releaser").await.unwrap(), Some(releaser));
    assert_eq!(
        store.role(&acme, "auditor").await.unwrap(),
        Some(auditor.clone())
    );
    assert_eq!(store.role(&acme, "nobody").await.unwrap(), None);

    let redefined = role("releaser", &[Scope::JobsRead, Scope::Admin]);
    store.put_role(&acme, &redefined).await.unwrap();
    assert_eq!(
        store.role(&acme, "releaser").await.unwrap(),
        Some(redefined.clone())
    );
    assert_eq!(
        store.list_roles(&acme).await.unwrap(),
        [auditor, redefined],
        "by name"
    );

    assert_eq!(store.role(&beta, "releaser").await.unwrap(), None);
    assert!(store.list_roles(&beta).await.unwrap().is_empty());
    let theirs = role("releaser", &[Scope::JobsRead]);
    store.put_role(&beta, &theirs).await.unwrap();
    assert_eq!(store.role(&beta, "releaser").await.unwrap(), Some(theirs));
    assert_eq!(
        store.role(&acme, "releaser").await.unwrap().unwrap().scopes,
        ScopeSet::of(&[Scope::JobsRead, Scope::Admin]),
        "acme's role untouched"
    );

    let orphan = store
        .put_role(&tenant("nowhere"), &role("x", &[Scope::JobsRead]))
        .await
        .unwrap_err();
    assert_eq!(orphan.kind, ErrorKind::NotFound, "{orphan}");
}

/// A stored token rotates once to the next, which rotates in turn; the answer names the user and
/// tenant; an unknown token is `Invalid`.
pub async fn refresh_tokens_rotate_within_their_family(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(1, family, &ada))
        .await
        .unwrap();
    assert_eq!(
        rotate(store, 1, &refresh_token(2, family, &ada)).await,
        rotated(&ada)
    );
    // `next.family` is ignored: the new token joins the presented one's family.
    let elsewhere = refresh_token(3, Uuid::new_v4(), &ada);
    assert_eq!(rotate(store, 2, &elsewhere).await, rotated(&ada));
    assert!(store.revoke_refresh_family(&[3; 32]).await.unwrap());
    assert_eq!(
        rotate(store, 1, &refresh_token(4, family, &ada)).await,
        Rotation::Invalid,
        "token 3 was in token 1's family, now revoked"
    );
    assert_eq!(
        rotate(store, 99, &refresh_token(5, family, &ada)).await,
        Rotation::Invalid,
        "unknown"
    );
    assert_eq!(
        rotate(store, 5, &refresh_token(6, family, &ada)).await,
        Rotation::Invalid,
        "an Invalid answer stores nothing"
    );
}

/// Presenting a token again within the grace period (a concurrent refresh) rotates again into
/// the same family, and both successors work.
pub async fn a_second_presentation_within_grace_rotates_again(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(1, family, &ada))
        .await
        .unwrap();
    let next = |b| refresh_token(b, family, &ada);
    assert_eq!(rotate(store, 1, &next(2)).await, rotated(&ada));
    assert_eq!(
        rotate(store, 1, &next(3)).await,
        rotated(&ada),
        "within grace"
    );
    assert_eq!(rotate(store, 2, &next(4)).await, rotated(&ada));
    assert_eq!(rotate(store, 3, &next(5)).await, rotated(&ada));
    assert_eq!(rotate(store, 5, &next(6)).await, rotated(&ada));
    // The family is whole: a logout through its newest token revokes it.
    assert!(store.revoke_refresh_family(&[6; 32]).await.unwrap());
    assert_eq!(rotate(store, 4, &next(7)).await, Rotation::Invalid);
}

/// Presenting a rotated token after the grace period is a replay: the whole family is revoked,
/// its newest token included, and the offered successor is not stored.
pub async fn a_replay_after_grace_revokes_the_family(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(1, family, &ada))
        .await
        .unwrap();
    let next = |b| refresh_token(b, family, &ada);
    let none = Duration::ZERO;
    assert_eq!(rotate_with(store, 1, &next(2), none).await, rotated(&ada));
    assert_eq!(rotate_with(store, 2, &next(3), none).await, rotated(&ada));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        rotate_with(store, 1, &next(4), none).await,
        Rotation::Reused
    );
    assert_eq!(
        rotate(store, 3, &next(5)).await,
        Rotation::Invalid,
        "the newest token died with its family"
    );
    assert_eq!(
        rotate(store, 4, &next(6)).await,
        Rotation::Invalid,
        "not stored"
    );
    assert_eq!(
        rotate_with(store, 1, &next(7), none).await,
        Rotation::Invalid,
        "a revoked family answers Invalid from then on"
    );
    assert!(!store.revoke_refresh_family(&[3; 32]).await.unwrap());

    // Another family of the same user is not affected.
    let other = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(10, other, &ada))
        .await
        .unwrap();
    assert_eq!(
        rotate(store, 10, &refresh_token(11, other, &ada)).await,
        rotated(&ada)
    );
}

/// An expired token is `Invalid` and changes nothing: its family stays live and the offered
/// successor is not stored.
pub async fn expired_tokens_are_invalid_and_change_nothing(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    let mut old = refresh_token(1, family, &ada);
    old.expires_at = Utc::now() - chrono::Duration::seconds(1);
    store.insert_refresh_token(&old).await.unwrap();
    let next = |b| refresh_token(b, family, &ada);
    assert_eq!(rotate(store, 1, &next(2)).await, Rotation::Invalid);
    assert_eq!(
        rotate(store, 2, &next(3)).await,
        Rotation::Invalid,
        "not stored"
    );
    assert!(
        store.revoke_refresh_family(&[1; 32]).await.unwrap(),
        "the family was still live"
    );
}

/// Log-out revokes the family of the presented token once; its tokens are `Invalid` after.
pub async fn logout_revokes_the_family(store: &dyn IdentityStore) {
    let ada = user_in(store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(1, family, &ada))
        .await
        .unwrap();
    assert_eq!(
        rotate(store, 1, &refresh_token(2, family, &ada)).await,
        rotated(&ada)
    );
    // Through the rotated (older) token: the family is the same.
    assert!(store.revoke_refresh_family(&[1; 32]).await.unwrap());
    assert!(
        !store.revoke_refresh_family(&[1; 32]).await.unwrap(),
        "already revoked"
    );
    assert!(
        !store.revoke_refresh_family(&[99; 32]).await.unwrap(),
        "unknown"
    );
    assert_eq!(
        rotate(store, 2, &refresh_token(3, family, &ada)).await,
        Rotation::Invalid
    );
}

/// Live key names are unique per tenant and free again once revoked; look-up by id returns the
/// digest and revocation, in any tenant; lists are newest first and tenant-scoped; revoking is
/// idempotent and another tenant's key is `NotFound`.
pub async fn api_keys_are_named_revoked_and_tenant_scoped(store: &dyn IdentityStore) {
    let acme = tenant("acme");
    let beta = tenant("beta");
    store.create_tenant(&acme, "Acme").await.unwrap();
    store.create_tenant(&beta, "Beta").await.unwrap();

    let mut spec = new_api_key("acme", "ci");
    let expires: DateTime<Utc> =
        DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).expect("an instant");
    spec.expires_at = Some(expires);
    let ci = store.create_api_key(spec.clone()).await.unwrap();
    assert_eq!(
        (ci.id, &ci.tenant, ci.name.as_str()),
        (spec.id, &acme, "ci")
    );
    assert_eq!(ci.scopes, spec.scopes);
    assert_eq!(ci.created_by, "user:test");
    assert_eq!((ci.expires_at, ci.revoked_at), (Some(expires), None));
    assert!(ci.is_live(Utc::now()));

    let dup = store
        .create_api_key(new_api_key("acme", "ci"))
        .await
        .unwrap_err();
    assert_eq!(dup.kind, ErrorKind::AlreadyExists, "{dup}");
    let orphan = store
        .create_api_key(new_api_key("nowhere", "ci"))
        .await
        .unwrap_err();
    assert_eq!(orphan.kind, ErrorKind::NotFound, "{orphan}");
    // Names are per tenant.
    let theirs = store
        .create_api_key(new_api_key("beta", "ci"))
        .await
        .unwrap();

    let creds = store.api_key(ci.id).await.unwrap().expect("found by id");
    assert_eq!(creds.key, ci);
    assert_eq!(creds.secret_hash, spec.secret_hash);
    assert!(store.api_key(ApiKeyId::new_v4()).await.unwrap().is_none());

    let foreign = store.revoke_api_key(&beta, ci.id).await.unwrap_err();
    assert_eq!(foreign.kind, ErrorKind::NotFound);
    let unknown = store.revoke_api_key(&acme, ApiKeyId::new_v4()).await;
    assert_eq!(unknown.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        store.api_key(ci.id).await.unwrap().unwrap().key,
        ci,
        "unchanged"
    );

    let revoked = store.revoke_api_key(&acme, ci.id).await.unwrap();
    let at = revoked.revoked_at.expect("revoked");
    assert!((Utc::now() - at).num_seconds().abs() < 60);
    assert!(!revoked.is_live(Utc::now()));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store.revoke_api_key(&acme, ci.id).await.unwrap(),
        revoked,
        "idempotent"
    );
    let creds = store.api_key(ci.id).await.unwrap().unwrap();
    assert_eq!(creds.key.revoked_at, Some(at));
    assert_eq!(creds.secret_hash, spec.secret_hash);

    let ci2 = store
        .create_api_key(new_api_key("acme", "ci"))
        .await
        .unwrap();
    let deploy = store
        .create_api_key(new_api_key("acme", "deploy"))
        .await
        .unwrap();
    let ids: Vec<_> = store
        .list_api_keys(&acme)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        ids,
        [deploy.id, ci2.id, ci.id],
        "newest first, revoked included"
    );
    assert_eq!(store.list_api_keys(&beta).await.unwrap(), [theirs]);
    assert!(
        store
            .list_api_keys(&tenant("nowhere"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Eight presentations of one token at once with no grace: exactly one rotates, the first one
/// after it is a replay that revokes the family, and the rest find the family revoked
/// (`Invalid`). No successor survives.
pub async fn concurrent_presentations_rotate_once(store: Arc<dyn IdentityStore>) {
    const TASKS: u8 = 8;
    let ada = user_in(&*store, "acme", "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert_refresh_token(&refresh_token(1, family, &ada))
        .await
        .unwrap();
    // Warm up: a pooled adapter opens a connection per task now, so the race below is not
    // serialised by connection set-up.
    let warm = (0..TASKS).map(|_| store.tenant(&ada.tenant));
    for found in futures::future::join_all(warm).await {
        found.unwrap();
    }
    let start = Arc::new(tokio::sync::Barrier::new(usize::from(TASKS)));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, start) = (store.clone(), start.clone());
        let next = refresh_token(10 + i, family, &ada);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store
                .rotate_refresh_token(&[1; 32], &next, Duration::ZERO)
                .await
        }));
    }
    let (mut ok, mut reused, mut invalid) = (0, 0, 0);
    for task in tasks {
        match task.await.expect("task").expect("rotate") {
            Rotation::Rotated { user, tenant } => {
                assert_eq!((user, tenant), (ada.id, ada.tenant.clone()));
                ok += 1;
            }
            Rotation::Reused => reused += 1,
            Rotation::Invalid => invalid += 1,
        }
    }
    assert_eq!(
        (ok, reused, invalid),
        (1, 1, usize::from(TASKS) - 2),
        "one rotation, one replay, the rest after the revocation"
    );
    for i in 0..TASKS {
        assert_eq!(
            rotate(&*store, 10 + i, &refresh_token(50 + i, family, &ada)).await,
            Rotation::Invalid
        );
    }
}
