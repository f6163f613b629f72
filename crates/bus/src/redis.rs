//! The Redis bus (fred): one publishing connection and one subscribing connection per replica,
//! both on the channel `{key_prefix}events`, and a third connection following the activity
//! stream `{key_prefix}activity` (see `redis_feed`).
//!
//! A background task forwards every message received on the channel into a local
//! `tokio::sync::broadcast` channel, so every replica's subscribers see every event, including
//! the replica's own. fred's reconnect policy (exponential, 100 ms up to 2 s, forever) keeps
//! retrying in the background after a connection is lost (or, with [`RedisBus::connect_lazy`],
//! before it was ever made); the subscription is re-established after each reconnection.
//! Commands fail fast while disconnected, so `publish` and `ping` never hang.
//!
//! # Wire format
//! One event is one PUBLISH whose payload is UTF-8 text `<kind>:<argument>`:
//!
//! | event                    | payload            |
//! |--------------------------|--------------------|
//! | `PoolReady { pool }`     | `pool_ready:<pool>` (the pool name verbatim, may contain `:`) |
//! | `Requeued`               | `requeued:` |
//! | `JobCancelled { job }`   | `job_cancelled:<job id>` |
//!
//! Receivers ignore (and log at debug) payloads they do not understand, so newer replicas may add
//! kinds without breaking older ones.
//!
//! # Rate-limit counters
//! [`Counters::add`] runs one Lua script ([`COUNTER_SCRIPT`], by `EVALSHA`; `EVAL` when Redis
//! answers `NOSCRIPT`, e.g. after a restart) on the publishing connection. The script reads
//! `TIME`, computes the window index `floor(now_ms / window_ms)`, `INCRBY`s the string key
//! `{key_prefix}rl:{key}:{index}` (or only `GET`s it when `by` is 0, creating nothing), sets its
//! `PEXPIRE` to 2 × the window on the first increment, and returns the count and the milliseconds
//! left in the window. The key is computed inside the script, so this is for a single Redis (or a
//! primary with replicas), not Redis Cluster.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, Options, PubsubInterface, ReconnectPolicy,
};
use fred::types::{CustomCommand, Message, Value};
use switchyard_telemetry::mask_url;
use switchyard_types::{Activity, Error, Result};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

use crate::feed::{FeedEntry, FeedId, Replay};
use crate::redis_feed::RedisFeed;
use crate::{Bus, Counters, Event, WindowCount, check_by, window_millis};

/// How long [`RedisBus::connect`] waits for both connections and the subscription.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound on one PING (and on one PUBLISH).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Capacity of the local fan-out channel (and of fred's internal message channel).
pub const CAPACITY: usize = 1024;

/// The payload prefix of [`Event::PoolReady`].
const POOL_READY: &str = "pool_ready:";
/// The payload of [`Event::Requeued`].
const REQUEUED: &str = "requeued:";
/// The payload prefix of [`Event::JobCancelled`].
const JOB_CANCELLED: &str = "job_cancelled:";
/// Reconnect back-off: first delay, maximum delay (milliseconds) and growth factor.
const RECONNECT_MIN_MS: u32 = 100;
/// See [`RECONNECT_MIN_MS`].
const RECONNECT_MAX_MS: u32 = 2_000;
/// See [`RECONNECT_MIN_MS`].
const RECONNECT_BASE: u32 = 2;
/// How often a wait for the publisher's connection re-checks its state.
const RECHECK: Duration = Duration::from_millis(50);
/// Pause between attempts to re-subscribe after a failed SUBSCRIBE on a live connection.
const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(500);
/// The part of the activity stream's key after the bus's key prefix.
const FEED_KEY: &str = "activity";
/// The part of a counter's key between the bus's key prefix and the counter's own key.
const COUNTER_INFIX: &str = "rl:";
/// Error replies with which Redis refuses a counter script it received and could run (a bug, a
/// foreign value in a counter key, an ACL without `EVAL`): `Internal`. Every other failure
/// (no connection, a timeout, `LOADING`, `BUSY`, `READONLY`, `OOM`...) is `Unavailable`.
const REFUSALS: [&str; 3] = ["ERR ", "WRONGTYPE ", "NOPERM "];

