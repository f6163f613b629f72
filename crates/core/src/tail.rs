//! Following a job's log live: what is stored first, then each chunk as it arrives, until the
//! attempt (or, without one, the job) is over. Chunks are read from the store every
//! [`TAIL_POLL`], so a tail on any replica sees what an agent on another one wrote; a chunk is
//! stored before its attempt's `JobFinished`, so the last read after the end misses nothing.

use std::time::Duration;

use switchyard_types::{Job, JobId, LogChunk, Principal, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::queue::Queue;

/// How often a tail looks for new chunks.
pub const TAIL_POLL: Duration = Duration::from_millis(250);

/// Chunks read per store round trip.
const TAIL_BATCH: u32 = 500;

/// What a tail delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum TailEvent {
    /// The next chunk, in attempt and sequence order.
    Chunk(LogChunk),
    /// The followed attempt or job is over and everything it wrote was delivered.
    End(Box<Job>),
}

impl Queue {
    /// Follows job `id`'s log: every attempt from the first (or only `attempt`), stored chunks
    /// first. The stream ends with [`TailEvent::End`], or with an error when the store fails;
    /// dropping it stops the tail. `NotFound` for another tenant's job.
    pub async fn tail_logs(
        &self,
        who: &Principal,
        id: JobId,
        attempt: Option<u32>,
    ) -> Result<ReceiverStream<Result<TailEvent>>> {
        self.get(who, id).await?;
        let (tx, rx) = mpsc::channel(64);
        let (queue, who) = (self.clone(), who.clone());
        tokio::spawn(async move {
            let follow = Follow {
                queue,
                who,
                id,
                only: attempt,
            };
            if let Err(e) = follow.run(&tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// One tail's position.
struct Follow {
    queue: Queue,
    who: Principal,
    id: JobId,
    only: Option<u32>,
}

impl Follow {
    /// Sends chunks until the end (`Ok`), the reader leaves (`Ok`), or the store fails.
    async fn run(&self, tx: &mpsc::Sender<Result<TailEvent>>) -> Result<()> {
        let mut attempt = self.only.unwrap_or(1);
        let mut after: Option<u64> = None;
        let mut ending = false;
        loop {
            let chunks = self
                .queue
                .logs(&self.who, self.id, Some(attempt), after, Some(TAIL_BATCH))
                .await?;
            let full = chunks.len() == TAIL_BATCH as usize;
            for chunk in chunks {
                after = Some(chunk.seq);
                if tx.send(Ok(TailEvent::Chunk(chunk))).await.is_err() {
                    return Ok(());
                }
            }
            if full {
                continue;
            }
            let job = self.queue.get(&self.who, self.id).await?;
            let past = job.attempt > attempt;
            if past && self.only.is_none() {
                // Its attempt is read to the end; go on with the next.
                attempt += 1;
                after = None;
                continue;
            }
            if ending {
                let _ = tx.send(Ok(TailEvent::End(Box::new(job)))).await;
                return Ok(());
            }
            // Over: read once more for chunks stored between the last read and the end.
            ending = past || job.state.is_terminal();
            if !ending {
                tokio::select! {
                    () = tokio::time::sleep(TAIL_POLL) => {}
                    () = tx.closed() => return Ok(()),
                }
            }
        }
    }
}
