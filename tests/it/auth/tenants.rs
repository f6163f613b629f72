//! Tenant isolation (PostgreSQL): another tenant's objects answer 404 / NOT_FOUND, never 403,
//! to reads, changes and lists alike, and are left unchanged.

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use super::{assert_error, call, create_key, create_tenant, user_token};
use crate::support::{Db, Server, client_with, eventually};

/// The ids in a list answer's `data`.
fn ids(body: &Value) -> Vec<&str> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .filter_map(|item| item["id"].as_str())
        .collect()
}

#[tokio::test]
async fn another_tenants_jobs_are_not_found() {
    let s = Server::start(Db::Postgres, &[]).await;
    create_tenant(&s, "acme").await;
    create_tenant(&s, "globex").await;
    let acme = client_with(&user_token(&s, "acme", "ops@acme.test", "operator").await);
    let globex_token = user_token(&s, "globex", "ops@globex.test", "operator").await;
    let globex = client_with(&globex_token);

    // acme: one job claimed (attempt 1), one queued.
    let r = call(acme.post(s.url("/api/queue/jobs")).json(&json!({
        "jobs": [{"pool": "build", "kind": "shell"}, {"pool": "build", "kind": "shell"}]
    })))
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        acme.post(s.url("/api/queue/claim"))
            .json(&json!({"agent_id": "acme-1", "pool": "build", "max_jobs": 1})),
    )
    .await;
    let claimed = r.body["data"][0]["id"].as_str().unwrap().to_owned();
    let r = call(acme.get(s.url("/api/queue/jobs"))).await;
    let queued = ids(&r.body)
        .into_iter()
        .find(|id| *id != claimed)
        .expect("the queued job")
        .to_owned();

    // globex: every read and change of either job is 404, as if it did not exist. Each change
    // would succeed for acme (the claimed job is at attempt 1).
    let job = |id: &str, tail: &str| s.url(&format!("/api/queue/jobs/{id}{tail}"));
    let cases = [
        ("get", globex.get(job(&claimed, ""))),
        (
            "start",
            globex
                .patch(job(&claimed, "/start"))
                .json(&json!({"attempt": 1})),
        ),
        (
            "extend",
            globex
                .patch(job(&claimed, "/extend"))
                .json(&json!({"attempt": 1})),
        ),
        (
            "complete",
            globex
                .patch(job(&claimed, "/complete"))
                .json(&json!({"attempt": 1, "succeeded": true})),
        ),
        (
            "priority",
            globex
                .patch(job(&queued, "/priority"))
                .json(&json!({"priority": "HIGH"})),
        ),
        ("retry", globex.post(job(&queued, "/retry"))),
        ("cancel", globex.delete(job(&queued, ""))),
    ];
    for (what, req) in cases {
        assert_error(&call(req).await, 404, "not_found", what);
    }
    let r = call(globex.get(s.url("/api/queue/jobs"))).await;
    assert_eq!((r.status, &r.body["data"]), (200, &json!([])), "{}", r.body);
    let r = call(globex.get(s.url("/api/queue/stats"))).await;
    assert_eq!((r.status, &r.body["data"]), (200, &json!([])), "{}", r.body);
    let r = call(
        globex
            .post(s.url("/api/queue/claim"))
            .json(&json!({"agent_id": "globex-1", "pool": "build", "max_jobs": 10})),
    )
    .await;
    assert_eq!((r.status, &r.body["data"]), (200, &json!([])), "{}", r.body);

    // The same over gRPC.
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(&globex_token).await);
    let err = q
        .get_job(pb::GetJobRequest {
            job_id: claimed.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "GetJob: {err:?}");
    let err = q
        .cancel_job(pb::CancelJobRequest {
            job_id: queued.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "CancelJob: {err:?}");
    let err = q
        .start_job(pb::StartJobRequest {
            job_id: claimed.clone(),
            attempt: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "StartJob: {err:?}");
    let listed = q
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty(), "{listed:?}");

    // Nothing changed for acme.
    let r = call(acme.get(job(&claimed, ""))).await;
    assert_eq!(
        (
            r.body["data"]["state"].as_str(),
            r.body["data"]["attempt"].as_u64()
        ),
        (Some("CLAIMED"), Some(1)),
        "{}",
        r.body
    );
    let r = call(acme.get(job(&queued, ""))).await;
    assert_eq!(
        (
            r.body["data"]["state"].as_str(),
            r.body["data"]["priority"].as_str()
        ),
        (Some("QUEUED"), Some("NORMAL")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn another_tenants_keys_users_and_roles_are_not_found() {
    let s = Server::start(Db::Postgres, &[]).await;
    create_tenant(&s, "acme").await;
    create_tenant(&s, "globex").await;
    let acme = client_with(&user_token(&s, "acme", "root@acme.test", "admin").await);
    let globex_token = user_token(&s, "globex", "root@globex.test", "admin").await;
    let globex = client_with(&globex_token);
    user_token(&s, "globex", "dev@globex.test", "developer").await;

    // API keys.
    let (key, key_id) = create_key(&s, &acme, "acme-ci", &["jobs:read"]).await;
    let r = call(globex.delete(s.url(&format!("/auth/api-keys/{key_id}")))).await;
    assert_error(&r, 404, "not_found", "revoke another tenant's key");
    let mut auth =
        pb::auth_service_client::AuthServiceClient::new(s.grpc_with(&globex_token).await);
    let err = auth
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "RevokeApiKey: {err:?}");
    let r = call(globex.get(s.url("/auth/api-keys"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!ids(&r.body).contains(&key_id.as_str()), "{}", r.body);
    let r = call(acme.get(s.url("/auth/api-keys"))).await;
    let listed = r.body["data"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|k| k["id"] == key_id.as_str() && k["revoked_at"].is_null()),
        "acme's key is listed and live: {}",
        r.body
    );
    let r = call(client_with(&key).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "acme's key still works: {}", r.body);

    // Users: each tenant sees its own only, and cannot create users elsewhere.
    let emails = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("a list: {body}"))
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = call(acme.get(s.url("/api/admin/users"))).await;
    assert_eq!(emails(&r.body), ["root@acme.test"], "{}", r.body);
    let r = call(globex.get(s.url("/api/admin/users"))).await;
    let mut seen = emails(&r.body);
    seen.sort();
    assert_eq!(seen, ["dev@globex.test", "root@globex.test"], "{}", r.body);
    let r = call(globex.post(s.url("/api/admin/users")).json(&json!({
        "email": "mole@globex.test", "password": "a-long-enough-password", "role": "admin",
        "tenant": "acme"
    })))
    .await;
    assert_error(&r, 404, "not_found", "create a user in another tenant");
    let r = call(acme.get(s.url("/api/admin/users"))).await;
    assert_eq!(emails(&r.body), ["root@acme.test"], "{}", r.body);

    // Tenants: only platform administrators create them; others see only their own.
    let r = call(
        globex
            .post(s.url("/api/admin/tenants"))
            .json(&json!({"id": "initech", "name": "Initech"})),
    )
    .await;
    assert_error(
        &r,
        403,
        "permission_denied",
        "tenant created by a tenant admin",
    );
    let r = call(globex.get(s.url("/api/admin/tenants"))).await;
    assert_eq!(ids(&r.body), ["globex"], "{}", r.body);

    // Roles: acme's custom role is invisible to globex, and not usable there.
    let r = call(
        acme.put(s.url("/api/admin/roles/builder"))
            .json(&json!({"scopes": ["jobs:read", "jobs:write"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(globex.get(s.url("/api/admin/roles"))).await;
    let roles: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|role| role["name"].as_str())
        .collect();
    assert!(!roles.contains(&"builder"), "{}", r.body);
    let r = call(globex.post(s.url("/api/admin/users")).json(&json!({
        "email": "builder@globex.test", "password": "a-long-enough-password", "role": "builder"
    })))
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (400, Some("role")),
        "acme's role used in globex: {}",
        r.body
    );

    // An unknown id is the same 404 as another tenant's.
    let r = call(globex.delete(s.url(&format!("/auth/api-keys/{}", Uuid::new_v4())))).await;
    assert_error(&r, 404, "not_found", "revoke an unknown key");
}

/// The maintenance pass spans every tenant, so only platform administrators may run it: an
/// administrator of another tenant must neither requeue other tenants' jobs nor learn how many
/// there were. (Refusing it, or running it over the caller's tenant only, both pass.)
#[tokio::test]
async fn a_tenant_admin_cannot_reap_another_tenants_jobs() {
    let s = Server::start(Db::Postgres, &[]).await;
    create_tenant(&s, "acme").await;
    create_tenant(&s, "globex").await;
    let acme = client_with(&user_token(&s, "acme", "root@acme.test", "admin").await);
    let globex = client_with(&user_token(&s, "globex", "ops@globex.test", "operator").await);
    let r = call(
        globex
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "build", "kind": "shell"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(globex.post(s.url("/api/queue/claim")).json(
        &json!({"agent_id": "globex-1", "pool": "build", "max_jobs": 1, "lease_seconds": 5}),
    ))
    .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    // Wait until the lease has run out (the server's own reaper then takes it within 5 s, so
    // the call below comes right after the expiry).
    let expires: chrono::DateTime<chrono::Utc> = r.body["data"][0]["lease_expires_at"]
        .as_str()
        .and_then(|at| at.parse().ok())
        .expect("a lease expiry");
    eventually(
        "the lease ran out",
        std::time::Duration::from_secs(10),
        async || {
            let now = chrono::Utc::now();
            if now > expires { Ok(()) } else { Err(now) }
        },
    )
    .await;

    let r = call(acme.post(s.url("/api/queue/maintenance/requeue-expired"))).await;
    let own_tenant_only =
        r.status == 200 && r.body["data"] == json!({"requeued": 0, "dead_lettered": 0});
    assert!(
        matches!(r.status, 403 | 404) || own_tenant_only,
        "acme's administrator reaped globex's expired lease: {} {}",
        r.status,
        r.body
    );
}
