//! Concurrency on PostgreSQL: racing claimers never share an attempt, racing reapers handle each
//! expiry once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_store::QueueStore;
use switchyard_store::conformance::{claim_req, new_job};
use switchyard_store::postgres::PgStore;
use switchyard_types::{JobId, JobState, Priority, TenantId};

async fn store() -> Arc<PgStore> {
    let url = switchyard_testkit::postgres_database().await;
    Arc::new(PgStore::connect(&url, true).await.unwrap())
}

async fn fill(store: &PgStore, n: usize) {
    for _ in 0..n / 1000 {
        store
            .enqueue(
                (0..1000)
                    .map(|_| new_job("t1", "build", Priority::Normal))
                    .collect(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_over_ten_thousand_jobs_claim_each_exactly_once() {
    let store = store().await;
    fill(&store, 10_000).await;
    let mut tasks = Vec::new();
    for agent in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = claim_req("build", 25);
            req.agent_id = format!("agent-{agent}");
            let mut mine = Vec::new();
            loop {
                let jobs = store.claim(None, &req).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| (j.id, j.attempt, j.claimed_by)));
            }
        }));
    }
    let mut seen: HashMap<JobId, usize> = HashMap::new();
    let mut per_agent = Vec::new();
    for t in tasks {
        let claims = t.await.unwrap();
        per_agent.push(claims.len());
        for (id, attempt, by) in claims {
            assert_eq!(attempt, 1);
            assert!(by.is_some());
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 10_000, "every job claimed");
    assert!(seen.values().all(|n| *n == 1), "no job claimed twice");
    assert!(
        per_agent.iter().filter(|n| **n > 0).count() >= 2,
        "claims spread: {per_agent:?}"
    );
    let tenant = TenantId::parse("t1").unwrap();
    let stats = store
        .stats(&tenant, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!((stats[0].queued, stats[0].claimed), (0, 10_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_reapers_over_a_thousand_expired_leases_requeue_each_once() {
    let store = store().await;
    fill(&store, 1000).await;
    let mut req = claim_req("build", 100);
    req.lease = Duration::from_millis(1);
    let mut claimed = 0;
    while claimed < 1000 {
        claimed += store.claim(None, &req).await.unwrap().len();
    }
    // Wait (by the database clock) until every 1 ms lease has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE lease_expires_at >= now()")
                .fetch_one(store.pool())
                .await
                .unwrap();
        if live == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{live} leases still live after 10 s"
        );
    }
    let reapers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut total = 0;
                loop {
                    let r = switchyard_types::ReapReport::of(
                        &store.reap_expired(50, Duration::ZERO).await.unwrap(),
                    );
                    if r.requeued + r.dead_lettered == 0 {
                        return total;
                    }
                    total += r.requeued;
                }
            })
        })
        .collect();
    let mut total = 0;
    for r in reapers {
        total += r.await.unwrap();
    }
    assert_eq!(total, 1000, "each expiry requeued exactly once");
    let jobs: Vec<(i16, serde_json::Value)> = sqlx::query_as("SELECT state, failures FROM jobs")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1000);
    for (state, failures) in jobs {
        assert_eq!(state, JobState::Queued.as_i16());
        assert_eq!(
            failures.as_array().map(Vec::len),
            Some(1),
            "one failure per expiry"
        );
    }
}

/// Eight claimers racing over keyed jobs and a capped tenant never exceed either limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claimers_never_exceed_running_limits() {
    let store = store().await;
    let capped = TenantId::parse("capped").unwrap();
    store.set_tenant_limit(&capped, Some(4)).await.unwrap();
    let mut jobs: Vec<_> = (0..200)
        .map(|i| {
            let mut j = new_job("t1", "build", Priority::Normal);
            j.concurrency_key = Some(format!("key-{}", i % 2));
            j.concurrency_limit = 3;
            j
        })
        .collect();
    jobs.extend((0..200).map(|_| new_job("capped", "build", Priority::Normal)));
    store.enqueue(jobs).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|agent| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut req = claim_req("build", 3);
                req.agent_id = format!("agent-{agent}");
                let mut mine = Vec::new();
                for _ in 0..20 {
                    mine.extend(store.claim(None, &req).await.unwrap());
                }
                mine
            })
        })
        .collect();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for job in t.await.unwrap() {
            let group = job
                .concurrency_key
                .unwrap_or_else(|| job.tenant.to_string());
            *per_key.entry(group).or_default() += 1;
        }
    }
    assert_eq!(per_key.get("key-0"), Some(&3), "{per_key:?}");
    assert_eq!(per_key.get("key-1"), Some(&3), "{per_key:?}");
    assert_eq!(per_key.get("capped"), Some(&4), "{per_key:?}");
}
