//! The conformance suite every [`DeploymentStore`] adapter must pass. Each check takes fresh,
//! migrated [`Stores`] (holding only the seeded `default` tenant);
//! [`deployments_conformance_suite!`](crate::deployments_conformance_suite) turns the list into
//! one `#[tokio::test]` per check for an adapter's factory (on a multi-threaded runtime for the
//! races). The webhook and notification checks live in its `notifications` module.

use std::sync::Arc;
use std::time::Duration;

use switchyard_types::{
    ClaimRequest, Deployment, DeploymentFilter, DeploymentState, ErrorKind, GateResult,
    GuardSettings, JobState, Labels, NewDeployment, NewEnvironment, NewJob, Outcome, Signal,
    StepKind, TenantId, Transition, Verdict,
};

use crate::conformance::new_job;
use crate::identity_conformance::tenant;
use crate::{DeploymentStore, Stores};

mod notifications;
pub use notifications::{
    notifications_are_claimed_once_retried_and_given_up,
    notifications_are_written_with_their_events, racing_claims_never_take_one_notification_twice,
    webhooks_are_tenant_scoped_and_limited,
};

/// Generates one test per deployment conformance check, each on stores from `$make` (an async
/// fn returning [`Stores`]).
#[macro_export]
macro_rules! deployments_conformance_suite {
    ($make:path) => {
        $crate::deployments_conformance_suite!(@each $make, (),
            environments_are_stored_replaced_and_tenant_scoped,
            transitions_are_compare_and_set_and_enqueue_their_step,
            one_deployment_of_a_service_holds_an_environment,
            the_guard_starts_with_a_release_and_each_tick_is_taken_once,
            finished_steps_are_found_by_their_jobs,
            version_figures_count_tagged_jobs_and_signals,
            lists_filter_and_summaries_count,
            notifications_are_written_with_their_events,
            notifications_are_claimed_once_retried_and_given_up,
            webhooks_are_tenant_scoped_and_limited);
        $crate::deployments_conformance_suite!(@each $make,
            (flavor = "multi_thread", worker_threads = 4),
            racing_promote_and_rollback_of_one_service_let_one_win,
            racing_claims_never_take_one_notification_twice);
    };
    (@each $make:path, $runtime:tt, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $check() {
                let stores = $make().await;
                $crate::deployments_conformance::$check(&stores).await;
            }
        )+
    };
}

fn env(tenant: &TenantId, name: &str) -> NewEnvironment {
    NewEnvironment {
        tenant: tenant.clone(),
        name: name.to_owned(),
        pool: format!("{name}-pool"),
        deploy_command: "deploy {{service}} {{version}}".to_owned(),
        health_url: None,
        secrets: vec!["DEPLOY_TOKEN".to_owned()],
    }
}

fn deployment(tenant: &TenantId, service: &str, version: &str) -> NewDeployment {
    NewDeployment {
        tenant: tenant.clone(),
        service: service.to_owned(),
        version: version.to_owned(),
        staging_environment: "staging".to_owned(),
        environment: "production".to_owned(),
        guard: GuardSettings {
            window: Duration::from_secs(600),
            interval: Duration::from_secs(30),
            ..GuardSettings::default()
        },
        created_by: "alice".to_owned(),
    }
}

fn step_job(d: &Deployment, pool: &str) -> NewJob {
    let mut job = new_job(d.tenant.as_str(), pool, switchyard_types::Priority::High);
    job.max_attempts = 1;
    job.tags = Labels::from([("deployment".to_owned(), d.id.to_string())]);
    job
}

fn change(d: &Deployment, to: DeploymentState) -> Transition {
    Transition {
        tenant: d.tenant.clone(),
        id: d.id,
        from: d.state,
        to,
        step: None,
        previous_version: None,
        rollback_version: None,
        reason: None,
        message: format!("{} -> {to}", d.state),
        gate_failure: None,
    }
}

/// `d` moved to `to`, with a step job when the state runs one.
async fn advance(store: &dyn DeploymentStore, d: &Deployment, to: DeploymentState) -> Deployment {
    let mut t = change(d, to);
    if to.runs_step() {
        let kind = if to == DeploymentState::Staging {
            StepKind::Stage
        } else if to == DeploymentState::RollingBack {
            StepKind::Rollback
        } else {
            StepKind::Promote
        };
        t.step = Some((kind, step_job(d, "deploy")));
    }
    store.transition(&t).await.expect("transition").0
}