/// The fixed-window counter script (see the module docs). `KEYS[1]` is the counter's key without
/// the window index (`{key_prefix}rl:{key}:`), `ARGV[1]` the amount to add (0 reads), `ARGV[2]`
/// the window in milliseconds; the reply is `{count, milliseconds left in the window}`. Lua
/// numbers are doubles, exact for every integer involved (below 2^53).
pub const COUNTER_SCRIPT: &str = r"
local by = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local index = math.floor(now / window)
local key = KEYS[1] .. string.format('%.0f', index)
local count
if by > 0 then
  count = redis.call('INCRBY', key, ARGV[1])
  if count == by then
    redis.call('PEXPIRE', key, string.format('%.0f', 2 * window))
  end
else
  count = tonumber(redis.call('GET', key) or '0')
end
return {count, window - (now - index * window)}
";

/// Encodes `event` as its channel payload (see the module docs).
pub fn encode_event(event: &Event) -> String {
    match event {
        Event::PoolReady { pool } => format!("{POOL_READY}{pool}"),
        Event::Requeued => REQUEUED.to_owned(),
        Event::JobCancelled { job } => format!("{JOB_CANCELLED}{job}"),
    }
}

/// Decodes a channel payload; `None` for kinds this version does not know.
pub fn decode_event(payload: &str) -> Option<Event> {
    if let Some(pool) = payload.strip_prefix(POOL_READY) {
        return Some(Event::PoolReady {
            pool: pool.to_owned(),
        });
    }
    if payload == REQUEUED {
        return Some(Event::Requeued);
    }
    let job = payload.strip_prefix(JOB_CANCELLED)?.parse().ok()?;
    Some(Event::JobCancelled { job })
}

