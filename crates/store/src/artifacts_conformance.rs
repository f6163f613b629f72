//! The conformance suite every [`ArtifactStore`](crate::ArtifactStore) adapter must pass. Each
//! check takes fresh, migrated [`Stores`] (holding only the seeded `default` tenant);
//! [`artifacts_conformance_suite!`](crate::artifacts_conformance_suite) turns the list into one
//! `#[tokio::test]` per check for an adapter's factory (on a multi-threaded runtime for the
//! race).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use switchyard_types::{
    Artifact, ArtifactFilter, ArtifactId, ArtifactState, ErrorKind, INGEST_KIND, Job, JobFilter,
    JobState, NewArtifact, NewJob, Priority, TenantId,
};

use crate::Stores;
use crate::conformance::{claim_one, failed, new_job, succeeded};
use crate::identity_conformance::tenant;

/// Generates one test per artifact conformance check, each on stores from `$make` (an async fn
/// returning [`Stores`]); the race runs on a multi-threaded runtime.
#[macro_export]
macro_rules! artifacts_conformance_suite {
    ($make:path) => {
        $crate::artifacts_conformance_suite!(@each $make, (),
            uploads_store_their_job_and_artifacts_atomically,
            artifacts_are_tenant_scoped_and_listed_newest_first,
            due_artifacts_are_claimed_for_a_lease_and_expired_once,
            stored_bytes_count_only_stored_artifacts,
            a_tenants_retention_policy_dates_new_and_stored_artifacts,
            unrecorded_keys_are_those_no_artifact_names,
            progress_is_kept_for_the_running_attempt_only);
        $crate::artifacts_conformance_suite!(@each $make,
            (flavor = "multi_thread", worker_threads = 4),
            racing_claimers_never_claim_one_artifact_twice,
            one_racer_takes_each_turn);
    };
    (@each $make:path, $runtime:tt, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $check() {
                let stores = $make().await;
                $crate::artifacts_conformance::$check(&stores).await;
            }
        )+
    };
}

const HOUR: Duration = Duration::from_secs(3600);

/// An upload's job for `tenant_name`.
fn upload_job(tenant_name: &str) -> NewJob {
    let mut job = new_job(tenant_name, "ingest", Priority::Normal);
    job.kind = INGEST_KIND.to_owned();
    job.payload = serde_json::json!({ "files": 2 });
    job
}

/// An artifact of `size` bytes under a fresh key.
fn file(name: &str, size: u64) -> NewArtifact {
    let id = ArtifactId::new();
    NewArtifact {
        id,
        name: name.to_owned(),
        content_type: "text/plain".to_owned(),
        sha256: "ab".repeat(32),
        size,
        storage_key: format!("artifacts/{id}"),
    }
}

/// Stores an upload of `files` for `tenant_name`, retained `retention`.
async fn upload(
    stores: &Stores,
    tenant_name: &str,
    files: &[NewArtifact],
    retention: Duration,
) -> (Job, Vec<Artifact>) {
    stores
        .artifacts
        .create_upload(&upload_job(tenant_name), files, retention)
        .await
        .expect("upload")
}

/// How many jobs the tenant has.
async fn job_count(stores: &Stores, t: &TenantId) -> usize {
    let filter = JobFilter {
        limit: 500,
        ..JobFilter::default()
    };
    stores.queue.list(t, &filter).await.expect("jobs").len()
}

/// The tenant's artifacts that `filter` selects.
async fn list(stores: &Stores, t: &TenantId, filter: ArtifactFilter) -> Vec<Artifact> {
    stores.artifacts.artifacts(t, &filter).await.expect("list")
}

/// The ids of `artifacts`.
fn ids(artifacts: &[Artifact]) -> Vec<ArtifactId> {
    artifacts.iter().map(|a| a.id).collect()
}

