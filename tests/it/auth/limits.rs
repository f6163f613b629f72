//! Rate limits: failed log-ins per (client address, email), on one replica and across two
//! sharing Redis, over REST and gRPC; failed refreshes per address; the per-tenant request quota.

use std::time::Duration;

use serde_json::json;
use switchyard_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::{Reply, assert_error, call, create_tenant, with_room_in_the_window};
use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, client_with, login};

/// How long the log-in tests need at most within one rate-limit window.
const LOGIN_TEST_TIME: Duration = Duration::from_secs(20);

async fn log_in(s: &Server, email: &str, password: &str) -> Reply {
    call(
        s.anon
            .post(s.url("/auth/session"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

/// Asserts a 429 `rate_limited` with a `Retry-After` of whole seconds within the window.
#[track_caller]
fn assert_rate_limited(r: &Reply, what: &str) {
    assert_error(r, 429, "rate_limited", what);
    let retry = r.header("retry-after").unwrap_or_else(|| {
        panic!("{what}: no Retry-After; headers {:?}", r.headers);
    });
    let seconds: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry:?} is not whole seconds"));
    assert!((1..=60).contains(&seconds), "{what}: Retry-After {seconds}");
}

async fn fail_log_ins(s: &Server, email: &str, times: usize) {
    for i in 1..=times {
        let r = log_in(s, email, "not-the-password").await;
        assert_error(&r, 401, "unauthenticated", &format!("failed log-in {i}"));
    }
}

#[tokio::test]
async fn the_eleventh_failed_log_in_is_refused_over_rest_and_grpc() {
    let s = Server::start(Db::Sqlite, &[]).await;
    with_room_in_the_window(LOGIN_TEST_TIME).await;
    fail_log_ins(&s, ADMIN_EMAIL, 10).await;
    let r = log_in(&s, ADMIN_EMAIL, "not-the-password").await;
    assert_rate_limited(&r, "the 11th failed log-in");
    let r = log_in(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_rate_limited(&r, "the right password after 10 failures");
    // The email's case does not buy another allowance.
    let r = log_in(&s, &ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    assert_rate_limited(&r, "the same email in upper case");
    // Another email has its own allowance.
    let r = log_in(&s, "someone@it.test", "not-the-password").await;
    assert_error(&r, 401, "unauthenticated", "another email");

    // gRPC shares the limiter: the blocked email is blocked there too...
    let mut auth = pb::auth_service_client::AuthServiceClient::new(super::channel(&s).await);
    let login = |email: &str, password: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    };
    let err = auth
        .login(login(ADMIN_EMAIL, ADMIN_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // ...and another email counts its own failures there.
    for i in 1..=11 {
        let err = auth
            .login(login("grpc@it.test", "not-the-password"))
            .await
            .unwrap_err();
        let expected = if i <= 10 {
            Code::Unauthenticated
        } else {
            Code::ResourceExhausted
        };
        assert_eq!(err.code(), expected, "gRPC failure {i}: {err:?}");
        if i <= 10 {
            continue;
        }
        let retry = err.get_details_retry_info().expect("RetryInfo details");
        let delay = retry.retry_delay.expect("a retry delay");
        assert!(
            delay >= Duration::from_secs(1) && delay <= Duration::from_secs(60),
            "{delay:?}"
        );
    }
}

async fn refresh_with(s: &Server, refresh_token: &str) -> Reply {
    call(
        s.anon
            .post(s.url("/auth/refresh"))
            .json(&json!({ "refresh_token": refresh_token })),
    )
    .await
}

#[tokio::test]
async fn the_eleventh_failed_refresh_from_one_address_is_refused() {
    let s = Server::start(Db::Sqlite, &[]).await;
    with_room_in_the_window(LOGIN_TEST_TIME).await;
    let (_, good) = super::session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for i in 1..=10 {
        let r = refresh_with(&s, &format!("syr_guess{i}")).await;
        assert_error(&r, 401, "unauthenticated", &format!("failed refresh {i}"));
    }
    let r = refresh_with(&s, &good).await;
    assert_rate_limited(
        &r,
        "a good refresh token after 10 failures from this address",
    );
    // Log-ins keep their own allowance.
    login(&s.anon, s.http, ADMIN_EMAIL, ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn failed_log_ins_count_across_replicas_sharing_redis() {
    // Counting falls back to each replica's memory while Redis is not connected yet:
    // `replicas` waits for both to be ready.
    let (a, b) = Server::replicas(&[]).await;
    with_room_in_the_window(LOGIN_TEST_TIME).await;
    fail_log_ins(&a, ADMIN_EMAIL, 5).await;
    fail_log_ins(&b, ADMIN_EMAIL, 5).await;
    let r = log_in(&a, ADMIN_EMAIL, "not-the-password").await;
    assert_rate_limited(&r, "the 11th failure, on replica A");
    let r = log_in(&b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_rate_limited(&r, "the right password, on replica B");
}

#[tokio::test]
async fn the_tenant_quota_refuses_the_request_after_it() {
    let s = Server::start(
        Db::Sqlite,
        &[("SWITCHYARD_TENANT_REQUESTS_PER_MINUTE", "20")],
    )
    .await;
    with_room_in_the_window(LOGIN_TEST_TIME).await;
    // Public routes do not count: log-ins and probes, many times over the quota.
    for _ in 0..25 {
        let r = call(s.anon.get(s.url("/health"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for _ in 0..3 {
        login(&s.anon, s.http, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    }
    // Twenty authenticated requests of tenant `default`: two to set up another tenant...
    create_tenant(&s, "acme").await;
    let r = call(s.client.post(s.url("/api/admin/users")).json(&json!({
        "email": "ops@acme.test", "password": super::USER_PASSWORD, "role": "operator",
        "tenant": "acme"
    })))
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // ...and eighteen reads.
    for i in 3..=20 {
        let r = call(s.client.get(s.url("/api/queue/jobs"))).await;
        assert_eq!(r.status, 200, "request {i} of 20: {}", r.body);
    }
    let r = call(s.client.get(s.url("/api/queue/jobs"))).await;
    assert_rate_limited(&r, "request 21");
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_admin().await);
    let err = q.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Other tenants have their own quota.
    let (acme, _) = super::session(&s, "ops@acme.test", super::USER_PASSWORD).await;
    let r = call(client_with(&acme).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "another tenant: {}", r.body);
}
