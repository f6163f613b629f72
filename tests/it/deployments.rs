//! Guarded deployments end to end: the real binary, real `switchyard agent` processes running
//! the deploy commands, the gRPC `DeploymentService`.
//!
//! - Happy path: staging and production steps run on the agent, the guard passes over a short
//!   window on the version's tagged jobs, the deployment SUCCEEDS.
//! - A failing gate (failed jobs) rolls production back to the previous version by itself; the
//!   reason names the gate and the measured value.
//! - No data during the window: every evaluation is INCONCLUSIVE, no rollback, no pass.
//! - Promote is a dry run unless executed.
//! - A promote and a rollback of one service racing: exactly one succeeds.

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::json;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::deployment_service_client::DeploymentServiceClient;
use tonic::Code;

use crate::agents::{Agent, agent_key, wait_for, workdir};
use crate::support::{AuthedChannel, Db, Server, eventually, send};

pub(crate) type Client = DeploymentServiceClient<AuthedChannel>;

/// The pool of the test environments' agent.
pub(crate) const POOL: &str = "deploy";

/// A server, an agent in [`POOL`] working in a fresh directory, and `staging` and `production`
/// environments whose deploy command appends `<environment> <service> <version>` to
/// `deploys.log` there.
async fn setup(db: Db) -> (Server, Agent, std::path::PathBuf, Client) {
    let s = Server::start(db, &[]).await;
    let dir = workdir();
    let agent = Agent::start_in(POOL, "it-deployer", &[&s], &agent_key(&s).await, &dir);
    let client = environments(&s, None).await;
    (s, agent, dir, client)
}

/// A client of `s`, after creating the test environments (production probed at `health_url`).
pub(crate) async fn environments(s: &Server, health_url: Option<String>) -> Client {
    let mut client = DeploymentServiceClient::new(s.grpc_admin().await);
    for name in ["staging", "production"] {
        let env = pb::Environment {
            name: name.to_owned(),
            pool: POOL.to_owned(),
            deploy_command:
                "echo \"{{environment}} {{service}} $SWITCHYARD_VERSION\" >> deploys.log".to_owned(),
            health_url: health_url.clone().filter(|_| name == "production"),
            ..Default::default()
        };
        client
            .put_environment(pb::PutEnvironmentRequest {
                environment: Some(env),
            })
            .await
            .expect("put environment");
    }
    client
}

/// A short guard: a `window`-second window evaluated every second over a 60 s lookback, judging
/// on `min_samples` samples.
pub(crate) fn guard(window: u64, min_samples: u32) -> pb::GuardSettings {
    pb::GuardSettings {
        window_seconds: window,
        interval_seconds: 1,
        lookback_seconds: 60,
        min_samples: Some(min_samples),
        ..Default::default()
    }
}