/// An upload stores its job (queued, with its payload) and its artifacts together; an upload
/// that cannot store all of its artifacts stores neither its job nor any of them.
pub async fn uploads_store_their_job_and_artifacts_atomically(stores: &Stores) {
    let t = tenant("default");
    let files = [file("report.pdf", 1200), file("build log.txt", 34)];
    let (job, stored) = upload(stores, "default", &files, HOUR).await;
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.kind, INGEST_KIND);
    assert_eq!(job.payload, serde_json::json!({ "files": 2 }));
    assert_eq!(stores.queue.get(&t, job.id).await.unwrap(), job);
    assert_eq!(ids(&stored), files.iter().map(|f| f.id).collect::<Vec<_>>());
    for (a, new) in stored.iter().zip(&files) {
        assert_eq!(
            (&a.tenant, a.job, a.state),
            (&t, job.id, ArtifactState::Stored)
        );
        assert_eq!(
            (&a.name, &a.content_type, &a.sha256, a.size, &a.storage_key),
            (
                &new.name,
                &new.content_type,
                &new.sha256,
                new.size,
                &new.storage_key
            )
        );
        let retained = (a.expires_at - a.created_at).to_std().unwrap();
        assert!(
            retained.abs_diff(HOUR) < Duration::from_secs(1),
            "{retained:?}"
        );
        assert_eq!(a.expired_at, None);
        assert_eq!(&stores.artifacts.artifact(&t, a.id).await.unwrap(), a);
    }
    assert_eq!(job_count(stores, &t).await, 1);

    // A storage key taken in the batch, then one taken by a stored artifact, then a taken id.
    let dup = file("a", 1);
    let mut twin = file("b", 2);
    twin.storage_key = dup.storage_key.clone();
    let mut stolen_key = file("c", 3);
    stolen_key.storage_key = files[0].storage_key.clone();
    let mut stolen_id = file("d", 4);
    stolen_id.id = files[1].id;
    for batch in [
        vec![dup, twin],
        vec![file("e", 5), stolen_key],
        vec![file("f", 6), stolen_id],
    ] {
        let err = stores
            .artifacts
            .create_upload(&upload_job("default"), &batch, HOUR)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err:?}");
        assert_eq!(job_count(stores, &t).await, 1, "the job was not stored");
        let err = stores
            .artifacts
            .artifact(&t, batch[0].id)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "no artifact was stored");
    }
    let all = ArtifactFilter {
        limit: 100,
        ..ArtifactFilter::default()
    };
    assert_eq!(list(stores, &t, all).await.len(), 2);
    assert_eq!(stores.artifacts.stored_bytes().await.unwrap(), 1234);

    // An unknown tenant: nothing stored.
    let nobody = tenant("nobody");
    let err = stores
        .artifacts
        .create_upload(&upload_job("nobody"), &[file("x", 1)], HOUR)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    assert_eq!(job_count(stores, &nobody).await, 0);
}

/// Artifacts are the tenant's: another tenant neither gets nor lists them. Lists are newest
/// first, filter by upload, and page with `before`.
pub async fn artifacts_are_tenant_scoped_and_listed_newest_first(stores: &Stores) {
    let t = tenant("default");
    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    let (first, _) = upload(
        stores,
        "default",
        &[file("a", 1), file("b", 1), file("c", 1)],
        HOUR,
    )
    .await;
    let (second, _) = upload(stores, "default", &[file("d", 1), file("e", 1)], HOUR).await;
    let (_, theirs) = upload(stores, "other", &[file("z", 1)], HOUR).await;

    let mine = list(
        stores,
        &t,
        ArtifactFilter {
            limit: 100,
            ..ArtifactFilter::default()
        },
    )
    .await;
    assert_eq!(mine.len(), 5);
    assert!(
        mine.windows(2).all(|w| w[0].id > w[1].id),
        "newest first: {:?}",
        ids(&mine)
    );
    assert!(mine.iter().all(|a| a.tenant == t));
    for job in [first.id, second.id] {
        let of_job = list(
            stores,
            &t,
            ArtifactFilter {
                job: Some(job),
                limit: 100,
                before: None,
            },
        )
        .await;
        let expected: Vec<_> = mine.iter().filter(|a| a.job == job).cloned().collect();
        assert_eq!(of_job, expected);
    }
    assert_eq!(
        list(
            stores,
            &t,
            ArtifactFilter {
                job: Some(first.id),
                limit: 2,
                before: None
            }
        )
        .await
        .len(),
        2
    );

    // Pages of two, each older than the previous page's last.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = list(
            stores,
            &t,
            ArtifactFilter {
                job: None,
                limit: 2,
                before,
            },
        )
        .await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, mine);

    // Another tenant's artifact is NotFound and never listed, nor are its jobs' artifacts.
    let err = stores
        .artifacts
        .artifact(&other, mine[0].id)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = stores
        .artifacts
        .artifact(&t, theirs[0].id)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let listed = list(
        stores,
        &other,
        ArtifactFilter {
            limit: 100,
            ..ArtifactFilter::default()
        },
    )
    .await;
    assert_eq!(listed, theirs);
    let of_my_job = ArtifactFilter {
        job: Some(first.id),
        limit: 100,
        before: None,
    };
    assert!(list(stores, &other, of_my_job).await.is_empty());
    assert!(
        list(
            stores,
            &tenant("nobody"),
            ArtifactFilter {
                limit: 100,
                ..ArtifactFilter::default()
            }
        )
        .await
        .is_empty()
    );
}