/// A [`Bus`] on Redis publish/subscribe, spanning replicas.
pub struct RedisBus {
    publisher: fred::clients::Client,
    /// The connection of the activity feed's blocking reads.
    feed_reader: fred::clients::Client,
    feed: RedisFeed,
    subscriber: SubscriberClient,
    channel: String,
    masked_url: String,
    tx: broadcast::Sender<Event>,
    subscribed: watch::Receiver<bool>,
    last_error: Arc<Mutex<Option<String>>>,
    tasks: Vec<AbortHandle>,
    /// `{key_prefix}rl:`, the prefix of every counter key.
    counter_prefix: String,
    /// The SHA1 of [`COUNTER_SCRIPT`], as returned by `SCRIPT LOAD` on first use.
    script_sha: OnceLock<String>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("url", &self.masked_url)
            .field("channel", &self.channel)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to `url` and subscribes to `{key_prefix}events`, waiting at most
    /// [`CONNECT_TIMEOUT`]; `Unavailable` (with the password masked) when Redis does not answer
    /// in time, `InvalidArgument` for a malformed URL.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<RedisBus> {
        Self::connect_with_timeout(url, key_prefix, CONNECT_TIMEOUT).await
    }

    /// [`RedisBus::connect`] with an explicit bound on the wait.
    pub async fn connect_with_timeout(
        url: &str,
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<RedisBus> {
        let bus = Self::connect_lazy(url, key_prefix)?;
        let mut subscribed = bus.subscribed.clone();
        let ready = async {
            // An Err means the subscription task ended, which only happens after `quit`.
            if subscribed.wait_for(|up| *up).await.is_err() {
                return false;
            }
            // `wait_for_connect` can miss a connection made just before it subscribes, so it is
            // only a wake-up; the loop re-checks the state.
            while !bus.publisher.is_connected() {
                let _ = tokio::time::timeout(RECHECK, bus.publisher.wait_for_connect()).await;
            }
            true
        };
        match tokio::time::timeout(timeout, ready).await {
            Ok(true) => {
                let (url, channel) = (&bus.masked_url, &bus.channel);
                tracing::info!(%url, %channel, "redis bus connected");
                Ok(bus)
            }
            Ok(false) | Err(_) => {
                let cause = bus.last_error().unwrap_or_else(|| "no answer".to_owned());
                let message = format!(
                    "redis bus at {} not connected within {} ms: {cause}",
                    bus.masked_url,
                    timeout.as_millis()
                );
                // Dropping the bus stops fred's retry loops; QUIT would only wait on a dead link.
                drop(bus);
                Err(Error::unavailable(message))
            }
        }
    }

    /// Starts connecting to `url` in the background and returns at once; only a malformed URL is
    /// an error. Until Redis answers, `is_connected()` is false and `publish`/`ping` fail with
    /// `Unavailable`; fred keeps retrying forever. Must be called inside a Tokio runtime.
    pub fn connect_lazy(url: &str, key_prefix: &str) -> Result<RedisBus> {
        let masked_url = mask_url(url);
        let mut config = Config::from_url(url).map_err(|e| {
            let reason = scrub(format!("{} ({masked_url})", e.details()), Some(url));
            Error::invalid("redis_url", format!("not a valid Redis URL: {reason}"))
        })?;
        // Retry the first connection according to the policy instead of failing at once.
        config.fail_fast = false;
        let password = config.password.clone();
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_MS,
                RECONNECT_MAX_MS,
                RECONNECT_BASE,
            ))
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                c.auto_client_setname = true;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT * 2;
                p.broadcast_channel_capacity = CAPACITY;
            });
        let build_error = |e: fred::error::Error| {
            Error::internal(format!("redis bus at {masked_url}: {}", e.details()))
                .scrubbed(url)
                .scrubbed_opt(password.as_deref())
        };
        let publisher = builder.build().map_err(build_error)?;
        let subscriber = builder.build_subscriber_client().map_err(build_error)?;
        let feed_reader = builder.build().map_err(build_error)?;

        let channel = format!("{key_prefix}events");
        let (tx, _) = broadcast::channel(CAPACITY);
        let (state_tx, subscribed) = watch::channel(false);
        let last_error = Arc::new(Mutex::new(None));
        let scrub = Scrub {
            url: url.to_owned(),
            password,
        };

        // Take every receiver before connecting so that no message or event is missed.
        let manager = SubscriptionManager {
            subscriber: subscriber.clone(),
            channel: channel.clone(),
            state: state_tx,
            last_error: Arc::clone(&last_error),
            scrub: scrub.clone(),
            masked_url: masked_url.clone(),
        };
        let reconnects = subscriber.reconnect_rx();
        let sub_errors = subscriber.error_rx();
        let pub_errors = publisher.error_rx();
        let messages = subscriber.message_rx();

        tracing::info!(url = %masked_url, channel = %channel, "redis bus connecting");
        let (feed, feed_tasks) = RedisFeed::start(
            publisher.clone(),
            feed_reader.clone(),
            format!("{key_prefix}{FEED_KEY}"),
            Self::command_options(),
        );
        let mut tasks = vec![
            tokio::spawn(forward(messages, channel.clone(), tx.clone())).abort_handle(),
            tokio::spawn(manager.run(reconnects, sub_errors)).abort_handle(),
            tokio::spawn(record_errors(pub_errors, Arc::clone(&last_error), scrub)).abort_handle(),
            publisher.connect().abort_handle(),
            subscriber.connect().abort_handle(),
            feed_reader.connect().abort_handle(),
        ];
        tasks.extend(feed_tasks);
        Ok(RedisBus {
            feed,
            feed_reader,
            publisher,
            subscriber,
            channel,
            masked_url,
            tx,
            subscribed,
            last_error,
            tasks,
            counter_prefix: format!("{key_prefix}{COUNTER_INFIX}"),
            script_sha: OnceLock::new(),
        })
    }

    /// The Redis channel this bus publishes to and listens on (`{key_prefix}events`).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The `CLIENT SETNAME` names of the publishing and the subscribing connection, to find them
    /// in `CLIENT LIST`.
    pub fn client_names(&self) -> [String; 2] {
        [
            self.publisher.id().to_owned(),
            self.subscriber.id().to_owned(),
        ]
    }

    /// Closes both connections with `QUIT` (bounded by [`COMMAND_TIMEOUT`]) and stops the
    /// background tasks. Dropping the bus stops them too, without the polite `QUIT`.
    pub async fn shutdown(&self) {
        let quit = async {
            if self.subscriber.is_connected() {
                let _ = self.subscriber.quit().await;
            }
            if self.publisher.is_connected() {
                let _ = self.publisher.quit().await;
            }
            if self.feed_reader.is_connected() {
                let _ = self.feed_reader.quit().await;
            }
        };
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, quit).await;
        for task in &self.tasks {
            task.abort();
        }
    }

    /// The last connection error seen, password removed.
    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Per-command options: bounded, and failing at once while disconnected.
    fn command_options() -> Options {
        Options {
            timeout: Some(COMMAND_TIMEOUT),
            fail_fast: true,
            max_attempts: Some(1),
            ..Options::default()
        }
    }

    /// Runs [`COUNTER_SCRIPT`] on the publishing connection: `SCRIPT LOAD` on first use, then
    /// `EVALSHA`, falling back to `EVAL` (which also caches the script again) on `NOSCRIPT`.
    ///
    /// These are sent as custom commands because fred 10.1 does not implement `LuaInterface` for
    /// `WithOptions`: its `evalsha` would run on the bare client through `Deref`, without the
    /// per-command options (fail at once while disconnected, one attempt, bounded wait), so an
    /// addition could wait for a reconnection or be replayed after one.
    async fn run_counter_script(
        &self,
        key: String,
        by: i64,
        window_ms: i64,
    ) -> std::result::Result<(i64, i64), fred::error::Error> {
        let client = self.publisher.with_options(&Self::command_options());
        let sha = match self.script_sha.get() {
            Some(sha) => sha.clone(),
            None => {
                let load = CustomCommand::new_static("SCRIPT", None::<u16>, false);
                let sha: String = client.custom(load, vec!["LOAD", COUNTER_SCRIPT]).await?;
                // A concurrent first call may have set it already: the same SHA1.
                self.script_sha.get_or_init(|| sha).clone()
            }
        };
        let args = |script: String| -> Vec<Value> {
            vec![
                script.into(),
                1.into(),
                key.as_str().into(),
                by.into(),
                window_ms.into(),
            ]
        };
        let evalsha = CustomCommand::new_static("EVALSHA", None::<u16>, false);
        match client.custom(evalsha, args(sha)).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let eval = CustomCommand::new_static("EVAL", None::<u16>, false);
                client.custom(eval, args(COUNTER_SCRIPT.to_owned())).await
            }
            result => result,
        }
    }

    /// Maps a failed counter script to `Internal` when Redis refused it ([`REFUSALS`]) or its
    /// reply was not the expected pair of integers, to `Unavailable` otherwise (fred reports a
    /// lost connection with several kinds, `Unknown` among them); never leaking the password.
    fn counter_error(&self, error: &fred::error::Error) -> Error {
        let refused = REFUSALS
            .iter()
            .any(|reply| error.details().starts_with(reply));
        let bad_reply = *error.kind() == fred::error::ErrorKind::Parse;
        if !(refused || bad_reply) {
            return self.unavailable("rate-limit counter script", error);
        }
        let message = format!(
            "redis bus at {}: rate-limit counter script failed: {}",
            self.masked_url,
            error.details()
        );
        let password = self.publisher.client_config().password;
        Error::internal(message).scrubbed_opt(password.as_deref())
    }

    /// Maps a fred error of `what` to `Unavailable`, never leaking the password.
    fn unavailable(&self, what: &str, error: &fred::error::Error) -> Error {
        let detail = if self.publisher.is_connected() {
            error.details().to_owned()
        } else {
            "not connected".to_owned()
        };
        let message = format!("redis bus at {}: {what} failed: {detail}", self.masked_url);
        let password = self.publisher.client_config().password;
        Error::unavailable(message).scrubbed_opt(password.as_deref())
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, event: Event) -> Result<()> {
        let payload = encode_event(&event);
        let publisher = self.publisher.with_options(&Self::command_options());
        let sent = publisher.publish::<i64, _, _>(self.channel.as_str(), payload);
        match tokio::time::timeout(COMMAND_TIMEOUT, sent).await {
            Ok(Ok(_receivers)) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable("PUBLISH", &e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis bus at {}: PUBLISH timed out",
                self.masked_url
            ))),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        let publisher = self.publisher.with_options(&Self::command_options());
        match tokio::time::timeout(COMMAND_TIMEOUT, publisher.ping::<()>(None)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable("PING", &e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis bus at {}: no answer to PING within {} ms",
                self.masked_url,
                COMMAND_TIMEOUT.as_millis()
            ))),
        }
    }

    fn is_connected(&self) -> bool {
        *self.subscribed.borrow() && self.subscriber.is_connected() && self.publisher.is_connected()
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn announce(&self, activity: Activity) {
        self.feed.announce(activity);
    }

    fn activity(&self) -> broadcast::Receiver<Arc<FeedEntry>> {
        self.feed.subscribe()
    }

    async fn replay(&self, after: FeedId, limit: usize) -> Result<Replay> {
        self.feed.replay(after, limit).await
    }
}

