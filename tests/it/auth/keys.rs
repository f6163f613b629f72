//! API keys: shown once, listed without the secret, scoped, unique by live name, and dead the
//! moment they are revoked.

use serde_json::json;
use switchyard_proto::v1 as pb;
use tonic::Code;

use super::{assert_error, call, create_key};
use crate::support::{Db, Server, client_with};

#[tokio::test]
async fn an_api_key_works_until_revoked_and_is_never_shown_again() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let (key, id) = create_key(&s, &s.client, "ci-main", &["jobs:read", "jobs:write"]).await;
    // `sya_<id, 32 hex digits>_<secret>`.
    let secret = key.get(37..).unwrap_or_default().to_owned();
    assert!(key.starts_with("sya_") && secret.len() >= 40, "{key}");
    let ci = client_with(&key);
    let r = call(ci.get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        ci.post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "p", "kind": "k"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        s.anon
            .post(s.url("/auth/validate"))
            .json(&json!({"token": key})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["data"]["kind"].as_str()),
        (200, Some("API_KEY")),
        "{}",
        r.body
    );

    let r = call(s.client.get(s.url("/auth/api-keys"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("key {id} not listed: {}", r.body))
        .clone();
    assert_eq!(
        (&listed["name"], &listed["scopes"], &listed["revoked_at"]),
        (
            &json!("ci-main"),
            &json!(["jobs:read", "jobs:write"]),
            &json!(null)
        ),
        "{listed}"
    );
    let text = r.body.to_string();
    assert!(
        !text.contains(&key) && !text.contains(&secret),
        "the list shows the key: {text}"
    );

    let r = call(s.client.delete(s.url(&format!("/auth/api-keys/{id}")))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["data"]["revoked_at"].is_string(), "{}", r.body);
    let r = call(ci.get(s.url("/api/queue/jobs"))).await;
    assert_error(&r, 401, "unauthenticated", "a revoked key");
    assert!(!r.body.to_string().contains(&secret), "{}", r.body);
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(&key).await);
    let err = q.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "a revoked key over gRPC: {err:?}"
    );
    let r = call(
        s.anon
            .post(s.url("/auth/validate"))
            .json(&json!({"token": key})),
    )
    .await;
    assert_error(&r, 401, "unauthenticated", "validating a revoked key");
    let r = call(s.client.delete(s.url(&format!("/auth/api-keys/{id}")))).await;
    assert_eq!(r.status, 200, "revoking twice is harmless: {}", r.body);

    // A key whose secret part is altered is not the key.
    let mut forged = key.clone();
    forged.replace_range(
        key.len() - 2..,
        if key.ends_with("AA") { "BA" } else { "AA" },
    );
    let r = call(client_with(&forged).get(s.url("/api/queue/jobs"))).await;
    assert_error(&r, 401, "unauthenticated", "a key with another secret");
}

#[tokio::test]
async fn api_keys_hold_only_their_scopes_and_live_names_are_unique() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let (reader, _) = create_key(&s, &s.client, "reader", &["jobs:read"]).await;
    let ro = client_with(&reader);
    let r = call(ro.get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        ro.post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "p", "kind": "k"})),
    )
    .await;
    assert_error(&r, 403, "permission_denied", "enqueue with a jobs:read key");
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(&reader).await);
    let err = q
        .enqueue(pb::EnqueueRequest {
            jobs: vec![pb::EnqueueJob {
                pool: "p".into(),
                kind: "k".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let r = call(ro.get(s.url("/auth/api-keys"))).await;
    assert_error(&r, 403, "permission_denied", "a jobs:read key listing keys");

    let r = call(
        s.client
            .post(s.url("/auth/api-keys"))
            .json(&json!({"name": "reader", "scopes": ["jobs:write"]})),
    )
    .await;
    assert_error(&r, 409, "already_exists", "a second live key named reader");
    let r = call(
        s.client
            .post(s.url("/auth/api-keys"))
            .json(&json!({"name": "writer", "scopes": ["jobs:fly"]})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (400, Some("scopes")),
        "an unknown scope: {}",
        r.body
    );
}
