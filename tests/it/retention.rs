//! Per-tenant artifact retention end to end: a tenant's policy, set over REST (admin only,
//! validated) and read over gRPC, expires that tenant's stored artifacts at the next sweep and
//! no one else's; clearing it restores the installation's default.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;

use crate::ingest::{content, form, server, upload_rest};
use crate::support::{Server, client_with, eventually, send};

/// `GET /api/ingest/retention` as `client`: its data.
async fn retention(s: &Server, client: &reqwest::Client) -> Value {
    let (status, body, _) = send(client.get(s.url("/api/ingest/retention"))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// `PUT /api/ingest/retention` as the administrator: (status, body).
async fn set_retention(s: &Server, seconds: Value) -> (u16, Value) {
    let (status, body, _) = send(
        s.client
            .put(s.url("/api/ingest/retention"))
            .json(&json!({ "retention_seconds": seconds })),
    )
    .await;
    (status, body)
}

/// The state of artifact `id` as `client` sees it.
async fn artifact_state(s: &Server, client: &reqwest::Client, id: &str) -> String {
    let (status, body, _) = send(client.get(s.url(&format!("/api/ingest/artifacts/{id}")))).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["state"].as_str().unwrap().to_owned()
}

/// Uploads one small file as `client`; the artifact's id.
async fn upload_as(s: &Server, client: &reqwest::Client) -> String {
    let (status, body, _) = send(
        client
            .post(s.url("/api/ingest"))
            .multipart(form("{}", &[("kept.bin", content(1024, 7))])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["artifacts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_tenants_policy_expires_its_artifacts_and_no_one_elses() {
    let (s, _dir) = server(&[("SWITCHYARD_ARTIFACT_SWEEP_SECONDS", "1")]).await;
    crate::auth::create_tenant(&s, "keeper").await;
    let keeper =
        client_with(&crate::auth::user_token(&s, "keeper", "k@ret.example", "admin").await);
    let theirs = upload_as(&s, &keeper).await;
    let (status, body) = upload_rest(&s, form("{}", &[("mine.bin", content(1024, 3))])).await;
    assert_eq!(status, 201, "{body}");
    let mine = body["data"]["artifacts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let default = retention(&s, &s.client).await;
    assert_eq!(default["source"], "default", "{default}");
    assert_eq!(default["retention_seconds"], 30 * 86_400);

    // Bad values are refused, and only admins may set a policy.
    for bad in [json!(0), json!(315_360_001_u64), json!("a day")] {
        let (status, body) = set_retention(&s, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let reader = crate::ws::api_key(&s, &["jobs:read", "ingest:write"]).await;
    let (status, body, _) = send(
        client_with(&reader)
            .put(s.url("/api/ingest/retention"))
            .json(&json!({"retention_seconds": 1})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        retention(&s, &client_with(&reader)).await["source"],
        "default"
    );

    // One second: the stored artifact is older than that, so the next sweep expires it.
    let (status, body) = set_retention(&s, json!(1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"retention_seconds": 1, "source": "tenant", "redated_artifacts": 1})
    );
    eventually(
        &format!("artifact {mine} expired"),
        Duration::from_secs(15),
        async || {
            let state = artifact_state(&s, &s.client, &mine).await;
            if state == "EXPIRED" {
                Ok(())
            } else {
                Err(state)
            }
        },
    )
    .await;
    let (status, body, _) = send(
        s.client
            .get(s.url(&format!("/api/ingest/artifacts/{mine}/content"))),
    )
    .await;
    assert_eq!(status, 409, "expired content is gone: {body}");
    assert_eq!(artifact_state(&s, &keeper, &theirs).await, "STORED");

    // gRPC reads the same policy; clearing it restores the default.
    let mut grpc = IngestServiceClient::new(s.grpc_admin().await);
    let read = grpc
        .get_retention(pb::GetRetentionRequest {})
        .await
        .expect("GetRetention")
        .into_inner()
        .retention
        .expect("a retention");
    assert_eq!((read.retention_seconds, read.tenant_policy), (1, true));
    let cleared = grpc
        .set_retention(pb::SetRetentionRequest {
            retention_seconds: None,
        })
        .await
        .expect("SetRetention")
        .into_inner()
        .retention
        .expect("a retention");
    assert_eq!(
        (cleared.retention_seconds, cleared.tenant_policy),
        (30 * 86_400, false)
    );
    let refused = grpc
        .set_retention(pb::SetRetentionRequest {
            retention_seconds: Some(0),
        })
        .await
        .expect_err("zero is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(retention(&s, &keeper).await["source"], "default");
}