pub(crate) async fn create(
    c: &mut Client,
    service: &str,
    version: &str,
    g: pb::GuardSettings,
) -> String {
    let created = c
        .create_deployment(pb::CreateDeploymentRequest {
            service: service.to_owned(),
            version: version.to_owned(),
            guard: Some(g),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(created.state, pb::DeploymentState::Pending as i32);
    created.id
}

pub(crate) async fn get(c: &mut Client, id: &str) -> pb::Deployment {
    c.get_deployment(pb::GetDeploymentRequest { id: id.to_owned() })
        .await
        .expect("get")
        .into_inner()
        .deployment
        .unwrap()
}

/// Waits (at most `limit`) until the deployment is in `state`.
pub(crate) async fn wait_state(
    c: &mut Client,
    id: &str,
    state: pb::DeploymentState,
    limit: Duration,
) -> pb::Deployment {
    eventually(&format!("deployment {id} {state:?}"), limit, async || {
        let d = get(c, id).await;
        if d.state == state as i32 {
            Ok(d)
        } else {
            Err(format!("{d:?}"))
        }
    })
    .await
}

pub(crate) async fn stage(c: &mut Client, id: &str) {
    let plan = c
        .stage_deployment(pb::StageDeploymentRequest { id: id.to_owned() })
        .await
        .expect("stage")
        .into_inner()
        .plan
        .unwrap();
    assert!(plan.executed && plan.job_id.is_some(), "{plan:?}");
}

pub(crate) async fn promote(c: &mut Client, id: &str) -> pb::DeploymentPlan {
    c.promote_deployment(pb::PromoteDeploymentRequest {
        id: id.to_owned(),
        execute: true,
    })
    .await
    .expect("promote")
    .into_inner()
    .plan
    .unwrap()
}

/// Creates, stages and promotes `service@version`; returns its id once it is guarded.
async fn deploy(c: &mut Client, service: &str, version: &str, g: pb::GuardSettings) -> String {
    let id = create(c, service, version, g).await;
    stage(c, &id).await;
    wait_state(c, &id, pb::DeploymentState::Staged, Duration::from_secs(20)).await;
    promote(c, &id).await;
    wait_state(
        c,
        &id,
        pb::DeploymentState::Guarding,
        Duration::from_secs(20),
    )
    .await;
    id
}

/// Enqueues `n` shell jobs tagged with the service and version, running `command`; waits until
/// they have all ended.
async fn tagged_jobs(s: &Server, service: &str, version: &str, command: &str, n: usize) {
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            json!({"pool": POOL, "kind": "shell", "payload": {"command": command},
                   "max_attempts": 1, "tags": {"service": service, "version": version}})
        })
        .collect();
    let (status, body, _) = send(
        s.client
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"jobs": jobs})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for job in body["data"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        wait_for(s, id, Duration::from_secs(30), |j| {
            j["state"] == "COMPLETED" || j["state"] == "DEAD_LETTERED"
        })
        .await;
    }
}