async fn fresh(stores: &Stores, service: &str, version: &str) -> Deployment {
    let t = tenant("default");
    let store = stores.deployments.as_ref();
    for name in ["staging", "production"] {
        store.put_environment(&env(&t, name)).await.unwrap();
    }
    store
        .create_deployment(&deployment(&t, service, version))
        .await
        .unwrap()
}

/// Environments are created, replaced in place, listed by name and invisible to other tenants.
pub async fn environments_are_stored_replaced_and_tenant_scoped(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let t = tenant("default");
    let staging = store.put_environment(&env(&t, "staging")).await.unwrap();
    assert_eq!(staging.pool, "staging-pool");
    assert_eq!(staging.secrets, ["DEPLOY_TOKEN"]);
    let mut replaced = env(&t, "staging");
    replaced.health_url = Some("http://127.0.0.1:9/health".to_owned());
    replaced.pool = "other".to_owned();
    let again = store.put_environment(&replaced).await.unwrap();
    assert_eq!(again.pool, "other");
    assert_eq!(again.created_at, staging.created_at);
    store.put_environment(&env(&t, "production")).await.unwrap();
    let names: Vec<_> = store
        .environments(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["production", "staging"]);

    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    assert!(store.environments(&other).await.unwrap().is_empty());
    let err = store.environment(&other, "staging").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = store
        .put_environment(&env(&tenant("nobody"), "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

/// A transition happens only from the state it names, enqueues its step's job in the same
/// transaction and appends its event; a stale one is `Conflict` and changes nothing.
pub async fn transitions_are_compare_and_set_and_enqueue_their_step(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    assert_eq!(d.state, DeploymentState::Pending);
    assert_eq!(d.created_by, "alice");

    let mut t = change(&d, DeploymentState::Staging);
    t.step = Some((StepKind::Stage, step_job(&d, "staging-pool")));
    let (staging, job) = store.transition(&t).await.unwrap();
    let job = job.expect("the step's job");
    assert_eq!(staging.state, DeploymentState::Staging);
    assert_eq!(staging.step, Some(StepKind::Stage));
    assert_eq!(staging.step_job, Some(job.id));
    let stored = stores.queue.get(&d.tenant, job.id).await.unwrap();
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(stored.tags["deployment"], d.id.to_string());

    // The same change again: the deployment is no longer PENDING.
    let err = store.transition(&t).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err:?}");
    let jobs = stores
        .queue
        .list(
            &d.tenant,
            &switchyard_types::JobFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "a refused transition enqueues nothing");

    let staged = advance(store, &staging, DeploymentState::Staged).await;
    let failed = {
        let mut t = change(&staged, DeploymentState::Failed);
        t.reason = Some("broken".to_owned());
        store.transition(&t).await.unwrap().0
    };
    assert_eq!(failed.reason.as_deref(), Some("broken"));
    assert!(failed.finished_at.is_some());
    let events = store.events(&d.tenant, Some(d.id), 0, 100).await.unwrap();
    let states: Vec<_> = events.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            DeploymentState::Pending,
            DeploymentState::Staging,
            DeploymentState::Staged,
            DeploymentState::Failed
        ]
    );
    assert_eq!(events[1].from, Some(DeploymentState::Pending));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let later = store
        .events(&d.tenant, Some(d.id), events[1].seq, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 2);

    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    assert_eq!(
        store.deployment(&other, d.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(store.events(&other, None, 0, 100).await.unwrap().is_empty());
}

/// While one deployment of a service deploys to or is guarded in production, another cannot
/// enter it; once the first is done, it can.
pub async fn one_deployment_of_a_service_holds_an_environment(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let first = fresh(stores, "api", "1.0.0").await;
    let second = store
        .create_deployment(&deployment(&first.tenant, "api", "1.1.0"))
        .await
        .unwrap();
    let other_service = store
        .create_deployment(&deployment(&first.tenant, "web", "1.0.0"))
        .await
        .unwrap();
    let mut staged = Vec::new();
    for d in [&first, &second, &other_service] {
        let s = advance(store, d, DeploymentState::Staging).await;
        staged.push(advance(store, &s, DeploymentState::Staged).await);
    }
    let promoting = advance(store, &staged[0], DeploymentState::Promoting).await;
    let mut t = change(&staged[1], DeploymentState::Promoting);
    t.step = Some((StepKind::Promote, step_job(&staged[1], "deploy")));
    let err = store.transition(&t).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err:?}");
    assert!(err.message.contains("production"), "{}", err.message);
    assert_eq!(
        store
            .deployment(&second.tenant, second.id)
            .await
            .unwrap()
            .state,
        DeploymentState::Staged
    );
    // Another service is not held up.
    advance(store, &staged[2], DeploymentState::Promoting).await;

    let guarding = advance(store, &promoting, DeploymentState::Guarding).await;
    assert_eq!(
        store.transition(&t).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    advance(store, &guarding, DeploymentState::Succeeded).await;
    let (now, _) = store.transition(&t).await.unwrap();
    assert_eq!(now.state, DeploymentState::Promoting);
}

/// Racing transitions of two deployments of one service into production (a promote and a
/// rollback): exactly one wins, the other is `Conflict`.
pub async fn racing_promote_and_rollback_of_one_service_let_one_win(stores: &Stores) {
    let store = stores.deployments.clone();
    fresh(stores, "api", "0.1.0").await;
    let t = tenant("default");
    for round in 0..5 {
        let mut live = store
            .create_deployment(&deployment(&t, "api", &format!("1.0.{round}")))
            .await
            .unwrap();
        for to in [
            DeploymentState::Staging,
            DeploymentState::Staged,
            DeploymentState::Promoting,
            DeploymentState::Guarding,
            DeploymentState::Succeeded,
        ] {
            live = advance(store.as_ref(), &live, to).await;
        }
        let mut next = store
            .create_deployment(&deployment(&t, "api", &format!("2.0.{round}")))
            .await
            .unwrap();
        for to in [DeploymentState::Staging, DeploymentState::Staged] {
            next = advance(store.as_ref(), &next, to).await;
        }
        let mut promote = change(&next, DeploymentState::Promoting);
        promote.step = Some((StepKind::Promote, step_job(&next, "deploy")));
        let mut rollback = change(&live, DeploymentState::RollingBack);
        rollback.step = Some((StepKind::Rollback, step_job(&live, "deploy")));
        rollback.rollback_version = Some("0.1.0".to_owned());
        let (a, b) = (Arc::clone(&store), Arc::clone(&store));
        let (promoted, rolled) = tokio::join!(
            tokio::spawn(async move { a.transition(&promote).await }),
            tokio::spawn(async move { b.transition(&rollback).await })
        );
        let outcomes = [promoted.unwrap(), rolled.unwrap()];
        let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        let loser = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert_eq!(loser.kind, ErrorKind::Conflict, "{loser:?}");
        // Production is free again for the next round.
        store
            .transition(&change(&winners[0].0, DeploymentState::Failed))
            .await
            .unwrap();
    }
}

/// Entering `GUARDING` starts the window and makes the version the release; each due probe
/// and evaluation is taken exactly once; probes report their jobs' outcomes.
pub async fn the_guard_starts_with_a_release_and_each_tick_is_taken_once(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    assert_eq!(
        store
            .current_release(&d.tenant, "api", "production")
            .await
            .unwrap(),
        None
    );
    let mut d = d;
    for to in [
        DeploymentState::Staging,
        DeploymentState::Staged,
        DeploymentState::Promoting,
    ] {
        d = advance(store, &d, to).await;
    }
    assert!(store.due_guards(10).await.unwrap().is_empty());
    let mut guard = change(&d, DeploymentState::Guarding);
    guard.previous_version = Some("0.9.0".to_owned());
    let (g, _) = store.transition(&guard).await.unwrap();
    assert_eq!(g.previous_version.as_deref(), Some("0.9.0"));
    let started = g.guard_started_at.expect("guard started");
    assert_eq!(
        g.guard_ends_at.unwrap() - started,
        chrono::Duration::seconds(600)
    );
    let release = store
        .current_release(&d.tenant, "api", "production")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (release.version.as_str(), release.deployment),
        ("1.0.0", d.id)
    );

    // The first probe is due at once; the first evaluation after one interval.
    let due = store.due_guards(10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [d.id]);
    let mut probe = new_job(
        "default",
        "production-pool",
        switchyard_types::Priority::High,
    );
    probe.kind = "http".to_owned();
    probe.max_attempts = 1;
    let taken = store
        .take_probe(
            &d.tenant,
            d.id,
            Duration::from_secs(60),
            Some(probe.clone()),
        )
        .await
        .unwrap()
        .expect("the due probe");
    assert!(
        store
            .take_probe(&d.tenant, d.id, Duration::from_secs(60), Some(probe))
            .await
            .unwrap()
            .is_none(),
        "the next probe is not due yet"
    );
    assert!(store.due_guards(10).await.unwrap().is_empty());
    assert!(
        !store
            .take_evaluation(&d.tenant, d.id, Duration::from_secs(30))
            .await
            .unwrap()
    );
    // Still running: no result.
    assert!(
        store
            .probes(&d.tenant, d.id, started)
            .await
            .unwrap()
            .is_empty()
    );
    let claim = ClaimRequest {
        agent_id: "a1".to_owned(),
        pool: "production-pool".to_owned(),
        labels: Labels::new(),
        max_jobs: 1,
        lease: Duration::from_secs(30),
        holder: None,
    };
    let claimed = stores.queue.claim(None, &claim).await.unwrap();
    assert_eq!(claimed[0].id, taken.id);
    let outcome = Outcome::Failed {
        exit_code: None,
        error: "503".to_owned(),
    };
    stores
        .queue
        .complete(&d.tenant, taken.id, 1, &outcome, Duration::ZERO)
        .await
        .unwrap();
    let probes = store.probes(&d.tenant, d.id, started).await.unwrap();
    assert_eq!(probes.len(), 1);
    assert!(!probes[0].ok);

    let gates = vec![GateResult {
        gate: "failure_rate".to_owned(),
        verdict: Verdict::Inconclusive,
        value: None,
        limit: Some(0.05),
        samples: 0,
        detail: "no data".to_owned(),
    }];
    let first = store
        .record_evaluation(
            &d.tenant,
            d.id,
            Verdict::Inconclusive,
            &gates,
            &serde_json::json!({"n": 1}),
        )
        .await
        .unwrap();
    let second = store
        .record_evaluation(&d.tenant, d.id, Verdict::Pass, &[], &serde_json::json!({}))
        .await
        .unwrap();
    let all = store.evaluations(&d.tenant, d.id).await.unwrap();
    assert_eq!(all, [first.clone(), second]);
    assert_eq!(first.gates, gates);
    assert_eq!(first.verdict, Verdict::Inconclusive);
}

/// A deployment appears among the finished steps once its step's job ends, and not before.
pub async fn finished_steps_are_found_by_their_jobs(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    let staging = advance(store, &d, DeploymentState::Staging).await;
    assert!(store.finished_steps(10).await.unwrap().is_empty());
    let claim = ClaimRequest {
        agent_id: "a1".to_owned(),
        pool: "deploy".to_owned(),
        labels: Labels::new(),
        max_jobs: 1,
        lease: Duration::from_secs(30),
        holder: None,
    };
    let job = stores.queue.claim(None, &claim).await.unwrap().remove(0);
    assert_eq!(Some(job.id), staging.step_job);
    assert!(store.finished_steps(10).await.unwrap().is_empty());
    let ok = Outcome::Succeeded {
        exit_code: Some(0),
        result: None,
    };
    stores
        .queue
        .complete(&d.tenant, job.id, 1, &ok, Duration::ZERO)
        .await
        .unwrap();
    let finished = store.finished_steps(10).await.unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].0.id, d.id);
    assert_eq!(finished[0].1.state, JobState::Completed);
    advance(store, &staging, DeploymentState::Staged).await;
    assert!(store.finished_steps(10).await.unwrap().is_empty());
}