#[async_trait]
impl Counters for RedisBus {
    async fn add(&self, key: &str, by: u64, window: Duration) -> Result<WindowCount> {
        let window_ms = window_millis(window)?;
        let by = check_by(by)?;
        // At most MAX_WINDOW, so it fits.
        let window_ms = i64::try_from(window_ms).unwrap_or(i64::MAX);
        let redis_key = format!("{}{key}:", self.counter_prefix);
        let run = self.run_counter_script(redis_key, by, window_ms);
        match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Ok(Ok((count, left_ms))) => Ok(WindowCount {
                count: u64::try_from(count).unwrap_or(0),
                resets_in: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
            }),
            Ok(Err(e)) => Err(self.counter_error(&e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis bus at {}: no answer to the rate-limit counter script within {} ms",
                self.masked_url,
                COMMAND_TIMEOUT.as_millis()
            ))),
        }
    }
}

/// Removes credentials from text that may quote them.
#[derive(Clone)]
struct Scrub {
    url: String,
    password: Option<String>,
}

impl Scrub {
    /// `text` with the URL and the password replaced.
    fn apply(&self, text: &str) -> String {
        scrub(
            scrub(text.to_owned(), Some(&self.url)),
            self.password.as_deref(),
        )
    }
}

/// `text` with every occurrence of `secret` replaced by `***`.
fn scrub(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() && text.contains(secret) => text.replace(secret, "***"),
        Some(_) | None => text,
    }
}