/// The lines the test environments' deploy command appended in the agent's directory `dir`.
pub(crate) fn deploys(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("deploys.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn evaluations(c: &mut Client, id: &str) -> Vec<pb::Evaluation> {
    c.list_evaluations(pb::ListEvaluationsRequest { id: id.to_owned() })
        .await
        .expect("evaluations")
        .into_inner()
        .evaluations
}

#[tokio::test]
async fn a_guarded_deployment_runs_both_steps_on_an_agent_and_succeeds() {
    let (s, _agent, dir, mut c) = setup(Db::Postgres).await;
    let id = create(&mut c, "checkout", "1.0.0", guard(4, 3)).await;

    // Watch from the start: every event, in order, to the terminal one.
    let mut watch = c
        .watch_deployments(pb::WatchDeploymentsRequest {
            deployment_id: id.clone(),
            after_seq: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    stage(&mut c, &id).await;
    wait_state(
        &mut c,
        &id,
        pb::DeploymentState::Staged,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(deploys(&dir), ["staging checkout 1.0.0"]);

    // A dry run changes nothing.
    let dry = c
        .promote_deployment(pb::PromoteDeploymentRequest {
            id: id.clone(),
            execute: false,
        })
        .await
        .expect("dry run")
        .into_inner()
        .plan
        .unwrap();
    assert!(!dry.executed && dry.job_id.is_none());
    assert_eq!(dry.to, pb::DeploymentState::Promoting as i32);
    assert!(
        dry.command.starts_with("echo \"production checkout"),
        "{}",
        dry.command
    );
    assert_eq!(
        get(&mut c, &id).await.state,
        pb::DeploymentState::Staged as i32
    );

    let plan = promote(&mut c, &id).await;
    assert!(plan.executed && plan.replaces.is_none(), "{plan:?}");
    let guarded = wait_state(
        &mut c,
        &id,
        pb::DeploymentState::Guarding,
        Duration::from_secs(20),
    )
    .await;
    assert!(guarded.guard_ends_at.is_some());
    assert_eq!(
        deploys(&dir),
        ["staging checkout 1.0.0", "production checkout 1.0.0"]
    );
    tagged_jobs(&s, "checkout", "1.0.0", "true", 4).await;
    let done = wait_state(
        &mut c,
        &id,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(30),
    )
    .await;
    assert!(done.finished_at.is_some());
    let evals = evaluations(&mut c, &id).await;
    assert_eq!(
        evals.last().unwrap().verdict,
        pb::Verdict::Pass as i32,
        "{evals:?}"
    );

    let mut states = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watch ends by itself")
        .expect("watch message")
    {
        states.push(msg.event.unwrap().state);
    }
    use pb::DeploymentState as S;
    let expected = [
        S::Pending,
        S::Staging,
        S::Staged,
        S::Promoting,
        S::Guarding,
        S::Succeeded,
    ]
    .map(|s| s as i32);
    assert_eq!(states, expected);
}

#[tokio::test]
async fn a_failing_gate_rolls_production_back_to_the_previous_version() {
    let (s, _agent, dir, mut c) = setup(Db::Postgres).await;
    let first = deploy(&mut c, "cart", "1.0.0", guard(1, 0)).await;
    wait_state(
        &mut c,
        &first,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(20),
    )
    .await;

    let second = deploy(&mut c, "cart", "2.0.0", guard(600, 4)).await;
    let d = get(&mut c, &second).await;
    assert_eq!(d.previous_version.as_deref(), Some("1.0.0"));
    // Half of the new version's jobs fail.
    tagged_jobs(&s, "cart", "2.0.0", "true", 2).await;
    tagged_jobs(&s, "cart", "2.0.0", "exit 3", 2).await;

    let d = wait_state(
        &mut c,
        &second,
        pb::DeploymentState::RolledBack,
        Duration::from_secs(30),
    )
    .await;
    let reason = d.reason.unwrap();
    assert!(reason.contains("failure_rate"), "{reason}");
    assert!(reason.contains("50.0%"), "{reason}");
    assert_eq!(d.rollback_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        deploys(&dir).last().map(String::as_str),
        Some("production cart 1.0.0"),
        "the rollback deployed the previous version"
    );
    let evals = evaluations(&mut c, &second).await;
    let failed = evals
        .iter()
        .filter(|e| e.verdict == pb::Verdict::Fail as i32)
        .count();
    assert_eq!(failed, 1, "one failed evaluation, then no more: {evals:?}");

    // Prometheus text at /metrics, without credentials; the gauge of deployments by state
    // catches up within its refresh interval.
    let rolled_back = "switchyard_deployments{state=\"ROLLED_BACK\"} 1\n";
    let limit = switchyard_core::GAUGE_EVERY + Duration::from_secs(5);
    let metrics = eventually("the rolled-back gauge", limit, async || {
        let metrics = s
            .anon
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(rolled_back) {
            Ok(metrics)
        } else {
            Err(metrics)
        }
    })
    .await;
    assert!(
        metrics.contains("switchyard_deployments{state=\"SUCCEEDED\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_rollbacks_total{reason=\"failure_rate\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_gate_evaluations_total{outcome=\"FAIL\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_data_the_guard_holds_inconclusive_and_neither_passes_nor_rolls_back() {
    let (_s, _agent, _dir, mut c) = setup(Db::Sqlite).await;
    let id = deploy(&mut c, "search", "1.0.0", guard(2, 5)).await;
    // Well past the 2 s window.
    let evals = eventually("four evaluations", Duration::from_secs(20), async || {
        let evals = evaluations(&mut c, &id).await;
        if evals.len() >= 4 {
            Ok(evals)
        } else {
            Err(format!("{evals:?}"))
        }
    })
    .await;
    assert!(
        evals
            .iter()
            .all(|e| e.verdict == pb::Verdict::Inconclusive as i32),
        "{evals:?}"
    );
    let d = get(&mut c, &id).await;
    assert_eq!(d.state, pb::DeploymentState::Guarding as i32, "{d:?}");
    let gates = &evals[0].gates;
    let rate = gates.iter().find(|g| g.gate == "failure_rate").unwrap();
    assert_eq!(rate.verdict, pb::Verdict::Inconclusive as i32);
    assert_eq!(rate.samples, 0);
}

#[tokio::test]
async fn a_promote_and_a_rollback_of_one_service_racing_let_exactly_one_succeed() {
    let (_s, _agent, _dir, mut c) = setup(Db::Postgres).await;
    let live = deploy(&mut c, "billing", "1.0.0", guard(1, 0)).await;
    wait_state(
        &mut c,
        &live,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let next = create(&mut c, "billing", "2.0.0", guard(600, 0)).await;
    stage(&mut c, &next).await;
    wait_state(
        &mut c,
        &next,
        pb::DeploymentState::Staged,
        Duration::from_secs(20),
    )
    .await;

    // Production ran nothing before 1.0.0: a rollback must name its version.
    let err = c
        .rollback_deployment(pb::RollbackDeploymentRequest {
            id: live.clone(),
            version: None,
            execute: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let (mut a, mut b) = (c.clone(), c.clone());
    let promote = a.promote_deployment(pb::PromoteDeploymentRequest {
        id: next.clone(),
        execute: true,
    });
    let rollback = b.rollback_deployment(pb::RollbackDeploymentRequest {
        id: live.clone(),
        version: Some("0.9.0".to_owned()),
        execute: true,
    });
    let (promoted, rolled) = tokio::join!(promote, rollback);
    let codes = [
        promoted.as_ref().err().map(tonic::Status::code),
        rolled.as_ref().err().map(tonic::Status::code),
    ];
    let ok = codes.iter().filter(|c| c.is_none()).count();
    assert_eq!(ok, 1, "exactly one succeeds: {codes:?}");
    assert!(
        codes.contains(&Some(Code::FailedPrecondition)),
        "the other is refused: {codes:?}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_named() {
    let (_s, _agent, _dir, mut c) = setup(Db::Sqlite).await;
    let err = c
        .create_deployment(pb::CreateDeploymentRequest {
            service: "api".to_owned(),
            version: "1.0; rm -rf /".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("version"), "{err:?}");
    let err = c
        .create_deployment(pb::CreateDeploymentRequest {
            service: "api".to_owned(),
            version: "1.0.0".to_owned(),
            environment: Some("nowhere".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nowhere"), "{err:?}");
    let id = create(&mut c, "api", "1.0.0", guard(60, 0)).await;
    let err = c
        .promote_deployment(pb::PromoteDeploymentRequest {
            id: id.clone(),
            execute: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "PENDING cannot be promoted"
    );
    let err = c
        .get_deployment(pb::GetDeploymentRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// The state changes of deployment `id` into `state`.
async fn entered(c: &mut Client, id: &str, state: pb::DeploymentState) -> usize {
    let mut watch = c
        .watch_deployments(pb::WatchDeploymentsRequest {
            deployment_id: id.to_owned(),
            after_seq: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut n = 0;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a finished deployment's watch ends")
        .expect("watch message")
    {
        let event = msg.event.unwrap();
        n += usize::from(event.kind == "state_changed" && event.state == state as i32);
    }
    n
}

#[tokio::test]
async fn jobs_slower_than_the_previous_versions_roll_back_on_the_latency_gate() {
    let (s, _agent, dir, mut c) = setup(Db::Postgres).await;
    let first = deploy(&mut c, "ledger", "1.0.0", guard(1, 0)).await;
    wait_state(
        &mut c,
        &first,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    // The baseline: the previous version's jobs take about 0.2 s.
    tagged_jobs(&s, "ledger", "1.0.0", "sleep 0.2", 4).await;

    let second = deploy(&mut c, "ledger", "2.0.0", guard(600, 4)).await;
    tagged_jobs(&s, "ledger", "2.0.0", "sleep 0.7", 4).await;
    let d = wait_state(
        &mut c,
        &second,
        pb::DeploymentState::RolledBack,
        Duration::from_secs(30),
    )
    .await;
    let reason = d.reason.unwrap();
    assert!(reason.contains("latency"), "{reason}");
    assert!(
        !reason.contains("failure_rate"),
        "only the latency gate failed: {reason}"
    );
    assert_eq!(
        deploys(&dir).last().map(String::as_str),
        Some("production ledger 1.0.0")
    );
    let evals = evaluations(&mut c, &second).await;
    let failed = evals
        .iter()
        .find(|e| e.verdict == pb::Verdict::Fail as i32)
        .unwrap();
    let latency = failed.gates.iter().find(|g| g.gate == "latency").unwrap();
    assert_eq!(latency.verdict, pb::Verdict::Fail as i32);
    assert!(latency.value.unwrap() > 1.1, "{latency:?}");
}

/// A health endpoint on loopback answering the status in `status`.
async fn health_endpoint(status: Arc<AtomicU16>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let status = status.load(Ordering::SeqCst);
            async move { axum::http::StatusCode::from_u16(status).unwrap() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/health")
}

#[tokio::test]
async fn a_health_probe_failing_for_over_30_s_rolls_back() {
    let status = Arc::new(AtomicU16::new(200));
    let url = health_endpoint(status.clone()).await;
    let s = Server::start(Db::Postgres, &[]).await;
    let dir = workdir();
    let _agent = Agent::start_in(POOL, "it-prober", &[&s], &agent_key(&s).await, &dir);
    let mut c = environments(&s, Some(url)).await;
    let probed = pb::GuardSettings {
        probe_interval_seconds: 2,
        ..guard(1, 0)
    };
    let first = deploy(&mut c, "gateway", "1.0.0", probed).await;
    let d = wait_state(
        &mut c,
        &first,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    assert!(d.reason.is_none());

    let second = deploy(
        &mut c,
        "gateway",
        "2.0.0",
        pb::GuardSettings {
            window_seconds: 600,
            ..probed
        },
    )
    .await;
    status.store(500, Ordering::SeqCst);
    let broke = Instant::now();
    let d = wait_state(
        &mut c,
        &second,
        pb::DeploymentState::RolledBack,
        Duration::from_secs(60),
    )
    .await;
    let after = broke.elapsed();
    assert!(
        after >= Duration::from_secs(30),
        "rolled back after only {after:?}"
    );
    let reason = d.reason.unwrap();
    assert!(reason.contains("health: probe failing for"), "{reason}");
    assert_eq!(
        deploys(&dir).last().map(String::as_str),
        Some("production gateway 1.0.0")
    );
}

#[tokio::test]
async fn a_replica_killed_during_the_guard_leaves_the_other_to_roll_back_exactly_once() {
    let url = Db::Postgres.fresh_url().await;
    let a = Server::start_on(&url, &[]).await;
    let b = Server::start_on(&url, &[]).await;
    let dir = workdir();
    let _agent = Agent::start_in(POOL, "it-two-replicas", &[&b], &agent_key(&a).await, &dir);
    let mut c = environments(&b, None).await;
    let first = deploy(&mut c, "orders", "1.0.0", guard(1, 0)).await;
    wait_state(
        &mut c,
        &first,
        pb::DeploymentState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let second = deploy(&mut c, "orders", "2.0.0", guard(600, 4)).await;
    // Both replicas guard it for a while (each interval evaluated once), then A dies.
    eventually("three evaluations", Duration::from_secs(20), async || {
        let evals = evaluations(&mut c, &second).await;
        if evals.len() >= 3 {
            Ok(())
        } else {
            Err(format!("{evals:?}"))
        }
    })
    .await;
    a.kill9();
    tagged_jobs(&b, "orders", "2.0.0", "exit 1", 4).await;
    wait_state(
        &mut c,
        &second,
        pb::DeploymentState::RolledBack,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        entered(&mut c, &second, pb::DeploymentState::RollingBack).await,
        1
    );
    let rollbacks = deploys(&dir)
        .iter()
        .filter(|l| *l == "production orders 1.0.0")
        .count();
    assert_eq!(
        rollbacks,
        2,
        "the first deploy and one rollback: {:?}",
        deploys(&dir)
    );
    let evals = evaluations(&mut c, &second).await;
    let fails = evals
        .iter()
        .filter(|e| e.verdict == pb::Verdict::Fail as i32)
        .count();
    assert_eq!(fails, 1, "{evals:?}");
    // One evaluation per interval across both replicas: never two within half a second.
    let at: Vec<_> = evals.iter().map(|e| e.at.unwrap()).collect();
    for w in at.windows(2) {
        let gap = (w[1].seconds - w[0].seconds) as f64 + f64::from(w[1].nanos - w[0].nanos) / 1e9;
        assert!(gap > 0.5, "two evaluations {gap:.3} s apart: {at:?}");
    }
}
