//! The in-process bus for a single replica (`switchyard dev`, tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{Activity, Result};
use tokio::sync::broadcast;

use crate::feed::{self, FeedEntry, FeedId, Replay, Ring, unix_millis};
use crate::{Bus, Counters, Event, WindowCount, check_by, window_millis};

/// How many events a slow subscriber may fall behind before it sees `RecvError::Lagged`.
pub const CAPACITY: usize = 1024;

/// How often (at most) [`Counters::add`] sweeps the counts of ended windows.
const SWEEP_EVERY_MS: u64 = 1_000;

/// An in-process bus: one `tokio::sync::broadcast` channel, an in-memory activity feed (the
/// last [`feed::RETAINED`] entries), plus in-memory [`Counters`] on the system clock. Clones
/// share all three, so two clones behave like two replicas on one backend.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Event>,
    counts: Arc<Mutex<Counts>>,
    feed: Arc<Mutex<Ring>>,
    live: broadcast::Sender<Arc<FeedEntry>>,
}

impl LocalBus {
    /// A bus with its own channel of [`CAPACITY`] events, its own feed and its own counters.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let (live, _) = broadcast::channel(feed::LIVE_CAPACITY);
        LocalBus {
            tx,
            counts: Arc::new(Mutex::new(Counts::default())),
            feed: Arc::new(Mutex::new(Ring::new(feed::RETAINED))),
            live,
        }
    }
}

/// The counters of one [`LocalBus`] (and its clones).
#[derive(Debug, Default)]
struct Counts {
    /// (key, window index) → count; like the Redis key `{prefix}rl:{key}:{index}`.
    windows: HashMap<(String, u64), Window>,
    /// When (Unix milliseconds) the next sweep of ended windows is due.
    next_sweep_ms: u64,
}

/// One counter in one window.
#[derive(Debug)]
struct Window {
    count: u64,
    /// When (Unix milliseconds) the window ends; the entry is stale from then on.
    ends_ms: u64,
}

impl Counts {
    /// Adds `by` to `key` in the window of `window_ms` containing `now_ms`.
    fn add(&mut self, key: &str, by: u64, window_ms: u64, now_ms: u64) -> WindowCount {
        if now_ms >= self.next_sweep_ms {
            self.windows.retain(|_, w| w.ends_ms > now_ms);
            self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        }
        let index = now_ms / window_ms;
        let ends_ms = index.saturating_add(1).saturating_mul(window_ms);
        let count = if by == 0 {
            // A read creates nothing.
            self.windows
                .get(&(key.to_owned(), index))
                .map_or(0, |w| w.count)
        } else {
            let entry = self
                .windows
                .entry((key.to_owned(), index))
                .or_insert(Window { count: 0, ends_ms });
            entry.count = entry.count.saturating_add(by);
            entry.count
        };
        WindowCount {
            count,
            resets_in: Duration::from_millis(ends_ms - now_ms),
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, event: Event) -> Result<()> {
        // An error only means nobody is subscribed right now, which is fine for wake-ups.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        "local"
    }

    fn announce(&self, activity: Activity) {
        // Numbered and sent under the lock, so live subscribers see entries in id order.
        let mut ring = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = ring.push(activity);
        // An error only means nobody is watching.
        let _ = self.live.send(entry);
    }

    fn activity(&self) -> broadcast::Receiver<Arc<FeedEntry>> {
        self.live.subscribe()
    }

    async fn replay(&self, after: FeedId, limit: usize) -> Result<Replay> {
        let ring = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(ring.replay(after, limit.min(feed::MAX_REPLAY)))
    }
}

#[async_trait]
impl Counters for LocalBus {
    async fn add(&self, key: &str, by: u64, window: Duration) -> Result<WindowCount> {
        let window_ms = window_millis(window)?;
        check_by(by)?;
        let now_ms = unix_millis();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(counts.add(key, by, window_ms, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_reset() {
        let mut counts = Counts::default();
        assert_eq!(
            counts.add("k", 2, 1_000, 10_250),
            WindowCount {
                count: 2,
                resets_in: Duration::from_millis(750)
            }
        );
        assert_eq!(counts.add("k", 3, 1_000, 10_999).count, 5);
        assert_eq!(
            counts.add("k", 0, 1_000, 11_000),
            WindowCount {
                count: 0,
                resets_in: Duration::from_millis(1_000)
            }
        );
        assert_eq!(counts.add("k", 1, 1_000, 11_001).count, 1);
    }

    #[test]
    fn reads_create_nothing_and_ended_windows_are_swept() {
        let mut counts = Counts::default();
        assert_eq!(counts.add("read-only", 0, 100, 1_000).count, 0);
        assert!(counts.windows.is_empty());
        for i in 0..100u64 {
            counts.add(&format!("k{i}"), 1, 100, 1_000 + i);
        }
        assert_eq!(counts.windows.len(), 100);
        // The next call after the sweep interval drops every window that has ended.
        counts.add("late", 1, 100, 1_000 + SWEEP_EVERY_MS);
        assert_eq!(counts.windows.len(), 1);
    }
}
