//! The identity conformance suite on both adapters: SQLite in memory, PostgreSQL in a fresh
//! database per test; plus concurrent refreshes of one token on each.

use std::sync::Arc;

use switchyard_store::IdentityStore;
use switchyard_store::identity_conformance::concurrent_presentations_rotate_once;

mod sqlite {
    use super::*;

    async fn make() -> Arc<dyn IdentityStore> {
        Arc::new(
            switchyard_store::sqlite::SqliteStore::connect("sqlite::memory:", true)
                .await
                .unwrap(),
        )
    }

    switchyard_store::identity_conformance_suite!(make);

    /// The one connection serialises the presentations; the outcome must be the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_presentations_of_one_token_rotate_once() {
        concurrent_presentations_rotate_once(make().await).await;
    }
}

mod postgres {
    use std::time::Duration;

    use switchyard_store::identity_conformance::{refresh_token, tenant};
    use switchyard_store::postgres::PgStore;
    use switchyard_types::{NewUser, Rotation};
    use uuid::Uuid;

    use super::*;

    async fn store() -> Arc<PgStore> {
        let url = switchyard_testkit::postgres_database().await;
        Arc::new(PgStore::connect(&url, true).await.unwrap())
    }

    async fn make() -> Arc<dyn IdentityStore> {
        store().await
    }

    switchyard_store::identity_conformance_suite!(make);

    /// `SELECT … FOR UPDATE` serialises racing presentations across connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_presentations_of_one_token_rotate_once() {
        for _ in 0..3 {
            concurrent_presentations_rotate_once(make().await).await;
        }
    }

    /// No API disables users yet: set the flag in SQL and check a refresh is refused, and
    /// changes nothing (the token works again once the user is enabled).
    #[tokio::test]
    async fn a_disabled_users_refresh_token_is_invalid() {
        let store = store().await;
        let user = store
            .create_user(NewUser {
                tenant: tenant("default"),
                email: "off@example.com".into(),
                password_hash: "$argon2id$x".into(),
                role: "viewer".into(),
            })
            .await
            .unwrap();
        let family = Uuid::new_v4();
        store
            .insert_refresh_token(&refresh_token(1, family, &user))
            .await
            .unwrap();
        let set_disabled = |disabled: bool| {
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(user.id)
                .execute(store.pool())
        };
        set_disabled(true).await.unwrap();
        let grace = Duration::from_secs(60);
        let next = refresh_token(2, family, &user);
        let r = store.rotate_refresh_token(&[1; 32], &next, grace).await;
        assert_eq!(r.unwrap(), Rotation::Invalid);
        set_disabled(false).await.unwrap();
        let r = store.rotate_refresh_token(&[1; 32], &next, grace).await;
        assert!(matches!(r.unwrap(), Rotation::Rotated { .. }));
    }
}
