//! The deployment routes end to end: environments, creation and validation, staging,
//! promotion (dry run and executed), rollback plans, lists and filters, the summary, events,
//! evaluations and signals.

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::Deployments;

use crate::common::{Reply, app, call, call_raw, deployments_app};

const COMMAND: &str = "deploy {{service}} {{version}} --to {{environment}}";

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

/// The field of every `errors[]` entry, after checking each is `invalid_argument`.
fn invalid_fields(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    reply.error();
    reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "invalid_argument", "{}", reply.text);
            e["field"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

async fn put_environment(app: &Router, name: &str, pool: &str) -> Value {
    let body = json!({"name": name, "pool": pool, "deploy_command": COMMAND});
    let reply = call(app, Method::POST, "/api/dashboard/environments", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.data().clone()
}

/// An app with `staging` (pool `deploy-staging`) and `production` (pool `deploy-prod`).
async fn with_environments() -> (Router, Deployments) {
    let (app, deployments) = deployments_app().await;
    put_environment(&app, "staging", "deploy-staging").await;
    put_environment(&app, "production", "deploy-prod").await;
    (app, deployments)
}

async fn create(app: &Router, service: &str, version: &str) -> Value {
    let body = json!({"service": service, "version": version});
    let reply = call(app, Method::POST, "/api/dashboard/deployments", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.data().clone()
}

async fn get(app: &Router, id: &str) -> Value {
    let reply = call(
        app,
        Method::GET,
        &format!("/api/dashboard/deployments/{id}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.data().clone()
}

async fn post(app: &Router, id: &str, step: &str, body: Option<Value>) -> Reply {
    call(
        app,
        Method::POST,
        &format!("/api/dashboard/deployments/{id}/{step}"),
        body,
    )
    .await
}

async fn stage(app: &Router, id: &str) -> Value {
    let reply = post(app, id, "staging", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.data().clone()
}

/// The ids of a list answer, in order.
fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Runs a step's job to success through the queue routes, as an agent of `pool` would, then
/// one pass of the deployment driver.
async fn complete_step(app: &Router, deployments: &Deployments, pool: &str, job_id: &str) {
    let claim = json!({"agent_id": "a1", "pool": pool, "max_jobs": 1, "wait_seconds": 0});
    let claimed = call(app, Method::POST, "/api/queue/claim", Some(claim)).await;
    assert_eq!(claimed.data()[0]["id"], job_id, "{}", claimed.text);
    let done = json!({"attempt": 1, "succeeded": true, "exit_code": 0});
    let completed = call(
        app,
        Method::PATCH,
        &format!("/api/queue/jobs/{job_id}/complete"),
        Some(done),
    )
    .await;
    assert_eq!(completed.data()["state"], "COMPLETED", "{}", completed.text);
    deployments.drive().await.expect("driver pass");
}

#[tokio::test]
async fn environments_are_created_and_listed() {
    let (app, _) = deployments_app().await;
    let body = json!({
        "name": "staging",
        "pool": "deploy-staging",
        "deploy_command": COMMAND,
        "health_url": "http://127.0.0.1:8080/health",
        "secrets": ["DEPLOY_TOKEN"],
    });
    let reply = call(
        &app,
        Method::POST,
        "/api/dashboard/environments",
        Some(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let env = reply.data();
    assert_eq!(
        (&env["name"], &env["pool"], &env["deploy_command"]),
        (&json!("staging"), &json!("deploy-staging"), &json!(COMMAND))
    );
    assert_eq!(
        (&env["health_url"], &env["secrets"]),
        (
            &json!("http://127.0.0.1:8080/health"),
            &json!(["DEPLOY_TOKEN"])
        )
    );
    assert!(is_rfc3339(&env["created_at"]) && is_rfc3339(&env["updated_at"]));
    put_environment(&app, "production", "deploy-prod").await;

    let listed = call(&app, Method::GET, "/api/dashboard/environments", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let names: Vec<_> = listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].clone(), e["pool"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("production"), json!("deploy-prod")),
            (json!("staging"), json!("deploy-staging"))
        ]
    );

    // Bad input is 400 naming the field, and stores nothing.
    let bad = json!({"name": "qa", "pool": "p", "deploy_command": " "});
    let reply = call(&app, Method::POST, "/api/dashboard/environments", Some(bad)).await;
    assert_eq!(invalid_fields(&reply), ["deploy_command"]);
    let typo = json!({"name": "qa", "pool": "p", "deploy_command": "x", "secret": []});
    let reply = call(
        &app,
        Method::POST,
        "/api/dashboard/environments",
        Some(typo),
    )
    .await;
    assert_eq!(invalid_fields(&reply), ["secret"]);
    let listed = call(&app, Method::GET, "/api/dashboard/environments", None).await;
    assert_eq!(
        listed.data().as_array().unwrap().len(),
        2,
        "{}",
        listed.text
    );
}

#[tokio::test]
async fn a_new_deployment_is_pending_with_its_guard() {
    let (app, _) = with_environments().await;
    let d = create(&app, "checkout-api", "1.4.2").await;
    assert_eq!(
        (&d["service"], &d["version"], &d["state"]),
        (&json!("checkout-api"), &json!("1.4.2"), &json!("PENDING"))
    );
    assert_eq!(
        (&d["environment"], &d["staging_environment"]),
        (&json!("production"), &json!("staging"))
    );
    assert_eq!(
        d["guard"],
        json!({
            "window_seconds": 3600, "interval_seconds": 30, "lookback_seconds": 300,
            "probe_interval_seconds": 10, "health_grace_seconds": 30, "min_samples": 10,
            "max_failure_rate": 0.05, "max_latency_ratio": 1.1,
        })
    );
    for field in [
        "step",
        "step_job_id",
        "previous_version",
        "rollback_version",
        "reason",
        "guard_started_at",
        "guard_ends_at",
        "finished_at",
    ] {
        assert_eq!(d[field], Value::Null, "{field}: {d}");
    }
    assert_eq!(d["created_by"], "dev");
    assert!(is_rfc3339(&d["created_at"]) && is_rfc3339(&d["updated_at"]));
    assert!(d["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(get(&app, &id_of(&d)).await, d);

    // Guard settings given are kept; the others take the defaults.
    let body = json!({"service": "web", "version": "2.0.0",
        "guard": {"window_seconds": 600, "max_failure_rate": 0.2}});
    let reply = call(&app, Method::POST, "/api/dashboard/deployments", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let guard = &reply.data()["guard"];
    assert_eq!(
        (
            &guard["window_seconds"],
            &guard["max_failure_rate"],
            &guard["interval_seconds"]
        ),
        (&json!(600), &json!(0.2), &json!(30))
    );
}

#[tokio::test]
async fn bad_deployments_are_400_naming_the_field_and_store_nothing() {
    let (app, _) = deployments_app().await;
    put_environment(&app, "staging", "deploy-staging").await;
    let path = "/api/dashboard/deployments";

    let body = json!({"service": "api", "version": "1.0.0", "environment": "nowhere"});
    let reply = call(&app, Method::POST, path, Some(body)).await;
    assert_eq!(invalid_fields(&reply), ["environment"]);
    assert!(
        reply.error()["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{}",
        reply.text
    );

    let body = json!({"service": "api", "version": "1.0; rm -rf /"});
    let reply = call(&app, Method::POST, path, Some(body)).await;
    assert!(
        invalid_fields(&reply).contains(&"version".to_owned()),
        "{}",
        reply.text
    );

    let body = json!({"service": "api", "version": "1.0.0", "guard": {"window_seconds": 0}});
    let reply = call(&app, Method::POST, path, Some(body)).await;
    assert!(
        invalid_fields(&reply).contains(&"guard.window_seconds".to_owned()),
        "{}",
        reply.text
    );

    let body = json!({"service": "api", "version": "1.0.0", "guard": {"windw_seconds": 60}});
    let reply = call(&app, Method::POST, path, Some(body)).await;
    assert_eq!(invalid_fields(&reply), ["guard.windw_seconds"]);

    let listed = call(&app, Method::GET, path, None).await;
    assert_eq!(ids(&listed), Vec::<String>::new());
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let (app, _) = with_environments().await;
    create(&app, "api", "1.0.0").await;
    let other = uuid::Uuid::now_v7();
    for (method, path) in [
        (Method::GET, format!("/api/dashboard/deployments/{other}")),
        (
            Method::GET,
            format!("/api/dashboard/deployments/{other}/events"),
        ),
        (
            Method::GET,
            format!("/api/dashboard/deployments/{other}/evaluations"),
        ),
        (
            Method::POST,
            format!("/api/dashboard/deployments/{other}/staging"),
        ),
    ] {
        let reply = call(&app, method, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.error()["code"], "not_found");
    }
    let reply = call(&app, Method::GET, "/api/dashboard/deployments/nope", None).await;
    assert_eq!(invalid_fields(&reply), ["id"]);
}

#[tokio::test]
async fn staging_enqueues_a_shell_job_in_the_staging_pool() {
    let (app, _) = with_environments().await;
    let id = id_of(&create(&app, "api", "1.0.0").await);
    let plan = stage(&app, &id).await;
    assert_eq!(
        (&plan["step"], &plan["executed"], &plan["from"], &plan["to"]),
        (
            &json!("STAGE"),
            &json!(true),
            &json!("PENDING"),
            &json!("STAGING")
        )
    );
    assert_eq!(
        (&plan["environment"], &plan["pool"], &plan["version"]),
        (&json!("staging"), &json!("deploy-staging"), &json!("1.0.0"))
    );
    assert_eq!(plan["command"], "deploy api 1.0.0 --to staging");
    assert_eq!(plan["replaces"], Value::Null);
    assert_eq!(plan["deployment"]["state"], "STAGING");
    let job_id = plan["job_id"].as_str().expect("a job id").to_owned();
    assert_eq!(plan["deployment"]["step_job_id"], job_id);
    assert_eq!(plan["deployment"]["step"], "STAGE");

    let job = call(
        &app,
        Method::GET,
        &format!("/api/queue/jobs/{job_id}"),
        None,
    )
    .await;
    let job = job.data();
    assert_eq!(
        (&job["kind"], &job["pool"], &job["state"]),
        (&json!("shell"), &json!("deploy-staging"), &json!("QUEUED"))
    );
    assert_eq!(job["payload"]["command"], "deploy api 1.0.0 --to staging");

    let got = get(&app, &id).await;
    assert_eq!(
        (&got["state"], &got["step_job_id"]),
        (&json!("STAGING"), &json!(job_id))
    );

    // Staging again is a conflict and changes nothing.
    let again = post(&app, &id, "staging", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.error()["code"], "conflict");
    assert_eq!(get(&app, &id).await, got);
}

#[tokio::test]
async fn promoting_before_staged_is_409() {
    let (app, _) = with_environments().await;
    let pending = id_of(&create(&app, "api", "1.0.0").await);
    let staging = id_of(&create(&app, "web", "1.0.0").await);
    stage(&app, &staging).await;
    for (id, state) in [(&pending, "PENDING"), (&staging, "STAGING")] {
        let before = get(&app, id).await;
        for body in [None, Some(json!({"execute": true}))] {
            let reply = post(&app, id, "production", body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::CONFLICT,
                "{state} {body:?}: {}",
                reply.text
            );
            assert_eq!(reply.error()["code"], "conflict");
            assert!(
                reply.error()["message"].as_str().unwrap().contains(state),
                "{}",
                reply.text
            );
        }
        assert_eq!(get(&app, id).await, before);
    }
    let prod_jobs = call(&app, Method::GET, "/api/queue/jobs?pool=deploy-prod", None).await;
    assert_eq!(prod_jobs.data(), &json!([]));
}

#[tokio::test]
async fn promotion_is_a_dry_run_unless_executed() {
    let (app, deployments) = with_environments().await;
    let id = id_of(&create(&app, "api", "1.0.0").await);
    let job_id = stage(&app, &id).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    complete_step(&app, &deployments, "deploy-staging", &job_id).await;
    let staged = get(&app, &id).await;
    assert_eq!(staged["state"], "STAGED", "{staged}");

    // No body, an empty body and {"execute": false} are all dry runs.
    let empty = call_raw(
        &app,
        Method::POST,
        &format!("/api/dashboard/deployments/{id}/production"),
        "application/json",
        "",
    )
    .await;
    for reply in [
        post(&app, &id, "production", None).await,
        empty,
        post(&app, &id, "production", Some(json!({"execute": false}))).await,
    ] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let plan = reply.data();
        assert_eq!(
            (&plan["step"], &plan["executed"], &plan["from"], &plan["to"]),
            (
                &json!("PROMOTE"),
                &json!(false),
                &json!("STAGED"),
                &json!("PROMOTING")
            )
        );
        assert_eq!(
            (&plan["environment"], &plan["pool"], &plan["job_id"]),
            (&json!("production"), &json!("deploy-prod"), &Value::Null)
        );
        assert_eq!(plan["command"], "deploy api 1.0.0 --to production");
        assert_eq!(plan["deployment"], staged);
    }
    assert_eq!(get(&app, &id).await, staged);
    let prod_jobs = call(&app, Method::GET, "/api/queue/jobs?pool=deploy-prod", None).await;
    assert_eq!(prod_jobs.data(), &json!([]));

    // A typo in the body is an error, not a dry run.
    let typo = post(&app, &id, "production", Some(json!({"exec": true}))).await;
    assert_eq!(invalid_fields(&typo), ["exec"]);

    let reply = post(&app, &id, "production", Some(json!({"execute": true}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let plan = reply.data();
    assert_eq!(
        (&plan["executed"], &plan["deployment"]["state"]),
        (&json!(true), &json!("PROMOTING"))
    );
    let prod_job = plan["job_id"].as_str().expect("a job id").to_owned();
    let job = call(
        &app,
        Method::GET,
        &format!("/api/queue/jobs/{prod_job}"),
        None,
    )
    .await;
    assert_eq!(
        (&job.data()["kind"], &job.data()["pool"]),
        (&json!("shell"), &json!("deploy-prod"))
    );
    assert_eq!(get(&app, &id).await["state"], "PROMOTING");

    // Rollback: production ran nothing before, so a version must be named; dry run first.
    let reply = post(&app, &id, "rollback", None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    let reply = post(&app, &id, "rollback", Some(json!({"version": "$(id)"}))).await;
    assert_eq!(invalid_fields(&reply), ["version"]);
    let reply = post(&app, &id, "rollback", Some(json!({"version": "0.9.0"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let plan = reply.data();
    assert_eq!(
        (
            &plan["step"],
            &plan["executed"],
            &plan["to"],
            &plan["version"]
        ),
        (
            &json!("ROLLBACK"),
            &json!(false),
            &json!("ROLLING_BACK"),
            &json!("0.9.0")
        )
    );
    assert_eq!(get(&app, &id).await["state"], "PROMOTING");
    let body = json!({"version": "0.9.0", "execute": true});
    let reply = post(&app, &id, "rollback", Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.data()["deployment"]["state"], "ROLLING_BACK");
    assert_eq!(reply.data()["deployment"]["rollback_version"], "0.9.0");
    assert!(reply.data()["job_id"].is_string(), "{}", reply.text);
}

#[tokio::test]
async fn lists_filter_by_service_state_and_page() {
    let (app, _) = with_environments().await;
    let api1 = id_of(&create(&app, "api", "1.0.0").await);
    let api2 = id_of(&create(&app, "api", "1.1.0").await);
    let web = id_of(&create(&app, "web", "2.0.0").await);
    stage(&app, &api2).await;
    let (api1, api2, web) = (api1.as_str(), api2.as_str(), web.as_str());
    let list = |query: &str| {
        let app = app.clone();
        let uri = format!("/api/dashboard/deployments{query}");
        async move { call(&app, Method::GET, &uri, None).await }
    };

    assert_eq!(ids(&list("").await), [web, api2, api1]);
    assert_eq!(ids(&list("?service=api").await), [api2, api1]);
    assert_eq!(ids(&list("?state=staging").await), [api2]);
    assert_eq!(ids(&list("?state=PENDING").await), [web, api1]);
    assert_eq!(
        ids(&list("?service=api&state=pending").await),
        [api1],
        "filters combine"
    );
    assert_eq!(ids(&list("?service=nope").await), Vec::<String>::new());
    assert_eq!(invalid_fields(&list("?state=bogus").await), ["state"]);
    assert_eq!(invalid_fields(&list("?colour=red").await), ["colour"]);
    assert_eq!(invalid_fields(&list("?limit=0").await), ["limit"]);
    assert_eq!(
        invalid_fields(&list("?page_token=zzz").await),
        ["page_token"]
    );

    let by_service = |name: &str, query: &str| {
        let app = app.clone();
        let uri = format!("/api/dashboard/deployments/service/{name}{query}");
        async move { call(&app, Method::GET, &uri, None).await }
    };
    assert_eq!(ids(&by_service("web", "").await), [web]);
    assert_eq!(ids(&by_service("api", "").await), [api2, api1]);
    assert_eq!(ids(&by_service("api", "?state=Staging").await), [api2]);
    assert_eq!(
        invalid_fields(&by_service("api", "?service=web").await),
        ["service"]
    );

    // Pages: the same mechanism as the job list.
    let first = list("?limit=2").await;
    assert_eq!(ids(&first), [web, api2]);
    let token = first.body["meta"]["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = list(&format!("?limit=2&page_token={token}")).await;
    assert_eq!(ids(&second), [api1]);
    assert!(
        second.body["meta"].get("next_page_token").is_none(),
        "{}",
        second.text
    );
    let page = by_service("api", "?limit=1").await;
    assert_eq!(ids(&page), [api2]);
    assert!(page.body["meta"]["next_page_token"].is_string());
}

#[tokio::test]
async fn summary_counts_jobs_and_deployments_by_state() {
    let (app, _) = with_environments().await;
    let empty = call(&app, Method::GET, "/api/dashboard/summary", None).await;
    assert_eq!(
        empty.data(),
        &json!({"jobs": {}, "deployments": {}}),
        "{}",
        empty.text
    );
    create(&app, "api", "1.0.0").await;
    let web = id_of(&create(&app, "web", "1.0.0").await);
    create(&app, "db", "1.0.0").await;
    stage(&app, &web).await;
    let reply = call(&app, Method::GET, "/api/dashboard/summary", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.data(),
        &json!({"jobs": {"QUEUED": 1}, "deployments": {"PENDING": 2, "STAGING": 1}})
    );
}

#[tokio::test]
async fn events_and_evaluations_of_a_new_deployment() {
    let (app, _) = with_environments().await;
    let id = id_of(&create(&app, "api", "1.0.0").await);
    let evaluations = call(
        &app,
        Method::GET,
        &format!("/api/dashboard/deployments/{id}/evaluations"),
        None,
    )
    .await;
    assert_eq!(evaluations.status, StatusCode::OK, "{}", evaluations.text);
    assert_eq!(evaluations.data(), &json!([]));

    let events_uri = format!("/api/dashboard/deployments/{id}/events");
    let reply = call(&app, Method::GET, &events_uri, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let events = reply.data().as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{}", reply.text);
    let created = &events[0];
    assert_eq!(
        (
            &created["deployment_id"],
            &created["kind"],
            &created["state"]
        ),
        (&json!(id), &json!("state_changed"), &json!("PENDING"))
    );
    assert_eq!(
        (&created["message"], &created["from"]),
        (&json!("created"), &Value::Null)
    );
    assert!(is_rfc3339(&created["at"]) && created["seq"].is_i64());
    let seq = created["seq"].as_i64().unwrap();

    stage(&app, &id).await;
    let reply = call(
        &app,
        Method::GET,
        &format!("{events_uri}?after={seq}"),
        None,
    )
    .await;
    let events = reply.data().as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{}", reply.text);
    assert_eq!(
        (&events[0]["from"], &events[0]["state"]),
        (&json!("PENDING"), &json!("STAGING"))
    );
    assert!(events[0]["seq"].as_i64().unwrap() > seq);
    let all = call(&app, Method::GET, &events_uri, None).await;
    assert_eq!(all.data().as_array().unwrap().len(), 2, "{}", all.text);
    let bad = call(&app, Method::GET, &format!("{events_uri}?after=x"), None).await;
    assert_eq!(invalid_fields(&bad), ["after"]);
}

#[tokio::test]
async fn signals_are_accepted_or_400() {
    let (app, _) = with_environments().await;
    let path = "/api/dashboard/signals";
    let good = json!({"service": "api", "version": "1.0.0", "requests": 100, "errors": 2, "latency_ms": 12.5});
    let reply = call(&app, Method::POST, path, Some(good)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.data(), &json!({"accepted": true}));

    let too_many = json!({"service": "api", "version": "1.0.0", "requests": 1, "errors": 2});
    let reply = call(&app, Method::POST, path, Some(too_many)).await;
    assert_eq!(invalid_fields(&reply), ["errors"]);
    let negative = json!({"service": "api", "version": "1.0.0", "requests": -1, "errors": 0});
    let reply = call(&app, Method::POST, path, Some(negative)).await;
    assert_eq!(invalid_fields(&reply), ["requests"]);
    let missing = json!({"service": "api", "version": "1.0.0", "errors": 0});
    let reply = call(&app, Method::POST, path, Some(missing)).await;
    assert_eq!(invalid_fields(&reply), ["requests"]);
}

#[tokio::test]
async fn without_the_deployment_service_the_routes_are_503() {
    let app = app().await;
    for (method, path, body) in [
        (Method::GET, "/api/dashboard/summary", None),
        (Method::GET, "/api/v1/dashboard/deployments", None),
        (
            Method::POST,
            "/api/dashboard/deployments",
            Some(json!({"service": "api", "version": "1.0.0"})),
        ),
    ] {
        let reply = call(&app, method, path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.error()["code"], "unavailable");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_deployment_routes() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let paths = reply.body["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/dashboard/summary", "get"),
        ("/api/dashboard/environments", "get"),
        ("/api/dashboard/environments", "post"),
        ("/api/dashboard/deployments", "get"),
        ("/api/dashboard/deployments", "post"),
        ("/api/dashboard/deployments/{id}", "get"),
        ("/api/dashboard/deployments/service/{name}", "get"),
        ("/api/dashboard/deployments/{id}/staging", "post"),
        ("/api/dashboard/deployments/{id}/production", "post"),
        ("/api/dashboard/deployments/{id}/rollback", "post"),
        ("/api/dashboard/deployments/{id}/events", "get"),
        ("/api/dashboard/deployments/{id}/evaluations", "get"),
        ("/api/dashboard/signals", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let schemas = reply.body["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "DeploymentView",
        "PlanView",
        "EnvironmentView",
        "CreateDeploymentBody",
        "EvaluationView",
        "DeploymentState",
    ] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
}