/// Error helpers that keep secrets out of messages.
trait Scrubbed {
    /// The error with `secret` masked in its message.
    fn scrubbed(self, secret: &str) -> Self;
    /// [`Scrubbed::scrubbed`] when there is a secret.
    fn scrubbed_opt(self, secret: Option<&str>) -> Self;
}

impl Scrubbed for Error {
    fn scrubbed(self, secret: &str) -> Self {
        self.scrubbed_opt(Some(secret))
    }

    fn scrubbed_opt(mut self, secret: Option<&str>) -> Self {
        self.message = scrub(self.message, secret);
        self
    }
}

/// Keeps the subscription alive: subscribes after every (re)connection, tracks the state.
struct SubscriptionManager {
    subscriber: SubscriberClient,
    channel: String,
    state: watch::Sender<bool>,
    last_error: Arc<Mutex<Option<String>>>,
    scrub: Scrub,
    masked_url: String,
}

impl SubscriptionManager {
    /// Runs until the client quits.
    async fn run(
        self,
        mut reconnects: broadcast::Receiver<fred::types::config::Server>,
        mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    ) {
        loop {
            tokio::select! {
                event = reconnects.recv() => match event {
                    // A lagged receiver still means "we reconnected": subscribe again.
                    Ok(_) | Err(RecvError::Lagged(_)) => self.subscribe(&mut reconnects).await,
                    Err(RecvError::Closed) => break,
                },
                event = errors.recv() => match event {
                    Ok((error, _server)) => self.lost(error.details()),
                    Err(RecvError::Lagged(_)) => self.lost("connection errors"),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        self.state.send_replace(false);
    }

    /// Subscribes on the fresh connection, retrying while it stays up and no newer reconnection
    /// arrives.
    async fn subscribe(&self, reconnects: &mut broadcast::Receiver<fred::types::config::Server>) {
        self.state.send_replace(false);
        loop {
            let attempt = self.subscriber.subscribe(self.channel.as_str());
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(())) => {
                    self.state.send_replace(true);
                    let (url, channel) = (&self.masked_url, &self.channel);
                    tracing::info!(%url, %channel, "redis bus subscribed");
                    return;
                }
                Ok(Err(e)) => self.record(e.details()),
                Err(_) => self.record("SUBSCRIBE timed out"),
            }
            tracing::warn!(url = %self.masked_url, "redis bus could not subscribe; retrying");
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_RETRY) => {}
                // A newer connection: subscribe on that one at once.
                _ = reconnects.recv() => {}
            }
        }
    }

    /// The connection failed or dropped.
    fn lost(&self, detail: &str) {
        self.record(detail);
        let was_up = self.state.send_replace(false);
        let (url, error) = (&self.masked_url, self.scrub.apply(detail));
        if was_up {
            tracing::warn!(%url, %error, "redis bus disconnected; reconnecting in the background");
        } else {
            tracing::debug!(%url, %error, "redis bus still not connected");
        }
    }

    /// Remembers `detail` as the last error, password removed.
    fn record(&self, detail: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(self.scrub.apply(detail));
    }
}

