//! The event bus: wake-ups ("jobs are claimable in pool P") and, later, event fan-out to
//! WebSocket clients across replicas. [`local::LocalBus`] serves one process (`switchyard dev`);
//! [`redis::RedisBus`] (fred) spans replicas. The bus is advisory: losing it costs latency
//! (claimers fall back to short polling), never correctness.

use async_trait::async_trait;
use switchyard_types::Result;
use tokio::sync::broadcast;

pub mod conformance;
pub mod local;
pub mod redis;

/// Something that happened, announced to every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Jobs became claimable in this pool (enqueued, retried, redriven or requeued).
    PoolReady {
        /// The pool's name.
        pool: String,
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
}
