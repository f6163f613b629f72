//! The conformance suite every [`QueueStore`] adapter must pass. Each check takes a fresh,
//! empty store; [`store_conformance_suite!`](crate::store_conformance_suite) turns the list into
//! one `#[tokio::test]` per check for an adapter's factory.

use std::time::Duration;

use switchyard_types::{
    ClaimRequest, ErrorKind, Job, JobFilter, JobState, Labels, NewJob, Outcome, Priority, TenantId,
};

use crate::QueueStore;

/// Generates one test per conformance check, each on a store from `$make` (an async fn
/// returning `Arc<dyn QueueStore>` or a `Box`).
#[macro_export]
macro_rules! store_conformance_suite {
    ($make:path) => {
        $crate::store_conformance_suite!(@each $make,
            enqueue_keeps_input_order_and_defaults, idempotency_key_returns_the_first_job,
            claim_follows_priority_then_fifo, claim_round_robins_across_tenants,
            has_due_jobs_sees_due_queued_jobs_only,
            critical_is_claimed_before_ten_thousand_low, claim_honours_labels_and_run_at,
            claim_sets_lease_and_bumps_attempt, concurrent_claims_share_the_queue,
            concurrent_completions_each_get_their_own_answer,
            current_attempts_are_the_live_ones_only,
            every_state_and_operation,
            stale_attempts_conflict_and_change_nothing, failures_retry_then_dead_letter_then_redrive,
            reaper_requeues_then_dead_letters_poison_jobs, tenants_are_isolated,
            list_filters_and_pages, stats_count_states_and_windows, ping_and_migrations,
            concurrency_keys_limit_running_jobs, tenant_limits_cap_running_jobs,
            logs_are_stored_once_in_order_capped_and_tenant_scoped,
            restart_grace_renews_expired_leases_only);
    };
    (@each $make:path, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let store = $make().await;
                $crate::conformance::$check(&*store).await;
            }
        )+
    };
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

/// A job for `tenant` in `pool` with defaults.
pub fn new_job(tenant_name: &str, pool: &str, priority: Priority) -> NewJob {
    NewJob {
        tenant: tenant(tenant_name),
        pool: pool.to_owned(),
        kind: "shell".to_owned(),
        payload: serde_json::json!({ "cmd": "make" }),
        priority,
        labels: Labels::new(),
        tags: Labels::new(),
        max_attempts: 3,
        timeout: Duration::from_secs(60),
        run_at: None,
        delay: Duration::ZERO,
        idempotency_key: None,
        concurrency_key: None,
        concurrency_limit: 1,
    }
}

/// A claim for one job of `pool` by agent `a1` with a 30 s lease.
pub fn claim_req(pool: &str, n: u32) -> ClaimRequest {
    ClaimRequest {
        agent_id: "a1".to_owned(),
        pool: pool.to_owned(),
        labels: Labels::new(),
        max_jobs: n,
        lease: Duration::from_secs(30),
        holder: None,
    }
}

async fn one(store: &dyn QueueStore, job: NewJob) -> Job {
    store.enqueue(vec![job]).await.expect("enqueue").remove(0)
}

pub(crate) async fn claim_one(store: &dyn QueueStore, pool: &str) -> Option<Job> {
    store
        .claim(None, &claim_req(pool, 1))
        .await
        .expect("claim")
        .pop()
}

pub(crate) fn failed(error: &str) -> Outcome {
    Outcome::Failed {
        exit_code: Some(1),
        error: error.to_owned(),
    }
}

pub(crate) fn succeeded() -> Outcome {
    Outcome::Succeeded {
        exit_code: Some(0),
        result: Some(serde_json::json!({ "ok": true })),
    }
}

/// Enqueued jobs come back `QUEUED`, attempt 0, in input order, with every field kept.
pub async fn enqueue_keeps_input_order_and_defaults(store: &dyn QueueStore) {
    let mut a = new_job("t1", "build", Priority::High);
    a.labels.insert("os".into(), "linux".into());
    let b = new_job("t1", "test", Priority::Low);
    let jobs = store.enqueue(vec![a.clone(), b]).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0].pool.as_str(), jobs[1].pool.as_str()),
        ("build", "test")
    );
    let j = &jobs[0];
    assert_eq!(j.state, JobState::Queued);
    assert_eq!((j.attempt, j.max_attempts, j.attempt_limit), (0, 3, 3));
    assert_eq!(j.priority, Priority::High);
    assert_eq!(j.labels, a.labels);
    assert_eq!(j.payload, a.payload);
    assert_eq!(j.timeout, Duration::from_secs(60));
    assert!(j.lease_expires_at.is_none() && j.failures.is_empty());
    assert_eq!(store.get(&j.tenant, j.id).await.unwrap(), *j);
}

