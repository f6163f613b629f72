//! The activity feed on Redis: one stream, `{key_prefix}activity`, trimmed to about
//! [`feed::RETAINED`] entries. Redis numbers the entries (stream ids are [`FeedId`]s), so every
//! replica sees one order and a client may resume on any replica.
//!
//! * A writer task takes announced activities from a bounded queue and appends them (`XADD`
//!   with `MAXLEN ~`), many at once on the pipelined connection; a full queue or a failed
//!   append drops the activity and counts it.
//! * A reader task, on its own connection (a blocking `XREAD` holds the connection it runs
//!   on), follows the stream from a few seconds before it started ([`START_MARGIN_MS`]) and
//!   forwards every entry to the replica's live channel. After an outage it goes on from the last id it delivered, so live
//!   subscribers miss nothing Redis kept.
//! * A replay is one `XRANGE` from the requested id, inclusive: the id coming back first
//!   proves nothing after it was trimmed.
//!
//! Each entry has one field, `a`, the activity as JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::prelude::{ClientLike, Options, StreamsInterface};
use switchyard_types::{Activity, Error, Result};
use tokio::sync::{broadcast, mpsc};

use crate::feed::{self, FeedEntry, FeedId, Replay, count_dropped, unix_millis};

/// The field holding the activity's JSON.
const FIELD: &str = "a";
/// How many activities may wait to be written before new ones are dropped.
const OUTBOX: usize = 65_536;
/// The most activities appended at once.
const BATCH: usize = 512;
/// How long one blocking read waits for new entries.
const BLOCK: Duration = Duration::from_secs(1);
/// The most entries one read takes.
const READ_COUNT: u64 = 1_000;
/// How far before its start the reader begins (tolerated clock skew with Redis).
const START_MARGIN_MS: u64 = 5_000;
/// Pause before the reader tries again after an error (Redis down).
const RETRY: Duration = Duration::from_millis(250);

/// A stream entry as fred returns it: id and fields.
type StreamEntry = (String, HashMap<String, String>);

/// The Redis side of the feed (see the module docs).
pub(crate) struct RedisFeed {
    outbox: mpsc::Sender<Activity>,
    live: broadcast::Sender<Arc<FeedEntry>>,
    client: Client,
    key: String,
    options: Options,
}

impl RedisFeed {
    /// The feed on stream `key`: appends through `client`, follows with `reader` (a connection
    /// of its own), both with per-command `options`. Returns the feed and its two tasks.
    pub(crate) fn start(
        client: Client,
        reader: Client,
        key: String,
        options: Options,
    ) -> (RedisFeed, [tokio::task::AbortHandle; 2]) {
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let (live, _) = broadcast::channel(feed::LIVE_CAPACITY);
        let tasks = [
            tokio::spawn(write(client.clone(), key.clone(), options.clone(), queued))
                .abort_handle(),
            tokio::spawn(follow(reader, key.clone(), options.clone(), live.clone())).abort_handle(),
        ];
        let feed = RedisFeed {
            outbox,
            live,
            client,
            key,
            options,
        };
        (feed, tasks)
    }

    /// Queues `activity` for the writer; drops it when the queue is full.
    pub(crate) fn announce(&self, activity: Activity) {
        if self.outbox.try_send(activity).is_err() {
            count_dropped("queue_full");
        }
    }

    /// A receiver of the entries the reader forwards.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEntry>> {
        self.live.subscribe()
    }

    /// See [`Bus::replay`](crate::Bus::replay).
    pub(crate) async fn replay(&self, after: FeedId, limit: usize) -> Result<Replay> {
        let limit = limit.min(feed::MAX_REPLAY);
        let client = self.client.with_options(&self.options);
        let count = u64::try_from(limit + 1).unwrap_or(u64::MAX);
        let found: Vec<StreamEntry> = client
            .xrange(self.key.as_str(), after.to_string(), "+", Some(count))
            .await
            .map_err(|e| Error::unavailable(format!("replaying the activity feed: {e}")))?;
        let mut found = found.into_iter().filter_map(parse);
        if found.next().map(|e| e.id) != Some(after) {
            return Ok(Replay {
                entries: Vec::new(),
                complete: false,
            });
        }
        Ok(Replay {
            entries: found.take(limit).map(Arc::new).collect(),
            complete: true,
        })
    }
}

/// Appends queued activities until the feed is dropped.
async fn write(
    client: Client,
    key: String,
    options: Options,
    mut queued: mpsc::Receiver<Activity>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let cap = (
        "MAXLEN",
        "~",
        i64::try_from(feed::RETAINED).unwrap_or(i64::MAX),
    );
    while queued.recv_many(&mut batch, BATCH).await > 0 {
        let client = client.with_options(&options);
        let appends = batch.drain(..).map(|activity| {
            let client = &client;
            let key = key.as_str();
            async move {
                let json = serde_json::to_string(&activity).map_err(|e| e.to_string())?;
                client
                    .xadd::<String, _, _, _, _>(key, false, cap, "*", vec![(FIELD, json)])
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        for failed in futures::future::join_all(appends)
            .await
            .into_iter()
            .filter_map(std::result::Result::err)
        {
            tracing::debug!(error = %failed, "activity not appended");
            count_dropped("redis");
        }
    }
}

/// Follows the stream and forwards its entries to `live` (see the module docs).
async fn follow(
    reader: Client,
    key: String,
    options: Options,
    live: broadcast::Sender<Arc<FeedEntry>>,
) {
    let options = Options {
        timeout: Some(BLOCK + options.timeout.unwrap_or_default()),
        ..options
    };
    let block_ms = u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX);
    // From a little before the feed was made, so that nothing announced after it is missed
    // even if this replica's clock runs somewhat ahead of Redis's.
    let mut from = FeedId {
        ms: unix_millis().saturating_sub(START_MARGIN_MS),
        seq: 0,
    }
    .to_string();
    loop {
        let client = reader.with_options(&options);
        let read = client
            .xread_map::<String, String, String, String, _, _>(
                Some(READ_COUNT),
                Some(block_ms),
                key.as_str(),
                from.as_str(),
            )
            .await;
        match read {
            Ok(streams) => {
                for (id, fields) in streams.into_values().flatten() {
                    from.clone_from(&id);
                    if let Some(entry) = parse((id, fields)) {
                        // An error only means nobody is watching.
                        let _ = live.send(Arc::new(entry));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the activity feed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// An entry as the feed's; `None` (logged) for one this version cannot read.
fn parse((id, fields): StreamEntry) -> Option<FeedEntry> {
    let parsed = id.parse::<FeedId>().ok().and_then(|id| {
        let activity = serde_json::from_str(fields.get(FIELD)?).ok()?;
        Some(FeedEntry::new(id, activity))
    });
    if parsed.is_none() {
        tracing::debug!(%id, "unreadable activity feed entry skipped");
    }
    parsed
}