/// Claims the artifacts due now, for a 2 s lease.
async fn claim(stores: &Stores, limit: u32) -> Vec<Artifact> {
    stores
        .artifacts
        .due_expirations(limit, Duration::from_secs(2))
        .await
        .expect("claim")
}

/// Claims the artifacts that come due within 10 s (a 2 s lease: long enough that "still
/// leased" holds on a loaded machine, short enough to wait for).
async fn claim_soon(stores: &Stores) -> Vec<Artifact> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let due = claim(stores, 100).await;
        if !due.is_empty() || tokio::time::Instant::now() > deadline {
            return due;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Artifacts whose retention ended are due, oldest expiry first, each claimed for a lease and
/// claimed again once it ends; marking one expired works once, and expired ones are not due
/// (but still found).
pub async fn due_artifacts_are_claimed_for_a_lease_and_expired_once(stores: &Stores) {
    let t = tenant("default");
    upload(stores, "default", &[file("kept", 1)], HOUR).await;
    let mut due = Vec::new();
    for name in ["a", "b", "c"] {
        due.extend(
            upload(stores, "default", &[file(name, 1)], Duration::ZERO)
                .await
                .1,
        );
    }
    due.sort_by_key(|a| (a.expires_at, a.id));

    let first = claim(stores, 2).await;
    assert_eq!(first, due[..2], "oldest expiry first");
    let rest = claim(stores, 100).await;
    assert_eq!(
        rest,
        due[2..],
        "the claimed ones are leased; the kept one is not due"
    );
    assert!(claim(stores, 100).await.is_empty(), "all leased");

    let again = claim_soon(stores).await;
    assert_eq!(again, due, "claimed again once the lease ended");

    assert!(stores.artifacts.mark_expired(due[0].id).await.unwrap());
    assert!(
        !stores.artifacts.mark_expired(due[0].id).await.unwrap(),
        "expired already"
    );
    let expired = stores.artifacts.artifact(&t, due[0].id).await.unwrap();
    assert_eq!(expired.state, ArtifactState::Expired);
    assert!(expired.expired_at.is_some());
    assert_eq!(expired.storage_key, due[0].storage_key);

    // Once the lease ends only the two still stored are due.
    let after = claim_soon(stores).await;
    assert_eq!(ids(&after), ids(&due[1..]));
    for a in &due[1..] {
        assert!(stores.artifacts.mark_expired(a.id).await.unwrap());
    }
    assert!(
        claim(stores, 100).await.is_empty(),
        "expired ones are never due"
    );
}

/// A tenant's policy sets how long its new artifacts are kept (the default applies without
/// one); setting or clearing it re-dates the tenant's stored artifacts and no one else's.
pub async fn a_tenants_retention_policy_dates_new_and_stored_artifacts(stores: &Stores) {
    let (t, other) = (tenant("default"), tenant("other"));
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    let kept_days = |a: &Artifact| (a.expires_at - a.created_at).num_days();
    let before = upload(stores, "default", &[file("before", 1)], HOUR * 48)
        .await
        .1;
    let theirs = upload(stores, "other", &[file("theirs", 1)], HOUR * 48)
        .await
        .1;
    assert_eq!(stores.artifacts.retention(&t).await.unwrap(), None);

    let policy = HOUR * 24 * 7;
    let redated = stores
        .artifacts
        .set_retention(&t, Some(policy), HOUR * 48)
        .await
        .unwrap();
    assert_eq!(redated, 1, "only the tenant's stored artifact");
    assert_eq!(stores.artifacts.retention(&t).await.unwrap(), Some(policy));
    let found = stores.artifacts.artifact(&t, before[0].id).await.unwrap();
    assert_eq!(kept_days(&found), 7, "re-dated to the policy");
    let untouched = stores
        .artifacts
        .artifact(&other, theirs[0].id)
        .await
        .unwrap();
    assert_eq!(kept_days(&untouched), 2, "another tenant's keeps its date");
    // New uploads follow the policy, whatever default they are given.
    let new = upload(stores, "default", &[file("new", 1)], HOUR).await.1;
    assert_eq!(kept_days(&new[0]), 7);

    // A policy shorter than an artifact's age makes it due now; clearing restores the default.
    stores
        .artifacts
        .set_retention(&t, Some(Duration::from_millis(1)), HOUR)
        .await
        .unwrap();
    // The newest may come due a millisecond after the first claim (claimed ones stay leased).
    let mut due = claim_soon(stores).await;
    if due.len() == 1 {
        due.extend(claim_soon(stores).await);
    }
    assert_eq!(
        ids(&due).len(),
        2,
        "both of the tenant's artifacts are due: {due:?}"
    );
    assert!(due.iter().all(|a| a.tenant == t));
    stores
        .artifacts
        .set_retention(&t, None, HOUR * 24)
        .await
        .unwrap();
    assert_eq!(stores.artifacts.retention(&t).await.unwrap(), None);
    let back = stores.artifacts.artifact(&t, new[0].id).await.unwrap();
    assert_eq!(kept_days(&back), 1, "the default again");

    let missing = stores
        .artifacts
        .set_retention(&tenant("nobody"), Some(HOUR), HOUR)
        .await;
    assert_eq!(missing.unwrap_err().kind, ErrorKind::NotFound);
}

/// Claimers racing (replicas) never claim one artifact twice, and together claim all.
pub async fn racing_claimers_never_claim_one_artifact_twice(stores: &Stores) {
    const UPLOADS: usize = 6;
    const FILES: usize = 20;
    for n in 0..UPLOADS {
        let files: Vec<_> = (0..FILES).map(|i| file(&format!("{n}-{i}"), 1)).collect();
        upload(stores, "default", &files, Duration::ZERO).await;
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let artifacts = Arc::clone(&stores.artifacts);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let due = artifacts
                        .due_expirations(3, Duration::from_secs(60))
                        .await
                        .unwrap();
                    if due.is_empty() {
                        return mine;
                    }
                    mine.extend(due.into_iter().map(|a| a.id));
                    assert!(mine.len() <= UPLOADS * FILES, "claimed more than there are");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "artifact {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), UPLOADS * FILES);
}

/// Unrecorded keys are the given keys no artifact names, whatever its tenant or state, in the
/// order given; an empty list gives none.
pub async fn unrecorded_keys_are_those_no_artifact_names(stores: &Stores) {
    let store = &stores.artifacts;
    assert!(store.unrecorded_keys(&[]).await.unwrap().is_empty());
    stores
        .identity
        .create_tenant(&tenant("other"), "Other")
        .await
        .unwrap();
    let (_, mine) = upload(stores, "default", &[file("a", 1), file("b", 2)], HOUR).await;
    let (_, theirs) = upload(stores, "other", &[file("c", 3)], HOUR).await;
    assert!(store.mark_expired(mine[1].id).await.unwrap());
    let keys = vec![
        "orphans/z".to_owned(),
        mine[0].storage_key.clone(),
        "orphans/it's".to_owned(),
        mine[1].storage_key.clone(),
        theirs[0].storage_key.clone(),
        "orphans/m".to_owned(),
    ];
    assert_eq!(
        store.unrecorded_keys(&keys).await.unwrap(),
        ["orphans/z", "orphans/it's", "orphans/m"],
        "recorded keys (stored, expired, another tenant's) are not orphans"
    );
    assert_eq!(
        store.stored_bytes().await.unwrap(),
        4,
        "the table is intact"
    );
}

/// Racers (replicas) asking for one task's turn at once: exactly one gets it; nobody gets it
/// again until the period ends, then exactly one does. Another task's turns are its own.
pub async fn one_racer_takes_each_turn(stores: &Stores) {
    const PERIOD: Duration = Duration::from_millis(600);
    let race = || async {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let artifacts = Arc::clone(&stores.artifacts);
                tokio::spawn(async move { artifacts.take_turn("orphan-sweep", PERIOD).await })
            })
            .collect();
        let mut taken = 0;
        for racer in racers {
            if racer.await.unwrap().unwrap() {
                taken += 1;
            }
        }
        taken
    };
    let started = std::time::Instant::now();
    assert_eq!(race().await, 1, "the first turn");
    let store = &stores.artifacts;
    assert!(store.take_turn("other-task", PERIOD).await.unwrap());
    if started.elapsed() < PERIOD / 2 {
        assert_eq!(race().await, 0, "the turn lasts its period");
    }
    // Once the period is over, the next race has one winner again (and no race, meanwhile,
    // more than one).
    let deadline = started + PERIOD * 10;
    loop {
        match race().await {
            1 => break,
            0 => assert!(std::time::Instant::now() < deadline, "no next turn"),
            taken => panic!("{taken} racers took one turn"),
        }
        tokio::time::sleep(PERIOD / 10).await;
    }
    assert!(
        started.elapsed() >= PERIOD,
        "the next turn came before the period ended"
    );
}

