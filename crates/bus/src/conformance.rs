//! The conformance suites every [`Bus`] and every [`Counters`] adapter must pass (DESIGN §5: one
//! suite per trait, run against every adapter): [`run_all`] and [`run_counters`]. Each check
//! panics with a message naming what went wrong, and waits on conditions with a deadline
//! ([`DEADLINE`]), never on fixed sleeps.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use switchyard_bus::{Bus, conformance, local::LocalBus};
//! # async fn example() {
//! let bus = LocalBus::new();
//! conformance::run_all(|| {
//!     let bus = bus.clone();
//!     async move { Arc::new(bus) as Arc<dyn Bus> }
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_types::{Activity, ErrorKind, TenantId, Topic};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, timeout_at};

use crate::feed::{self, FeedEntry, FeedId};
use crate::{Bus, Counters, Event, MAX_WINDOW, WindowCount};

/// How long a check waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How many events the ordering check publishes.
const ORDERED_EVENTS: usize = 200;
/// How many activities the feed check announces (half on each replica).
const FEED_ACTIVITIES: usize = 40;
/// How many events the lag check publishes without reading (more than any adapter buffers).
const FLOOD_EVENTS: usize = 4 * 1024;
/// The window of the counter checks that must stay within one window (they retry the rare run
/// that straddles a window boundary).
const LONG_WINDOW: Duration = Duration::from_secs(3600);
/// The window of the reset check.
const SHORT_WINDOW: Duration = Duration::from_millis(200);
/// How many times a counter check runs before a window boundary in the middle of every run fails
/// it (more than one such boundary means the backend's windows are not what they claim).
const ATTEMPTS: usize = 3;

/// Runs every check. `make` must return a new bus on the SAME backend on each call (a clone of
/// a `LocalBus`, a new `RedisBus` with the same URL and key prefix), so that two calls behave
/// like two replicas.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let bus = make().await;
    check_connected(bus.as_ref()).await;
    check_ping(bus.as_ref()).await;
    check_publish_reaches_subscribers(bus.as_ref()).await;
    check_no_events_from_before_subscribe(bus.as_ref()).await;
    check_order_preserved(bus.as_ref()).await;
    let other = make().await;
    check_connected(other.as_ref()).await;
    check_cross_replica(bus.as_ref(), other.as_ref()).await;
    check_lagging_subscriber_is_told(bus.as_ref()).await;
    check_feed_is_one_order_everywhere_and_replays(bus.as_ref(), other.as_ref()).await;
}

