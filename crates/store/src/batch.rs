//! Group commit: concurrent calls of one kind are gathered and written in one statement, and
//! each caller is answered only after that statement commits. No linger: a batch holds what
//! queued while the previous batches ran, so a lone caller pays no extra latency and a busy
//! store writes many rows per commit.

use std::future::Future;
use std::sync::Arc;

use switchyard_types::{Error, Result};
use tokio::sync::{Semaphore, mpsc, oneshot};

type Pending<Req, Resp> = (Req, oneshot::Sender<Result<Resp>>);

/// A queue of requests executed in batches by a background task.
pub(crate) struct Batcher<Req, Resp> {
    tx: mpsc::UnboundedSender<Pending<Req, Resp>>,
}

impl<Req, Resp> std::fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the task. `exec` writes one batch and returns one result per request, in order;
    /// at most `in_flight` batches run at once, each of at most `max_batch` requests.
    pub(crate) fn spawn<F, Fut>(max_batch: usize, in_flight: usize, exec: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<Resp>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending<Req, Resp>>();
        let exec = Arc::new(exec);
        let slots = Arc::new(Semaphore::new(in_flight));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                // Everything that queued while waiting for a slot joins this batch.
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let exec = exec.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let n = requests.len();
                    let mut results = exec(requests).await;
                    if results.len() != n {
                        results = (0..n)
                            .map(|_| Err(Error::internal("batch result count mismatch")))
                            .collect();
                    }
                    for (reply, result) in replies.into_iter().zip(results) {
                        // The caller may have gone away; its write stands regardless.
                        let _ = reply.send(result);
                    }
                    drop(permit);
                });
            }
        });
        Batcher { tx }
    }

    /// Queues `request` and waits until its batch has committed.
    pub(crate) async fn submit(&self, request: Req) -> Result<Resp> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((request, reply))
            .map_err(|_| Error::unavailable("the store is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::internal("a batch was dropped without an answer"))?
    }
}
