//! The bus conformance suite on every adapter, plus Redis-specific failure behaviour. Redis tests
//! use the server at `REDIS_URL` (default `redis://127.0.0.1:6379`, started by `scripts/services`)
//! and a unique key prefix each, so they run in parallel with everything else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config};
use fred::types::CustomCommand;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_bus::{Bus, Counters, Event, conformance};
use switchyard_testkit::{TempRedis, redis_url};
use switchyard_types::ErrorKind;

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    format!("{}:", switchyard_testkit::unique("test:"))
}

#[tokio::test]
async fn local_bus_conforms() {
    let bus = LocalBus::new();
    conformance::run_all(|| {
        let bus = bus.clone();
        async move { Arc::new(bus) as Arc<dyn Bus> }
    })
    .await;
}

/// A bus on the test Redis under `prefix`.
async fn redis_bus(url: &str, prefix: &str) -> RedisBus {
    RedisBus::connect(url, prefix)
        .await
        .expect("connect to the test Redis")
}

#[tokio::test]
async fn local_counters_conform() {
    let bus = LocalBus::new();
    conformance::run_counters(|| {
        let bus = bus.clone();
        async move { Arc::new(bus) as Arc<dyn Counters> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counters_conform() {
    let url = redis_url();
    let prefix = unique_prefix();
    // Each call is a new `RedisBus` on the same prefix: the cross-replica check shares counts
    // between two of them.
    conformance::run_counters(|| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { Arc::new(redis_bus(&url, &prefix).await) as Arc<dyn Counters> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_conforms() {
    let url = redis_url();
    let prefix = unique_prefix();
    conformance::run_all(|| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { Arc::new(redis_bus(&url, &prefix).await) as Arc<dyn Bus> }
    })
    .await;
}

#[tokio::test]
async fn redis_buses_with_different_prefixes_are_isolated() {
    let url = redis_url();
    let a = redis_bus(&url, &unique_prefix()).await;
    let b = redis_bus(&url, &unique_prefix()).await;
    assert_ne!(a.channel(), b.channel());
    let mut rx_b = b.subscribe();
    let mut rx_a = a.subscribe();
    a.publish(Event::PoolReady {
        pool: "only-a".into(),
    })
    .await
    .expect("publish on a");
    b.publish(Event::PoolReady {
        pool: "only-b".into(),
    })
    .await
    .expect("publish on b");
    // b's own event arriving proves a's (published earlier) had its chance to leak.
    let first_b = tokio::time::timeout(conformance::DEADLINE, rx_b.recv()).await;
    assert_eq!(
        first_b.ok().and_then(|r| r.ok()),
        Some(Event::PoolReady {
            pool: "only-b".into()
        })
    );
    let first_a = tokio::time::timeout(conformance::DEADLINE, rx_a.recv()).await;
    assert_eq!(
        first_a.ok().and_then(|r| r.ok()),
        Some(Event::PoolReady {
            pool: "only-a".into()
        })
    );
}

#[tokio::test]
async fn redis_connect_to_a_closed_port_fails_fast_without_leaking_the_password() {
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(3),
        RedisBus::connect("redis://:hunter2@127.0.0.1:1", "test:closed:"),
    )
    .await
    .expect("connect must give up within 3 s");
    let err = result.expect_err("nothing listens on port 1");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert!(err.message.contains("127.0.0.1:1"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn redis_lazy_bus_on_a_closed_port_reports_unavailable() {
    let bus = RedisBus::connect_lazy("redis://:hunter2@127.0.0.1:1", "test:closed:")
        .expect("a well-formed URL is accepted");
    assert!(!bus.is_connected());
    assert_eq!(bus.backend(), "redis");
    for result in [
        tokio::time::timeout(Duration::from_millis(1500), bus.ping()).await,
        tokio::time::timeout(
            Duration::from_millis(1500),
            bus.publish(Event::PoolReady { pool: "p".into() }),
        )
        .await,
    ] {
        let err = result
            .expect("bounded by ~1 s")
            .expect_err("Redis is not there");
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
    assert!(!bus.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_resubscribes_after_its_connection_is_killed() {
    let url = redis_url();
    let bus = redis_bus(&url, &unique_prefix()).await;
    let admin = Builder::from_config(Config::from_url(&url).expect("url"))
        .build()
        .expect("admin");
    admin.init().await.expect("admin connects");

    let [_, subscriber_name] = bus.client_names();
    let killed = kill_client_named(&admin, &subscriber_name).await;
    assert!(
        killed,
        "no connection named {subscriber_name} in CLIENT LIST"
    );

    // Delivery must come back on its own: publish until our own event arrives again.
    let mut rx = bus.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0u32;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery 10 s after the kill"
        );
        n += 1;
        let event = Event::PoolReady {
            pool: format!("after-kill-{n}"),
        };
        if bus.publish(event.clone()).await.is_ok() {
            let got = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            if matches!(got, Ok(Ok(ref e)) if *e == event) {
                break;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !bus.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "is_connected stayed false"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.ping().await.expect("ping after reconnect");
    let _ = admin.quit().await;
}

/// `CLIENT KILL ID` for the connection named `name`; whether one was found.
async fn kill_client_named(admin: &fred::clients::Client, name: &str) -> bool {
    let list: String = admin
        .custom(
            CustomCommand::new_static("CLIENT", None::<u16>, false),
            vec!["LIST"],
        )
        .await
        .expect("CLIENT LIST");
    let needle = format!(" name={name} ");
    let Some(id) = list
        .lines()
        .find(|line| line.contains(&needle))
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("id="))
                .map(str::to_owned)
        })
    else {
        return false;
    };
    let _: i64 = admin
        .custom(
            CustomCommand::new_static("CLIENT", None::<u16>, false),
            vec!["KILL", "ID", &id],
        )
        .await
        .expect("CLIENT KILL");
    true
}

/// Waits until `cond` holds, failing after `within`.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes until the bus delivers its own event back, failing after `within`.
async fn delivery_works(bus: &RedisBus, within: Duration) {
    let mut rx = bus.subscribe();
    let deadline = tokio::time::Instant::now() + within;
    for n in 0u32.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery within {within:?}"
        );
        let event = Event::PoolReady {
            pool: format!("probe-{n}"),
        };
        if bus.publish(event.clone()).await.is_ok() {
            let got = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            if matches!(got, Ok(Ok(ref e)) if *e == event) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_survives_redis_being_down_at_start_and_restarted() {
    let Some(mut redis) = TempRedis::new() else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    // Down at start: a lazy bus comes up by itself once Redis does.
    let bus = RedisBus::connect_lazy(&redis.url(), &unique_prefix()).expect("lazy bus");
    assert!(!bus.is_connected());
    assert!(bus.ping().await.is_err());
    redis.start().await;
    eventually("lazy bus connects", Duration::from_secs(10), || {
        bus.is_connected()
    })
    .await;
    delivery_works(&bus, Duration::from_secs(5)).await;

    // Killed: the bus notices, fails fast, and recovers after a restart.
    redis.kill();
    eventually("bus notices Redis is gone", Duration::from_secs(5), || {
        !bus.is_connected()
    })
    .await;
    let started = Instant::now();
    let err = bus.ping().await.expect_err("ping while Redis is down");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    let err = bus
        .publish(Event::PoolReady {
            pool: "lost".into(),
        })
        .await
        .expect_err("publish");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    redis.start().await;
    eventually("bus reconnects", Duration::from_secs(10), || {
        bus.is_connected()
    })
    .await;
    delivery_works(&bus, Duration::from_secs(5)).await;
    bus.ping().await.expect("ping after the restart");
    bus.shutdown().await;
}

/// An admin connection to `url`.
async fn admin(url: &str) -> fred::clients::Client {
    let admin = Builder::from_config(Config::from_url(url).expect("url"))
        .build()
        .expect("admin");
    admin.init().await.expect("admin connects");
    admin
}

#[tokio::test]
async fn redis_counters_are_shared_by_prefix_and_stored_as_documented() {
    let url = redis_url();
    let prefix = unique_prefix();
    let window = Duration::from_secs(3600);
    let a = RedisBus::connect(&url, &prefix).await.expect("connect a");
    let b = RedisBus::connect(&url, &prefix).await.expect("connect b");
    let other = RedisBus::connect(&url, &unique_prefix())
        .await
        .expect("connect other");
    let first = a.add("jobs:acme", 2, window).await.expect("add on a");
    let second = b.add("jobs:acme", 3, window).await.expect("add on b");
    let elsewhere = other
        .add("jobs:acme", 1, window)
        .await
        .expect("add on other");
    // A window boundary between the two additions would start the count again at 3.
    assert!(
        second.count == 5 || (second.count == 3 && second.resets_in > first.resets_in),
        "{first:?} then {second:?}"
    );
    assert_eq!(elsewhere.count, 1, "another prefix shares the count");

    // One key `{prefix}rl:{key}:{index}`, expiring within 2 windows.
    let admin = admin(&url).await;
    let keys: Vec<String> = admin
        .custom(
            CustomCommand::new_static("KEYS", None::<u16>, false),
            vec![format!("{prefix}rl:*")],
        )
        .await
        .expect("KEYS");
    let [key] = keys.as_slice() else {
        panic!("want one counter key, got {keys:?}");
    };
    let index = key
        .strip_prefix(&format!("{prefix}rl:jobs:acme:"))
        .unwrap_or_else(|| panic!("counter key {key:?} not named as documented"));
    assert!(index.parse::<u64>().is_ok(), "window index {index:?}");
    let pttl: i64 = admin
        .custom(
            CustomCommand::new_static("PTTL", None::<u16>, false),
            vec![key.as_str()],
        )
        .await
        .expect("PTTL");
    assert!(
        pttl > 0 && u128::try_from(pttl).expect("positive") <= 2 * window.as_millis(),
        "PTTL {pttl}"
    );

    // Redis refusing the script (here: a foreign value in the counter's key) is no outage.
    let _: () = admin
        .custom(
            CustomCommand::new_static("SET", None::<u16>, false),
            vec![key.as_str(), "not a number", "KEEPTTL"],
        )
        .await
        .expect("SET");
    let err = a
        .add("jobs:acme", 1, window)
        .await
        .expect_err("INCRBY on a non-integer");
    assert_eq!(err.kind, ErrorKind::Internal, "{err:?}");
    let _ = admin.quit().await;
}

#[tokio::test]
async fn redis_counters_on_a_closed_port_are_unavailable_quickly() {
    let started = Instant::now();
    let bus = RedisBus::connect_lazy("redis://:hunter2@127.0.0.1:1", "test:closed:")
        .expect("a well-formed URL is accepted");
    for by in [1, 0] {
        let result = tokio::time::timeout(
            Duration::from_secs(2),
            bus.add("k", by, Duration::from_secs(1)),
        )
        .await
        .expect("bounded by ~1 s");
        let err = result.expect_err("Redis is not there");
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
    // Commands fail at once while disconnected; the bound is generous for slow machines.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counters_survive_a_script_flush_and_a_restart() {
    let Some(mut redis) = TempRedis::new() else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    redis.start().await;
    let bus = RedisBus::connect(&redis.url(), &unique_prefix())
        .await
        .expect("connect");
    let window = Duration::from_secs(3600);
    assert_eq!(bus.add("k", 1, window).await.expect("first add").count, 1);

    // The script cache emptied (as after a restart): EVALSHA answers NOSCRIPT, EVAL takes over.
    let admin = admin(&redis.url()).await;
    let _: String = admin
        .custom(
            CustomCommand::new_static("SCRIPT", None::<u16>, false),
            vec!["FLUSH"],
        )
        .await
        .expect("SCRIPT FLUSH");
    let _ = admin.quit().await;
    let after_flush = bus
        .add("k", 1, window)
        .await
        .expect("add after SCRIPT FLUSH");
    assert!(matches!(after_flush.count, 1 | 2), "{after_flush:?}");
    assert_eq!(
        bus.add("k", 0, window).await.expect("read").count,
        after_flush.count
    );

    // Redis gone: Unavailable, fast. Back (empty): counting starts again.
    redis.kill();
    eventually("bus notices Redis is gone", Duration::from_secs(5), || {
        !bus.is_connected()
    })
    .await;
    let started = Instant::now();
    let err = bus.add("k", 1, window).await.expect_err("Redis is down");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    redis.start().await;
    eventually("bus reconnects", Duration::from_secs(10), || {
        bus.is_connected()
    })
    .await;
    assert_eq!(
        bus.add("k", 1, window)
            .await
            .expect("add after restart")
            .count,
        1
    );
    bus.shutdown().await;
}