/// Records the publisher's connection errors for [`RedisBus::connect`]'s message.
async fn record_errors(
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    last_error: Arc<Mutex<Option<String>>>,
    scrub: Scrub,
) {
    loop {
        match errors.recv().await {
            Ok((error, _server)) => {
                *last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(scrub.apply(error.details()));
            }
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
}

/// Forwards messages on `channel` into the local fan-out channel.
async fn forward(
    mut messages: broadcast::Receiver<Message>,
    channel: String,
    tx: broadcast::Sender<Event>,
) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                if *message.channel != *channel {
                    continue;
                }
                match message.value.as_str().as_deref().and_then(decode_event) {
                    Some(event) => {
                        // No local subscriber right now is fine.
                        let _ = tx.send(event);
                    }
                    None => {
                        tracing::debug!(channel = %channel, "redis bus ignored an unknown payload")
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "redis bus fell behind; events were dropped");
            }
            Err(RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips() {
        for pool in ["default", "gpu:a100", "", "ünïcode pool"] {
            let event = Event::PoolReady {
                pool: pool.to_owned(),
            };
            let payload = encode_event(&event);
            assert_eq!(payload, format!("pool_ready:{pool}"));
            assert_eq!(decode_event(&payload), Some(event));
        }
        assert_eq!(
            decode_event(&encode_event(&Event::Requeued)),
            Some(Event::Requeued)
        );
        let job = switchyard_types::JobId::new();
        let event = Event::JobCancelled { job };
        let payload = encode_event(&event);
        assert_eq!(payload, format!("job_cancelled:{job}"));
        assert_eq!(decode_event(&payload), Some(event));
    }

    #[test]
    fn unknown_payloads_are_ignored() {
        for payload in [
            "",
            "pool_ready",
            "job_done:x",
            "job_cancelled:not-a-uuid",
            "POOL_READY:x",
            "{\"pool\":\"x\"}",
        ] {
            assert_eq!(decode_event(payload), None, "{payload}");
        }
    }

    #[test]
    fn scrub_removes_secrets() {
        let s = Scrub {
            url: "redis://:hunter2@h".into(),
            password: Some("hunter2".into()),
        };
        assert_eq!(
            s.apply("bad redis://:hunter2@h and hunter2"),
            "bad *** and ***"
        );
        assert_eq!(scrub("x".into(), Some("")), "x");
    }

    #[tokio::test]
    async fn malformed_url_is_invalid_argument_without_password() {
        let err = RedisBus::connect_lazy("redis://:hunter2@host:notaport", "t:").err();
        let err = err.expect("malformed URL must fail");
        assert_eq!(err.kind, switchyard_types::ErrorKind::InvalidArgument);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(!format!("{err:?}").contains("hunter2"));
    }
}