/// `is_connected()` becomes true within the deadline and `backend()` is named.
pub async fn check_connected(bus: &dyn Bus) {
    let deadline = Instant::now() + DEADLINE;
    while !bus.is_connected() {
        assert!(
            Instant::now() < deadline,
            "{} bus: not connected within {DEADLINE:?}",
            bus.backend()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        matches!(bus.backend(), "local" | "redis"),
        "unexpected backend name {:?}",
        bus.backend()
    );
}

/// `ping()` succeeds within the deadline.
pub async fn check_ping(bus: &dyn Bus) {
    match tokio::time::timeout(DEADLINE, bus.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{} bus: ping failed: {e}", bus.backend()),
        Err(_) => panic!(
            "{} bus: ping did not return within {DEADLINE:?}",
            bus.backend()
        ),
    }
}

/// Every subscriber of the bus receives a published `PoolReady`.
pub async fn check_publish_reaches_subscribers(bus: &dyn Bus) {
    let tag = unique_tag("reach");
    let mut first = bus.subscribe();
    let mut second = bus.subscribe();
    let event = pool_ready(&tag, "pool");
    publish(bus, event.clone()).await;
    for (name, rx) in [("first", &mut first), ("second", &mut second)] {
        let got = next_tagged(
            rx,
            &tag,
            &format!("{} bus, {name} subscriber", bus.backend()),
        )
        .await;
        assert_eq!(
            got,
            event,
            "{} bus: {name} subscriber got the wrong event",
            bus.backend()
        );
    }
}

/// A receiver sees only events published after `subscribe()`.
pub async fn check_no_events_from_before_subscribe(bus: &dyn Bus) {
    let tag = unique_tag("before");
    let what = format!("{} bus, replay check", bus.backend());
    // Wait until the early event has been delivered locally, so it cannot race the subscribe.
    let mut witness = bus.subscribe();
    let early = pool_ready(&tag, "early");
    publish(bus, early.clone()).await;
    assert_eq!(next_tagged(&mut witness, &tag, &what).await, early);

    let mut late_rx = bus.subscribe();
    let late = pool_ready(&tag, "late");
    let end = pool_ready(&tag, "end");
    publish(bus, late.clone()).await;
    publish(bus, end.clone()).await;
    let mut seen = Vec::new();
    while seen.last() != Some(&end) {
        seen.push(next_tagged(&mut late_rx, &tag, &what).await);
    }
    assert_eq!(
        seen,
        [late, end],
        "{what}: a receiver saw an event published before it subscribed"
    );
}

/// Events from one publisher arrive in the order they were published.
pub async fn check_order_preserved(bus: &dyn Bus) {
    let tag = unique_tag("order");
    let what = format!("{} bus, ordering check", bus.backend());
    let mut rx = bus.subscribe();
    let events: Vec<Event> = (0..ORDERED_EVENTS)
        .map(|i| pool_ready(&tag, &i.to_string()))
        .collect();
    for event in &events {
        publish(bus, event.clone()).await;
    }
    for (i, want) in events.iter().enumerate() {
        let got = next_tagged(&mut rx, &tag, &what).await;
        assert_eq!(&got, want, "{what}: event {i} out of order");
    }
}

/// Two buses on one backend: an event published on either reaches subscribers of both.
pub async fn check_cross_replica(a: &dyn Bus, b: &dyn Bus) {
    let tag = unique_tag("cross");
    let what = format!("{} bus, cross-replica check", a.backend());
    let mut rx_a = a.subscribe();
    let mut rx_b = b.subscribe();
    for (from, bus) in [("A", a), ("B", b)] {
        let event = pool_ready(&tag, &format!("from-{from}"));
        publish(bus, event.clone()).await;
        for (to, rx) in [("A", &mut rx_a), ("B", &mut rx_b)] {
            let got = next_tagged(rx, &tag, &format!("{what}, {from} -> {to}")).await;
            assert_eq!(
                got, event,
                "{what}: {from} -> {to} delivered the wrong event"
            );
        }
    }
}

/// A receiver that does not keep up is told so with `RecvError::Lagged`.
pub async fn check_lagging_subscriber_is_told(bus: &dyn Bus) {
    let tag = unique_tag("lag");
    let what = format!("{} bus, lag check", bus.backend());
    let mut slow = bus.subscribe();
    for i in 0..FLOOD_EVENTS {
        publish(bus, pool_ready(&tag, &i.to_string())).await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout_at(deadline, slow.recv()).await {
            Ok(Err(RecvError::Lagged(_))) => return,
            Ok(Ok(_)) => {}
            Ok(Err(RecvError::Closed)) => panic!("{what}: channel closed"),
            Err(_) => panic!("{what}: {FLOOD_EVENTS} unread events never produced Lagged"),
        }
    }
}

/// Activities announced on either replica reach both replicas' subscribers with the same,
/// increasing ids in the order each replica announced them; a replay on either replica after a
/// delivered id returns what followed it, and one after an id the feed never had is a gap.
pub async fn check_feed_is_one_order_everywhere_and_replays(a: &dyn Bus, b: &dyn Bus) {
    let tag = unique_tag("feed");
    let mut rx_a = a.activity();
    let mut rx_b = b.activity();
    let tenant = TenantId::parse("conformance").expect("a valid tenant");
    for i in 0..FEED_ACTIVITIES {
        let bus = if i % 2 == 0 { a } else { b };
        bus.announce(Activity {
            tenant: tenant.clone(),
            topic: Topic::Job,
            subject: format!("{tag}{i}"),
            state: "QUEUED".to_owned(),
            at: chrono::Utc::now(),
            data: serde_json::json!({ "i": i }),
        });
    }
    let seen_a = next_entries(&mut rx_a, &tag, "replica A's feed").await;
    let seen_b = next_entries(&mut rx_b, &tag, "replica B's feed").await;
    let ids = |seen: &[Arc<FeedEntry>]| seen.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&seen_a),
        ids(&seen_b),
        "{}: replicas disagree on the order",
        a.backend()
    );
    assert!(
        ids(&seen_a).windows(2).all(|w| w[0] < w[1]),
        "{}: feed ids do not increase: {:?}",
        a.backend(),
        ids(&seen_a)
    );
    for parity in [0, 1] {
        let announced: Vec<&str> = seen_a
            .iter()
            .map(|e| e.activity.subject.as_str())
            .filter(|s| s.ends_with(['0', '2', '4', '6', '8']) == (parity == 0))
            .collect();
        let expected: Vec<String> = (0..FEED_ACTIVITIES)
            .filter(|i| i % 2 == parity)
            .map(|i| format!("{tag}{i}"))
            .collect();
        assert_eq!(
            announced,
            expected,
            "{}: one replica's order was not kept",
            a.backend()
        );
    }
    let first = seen_a[0].id;
    for bus in [a, b] {
        let replay = bus
            .replay(first, feed::MAX_REPLAY)
            .await
            .unwrap_or_else(|e| {
                panic!("{}: replay failed: {e}", bus.backend());
            });
        assert!(
            replay.complete,
            "{}: a kept id replays completely",
            bus.backend()
        );
        let replayed: Vec<FeedId> = replay
            .entries
            .iter()
            .filter(|e| e.activity.subject.starts_with(&tag))
            .map(|e| e.id)
            .collect();
        assert_eq!(
            replayed,
            ids(&seen_a)[1..].to_vec(),
            "{}: replay",
            bus.backend()
        );
        let limited = bus.replay(first, 3).await.expect("a limited replay");
        assert_eq!(limited.entries.len(), 3, "{}: replay limit", bus.backend());
        let unknown = FeedId {
            ms: first.ms,
            seq: first.seq + 1_000_000,
        };
        let gap = bus
            .replay(unknown, 10)
            .await
            .expect("a replay after an unknown id");
        assert!(!gap.complete, "{}: an unknown id is a gap", bus.backend());
    }
}

