//! Refresh tokens (PostgreSQL): rotated on every use; a rotated token presented again revokes
//! its whole family; log-out revokes; concurrent refreshes within the grace both succeed.

use serde_json::json;

use super::{Reply, assert_error, call, refresh, session};
use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, client_with};

/// The (access, refresh) pair of a successful refresh.
#[track_caller]
fn pair(r: &Reply, what: &str) -> (String, String) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    let data = &r.body["data"];
    (
        data["access_token"].as_str().unwrap().to_owned(),
        data["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn assert_token_works(s: &Server, access: &str, what: &str) {
    let r = call(client_with(access).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "{what}: {}", r.body);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = Server::start(
        Db::Postgres,
        &[("SWITCHYARD_REFRESH_REUSE_GRACE_SECONDS", "0")],
    )
    .await;
    let (access1, refresh1) = session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (access2, refresh2) = pair(&refresh(&s, &refresh1).await, "first refresh");
    assert_ne!(refresh2, refresh1, "the refresh token is rotated");
    assert_ne!(access2, access1, "a new access token");
    assert_token_works(&s, &access2, "the refreshed access token").await;

    // A second log-in is another family, unaffected by what happens to the first.
    let (_, other) = session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // The rotated token again: refused, and the whole family with it.
    assert_error(
        &refresh(&s, &refresh1).await,
        401,
        "unauthenticated",
        "a rotated token reused",
    );
    assert_error(
        &refresh(&s, &refresh2).await,
        401,
        "unauthenticated",
        "the newest token of a revoked family",
    );
    let (_, other2) = pair(&refresh(&s, &other).await, "another family");

    // Log-out revokes its log-in, idempotently; other log-ins keep working.
    let (_, third) = session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for round in ["log-out", "log-out again"] {
        let r = call(
            s.anon
                .post(s.url("/auth/logout"))
                .json(&json!({"refresh_token": third})),
        )
        .await;
        assert_eq!(r.status, 200, "{round}: {}", r.body);
    }
    assert_error(
        &refresh(&s, &third).await,
        401,
        "unauthenticated",
        "refresh after log-out",
    );
    pair(
        &refresh(&s, &other2).await,
        "a log-in that was not logged out",
    );
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_both_succeed() {
    let s = Server::start(Db::Postgres, &[]).await;
    let (_, refresh_token) = session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (a, b) = tokio::join!(refresh(&s, &refresh_token), refresh(&s, &refresh_token));
    let (access_a, refresh_a) = pair(&a, "first of two concurrent refreshes");
    let (access_b, refresh_b) = pair(&b, "second of two concurrent refreshes");
    assert_ne!(refresh_a, refresh_b);
    assert_token_works(&s, &access_a, "first new access token").await;
    assert_token_works(&s, &access_b, "second new access token").await;
    // Still within the grace: a third presentation (a retried request) rotates too.
    pair(
        &refresh(&s, &refresh_token).await,
        "a retry within the grace",
    );
    pair(
        &refresh(&s, &refresh_a).await,
        "the first new refresh token",
    );
    pair(
        &refresh(&s, &refresh_b).await,
        "the second new refresh token",
    );
}
