//! Job reports waiting for the stream: while the agent is disconnected, and while the server
//! reads slower than jobs write. Credits granted when a job ends wait here too, behind its end.
//!
//! `JobStarted` and `JobFinished` are always kept. Log chunks are bounded per attempt: beyond
//! [`LOG_LIMIT`] bytes waiting, the oldest chunks of that attempt are dropped (the server sees
//! a gap in the sequence numbers) and a warning is logged once per attempt. Only the latest
//! `JobProgress` of an attempt waits: a newer one takes the place of the one queued.

use std::collections::{HashMap, HashSet, VecDeque};

use switchyard_proto::v1::connect_request::Body;
use switchyard_proto::v1::{Credits, JobFinished, JobProgress, JobStarted, LogChunk};

use crate::jobs::JobKey;

/// Log bytes that may wait per attempt.
pub(crate) const LOG_LIMIT: usize = 4 * 1024 * 1024;

/// The reports to send, oldest first.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Body>,
    /// Log bytes waiting, by attempt.
    log_bytes: HashMap<JobKey, usize>,
    /// Attempts whose logs were cut (warned about once).
    cut: HashSet<JobKey>,
}

/// The attempt a report is about.
pub(crate) fn key_of(body: &Body) -> Option<JobKey> {
    match body {
        Body::Started(s) => Some(JobKey::new(s.job_id.clone(), s.attempt)),
        Body::Log(l) => Some(JobKey::new(l.job_id.clone(), l.attempt)),
        Body::Finished(f) => Some(JobKey::new(f.job_id.clone(), f.attempt)),
        Body::Progress(p) => Some(JobKey::new(p.job_id.clone(), p.attempt)),
        Body::Hello(_) | Body::Heartbeat(_) | Body::Credits(_) | Body::Renew(_) => None,
    }
}

impl Outbox {
    /// Queues `JobStarted` for `key`.
    pub(crate) fn started(&mut self, key: &JobKey) {
        self.queue.push_back(Body::Started(JobStarted {
            job_id: key.job_id.clone(),
            attempt: key.attempt,
        }));
    }

    /// Queues a log chunk, dropping the attempt's oldest chunks beyond [`LOG_LIMIT`].
    pub(crate) fn log(&mut self, chunk: LogChunk) {
        let key = JobKey::new(chunk.job_id.clone(), chunk.attempt);
        let mut waiting = self.log_bytes.get(&key).copied().unwrap_or(0) + chunk.data.len();
        self.queue.push_back(Body::Log(chunk));
        if waiting > LOG_LIMIT {
            if self.cut.insert(key.clone()) {
                tracing::warn!(job = %key, "log output waiting beyond 4 MiB: dropping the oldest");
            }
            self.queue.retain(|body| {
                if let Body::Log(l) = body
                    && waiting > LOG_LIMIT
                    && l.job_id == key.job_id
                    && l.attempt == key.attempt
                {
                    waiting -= l.data.len();
                    return false;
                }
                true
            });
        }
        self.log_bytes.insert(key, waiting);
    }

    /// Queues `JobProgress`, in place of the attempt's progress still waiting if there is one.
    pub(crate) fn progress(&mut self, report: JobProgress) {
        let waiting = self.queue.iter_mut().find_map(|body| match body {
            Body::Progress(p) if p.job_id == report.job_id && p.attempt == report.attempt => {
                Some(p)
            }
            Body::Hello(_)
            | Body::Heartbeat(_)
            | Body::Credits(_)
            | Body::Started(_)
            | Body::Log(_)
            | Body::Finished(_)
            | Body::Renew(_)
            | Body::Progress(_) => None,
        });
        match waiting {
            Some(p) => *p = report,
            None => self.queue.push_back(Body::Progress(report)),
        }
    }

    /// Queues `JobFinished`.
    pub(crate) fn finished(&mut self, report: JobFinished) {
        self.queue.push_back(Body::Finished(report));
    }

    /// Queues `Credits` behind the reports before it (the credit of a job follows its end).
    /// Credits belong to one stream: [`drop_credits`](Self::drop_credits) when it ends.
    pub(crate) fn credits(&mut self, add: u32) {
        self.queue.push_back(Body::Credits(Credits { add }));
    }

    /// Drops the credits of a stream that ended.
    pub(crate) fn drop_credits(&mut self) {
        self.queue.retain(|body| !matches!(body, Body::Credits(_)));
    }

    /// Puts reports back at the front, in their order (sent, but maybe not received).
    pub(crate) fn requeue(&mut self, reports: Vec<Body>) {
        for report in reports.into_iter().rev() {
            if let Body::Log(chunk) = &report {
                let key = JobKey::new(chunk.job_id.clone(), chunk.attempt);
                *self.log_bytes.entry(key).or_default() += chunk.data.len();
            }
            self.queue.push_front(report);
        }
    }

