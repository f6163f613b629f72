//! What a replica's agent streams share, so an idle stream costs next to nothing:
//!
//! * [`Doors`]: one doorbell per (tenant, pool). Its watcher alone listens to the bus and
//!   re-checks the store; a stream with free credits waits at the door instead of polling. A
//!   wake-up rings one waiting stream; a stream whose claim came back full rings the next.
//! * [`Heartbeats`]: the streams' heartbeats written in batches, one round trip each.
//! * [`Cancels`]: one bus listener that routes a job's cancellation to the stream holding it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rand::Rng as _;
use switchyard_bus::Event;
use switchyard_store::{AgentStore, StreamBeat};
use switchyard_types::{JobId, Principal, Result, TenantId};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::queue::Queue;

/// A pool's doorbell: streams with free credits wait on it.
pub(crate) struct Door {
    /// Rung by the watcher (and by streams whose claim came back full).
    pub(crate) bell: Arc<Notify>,
    /// Ends the watcher when the last stream of the pool leaves.
    watcher: CancellationToken,
}

impl Drop for Door {
    fn drop(&mut self) {
        self.watcher.cancel();
    }
}

/// The doors of this replica's pools.
pub(crate) struct Doors {
    queue: Queue,
    recheck: Duration,
    open: Mutex<HashMap<(TenantId, String), Weak<Door>>>,
}

impl Doors {
    /// Doors over `queue`, whose watchers re-check the store every `recheck` (jittered).
    pub(crate) fn new(queue: Queue, recheck: Duration) -> Self {
        Doors {
            queue,
            recheck,
            open: Mutex::default(),
        }
    }

    /// The door of `who`'s tenant's `pool`, opened (its watcher started) on first use. Kept
    /// open while any stream holds it.
    pub(crate) fn door(&self, who: &Principal, pool: &str) -> Arc<Door> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let key = (who.tenant.clone(), pool.to_owned());
        if let Some(door) = open.get(&key).and_then(Weak::upgrade) {
            return door;
        }
        open.retain(|_, door| door.strong_count() > 0);
        let door = Arc::new(Door {
            bell: Arc::default(),
            watcher: CancellationToken::new(),
        });
        tokio::spawn(watch(
            self.queue.clone(),
            who.clone(),
            pool.to_owned(),
            door.bell.clone(),
            door.watcher.clone(),
            self.recheck,
        ));
        open.insert(key, Arc::downgrade(&door));
        door
    }
}

/// Rings `bell` when `pool` may have work: one stream on a wake-up for the pool, every stream
/// after a requeue or a missed wake-up, and every stream when a re-check finds due work.
async fn watch(
    queue: Queue,
    who: Principal,
    pool: String,
    bell: Arc<Notify>,
    stop: CancellationToken,
    recheck: Duration,
) {
    let mut events = queue.events();
    loop {
        let every = if queue.bus_connected() {
            recheck.mul_f64(1.0 + rand::rng().random::<f64>() / 5.0)
        } else {
            recheck / 5
        };
        // Events come and go until the re-check is due; they never push it back.
        let due = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::PoolReady { pool: ready }) if ready == pool => bell.notify_one(),
                    Ok(Event::Requeued) | Err(RecvError::Lagged(_)) => bell.notify_waiters(),
                    Ok(Event::PoolReady { .. } | Event::JobCancelled { .. }) => {}
                    // No bus any more (shutting down): only the re-checks remain.
                    Err(RecvError::Closed) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(due) => break,
                            () = stop.cancelled() => return,
                        }
                    }
                },
                () = tokio::time::sleep_until(due) => break,
                () = stop.cancelled() => return,
            }
        }
        match queue.has_due_jobs(&who, &pool).await {
            Ok(true) => bell.notify_waiters(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, pool, "re-checking a pool for work failed"),
        }
    }
}

/// Beats gathered into one write, at most this many.
const BEAT_BATCH: usize = 512;
/// How long the first beat of a batch waits for company.
const BEAT_WINDOW: Duration = Duration::from_millis(50);

type BeatReply = oneshot::Sender<Result<Option<bool>>>;

/// The streams' heartbeats, written in batches by one task (started on first use).
pub(crate) struct Heartbeats {
    store: Arc<dyn AgentStore>,
    writer: OnceLock<mpsc::Sender<(StreamBeat, BeatReply)>>,
}

impl Heartbeats {
    /// Heartbeats written to `store`.
    pub(crate) fn new(store: Arc<dyn AgentStore>) -> Self {
        Heartbeats {
            store,
            writer: OnceLock::new(),
        }
    }

    /// Records one stream's heartbeat with the next batch: whether its agent is drained, or
    /// `None` when the stream no longer speaks for it.
    pub(crate) async fn beat(&self, beat: StreamBeat) -> Result<Option<bool>> {
        let writer = self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4 * BEAT_BATCH);
            tokio::spawn(write_batches(self.store.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let closed = || switchyard_types::Error::unavailable("the heartbeat writer stopped");
        writer.send((beat, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Writes beats as they come, gathering those that arrive within [`BEAT_WINDOW`] of a batch's
/// first one.
async fn write_batches(
    store: Arc<dyn AgentStore>,
    mut rx: mpsc::Receiver<(StreamBeat, BeatReply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let window = tokio::time::sleep(BEAT_WINDOW);
        tokio::pin!(window);
        while batch.len() < BEAT_BATCH {
            tokio::select! {
                more = rx.recv() => match more {
                    Some(beat) => batch.push(beat),
                    None => break,
                },
                () = &mut window => break,
            }
        }
        let (beats, replies): (Vec<StreamBeat>, Vec<BeatReply>) = batch.into_iter().unzip();
        match store.agent_heartbeats(&beats).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Routes cancellations from the bus to the stream holding the job; one listener per replica,
/// started on first use.
pub(crate) struct Cancels {
    queue: Queue,
    holders: Arc<Mutex<HashMap<JobId, mpsc::UnboundedSender<JobId>>>>,
    listener: OnceLock<()>,
}

impl Cancels {
    /// Cancellations announced on `queue`'s bus.
    pub(crate) fn new(queue: Queue) -> Self {
        Cancels {
            queue,
            holders: Arc::default(),
            listener: OnceLock::new(),
        }
    }

    /// From now on, a cancellation of `job` is sent to `to`.
    pub(crate) fn hold(&self, job: JobId, to: &mpsc::UnboundedSender<JobId>) {
        self.listener.get_or_init(|| {
            tokio::spawn(route(self.queue.clone(), self.holders.clone()));
        });
        self.lock().insert(job, to.clone());
    }

    /// `job` is no longer held here.
    pub(crate) fn release(&self, job: JobId) {
        self.lock().remove(&job);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, mpsc::UnboundedSender<JobId>>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn route(queue: Queue, holders: Arc<Mutex<HashMap<JobId, mpsc::UnboundedSender<JobId>>>>) {
    let mut events = queue.events();
    loop {
        match events.recv().await {
            Ok(Event::JobCancelled { job }) => {
                let holder = holders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&job)
                    .cloned();
                if let Some(holder) = holder {
                    let _ = holder.send(job);
                }
            }
            Ok(Event::PoolReady { .. } | Event::Requeued) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "cancellations missed; agents learn at their next heartbeat"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}