/// The next [`FEED_ACTIVITIES`] feed entries whose subject starts with `tag`.
async fn next_entries(
    rx: &mut broadcast::Receiver<Arc<FeedEntry>>,
    tag: &str,
    what: &str,
) -> Vec<Arc<FeedEntry>> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::with_capacity(FEED_ACTIVITIES);
    while seen.len() < FEED_ACTIVITIES {
        match timeout_at(deadline, rx.recv()).await {
            Ok(Ok(entry)) if entry.activity.subject.starts_with(tag) => seen.push(entry),
            Ok(Ok(_)) => {}
            Ok(Err(RecvError::Lagged(n))) => panic!("{what}: receiver lagged by {n} entries"),
            Ok(Err(RecvError::Closed)) => panic!("{what}: channel closed"),
            Err(_) => panic!(
                "{what}: {} of {FEED_ACTIVITIES} entries within {DEADLINE:?}",
                seen.len()
            ),
        }
    }
    seen
}

/// A tag unique within this process, prefixing the pool names of one check.
fn unique_tag(check: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "conformance-{check}-{}-",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `PoolReady` for the pool `{tag}{name}`.
fn pool_ready(tag: &str, name: &str) -> Event {
    Event::PoolReady {
        pool: format!("{tag}{name}"),
    }
}

/// Publishes or fails the check.
async fn publish(bus: &dyn Bus, event: Event) {
    match tokio::time::timeout(DEADLINE, bus.publish(event.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{} bus: publish {event:?} failed: {e}", bus.backend()),
        Err(_) => panic!(
            "{} bus: publish {event:?} hung for {DEADLINE:?}",
            bus.backend()
        ),
    }
}

/// The next event whose pool starts with `tag` (events of other checks are skipped).
async fn next_tagged(rx: &mut broadcast::Receiver<Event>, tag: &str, what: &str) -> Event {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) => {
                if let Event::PoolReady { pool } = &event
                    && pool.starts_with(tag)
                {
                    return event;
                }
            }
            Ok(Err(RecvError::Lagged(n))) => panic!("{what}: receiver lagged by {n} events"),
            Ok(Err(RecvError::Closed)) => panic!("{what}: channel closed"),
            Err(_) => panic!("{what}: no event tagged {tag:?} within {DEADLINE:?}"),
        }
    }
}