    /// Drops everything queued about `key` (its attempt is no longer ours).
    pub(crate) fn forget(&mut self, key: &JobKey) {
        self.queue.retain(|body| key_of(body).as_ref() != Some(key));
        self.log_bytes.remove(key);
        self.cut.remove(key);
    }

    /// The next report to send.
    pub(crate) fn pop(&mut self) -> Option<Body> {
        let body = self.queue.pop_front()?;
        if let Body::Log(chunk) = &body {
            let key = JobKey::new(chunk.job_id.clone(), chunk.attempt);
            if let Some(waiting) = self.log_bytes.get_mut(&key) {
                *waiting -= chunk.data.len();
                if *waiting == 0 {
                    self.log_bytes.remove(&key);
                }
            }
        }
        Some(body)
    }

    /// The `JobFinished` reports waiting.
    pub(crate) fn finished_reports(&self) -> impl Iterator<Item = &JobFinished> {
        self.queue.iter().filter_map(|body| {
            if let Body::Finished(report) = body {
                Some(report)
            } else {
                None
            }
        })
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(job: &str, seq: u64, len: usize) -> LogChunk {
        LogChunk {
            job_id: job.into(),
            attempt: 1,
            seq,
            data: "x".repeat(len),
        }
    }

    fn drain(outbox: &mut Outbox) -> Vec<Body> {
        std::iter::from_fn(|| outbox.pop()).collect()
    }

    #[test]
    fn logs_beyond_the_limit_drop_the_oldest_of_that_attempt_only() {
        let mut outbox = Outbox::default();
        let a = JobKey::new("a", 1);
        outbox.started(&a);
        outbox.log(chunk("b", 0, 10));
        let size = 64 * 1024;
        let count = LOG_LIMIT / size + 10;
        for seq in 0..count as u64 {
            outbox.log(chunk("a", seq, size));
        }
        outbox.finished(JobFinished {
            job_id: "a".into(),
            attempt: 1,
            succeeded: true,
            ..Default::default()
        });
        let bodies = drain(&mut outbox);
        assert!(
            matches!(bodies[0], Body::Started(_)),
            "started is never dropped"
        );
        assert!(
            matches!(&bodies[1], Body::Log(l) if l.job_id == "b"),
            "other jobs keep theirs"
        );
        let seqs: Vec<u64> = bodies
            .iter()
            .filter_map(|b| match b {
                Body::Log(l) if l.job_id == "a" => Some(l.seq),
                Body::Hello(_)
                | Body::Heartbeat(_)
                | Body::Credits(_)
                | Body::Started(_)
                | Body::Log(_)
                | Body::Finished(_)
                | Body::Renew(_)
                | Body::Progress(_) => None,
            })
            .collect();
        assert_eq!(seqs.len(), LOG_LIMIT / size, "4 MiB kept");
        assert_eq!(seqs[0], 10, "the oldest went");
        assert_eq!(*seqs.last().unwrap(), count as u64 - 1, "the newest stayed");
        assert!(
            matches!(bodies.last(), Some(Body::Finished(_))),
            "finished is never dropped"
        );
        assert!(outbox.is_empty() && outbox.log_bytes.is_empty());
    }

    #[test]
    fn only_the_latest_progress_of_an_attempt_waits_in_its_place() {
        let mut outbox = Outbox::default();
        let a = JobKey::new("a", 1);
        let progress = |job: &str, percent| JobProgress {
            job_id: job.into(),
            attempt: 1,
            percent,
        };
        outbox.started(&a);
        outbox.progress(progress("a", 10));
        outbox.progress(progress("b", 20));
        outbox.log(chunk("a", 0, 3));
        outbox.progress(progress("a", 30));
        let bodies = drain(&mut outbox);
        let shown: Vec<String> = bodies
            .iter()
            .map(|b| {
                if let Body::Progress(p) = b {
                    format!("{}:{}", p.job_id, p.percent)
                } else {
                    format!("{:?}", key_of(b).map(|k| k.to_string()))
                }
            })
            .collect();
        assert_eq!(shown, ["Some(\"a#1\")", "a:30", "b:20", "Some(\"a#1\")"]);
    }

    #[test]
    fn requeued_reports_go_first_and_forget_drops_an_attempt() {
        let mut outbox = Outbox::default();
        let (a, b) = (JobKey::new("a", 1), JobKey::new("b", 2));
        outbox.started(&a);
        outbox.log(chunk("a", 0, 3));
        outbox.started(&b);
        let finished = |id: &str| JobFinished {
            job_id: id.into(),
            attempt: 9,
            ..Default::default()
        };
        outbox.requeue(vec![
            Body::Finished(finished("x")),
            Body::Log(chunk("y", 4, 5)),
            Body::Finished(finished("y")),
        ]);
        outbox.forget(&a);
        let bodies = drain(&mut outbox);
        let ids: Vec<String> = bodies
            .iter()
            .filter_map(key_of)
            .map(|k| k.to_string())
            .collect();
        assert_eq!(ids, ["x#9", "y#1", "y#9", "b#2"]);
    }
}