/// The stored bytes are those of every tenant's stored artifacts, not of expired ones.
pub async fn stored_bytes_count_only_stored_artifacts(stores: &Stores) {
    assert_eq!(stores.artifacts.stored_bytes().await.unwrap(), 0);
    stores
        .identity
        .create_tenant(&tenant("other"), "Other")
        .await
        .unwrap();
    let (_, mine) = upload(stores, "default", &[file("a", 100), file("b", 250)], HOUR).await;
    upload(stores, "other", &[file("c", 5_000_000_000)], HOUR).await;
    assert_eq!(
        stores.artifacts.stored_bytes().await.unwrap(),
        5_000_000_350
    );
    assert!(stores.artifacts.mark_expired(mine[1].id).await.unwrap());
    assert_eq!(
        stores.artifacts.stored_bytes().await.unwrap(),
        5_000_000_100
    );
}

/// Progress is stored only for the current attempt of a running job, in its own row (the job
/// is not rewritten); a stale attempt, a job not running, another tenant's or an unknown job
/// is refused and changes nothing. Each tenant reads its own jobs' progress only.
pub async fn progress_is_kept_for_the_running_attempt_only(stores: &Stores) {
    let t = tenant("default");
    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    let (job, _) = upload(stores, "default", &[file("a", 1)], HOUR).await;
    let (q, a) = (&stores.queue, &stores.artifacts);
    let refused = |result: switchyard_types::Result<()>, kind: ErrorKind, says: &str| {
        let e = result.expect_err("refused");
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(says), "{e}");
    };
    refused(
        q.report_progress(&t, job.id, 0, 5).await,
        ErrorKind::Conflict,
        "needs RUNNING",
    );
    let claimed = claim_one(&**q, "ingest").await.expect("claimed");
    assert_eq!(claimed.attempt, 1);
    refused(
        q.report_progress(&t, job.id, 1, 5).await,
        ErrorKind::Conflict,
        "needs RUNNING",
    );
    assert_eq!(a.job_progress(&t, job.id).await.unwrap(), None);

    q.start(&t, job.id, 1, HOUR).await.unwrap();
    let running = q.get(&t, job.id).await.unwrap();
    q.report_progress(&t, job.id, 1, 40).await.unwrap();
    q.report_progress(&t, job.id, 1, 55).await.unwrap();
    assert_eq!(a.job_progress(&t, job.id).await.unwrap(), Some((1, 55)));
    assert_eq!(
        q.get(&t, job.id).await.unwrap(),
        running,
        "the job row is untouched"
    );
    refused(
        q.report_progress(&t, job.id, 2, 90).await,
        ErrorKind::Conflict,
        "stale attempt",
    );
    refused(
        q.report_progress(&other, job.id, 1, 90).await,
        ErrorKind::NotFound,
        "",
    );
    refused(
        q.report_progress(&t, switchyard_types::JobId::new(), 1, 90)
            .await,
        ErrorKind::NotFound,
        "",
    );
    assert_eq!(a.job_progress(&other, job.id).await.unwrap(), None);
    assert_eq!(a.job_progress(&t, job.id).await.unwrap(), Some((1, 55)));

    // A retry: the old attempt is stale, the new one replaces its progress once running.
    q.complete(&t, job.id, 1, &failed("boom"), Duration::ZERO)
        .await
        .unwrap();
    let retried = claim_one(&**q, "ingest").await.expect("claimed again");
    assert_eq!(retried.attempt, 2);
    q.start(&t, job.id, 2, HOUR).await.unwrap();
    refused(
        q.report_progress(&t, job.id, 1, 99).await,
        ErrorKind::Conflict,
        "stale attempt",
    );
    q.report_progress(&t, job.id, 2, 10).await.unwrap();
    assert_eq!(a.job_progress(&t, job.id).await.unwrap(), Some((2, 10)));
    q.complete(&t, job.id, 2, &succeeded(), Duration::ZERO)
        .await
        .unwrap();
    refused(
        q.report_progress(&t, job.id, 2, 100).await,
        ErrorKind::Conflict,
        "needs RUNNING",
    );
    assert_eq!(a.job_progress(&t, job.id).await.unwrap(), Some((2, 10)));
}