/// Runs every [`Counters`] check. `make` must return new counters on the SAME backend on each
/// call (a clone of a `LocalBus`, a new `RedisBus` with the same URL and key prefix), so that two
/// calls behave like two replicas.
pub async fn run_counters<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Counters>>,
{
    let counters = make().await;
    check_counts_accumulate(counters.as_ref()).await;
    check_zero_reads_without_adding(counters.as_ref()).await;
    check_keys_are_independent(counters.as_ref()).await;
    check_short_window_resets(counters.as_ref()).await;
    check_invalid_arguments(counters.as_ref()).await;
    let other = make().await;
    check_counters_shared(counters.as_ref(), other.as_ref()).await;
}

/// Additions to one key within one window accumulate, and `resets_in` shrinks within `window`.
pub async fn check_counts_accumulate(counters: &dyn Counters) {
    within_one_window("accumulate", async |key| {
        let mut got = Vec::new();
        for by in [1, 2, 5] {
            got.push(add(counters, key, by, LONG_WINDOW).await);
        }
        let want = [1, 3, 8];
        (
            got.clone(),
            counts(&got) == want,
            format!("counts {:?}, want {want:?}", counts(&got)),
        )
    })
    .await;
}

/// `by = 0` returns the count without changing it (0 for a key never added to).
pub async fn check_zero_reads_without_adding(counters: &dyn Counters) {
    within_one_window("zero reads", async |key| {
        let got = vec![
            add(counters, key, 0, LONG_WINDOW).await,
            add(counters, key, 4, LONG_WINDOW).await,
            add(counters, key, 0, LONG_WINDOW).await,
            add(counters, key, 0, LONG_WINDOW).await,
        ];
        let want = [0, 4, 4, 4];
        (
            got.clone(),
            counts(&got) == want,
            format!("counts {:?}, want {want:?}", counts(&got)),
        )
    })
    .await;
}

/// Additions to one key do not show in another.
pub async fn check_keys_are_independent(counters: &dyn Counters) {
    within_one_window("independent keys", async |key| {
        let (a, b) = (format!("{key}a"), format!("{key}b"));
        let got = vec![
            add(counters, &a, 3, LONG_WINDOW).await,
            add(counters, &b, 1, LONG_WINDOW).await,
            add(counters, &a, 0, LONG_WINDOW).await,
            add(counters, &b, 0, LONG_WINDOW).await,
            add(counters, key, 0, LONG_WINDOW).await,
        ];
        let want = [3, 1, 3, 1, 0];
        (
            got.clone(),
            counts(&got) == want,
            format!("counts {:?}, want {want:?}", counts(&got)),
        )
    })
    .await;
}