/// The same idempotency key (per tenant) returns the first job, also within one batch.
pub async fn idempotency_key_returns_the_first_job(store: &dyn QueueStore) {
    let mut job = new_job("t1", "build", Priority::Normal);
    job.idempotency_key = Some("deploy-42".into());
    let first = one(store, job.clone()).await;
    let again = store.enqueue(vec![job.clone(), job.clone()]).await.unwrap();
    assert_eq!(again[0].id, first.id);
    assert_eq!(again[1].id, first.id);
    let mut other = job.clone();
    other.tenant = tenant("t2");
    assert_ne!(one(store, other).await.id, first.id, "keys are per tenant");
    let listed = store
        .list(
            &tenant("t1"),
            &JobFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(listed.unwrap().len(), 1);
}

/// Higher priorities first; FIFO within a priority.
pub async fn claim_follows_priority_then_fifo(store: &dyn QueueStore) {
    let order = [
        Priority::Low,
        Priority::Normal,
        Priority::Critical,
        Priority::Normal,
        Priority::High,
    ];
    let jobs = store
        .enqueue(order.iter().map(|p| new_job("t1", "build", *p)).collect())
        .await
        .unwrap();
    let claimed = store.claim(None, &claim_req("build", 10)).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(
        ids,
        [jobs[2].id, jobs[4].id, jobs[1].id, jobs[3].id, jobs[0].id]
    );
    assert!(
        store
            .claim(None, &claim_req("build", 1))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Tenant A has 1,000 queued; tenant B's one job at the same priority is among the next two
/// claims.
pub async fn claim_round_robins_across_tenants(store: &dyn QueueStore) {
    store
        .enqueue(
            (0..1000)
                .map(|_| new_job("flood", "build", Priority::Normal))
                .collect(),
        )
        .await
        .unwrap();
    let b = one(store, new_job("quiet", "build", Priority::Normal)).await;
    let next: Vec<_> = store.claim(None, &claim_req("build", 2)).await.unwrap();
    assert!(
        next.iter().any(|j| j.id == b.id),
        "B's job was not among the next 2 claims"
    );
    // One at a time too: after a few more of A's, B's next job again comes within two claims.
    let b2 = one(store, new_job("quiet", "build", Priority::Normal)).await;
    let first = claim_one(store, "build").await.unwrap();
    let second = claim_one(store, "build").await.unwrap();
    assert!(first.id == b2.id || second.id == b2.id);
}

/// A CRITICAL job enqueued behind 10,000 LOW jobs is claimed next.
pub async fn critical_is_claimed_before_ten_thousand_low(store: &dyn QueueStore) {
    for _ in 0..10 {
        store
            .enqueue(
                (0..1000)
                    .map(|_| new_job("t1", "build", Priority::Low))
                    .collect(),
            )
            .await
            .unwrap();
    }
    let critical = one(store, new_job("t1", "build", Priority::Critical)).await;
    assert_eq!(claim_one(store, "build").await.unwrap().id, critical.id);
}

/// A job is claimed only by an agent carrying all its labels, and not before `run_at`.
pub async fn claim_honours_labels_and_run_at(store: &dyn QueueStore) {
    let mut gpu = new_job("t1", "build", Priority::Normal);
    gpu.labels.insert("gpu".into(), "a100".into());
    let gpu = one(store, gpu).await;
    let mut later = new_job("t1", "build", Priority::Critical);
    later.delay = Duration::from_secs(3600);
    one(store, later).await;
    assert!(
        claim_one(store, "build").await.is_none(),
        "no label, nothing due"
    );
    let mut req = claim_req("build", 5);
    req.labels.insert("gpu".into(), "h100".into());
    assert!(
        store.claim(None, &req).await.unwrap().is_empty(),
        "wrong label value"
    );
    req.labels.insert("gpu".into(), "a100".into());
    req.labels.insert("os".into(), "linux".into());
    let claimed = store.claim(None, &req).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [gpu.id]);
    assert!(claim_one(store, "other-pool").await.is_none());
}

/// `has_due_jobs` sees due, queued jobs of the tenant's pool only: not delayed ones, not
/// claimed ones, not another tenant's or another pool's.
pub async fn has_due_jobs_sees_due_queued_jobs_only(store: &dyn QueueStore) {
    let t1 = tenant("t1");
    let mut later = new_job("t1", "build", Priority::Normal);
    later.delay = Duration::from_secs(3600);
    one(store, later).await;
    one(store, new_job("t2", "build", Priority::Normal)).await;
    one(store, new_job("t1", "deploy", Priority::Normal)).await;
    assert!(
        !store.has_due_jobs(&t1, "build").await.unwrap(),
        "delayed only"
    );
    assert!(store.has_due_jobs(&t1, "deploy").await.unwrap());
    assert!(store.has_due_jobs(&tenant("t2"), "build").await.unwrap());
    let mut req = claim_req("deploy", 5);
    req.agent_id = "a1".into();
    assert_eq!(store.claim(Some(&t1), &req).await.unwrap().len(), 1);
    assert!(!store.has_due_jobs(&t1, "deploy").await.unwrap(), "claimed");
}

/// A claim sets `CLAIMED`, bumps the attempt and sets the lease from the database clock.
pub async fn claim_sets_lease_and_bumps_attempt(store: &dyn QueueStore) {
    let job = one(store, new_job("t1", "build", Priority::Normal)).await;
    let c = claim_one(store, "build").await.unwrap();
    assert_eq!((c.id, c.state, c.attempt), (job.id, JobState::Claimed, 1));
    assert_eq!(c.claimed_by.as_deref(), Some("a1"));
    let lease = c.lease_expires_at.unwrap() - c.claimed_at.unwrap();
    assert_eq!(lease.num_milliseconds(), 30_000);
    let s = store
        .start(&c.tenant, c.id, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.state, JobState::Running);
    assert!(s.started_at.is_some() && s.lease_expires_at > c.lease_expires_at);
}

/// Twenty claims at once (each for its own agent and lease) share the queue: no job goes to
/// two of them, none gets more than it asked for, each job carries its own claimant's agent and
/// lease, a concurrency key is honoured across them, a claim on another pool among them gets
/// that pool's job, and a claim after them finds exactly the jobs they left.
pub async fn concurrent_claims_share_the_queue(store: &dyn QueueStore) {
    let mut jobs: Vec<NewJob> = (0..50)
        .map(|_| new_job("t1", "build", Priority::Normal))
        .collect();
    for _ in 0..4 {
        let mut keyed = new_job("t1", "build", Priority::High);
        keyed.concurrency_key = Some("db".into());
        keyed.concurrency_limit = 2;
        jobs.push(keyed);
    }
    jobs.push(new_job("t1", "deploy", Priority::Low));
    let deploy_id = store.enqueue(jobs).await.unwrap().pop().unwrap().id;
    let mut claims: Vec<ClaimRequest> = (0..20u64)
        .map(|i| ClaimRequest {
            agent_id: format!("a{i}"),
            lease: Duration::from_secs(30 + i),
            ..claim_req("build", 3)
        })
        .collect();
    // A claim on another pool among them gets that pool's job.
    claims.insert(7, claim_req("deploy", 3));
    let answers = futures::future::join_all(claims.iter().map(|c| store.claim(None, c))).await;
    let mut seen = std::collections::HashSet::new();
    for (claim, jobs) in claims.iter().zip(answers) {
        if claim.pool == "deploy" {
            let ids: Vec<_> = jobs.expect("claim").iter().map(|j| j.id).collect();
            assert_eq!(ids, [deploy_id]);
            continue;
        }
        let jobs = jobs.expect("claim");
        assert!(
            jobs.len() <= 3,
            "{} got {} jobs",
            claim.agent_id,
            jobs.len()
        );
        for job in jobs {
            assert!(seen.insert(job.id), "job {} claimed twice", job.id);
            assert_eq!(job.claimed_by.as_deref(), Some(claim.agent_id.as_str()));
            let lease = job.lease_expires_at.unwrap() - job.claimed_at.unwrap();
            assert_eq!(
                lease.num_seconds(),
                i64::try_from(claim.lease.as_secs()).unwrap()
            );
            assert_eq!((job.state, job.attempt), (JobState::Claimed, 1));
        }
    }
    let rest = store.claim(None, &claim_req("build", 100)).await.unwrap();
    for job in &rest {
        assert!(seen.insert(job.id), "job {} claimed twice", job.id);
    }
    // 50 free jobs and 2 of the 4 under the key's limit of 2.
    assert_eq!(seen.len(), 52);
}

/// Concurrent completions are group-committed; each caller still gets its own answer: the
/// first completion of an attempt succeeds with its own result, a duplicate or a stale attempt
/// in the same batch conflicts and changes nothing.
pub async fn concurrent_completions_each_get_their_own_answer(store: &dyn QueueStore) {
    let jobs: Vec<NewJob> = (0..200)
        .map(|_| new_job("t1", "build", Priority::Normal))
        .collect();
    store.enqueue(jobs).await.unwrap();
    let claimed = store.claim(None, &claim_req("build", 200)).await.unwrap();
    assert_eq!(claimed.len(), 200);
    let done = |n: usize| Outcome::Succeeded {
        exit_code: Some(0),
        result: Some(serde_json::json!({ "n": n })),
    };
    // Every job once with its attempt; every 10th also with a stale attempt and a duplicate,
    // each with a result of its own.
    let mut calls = Vec::new();
    for (n, job) in claimed.iter().enumerate() {
        calls.push((job, job.attempt, n, true));
        if n % 10 == 0 {
            calls.push((job, job.attempt + 1, n + 1000, false));
            calls.push((job, job.attempt, n + 2000, false));
        }
    }
    let outcomes: Vec<Outcome> = calls.iter().map(|&(_, _, n, _)| done(n)).collect();
    let answers = futures::future::join_all(calls.iter().zip(&outcomes).map(
        |(&(job, attempt, _, _), outcome)| {
            store.complete(&job.tenant, job.id, attempt, outcome, Duration::ZERO)
        },
    ))
    .await;
    for (&(job, _, n, first), answer) in calls.iter().zip(answers) {
        if first {
            let completed = answer.expect("the first completion succeeds");
            assert_eq!(
                (completed.id, completed.state),
                (job.id, JobState::Completed)
            );
            assert_eq!(completed.result, Some(serde_json::json!({ "n": n })));
        } else {
            let e = answer.expect_err("a stale or duplicate completion conflicts");
            assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        }
    }
    for (n, job) in claimed.iter().enumerate().step_by(10) {
        let stored = store.get(&job.tenant, job.id).await.unwrap();
        assert_eq!(stored.state, JobState::Completed);
        assert_eq!(
            stored.result,
            Some(serde_json::json!({ "n": n })),
            "the first result stands"
        );
    }
}

/// `current_attempts` names the held attempts that are still current and claimed or running:
/// not a stale attempt, not a finished job, not another tenant's.
pub async fn current_attempts_are_the_live_ones_only(store: &dyn QueueStore) {
    let running = job_in(store, JobState::Running).await;
    let claimed = job_in(store, JobState::Claimed).await;
    let done = job_in(store, JobState::Completed).await;
    let held = [
        (running.id, running.attempt),
        (claimed.id, claimed.attempt + 1),
        (done.id, done.attempt),
    ];
    assert!(
        store
            .current_attempts(&tenant("t2"), &held)
            .await
            .unwrap()
            .is_empty(),
        "another tenant's jobs"
    );
    assert_eq!(
        store
            .current_attempts(&running.tenant, &held)
            .await
            .unwrap(),
        vec![running.id]
    );
    let cancelled = store.cancel(&claimed.tenant, claimed.id).await.unwrap();
    let now = [(cancelled.id, cancelled.attempt)];
    assert!(
        store
            .current_attempts(&running.tenant, &now)
            .await
            .unwrap()
            .is_empty(),
        "cancelled"
    );
}

/// Puts a fresh job of tenant `t1` in pool `p` into `state`.
async fn job_in(store: &dyn QueueStore, state: JobState) -> Job {
    let mut job = new_job("t1", "p", Priority::Normal);
    job.max_attempts = 1;
    let job = one(store, job).await;
    let t = &job.tenant;
    let lease = Duration::from_secs(30);
    match state {
        JobState::Queued => job,
        JobState::Cancelled => store.cancel(t, job.id).await.unwrap(),
        JobState::Claimed | JobState::Running | JobState::Completed | JobState::DeadLettered => {
            let c = claim_one(store, "p").await.unwrap();
            assert_eq!(c.id, job.id);
            match state {
                JobState::Claimed => c,
                JobState::Running => store.start(t, c.id, 1, lease).await.unwrap(),
                JobState::Completed => store
                    .complete(t, c.id, 1, &succeeded(), lease)
                    .await
                    .unwrap(),
                JobState::DeadLettered | JobState::Queued | JobState::Cancelled => store
                    .complete(t, c.id, 1, &failed("boom"), lease)
                    .await
                    .unwrap(),
            }
        }
    }
}

/// Every (state, operation) pair against its expected result: the new state, or `Conflict`.
pub async fn every_state_and_operation(store: &dyn QueueStore) {
    use JobState::*;
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Start,
        Extend,
        Succeed,
        Fail,
        Cancel,
        SetPriority,
        Redrive,
    }
    // Expected state after the op, or None for Conflict. Jobs allow one attempt.
    let table: [(JobState, [Option<JobState>; 7]); 6] = [
        (
            Queued,
            [None, None, None, None, Some(Cancelled), Some(Queued), None],
        ),
        (
            Claimed,
            [
                Some(Running),
                Some(Claimed),
                Some(Completed),
                Some(DeadLettered),
                Some(Cancelled),
                Some(Claimed),
                None,
            ],
        ),
        (
            Running,
            [
                Some(Running),
                Some(Running),
                Some(Completed),
                Some(DeadLettered),
                Some(Cancelled),
                Some(Running),
                None,
            ],
        ),
        (Completed, [None, None, None, None, None, None, None]),
        (
            DeadLettered,
            [None, None, None, None, None, None, Some(Queued)],
        ),
        (Cancelled, [None, None, None, None, None, None, None]),
    ];
    let ops = [
        Op::Start,
        Op::Extend,
        Op::Succeed,
        Op::Fail,
        Op::Cancel,
        Op::SetPriority,
        Op::Redrive,
    ];
    let lease = Duration::from_secs(30);
    for (state, expected) in table {
        for (op, want) in ops.iter().zip(expected) {
            let job = job_in(store, state).await;
            assert_eq!(job.state, state);
            let (t, id, a) = (&job.tenant, job.id, job.attempt.max(1));
            let got = match op {
                Op::Start => store.start(t, id, a, lease).await,
                Op::Extend => store.extend_lease(t, id, a, lease).await,
                Op::Succeed => store.complete(t, id, a, &succeeded(), lease).await,
                Op::Fail => store.complete(t, id, a, &failed("x"), lease).await,
                Op::Cancel => store.cancel(t, id).await,
                Op::SetPriority => store.set_priority(t, id, Priority::High).await,
                Op::Redrive => store.redrive(t, id).await,
            };
            match (got, want) {
                (Ok(j), Some(w)) => assert_eq!(j.state, w, "{state} + {op:?}"),
                (Err(e), None) => {
                    assert_eq!(e.kind, ErrorKind::Conflict, "{state} + {op:?}: {e}");
                    assert_eq!(
                        store.get(t, id).await.unwrap(),
                        job,
                        "{state} + {op:?} changed the job"
                    );
                }
                (got, want) => panic!("{state} + {op:?}: got {got:?}, want {want:?}"),
            }
            // Clean the pool so the next job_in claims its own job.
            let _ = store.cancel(t, id).await;
        }
    }
}

/// A stale attempt's start, extend and complete get `Conflict` and change nothing.
pub async fn stale_attempts_conflict_and_change_nothing(store: &dyn QueueStore) {
    let job = one(store, new_job("t1", "build", Priority::Normal)).await;
    let t = &job.tenant;
    let lease = Duration::from_millis(1);
    let mut short = claim_req("build", 1);
    short.lease = Duration::from_millis(1);
    store.claim(None, &short).await.unwrap();
    // Attempt 1 loses its lease; attempt 2 takes over.
    wait_reaped(store).await;
    let current = claim_one(store, "build").await.unwrap();
    assert_eq!(current.attempt, 2);
    let before = store.get(t, job.id).await.unwrap();
    for result in [
        store.start(t, job.id, 1, lease).await,
        store.extend_lease(t, job.id, 1, lease).await,
        store.complete(t, job.id, 1, &succeeded(), lease).await,
        store.complete(t, job.id, 1, &failed("late"), lease).await,
        store.start(t, job.id, 3, lease).await,
    ] {
        let e = result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.message.contains("stale attempt"), "{e}");
    }
    assert_eq!(store.get(t, job.id).await.unwrap(), before);
}

