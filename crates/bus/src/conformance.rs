//! The conformance suite every [`Bus`] adapter must pass (DESIGN §5: one suite per trait, run
//! against every adapter). Each check panics with a message naming what went wrong, and waits on
//! conditions with a deadline ([`DEADLINE`]), never on fixed sleeps.
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

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, timeout_at};

use crate::{Bus, Event};

/// How long a check waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How many events the ordering check publishes.
const ORDERED_EVENTS: usize = 200;
/// How many events the lag check publishes without reading (more than any adapter buffers).
const FLOOD_EVENTS: usize = 4 * 1024;

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
                let Event::PoolReady { pool } = &event;
                if pool.starts_with(tag) {
                    return event;
                }
            }
            Ok(Err(RecvError::Lagged(n))) => panic!("{what}: receiver lagged by {n} events"),
            Ok(Err(RecvError::Closed)) => panic!("{what}: channel closed"),
            Err(_) => panic!("{what}: no event tagged {tag:?} within {DEADLINE:?}"),
        }
    }
}