/// A version's figures count its tagged jobs that finished in the window (failures and run
/// times) and the signals it reported; other versions, services and tenants do not count.
pub async fn version_figures_count_tagged_jobs_and_signals(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let t = tenant("default");
    let tagged = |service: &str, version: &str| {
        let mut job = new_job("default", "work", switchyard_types::Priority::Normal);
        job.max_attempts = 1;
        job.tags = Labels::from([
            ("service".to_owned(), service.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]);
        job
    };
    let mut jobs = vec![tagged("api", "2.0.0"); 5];
    jobs.push(tagged("api", "1.0.0"));
    jobs.push(tagged("web", "2.0.0"));
    jobs.push(tagged("api", "2.0.0")); // stays queued
    stores.queue.enqueue(jobs).await.unwrap();
    let claim = ClaimRequest {
        agent_id: "a1".to_owned(),
        pool: "work".to_owned(),
        labels: Labels::new(),
        max_jobs: 7,
        lease: Duration::from_secs(30),
        holder: None,
    };
    let claimed = stores.queue.claim(None, &claim).await.unwrap();
    assert_eq!(claimed.len(), 7);
    for (i, job) in claimed.iter().enumerate() {
        stores
            .queue
            .start(&t, job.id, 1, Duration::from_secs(30))
            .await
            .unwrap();
        let outcome = if i < 2 {
            Outcome::Failed {
                exit_code: Some(1),
                error: "boom".to_owned(),
            }
        } else {
            Outcome::Succeeded {
                exit_code: Some(0),
                result: None,
            }
        };
        stores
            .queue
            .complete(&t, job.id, 1, &outcome, Duration::ZERO)
            .await
            .unwrap();
    }
    let failed_api_2 = claimed
        .iter()
        .take(2)
        .filter(|j| j.tags["service"] == "api" && j.tags["version"] == "2.0.0")
        .count() as u64;
    let api_2 = claimed
        .iter()
        .filter(|j| j.tags["service"] == "api" && j.tags["version"] == "2.0.0")
        .count() as u64;
    let hour = Duration::from_secs(3600);
    let figures = store
        .version_figures(&t, "api", "2.0.0", hour, None)
        .await
        .unwrap();
    assert_eq!(figures.jobs_finished, api_2);
    assert_eq!(figures.jobs_failed, failed_api_2);
    assert_eq!(figures.run_seconds.len() as u64, api_2 - failed_api_2);
    assert!(figures.run_seconds.iter().all(|s| *s >= 0.0 && *s < 60.0));
    assert!(!figures.signals_seen);

    let last = store
        .last_finished(&t, "api", "2.0.0")
        .await
        .unwrap()
        .expect("finished jobs");
    let before = last - chrono::Duration::seconds(3600);
    let none = store
        .version_figures(&t, "api", "2.0.0", hour, Some(before))
        .await
        .unwrap();
    assert_eq!(none.jobs_finished, 0, "a window that ends before them");
    assert_eq!(store.last_finished(&t, "api", "3.0.0").await.unwrap(), None);

    for (requests, errors, latency) in [(100, 3, Some(20.0)), (50, 1, None)] {
        store
            .report_signal(&Signal {
                tenant: t.clone(),
                service: "api".to_owned(),
                version: "2.0.0".to_owned(),
                requests,
                errors,
                latency_ms: latency,
            })
            .await
            .unwrap();
    }
    let figures = store
        .version_figures(&t, "api", "2.0.0", hour, None)
        .await
        .unwrap();
    assert!(figures.signals_seen);
    assert_eq!((figures.signal_requests, figures.signal_errors), (150, 4));
    assert_eq!(figures.signal_latencies_ms, [20.0]);
    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    let theirs = store
        .version_figures(&other, "api", "2.0.0", hour, None)
        .await
        .unwrap();
    assert_eq!(theirs, Default::default());
}

async fn ids(
    store: &dyn DeploymentStore,
    t: &TenantId,
    filter: DeploymentFilter,
) -> Vec<switchyard_types::DeploymentId> {
    let found = store.list_deployments(t, &filter).await.unwrap();
    found.into_iter().map(|d| d.id).collect()
}

/// Lists filter by service, state and environment and page by id; summaries count the
/// tenant's jobs and deployments by state, and the gauge's counts every tenant's deployments.
pub async fn lists_filter_and_summaries_count(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let a = fresh(stores, "api", "1.0.0").await;
    let b = store
        .create_deployment(&deployment(&a.tenant, "web", "1.0.0"))
        .await
        .unwrap();
    let c = store
        .create_deployment(&deployment(&a.tenant, "api", "1.1.0"))
        .await
        .unwrap();
    advance(store, &c, DeploymentState::Staging).await;
    let page = |limit| DeploymentFilter {
        limit,
        ..Default::default()
    };
    assert_eq!(ids(store, &a.tenant, page(10)).await, [c.id, b.id, a.id]);
    let api = DeploymentFilter {
        service: Some("api".to_owned()),
        ..page(10)
    };
    assert_eq!(ids(store, &a.tenant, api).await, [c.id, a.id]);
    let staging = DeploymentFilter {
        state: Some(DeploymentState::Staging),
        ..page(10)
    };
    assert_eq!(ids(store, &a.tenant, staging).await, [c.id]);
    let nowhere = DeploymentFilter {
        environment: Some("nowhere".to_owned()),
        ..page(10)
    };
    assert!(ids(store, &a.tenant, nowhere).await.is_empty());
    let after = DeploymentFilter {
        after: Some(c.id),
        ..page(1)
    };
    assert_eq!(ids(store, &a.tenant, after).await, [b.id]);

    let summary = store.summary(&a.tenant).await.unwrap();
    assert_eq!(summary.deployments["PENDING"], 2);
    assert_eq!(summary.deployments["STAGING"], 1);
    assert_eq!(summary.jobs["QUEUED"], 1);
    // Across tenants, only the one with deployments has any.
    let everyone = store.deployments_by_state().await.unwrap();
    assert_eq!(everyone, summary.deployments);
    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    assert_eq!(store.summary(&other).await.unwrap(), Default::default());
}