/// A count in a short window starts again from zero once the window has passed, not before
/// `resets_in` has elapsed, and `resets_in` never exceeds the window.
pub async fn check_short_window_resets(counters: &dyn Counters) {
    let key = unique_tag("counter-reset");
    let what = "counter reset check";
    let started = Instant::now();
    let first = add(counters, &key, 1, SHORT_WINDOW).await;
    // A fresh key counts 1 whichever window the addition fell in.
    assert_eq!(first.count, 1, "{what}: first addition counted {first:?}");
    assert_resets_in(what, &first, SHORT_WINDOW);
    let deadline = started + DEADLINE;
    loop {
        let now = add(counters, &key, 0, SHORT_WINDOW).await;
        assert_resets_in(what, &now, SHORT_WINDOW);
        if now.count == 0 {
            break;
        }
        assert_eq!(now.count, 1, "{what}: a read changed the count: {now:?}");
        assert!(
            Instant::now() < deadline,
            "{what}: the count of a {SHORT_WINDOW:?} window did not reset within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The backend ended the window `first.resets_in` after the first addition at the earliest
    // (less up to 1 ms of clock rounding), and both calls were made within `started..now`.
    let elapsed = started.elapsed();
    assert!(
        elapsed + Duration::from_millis(2) >= first.resets_in,
        "{what}: the count reset after {elapsed:?}, before resets_in {:?}",
        first.resets_in
    );
    let again = add(counters, &key, 1, SHORT_WINDOW).await;
    assert!(
        again.count == 1,
        "{what}: a new window did not start from zero: {again:?}"
    );
}

/// A window under 1 ms or over [`MAX_WINDOW`], or `by` over `i64::MAX`, is `InvalidArgument`.
pub async fn check_invalid_arguments(counters: &dyn Counters) {
    let key = unique_tag("counter-invalid");
    for (by, window) in [
        (1, Duration::ZERO),
        (1, Duration::from_micros(999)),
        (1, MAX_WINDOW + Duration::from_millis(1)),
        (u64::MAX, LONG_WINDOW),
        (1u64 << 63, LONG_WINDOW),
    ] {
        match tokio::time::timeout(DEADLINE, counters.add(&key, by, window)).await {
            Ok(Err(e)) if e.kind == ErrorKind::InvalidArgument => {}
            Ok(other) => {
                panic!("add(by {by}, window {window:?}): want InvalidArgument, got {other:?}")
            }
            Err(_) => panic!("add(by {by}, window {window:?}) hung for {DEADLINE:?}"),
        }
    }
    // The limits themselves are fine, and the rejected calls added nothing.
    let at_limits = add(counters, &key, 0, MAX_WINDOW).await;
    assert_eq!(
        at_limits.count, 0,
        "rejected additions counted: {at_limits:?}"
    );
    assert_resets_in("MAX_WINDOW check", &at_limits, MAX_WINDOW);
    let tiny = add(counters, &key, 0, Duration::from_millis(1)).await;
    assert_resets_in("1 ms window check", &tiny, Duration::from_millis(1));
}

/// Two counters on one backend (two replicas) add to the same count.
pub async fn check_counters_shared(a: &dyn Counters, b: &dyn Counters) {
    within_one_window("cross-replica counters", async |key| {
        let got = vec![
            add(a, key, 2, LONG_WINDOW).await,
            add(b, key, 3, LONG_WINDOW).await,
            add(a, key, 0, LONG_WINDOW).await,
            add(b, key, 1, LONG_WINDOW).await,
        ];
        let want = [2, 5, 5, 6];
        (
            got.clone(),
            counts(&got) == want,
            format!("counts {:?}, want {want:?}", counts(&got)),
        )
    })
    .await;
}

/// Runs `run` on a fresh key until one run stays within one [`LONG_WINDOW`] (so a window boundary
/// in the middle of a run does not fail the check), then asserts what `run` returned: its
/// results in order, whether they are right, and a description of them.
async fn within_one_window(
    check: &str,
    run: impl AsyncFn(&str) -> (Vec<WindowCount>, bool, String),
) {
    let what = format!("counter check {check:?}");
    for attempt in 1..=ATTEMPTS {
        let key = unique_tag(&format!("counter-{check}"));
        let (got, ok, description) = run(&key).await;
        for count in &got {
            assert_resets_in(&what, count, LONG_WINDOW);
        }
        // Within one window `resets_in` only shrinks; growing means a new window began.
        let one_window = got.windows(2).all(|w| w[1].resets_in <= w[0].resets_in);
        if one_window {
            assert!(ok, "{what}: {description} ({got:?})");
            return;
        }
        assert!(
            attempt < ATTEMPTS,
            "{what}: every run straddled a window boundary ({got:?})"
        );
    }
}

/// The counts of `got`.
fn counts(got: &[WindowCount]) -> Vec<u64> {
    got.iter().map(|c| c.count).collect()
}

/// `0 < resets_in <= window`.
fn assert_resets_in(what: &str, count: &WindowCount, window: Duration) {
    assert!(
        !count.resets_in.is_zero() && count.resets_in <= window,
        "{what}: resets_in {:?} outside (0, {window:?}]",
        count.resets_in
    );
}

/// Adds or fails the check.
async fn add(counters: &dyn Counters, key: &str, by: u64, window: Duration) -> WindowCount {
    match tokio::time::timeout(DEADLINE, counters.add(key, by, window)).await {
        Ok(Ok(count)) => count,
        Ok(Err(e)) => panic!("add({key:?}, {by}, {window:?}) failed: {e}"),
        Err(_) => panic!("add({key:?}, {by}, {window:?}) hung for {DEADLINE:?}"),
    }
}
