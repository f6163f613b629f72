//! The event bus: wake-ups ("jobs are claimable in pool P") and the activity [`feed`] that
//! WebSocket clients of every replica watch. [`local::LocalBus`] serves one process (`switchyard dev`);
//! [`redis::RedisBus`] (fred) spans replicas. The bus is advisory: losing it costs latency
//! (claimers fall back to short polling), never correctness.
//!
//! [`Counters`] are the basis of rate limits: counts in fixed time windows, aligned on the
//! backend's clock so that every replica on one backend shares them (both adapters implement it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{Activity, Result};
use tokio::sync::broadcast;

pub mod conformance;
pub mod feed;
pub mod local;
pub mod redis;
mod redis_feed;

pub use feed::{FeedEntry, FeedId, Replay};

/// Something that happened, announced to every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Jobs became claimable in this pool (enqueued, retried, redriven or requeued).
    PoolReady {
        /// The pool's name.
        pool: String,
    },
    /// The reaper put jobs whose lease expired back in the queue (of any pool): every waiting
    /// claimer looks again.
    Requeued,
    /// A job was cancelled: the agent holding it (on whichever replica) is told to stop it.
    JobCancelled {
        /// The job.
        job: switchyard_types::JobId,
    },
}

/// A publish/subscribe bus shared by all replicas.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Announces `event` to every subscriber of every replica (including this one).
    async fn publish(&self, event: Event) -> Result<()>;

    /// A receiver of every event published from now on. Lagging receivers lose the oldest
    /// events (`RecvError::Lagged`), which callers treat as "something happened".
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// A round trip to the bus's backend; `Unavailable` when it does not answer.
    async fn ping(&self) -> Result<()>;

    /// Whether events are currently delivered. When false, claimers poll on a short interval.
    fn is_connected(&self) -> bool;

    /// `local` or `redis`.
    fn backend(&self) -> &'static str;

    /// Announces a change to the activity feed of every replica. Never waits: the activity is
    /// queued and sent in batches, or dropped (and counted) when the bus is down or behind.
    fn announce(&self, activity: Activity);

    /// A receiver of every feed entry numbered from now on, from any replica. A receiver that
    /// falls [`feed::LIVE_CAPACITY`] entries behind gets `RecvError::Lagged`.
    fn activity(&self) -> broadcast::Receiver<Arc<FeedEntry>>;

    /// The kept entries after `after`, oldest first, at most `limit` (capped at
    /// [`feed::MAX_REPLAY`]); see [`Replay::complete`]. `Unavailable` when the backend does not
    /// answer.
    async fn replay(&self, after: FeedId, limit: usize) -> Result<Replay>;
}

/// The longest window [`Counters::add`] accepts (366 days).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The count of one counter in its current fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// The counter's value in the current window, after the addition.
    pub count: u64,
    /// Time left until the current window ends (and the count starts again from zero).
    pub resets_in: Duration,
}

/// Counters in fixed time windows, shared by every replica: the basis of rate limits.
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Adds `by` (0 to just read) to the counter `key` in the current window of length `window`
    /// and returns its count in that window and the time until the window ends. Windows are
    /// aligned to multiples of `window` on the backend's clock (Redis's `TIME` for Redis), so
    /// every replica counts in the same windows. `Unavailable` when the backend does not answer.
    ///
    /// `window` counts in whole milliseconds and must be between 1 ms and [`MAX_WINDOW`], and
    /// `by` at most `i64::MAX` (`InvalidArgument` otherwise). Use one window length per key: a window is named by its
    /// index, not its length, so two lengths on one key may share counts.
    async fn add(&self, key: &str, by: u64, window: Duration) -> Result<WindowCount>;
}

/// `window` in whole milliseconds, or `InvalidArgument` outside 1 ms ..= [`MAX_WINDOW`].
pub(crate) fn window_millis(window: Duration) -> Result<u64> {
    if window < Duration::from_millis(1) || window > MAX_WINDOW {
        return Err(switchyard_types::Error::invalid(
            "window",
            format!(
                "must be between 1 ms and {} ms, got {window:?}",
                MAX_WINDOW.as_millis()
            ),
        ));
    }
    // At most MAX_WINDOW (about 3.2e10 ms), so the conversion cannot fail.
    Ok(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
}

/// `by` as Redis's signed integer, or `InvalidArgument` above `i64::MAX`.
pub(crate) fn check_by(by: u64) -> Result<i64> {
    i64::try_from(by).map_err(|_| {
        switchyard_types::Error::invalid("by", format!("must be at most {}, got {by}", i64::MAX))
    })
}