/// Reaps until a pass handles something (leases of a few milliseconds), with a deadline.
pub(crate) async fn wait_reaped(store: &dyn QueueStore) -> switchyard_types::ReapReport {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = switchyard_types::ReapReport::of(
            &store.reap_expired(100, Duration::ZERO).await.unwrap(),
        );
        if r.requeued + r.dead_lettered > 0 {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lease expired within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Failures go back to the queue after the retry delay until the last attempt, which
/// dead-letters with every reason; a redrive grants fresh attempts and keeps counting.
pub async fn failures_retry_then_dead_letter_then_redrive(store: &dyn QueueStore) {
    let job = one(store, new_job("t1", "build", Priority::Normal)).await;
    let t = &job.tenant;
    for attempt in 1..=3u32 {
        let c = claim_one(store, "build").await.expect("due again");
        assert_eq!(c.attempt, attempt);
        let outcome = failed(&format!("boom {attempt}"));
        let after = store
            .complete(t, c.id, attempt, &outcome, Duration::ZERO)
            .await
            .unwrap();
        let want = if attempt < 3 {
            JobState::Queued
        } else {
            JobState::DeadLettered
        };
        assert_eq!(after.state, want);
        assert_eq!(after.failures.len() as u32, attempt);
    }
    let dead = store.get(t, job.id).await.unwrap();
    let reasons: Vec<_> = dead
        .failures
        .iter()
        .map(|f| (f.attempt, f.error.as_str()))
        .collect();
    assert_eq!(reasons, [(1, "boom 1"), (2, "boom 2"), (3, "boom 3")]);
    assert!(dead.finished_at.is_some());
    assert!(claim_one(store, "build").await.is_none());

    // A retry waits for its delay.
    let delayed = one(store, new_job("t1", "slow", Priority::Normal)).await;
    let c = claim_one(store, "slow").await.unwrap();
    store
        .complete(t, c.id, 1, &failed("x"), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        claim_one(store, "slow").await.is_none(),
        "retried before its delay"
    );
    assert_eq!(
        store.get(t, delayed.id).await.unwrap().state,
        JobState::Queued
    );

    let redriven = store.redrive(t, job.id).await.unwrap();
    assert_eq!(
        (
            redriven.state,
            redriven.attempt,
            redriven.attempt_limit,
            redriven.redrives
        ),
        (JobState::Queued, 3, 6, 1)
    );
    let c = claim_one(store, "build").await.unwrap();
    assert_eq!(c.attempt, 4, "the attempt counter never resets");
    let done = store
        .complete(t, c.id, 4, &succeeded(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result, Some(serde_json::json!({ "ok": true })));
}

/// Expired leases (claimed or running) are requeued, counted as attempts, and a job whose
/// lease expires `max_attempts` times is dead-lettered with every reason.
pub async fn reaper_requeues_then_dead_letters_poison_jobs(store: &dyn QueueStore) {
    let mut poison = new_job("t1", "build", Priority::Normal);
    poison.max_attempts = 2;
    let poison = one(store, poison).await;
    let t = &poison.tenant;
    let mut short = claim_req("build", 1);
    short.lease = Duration::from_millis(1);
    let c = store.claim(None, &short).await.unwrap().remove(0);
    assert_eq!(wait_reaped(store).await.requeued, 1);
    assert_eq!(store.get(t, c.id).await.unwrap().state, JobState::Queued);
    // Second attempt: running when its lease expires.
    let c = store
        .claim(None, &claim_req("build", 1))
        .await
        .unwrap()
        .remove(0);
    store
        .start(t, c.id, 2, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(wait_reaped(store).await.dead_lettered, 1);
    let dead = store.get(t, c.id).await.unwrap();
    assert_eq!(dead.state, JobState::DeadLettered);
    let reasons: Vec<_> = dead
        .failures
        .iter()
        .map(|f| (f.attempt, f.error.as_str()))
        .collect();
    assert_eq!(reasons, [(1, "lease expired"), (2, "lease expired")]);
    // A live lease is left alone.
    one(store, new_job("t1", "build", Priority::Normal)).await;
    claim_one(store, "build").await.unwrap();
    assert_eq!(
        store.reap_expired(100, Duration::ZERO).await.unwrap().len(),
        0
    );
}

/// Another tenant's job is `NotFound` for every operation and absent from lists and stats.
pub async fn tenants_are_isolated(store: &dyn QueueStore) {
    let job = one(store, new_job("owner", "build", Priority::Normal)).await;
    let other = tenant("intruder");
    let lease = Duration::from_secs(30);
    let results = [
        store.get(&other, job.id).await,
        store.cancel(&other, job.id).await,
        store.set_priority(&other, job.id, Priority::High).await,
        store.redrive(&other, job.id).await,
        store.start(&other, job.id, 0, lease).await,
        store.extend_lease(&other, job.id, 0, lease).await,
        store.complete(&other, job.id, 0, &succeeded(), lease).await,
    ];
    for r in results {
        assert_eq!(r.unwrap_err().kind, ErrorKind::NotFound);
    }
    let all = JobFilter {
        limit: 10,
        ..Default::default()
    };
    assert!(store.list(&other, &all).await.unwrap().is_empty());
    assert!(
        store
            .stats(&other, Duration::from_secs(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim(Some(&other), &claim_req("build", 1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.get(&job.tenant, job.id).await.unwrap(),
        job,
        "unchanged"
    );
    let mine = store
        .claim(Some(&job.tenant), &claim_req("build", 1))
        .await
        .unwrap();
    assert_eq!(mine[0].id, job.id);
}

/// Lists filter by state, pool, priority, kind and label, newest first, and page.
pub async fn list_filters_and_pages(store: &dyn QueueStore) {
    let t = tenant("t1");
    let mut labelled = new_job("t1", "build", Priority::High);
    labelled.labels.insert("team".into(), "core".into());
    labelled.kind = "deploy".into();
    let labelled = one(store, labelled).await;
    let jobs = store
        .enqueue(
            (0..5)
                .map(|_| new_job("t1", "test", Priority::Low))
                .collect(),
        )
        .await
        .unwrap();
    let f = |limit| JobFilter {
        limit,
        ..Default::default()
    };
    let all = store.list(&t, &f(100)).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let t = &t;
    let by = |filter: JobFilter| async move { store.list(t, &filter).await.unwrap() };
    assert_eq!(
        by(JobFilter {
            pool: Some("test".into()),
            ..f(100)
        })
        .await
        .len(),
        5
    );
    assert_eq!(
        by(JobFilter {
            priority: Some(Priority::High),
            ..f(100)
        })
        .await[0]
            .id,
        labelled.id
    );
    assert_eq!(
        by(JobFilter {
            kind: Some("deploy".into()),
            ..f(100)
        })
        .await
        .len(),
        1
    );
    let label = Some(("team".to_owned(), "core".to_owned()));
    assert_eq!(by(JobFilter { label, ..f(100) }).await[0].id, labelled.id);
    let wrong = Some(("team".to_owned(), "web".to_owned()));
    assert!(
        by(JobFilter {
            label: wrong,
            ..f(100)
        })
        .await
        .is_empty()
    );
    store.cancel(t, jobs[0].id).await.unwrap();
    assert_eq!(
        by(JobFilter {
            state: Some(JobState::Cancelled),
            ..f(100)
        })
        .await[0]
            .id,
        jobs[0].id
    );
    // Pages of 4 then 2, no overlap.
    let page1 = by(f(4)).await;
    let page2 = by(JobFilter {
        after: Some(page1[3].id),
        ..f(4)
    })
    .await;
    assert_eq!((page1.len(), page2.len()), (4, 2));
    assert!(page2.iter().all(|j| !page1.contains(j)));
}

/// Stats count current states per (pool, priority) and windowed outcomes.
pub async fn stats_count_states_and_windows(store: &dyn QueueStore) {
    let t = tenant("t1");
    store
        .enqueue(
            (0..4)
                .map(|_| new_job("t1", "build", Priority::Normal))
                .collect(),
        )
        .await
        .unwrap();
    one(store, new_job("t1", "build", Priority::High)).await;
    let lease = Duration::from_secs(30);
    let claimed = store.claim(None, &claim_req("build", 3)).await.unwrap();
    let (high, n1, n2) = (&claimed[0], &claimed[1], &claimed[2]);
    assert_eq!(high.priority, Priority::High);
    store.start(&t, n1.id, 1, lease).await.unwrap();
    store
        .complete(&t, n1.id, 1, &succeeded(), lease)
        .await
        .unwrap();
    store
        .complete(&t, n2.id, 1, &failed("x"), Duration::from_secs(3600))
        .await
        .unwrap();
    let stats = store.stats(&t, Duration::from_secs(300)).await.unwrap();
    let normal = stats
        .iter()
        .find(|s| s.priority == Some(Priority::Normal))
        .unwrap();
    let high_stats = stats
        .iter()
        .find(|s| s.priority == Some(Priority::High))
        .unwrap();
    assert_eq!(normal.pool, "build");
    // n2 is queued again (waiting out its retry delay), plus the two never claimed.
    assert_eq!((normal.queued, normal.claimed, normal.running), (3, 0, 0));
    assert_eq!(
        (normal.completed, normal.failed, normal.dead_lettered),
        (1, 1, 0)
    );
    assert!((normal.failure_rate - 0.5).abs() < 1e-9);
    // Waits of jobs claimed in the window (n1 only: n2 waits again), all non-negative.
    assert!(
        normal.wait_avg_seconds >= 0.0 && normal.wait_p95_seconds >= 0.0,
        "{normal:?}"
    );
    assert!(
        (normal.wait_avg_seconds - normal.wait_p95_seconds).abs() < 1e-9,
        "one sample"
    );
    assert!(normal.oldest_queued_age_seconds >= 0.0);
    assert_eq!((high_stats.claimed, high_stats.queued), (1, 0));
}

/// The store answers and its migrations are current.
pub async fn ping_and_migrations(store: &dyn QueueStore) {
    store.ping().await.unwrap();
    let m = store.migrations().await.unwrap();
    assert!(m.known >= 1 && m.is_current(), "{m:?}");
    assert!(matches!(store.backend(), "postgres" | "sqlite"));
}

/// At most `concurrency_limit` jobs of one (tenant, key) are claimed or running; jobs over the
/// limit wait without hiding other work, and a finished one frees its slot.
pub async fn concurrency_keys_limit_running_jobs(store: &dyn QueueStore) {
    let t = tenant("t1");
    let keyed = |limit| {
        let mut j = new_job("t1", "build", Priority::High);
        j.concurrency_key = Some("prod-db".into());
        j.concurrency_limit = limit;
        j
    };
    let first = store
        .enqueue(vec![keyed(2), keyed(2), keyed(2)])
        .await
        .unwrap();
    let other_tenant = {
        let mut j = keyed(2);
        j.tenant = tenant("t2");
        one(store, j).await
    };
    let plain = one(store, new_job("t1", "build", Priority::Low)).await;
    let claimed: std::collections::BTreeSet<_> = store
        .claim(None, &claim_req("build", 10))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    let want = [first[0].id, first[1].id, other_tenant.id, plain.id]
        .into_iter()
        .collect();
    assert_eq!(
        claimed, want,
        "two of t1's key, t2's own key, and the unkeyed job"
    );
    assert!(
        store
            .claim(None, &claim_req("build", 10))
            .await
            .unwrap()
            .is_empty(),
        "the third waits"
    );
    let lease = Duration::from_secs(30);
    store
        .complete(&t, first[0].id, 1, &succeeded(), lease)
        .await
        .unwrap();
    let next = store.claim(None, &claim_req("build", 10)).await.unwrap();
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), [first[2].id]);
    // A failure (retry) and a cancel free slots too.
    store
        .complete(&t, first[1].id, 1, &failed("x"), Duration::ZERO)
        .await
        .unwrap();
    store.cancel(&t, first[2].id).await.unwrap();
    let again = store.claim(None, &claim_req("build", 10)).await.unwrap();
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        [first[1].id]
    );
}

/// A tenant's `max_running` caps its claimed and running jobs; other tenants are not affected;
/// removing the cap releases the rest.
pub async fn tenant_limits_cap_running_jobs(store: &dyn QueueStore) {
    let t = tenant("capped");
    assert_eq!(store.tenant_limit(&t).await.unwrap(), None);
    store.set_tenant_limit(&t, Some(2)).await.unwrap();
    assert_eq!(store.tenant_limit(&t).await.unwrap(), Some(2));
    let capped = store
        .enqueue(
            (0..5)
                .map(|_| new_job("capped", "build", Priority::High))
                .collect(),
        )
        .await
        .unwrap();
    let free = store
        .enqueue(
            (0..2)
                .map(|_| new_job("free", "build", Priority::Low))
                .collect(),
        )
        .await
        .unwrap();
    let claimed = store.claim(None, &claim_req("build", 10)).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(ids, [capped[0].id, capped[1].id, free[0].id, free[1].id]);
    let lease = Duration::from_secs(30);
    store.start(&t, capped[0].id, 1, lease).await.unwrap();
    assert!(
        store
            .claim(None, &claim_req("build", 10))
            .await
            .unwrap()
            .is_empty(),
        "claimed and running both count"
    );
    store
        .complete(&t, capped[0].id, 1, &succeeded(), lease)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(None, &claim_req("build", 10))
            .await
            .unwrap()
            .len(),
        1
    );
    store.set_tenant_limit(&t, None).await.unwrap();
    assert_eq!(
        store
            .claim(None, &claim_req("build", 10))
            .await
            .unwrap()
            .len(),
        2,
        "no cap: the rest"
    );
}

/// Log chunks are stored once per (attempt, sequence number), read back in order (by attempt,
/// after a sequence number), capped per job, and invisible to other tenants.
pub async fn logs_are_stored_once_in_order_capped_and_tenant_scoped(store: &dyn QueueStore) {
    use switchyard_types::{LogAppend, MAX_LOG_BYTES_PER_JOB, MAX_LOG_CHUNK_BYTES};
    let job = one(store, new_job("owner", "build", Priority::Normal)).await;
    let owner = tenant("owner");
    let append = |attempt, seq, data: &'static str| {
        let owner = owner.clone();
        async move {
            store
                .append_log(&owner, job.id, attempt, seq, data)
                .await
                .unwrap()
        }
    };
    assert_eq!(append(1, 1, "second\n").await, LogAppend::Stored);
    assert_eq!(append(1, 0, "first\n").await, LogAppend::Stored);
    assert_eq!(append(1, 0, "retried\n").await, LogAppend::Duplicate);
    assert_eq!(append(2, 0, "next attempt\n").await, LogAppend::Stored);
    let read = |attempt, after| {
        let owner = owner.clone();
        async move {
            let chunks = store
                .logs(&owner, job.id, attempt, after, 100)
                .await
                .unwrap();
            chunks
                .into_iter()
                .map(|c| (c.attempt, c.seq, c.data))
                .collect::<Vec<_>>()
        }
    };
    let line = |a, s, d: &str| (a, s, d.to_owned());
    assert_eq!(
        read(None, None).await,
        [
            line(1, 0, "first\n"),
            line(1, 1, "second\n"),
            line(2, 0, "next attempt\n")
        ]
    );
    assert_eq!(read(Some(1), Some(0)).await, [line(1, 1, "second\n")]);
    assert_eq!(
        store
            .logs(&owner, job.id, None, None, 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
    assert!(
        store
            .logs(&tenant("intruder"), job.id, None, None, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Full: the chunk that would pass the cap is dropped, and so is every later one.
    let big = "x".repeat(MAX_LOG_CHUNK_BYTES);
    let fits = MAX_LOG_BYTES_PER_JOB / MAX_LOG_CHUNK_BYTES as u64 - 1;
    for seq in 1..=fits {
        let r = store
            .append_log(&owner, job.id, 2, seq, &big)
            .await
            .unwrap();
        assert_eq!(r, LogAppend::Stored, "chunk {seq}");
    }
    let over = store
        .append_log(&owner, job.id, 2, fits + 1, &big)
        .await
        .unwrap();
    assert_eq!(over, LogAppend::Full);
    let stored = store
        .logs(&owner, job.id, Some(2), Some(fits), 10)
        .await
        .unwrap();
    assert!(stored.is_empty(), "nothing stored past the cap");
}

/// Restart grace renews leases that already expired (and nothing else), so the reaper leaves
/// them alone until the grace ends; the holder can then renew as usual.
pub async fn restart_grace_renews_expired_leases_only(store: &dyn QueueStore) {
    let expired = one(store, new_job("t1", "build", Priority::Normal)).await;
    let t = &expired.tenant;
    let mut short = claim_req("build", 1);
    short.lease = Duration::from_millis(1);
    let expired = store.claim(None, &short).await.unwrap().remove(0);
    // A live lease, which the grace must not touch.
    one(store, new_job("t1", "build", Priority::Normal)).await;
    claim_one(store, "build").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let renewed = store
        .grant_restart_grace(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(renewed, 1, "only the expired lease");
    let reaped = store.reap_expired(100, Duration::ZERO).await.unwrap();
    assert!(reaped.is_empty(), "{reaped:?}");
    let kept = store.get(t, expired.id).await.unwrap();
    assert_eq!((kept.state, kept.attempt), (JobState::Claimed, 1));
    // Its holder renews it as usual.
    store
        .extend_lease(t, expired.id, 1, Duration::from_secs(30))
        .await
        .unwrap();
}
