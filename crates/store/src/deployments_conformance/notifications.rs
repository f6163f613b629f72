//! The notification checks of the deployment conformance suite: webhooks, and the notification
//! rows written with every event, claimed, retried and given up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use switchyard_types::{
    DeploymentState, DueNotification, ErrorKind, MAX_WEBHOOKS_PER_TENANT, NotificationState,
    StepKind,
};

use super::{advance, change, deployment, fresh, step_job};
use crate::Stores;
use crate::identity_conformance::tenant;

const LEASE: Duration = Duration::from_secs(30);

/// Claims every due notification (in batches of 100).
async fn claim_all(stores: &Stores) -> Vec<DueNotification> {
    stores
        .notifications
        .due_notifications(100, LEASE)
        .await
        .expect("claim")
}

/// Claims the notifications that come due within 10 s (the delays in these checks are 2 s:
/// long enough that "not due yet" holds on a loaded machine, short enough to wait for).
async fn claim_soon(stores: &Stores) -> Vec<DueNotification> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let due = claim_all(stores).await;
        if !due.is_empty() || tokio::time::Instant::now() > deadline {
            return due;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event is written with its notifications, in its transaction: one for the outbox while
/// the tenant has no webhook, one per webhook once it has some; a refused transition writes
/// neither.
pub async fn notifications_are_written_with_their_events(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let notes = stores.notifications.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    let due = claim_all(stores).await;
    assert_eq!(due.len(), 1, "{due:?}");
    let created = &due[0];
    assert_eq!(created.tenant, d.tenant);
    assert!(created.webhook.is_none(), "no webhook: the outbox");
    assert_eq!(created.attempts, 1);
    assert_eq!(created.event.deployment, d.id);
    assert_eq!(created.event.kind, "state_changed");
    assert_eq!(created.event.state, DeploymentState::Pending);
    assert_eq!(created.deployment.id, d.id);
    assert_eq!(created.deployment.service, "api");
    assert_eq!(created.deployment.state, DeploymentState::Pending);

    let hooks = [
        notes
            .create_webhook(&d.tenant, "https://a.example/hook", "secret-a-0123456789")
            .await
            .unwrap(),
        notes
            .create_webhook(&d.tenant, "https://b.example/hook", "secret-b-0123456789")
            .await
            .unwrap(),
    ];
    let staging = advance(store, &d, DeploymentState::Staging).await;
    let due = claim_all(stores).await;
    assert_eq!(
        due.len(),
        2,
        "one per webhook, none for the outbox: {due:?}"
    );
    let mut targets: Vec<_> = due
        .iter()
        .map(|n| {
            let w = n.webhook.clone().expect("a webhook");
            (w.id, w.url, w.secret)
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            (
                hooks[0].id,
                hooks[0].url.clone(),
                "secret-a-0123456789".to_owned()
            ),
            (
                hooks[1].id,
                hooks[1].url.clone(),
                "secret-b-0123456789".to_owned()
            ),
        ]
    );
    assert!(due.iter().all(|n| n.event.state == DeploymentState::Staging
        && n.event.from == Some(DeploymentState::Pending)
        && n.deployment.state == DeploymentState::Staging));

    // Refused: still STAGING, not PENDING. No event, no notification.
    let mut stale = change(&d, DeploymentState::Staging);
    stale.step = Some((StepKind::Stage, step_job(&d, "deploy")));
    assert_eq!(
        store.transition(&stale).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    // A gate failure and a state change in one transition: both notified.
    let staged = advance(store, &staging, DeploymentState::Staged).await;
    let mut failing = change(&staged, DeploymentState::Failed);
    failing.reason = Some("broken".to_owned());
    failing.gate_failure = Some("failure_rate 50%".to_owned());
    store.transition(&failing).await.unwrap();

    let events = store.events(&d.tenant, Some(d.id), 0, 100).await.unwrap();
    let status = notes.notifications(&d.tenant, d.id).await.unwrap();
    // Every event has its notifications: 1 (outbox) + 2 per later event.
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(status.len(), 1 + 2 * 4, "{status:?}");
    for e in &events {
        let n = status.iter().filter(|n| n.event_seq == e.seq).count();
        assert_eq!(n, if e.seq == events[0].seq { 1 } else { 2 }, "{e:?}");
    }
    assert!(status.windows(2).all(|w| w[0].event_seq <= w[1].event_seq));
    let first = &status[0];
    assert_eq!((first.webhook, first.url.as_deref()), (None, None));
    assert_eq!(first.event_state, DeploymentState::Pending);
    assert_eq!(first.state, NotificationState::Pending);
    assert_eq!(first.attempts, 1);
    assert!(
        status
            .iter()
            .any(|n| n.event_kind == "gate_failed" && n.event_state == DeploymentState::Failed)
    );
    assert!(
        status[1..]
            .iter()
            .all(|n| n.webhook.is_some() && n.url.is_some())
    );
}

/// A claimed notification is not claimed again until its lease ends; a failed attempt is
/// retried after its delay, with its error kept; delivered and given-up ones are never
/// claimed again.
pub async fn notifications_are_claimed_once_retried_and_given_up(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let notes = stores.notifications.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    for n in 0..2 {
        store
            .create_deployment(&deployment(&d.tenant, "web", &format!("1.0.{n}")))
            .await
            .unwrap();
    }
    let due = claim_all(stores).await;
    assert_eq!(due.len(), 3);
    assert!(
        claim_all(stores).await.is_empty(),
        "claimed once: nothing is due right after"
    );
    let (a, b, c) = (due[0].id, due[1].id, due[2].id);

    notes
        .notification_failed(
            a,
            "HTTP 500 Internal Server Error",
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    notes.notification_delivered(b).await.unwrap();
    notes
        .notification_failed(c, "connection refused", None)
        .await
        .unwrap();
    assert!(
        claim_all(stores).await.is_empty(),
        "the retry is not due yet"
    );
    let again = claim_soon(stores).await;
    assert_eq!(again.iter().map(|n| n.id).collect::<Vec<_>>(), [a]);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].event, due[0].event);
    assert_eq!(again[0].deployment, due[0].deployment);

    // A claimer that dies: the lease ends and the notification is claimed again.
    notes
        .notification_failed(a, "timed out", Some(Duration::ZERO))
        .await
        .unwrap();
    let short = notes
        .due_notifications(10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].attempts, 3);
    assert!(claim_all(stores).await.is_empty());
    let expired = claim_soon(stores).await;
    assert_eq!(expired.len(), 1, "claimed again after its lease");
    assert_eq!(expired[0].attempts, 4);
    notes.notification_delivered(a).await.unwrap();
    // Settled ones stay settled.
    notes
        .notification_failed(a, "late", Some(Duration::ZERO))
        .await
        .unwrap();
    notes.notification_delivered(c).await.unwrap();
    assert!(claim_all(stores).await.is_empty());

    let mut all = Vec::new();
    for listed in store
        .list_deployments(
            &d.tenant,
            &switchyard_types::DeploymentFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    {
        all.extend(notes.notifications(&d.tenant, listed.id).await.unwrap());
    }
    let find = |id| all.iter().find(|n| n.id == id).unwrap();
    let delivered = find(a);
    assert_eq!(delivered.state, NotificationState::Delivered);
    assert_eq!(delivered.attempts, 4);
    assert_eq!(delivered.last_error.as_deref(), Some("timed out"));
    assert!(delivered.delivered_at.is_some());
    let first_time = find(b);
    assert_eq!(
        (
            first_time.state,
            first_time.attempts,
            first_time.last_error.as_deref()
        ),
        (NotificationState::Delivered, 1, None)
    );
    let given_up = find(c);
    assert_eq!(given_up.state, NotificationState::GivenUp);
    assert_eq!(given_up.last_error.as_deref(), Some("connection refused"));
    assert!(given_up.delivered_at.is_none());
}

/// Webhooks belong to their tenant: others neither see nor delete them, and their events are
/// not sent to them; a tenant has at most [`MAX_WEBHOOKS_PER_TENANT`]; deleting one deletes
/// its notifications.
pub async fn webhooks_are_tenant_scoped_and_limited(stores: &Stores) {
    let store = stores.deployments.as_ref();
    let notes = stores.notifications.as_ref();
    let d = fresh(stores, "api", "1.0.0").await;
    let t = d.tenant.clone();
    let other = tenant("other");
    stores
        .identity
        .create_tenant(&other, "Other")
        .await
        .unwrap();
    let hook = notes
        .create_webhook(&t, "https://a.example/hook", "secret-a-0123456789")
        .await
        .unwrap();
    assert_eq!(hook.tenant, t);
    assert_eq!(
        notes.webhooks(&t).await.unwrap(),
        std::slice::from_ref(&hook)
    );
    assert!(notes.webhooks(&other).await.unwrap().is_empty());
    let err = notes.delete_webhook(&other, hook.id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = notes
        .create_webhook(&tenant("nobody"), "https://x.example", "secret-0123456789")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);

    // Another tenant's event goes to its outbox, not to this tenant's webhook.
    for name in ["staging", "production"] {
        store
            .put_environment(&super::env(&other, name))
            .await
            .unwrap();
    }
    let theirs = store
        .create_deployment(&deployment(&other, "api", "9.0.0"))
        .await
        .unwrap();
    claim_all(stores).await;
    advance(store, &d, DeploymentState::Staging).await;
    advance(store, &theirs, DeploymentState::Staging).await;
    let due = claim_all(stores).await;
    assert_eq!(due.len(), 2, "{due:?}");
    let mine = due.iter().find(|n| n.tenant == t).unwrap();
    assert_eq!(mine.webhook.as_ref().map(|w| w.id), Some(hook.id));
    let their = due.iter().find(|n| n.tenant == other).unwrap();
    assert!(their.webhook.is_none());
    assert!(
        notes.notifications(&other, d.id).await.unwrap().is_empty(),
        "another tenant's deployment shows nothing"
    );
    assert_eq!(notes.notifications(&t, d.id).await.unwrap().len(), 2);

    // Deleting the webhook deletes its notifications; the outbox one stays.
    assert_eq!(notes.delete_webhook(&t, hook.id).await.unwrap(), hook);
    let left = notes.notifications(&t, d.id).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].webhook.is_none());
    assert_eq!(
        notes.delete_webhook(&t, hook.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    for n in 0..MAX_WEBHOOKS_PER_TENANT {
        notes
            .create_webhook(&t, &format!("https://h{n}.example/"), "secret-0123456789")
            .await
            .unwrap();
    }
    let err = notes
        .create_webhook(&t, "https://one-too-many.example/", "secret-0123456789")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err:?}");
    assert_eq!(
        notes.webhooks(&t).await.unwrap().len(),
        MAX_WEBHOOKS_PER_TENANT
    );
    // Another tenant's allowance is its own.
    notes
        .create_webhook(&other, "https://other.example/", "secret-0123456789")
        .await
        .unwrap();
}

/// Claimers racing (replicas) never claim one notification twice, and together claim all.
pub async fn racing_claims_never_take_one_notification_twice(stores: &Stores) {
    let store = stores.deployments.clone();
    let d = fresh(stores, "api", "0.0.0").await;
    for n in 0..39 {
        store
            .create_deployment(&deployment(&d.tenant, "api", &format!("1.0.{n}")))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let notes = Arc::clone(&stores.notifications);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let due = notes.due_notifications(3, LEASE).await.unwrap();
                    if due.is_empty() {
                        return mine;
                    }
                    mine.extend(due.into_iter().map(|n| n.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for id in task.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "notification {id} claimed twice");
        }
    }
    assert_eq!(total, 40);
}
