//! The in-process bus for a single replica (`switchyard dev`, tests).

use async_trait::async_trait;
use switchyard_types::Result;
use tokio::sync::broadcast;

use crate::{Bus, Event};

/// How many events a slow subscriber may fall behind before it sees `RecvError::Lagged`.
pub const CAPACITY: usize = 1024;

/// An in-process bus: one `tokio::sync::broadcast` channel. Clones share the channel, so two
/// clones behave like two replicas on one backend.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Event>,
}

impl LocalBus {
    /// A bus with its own channel of [`CAPACITY`] events.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        LocalBus { tx }
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
}
