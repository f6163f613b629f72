//! The agent's reactions to the server's messages and to its jobs' events.

use switchyard_proto::v1::connect_response::Body as Message;
use switchyard_proto::v1::{Assign, JobProgress, LogChunk};

use super::{ABANDONED, Agent, SHUTTING_DOWN};
use crate::executor::{Artifacts, Outcome};
use crate::jobs::{JobKey, Stop};
use crate::session::Session;

impl Agent {
    /// Acts on one message of the server.
    pub(super) fn on_message(&mut self, message: Message) {
        match message {
            Message::Welcome(_) => tracing::warn!("ignoring a second Welcome"),
            Message::HeartbeatAck(_) => {
                let sent_at = self.session.as_mut().and_then(Session::acked);
                self.renewed = self.renewed.max(sent_at);
            }
            Message::Assign(assign) => self.on_assign(assign),
            Message::Cancel(c) => {
                let key = JobKey::new(c.job_id, c.attempt);
                if self.jobs.stop(&key, Stop::Cancelled) {
                    tracing::info!(job = %key, "job cancelled");
                }
            }
            Message::LeaseLost(lost) => {
                let key = JobKey::new(lost.job_id, lost.attempt);
                tracing::warn!(job = %key, reason = %lost.reason, "lease lost: stopping the job");
                self.jobs.stop(&key, Stop::LeaseLost);
                self.outbox.forget(&key);
                if let Some(session) = &mut self.session {
                    session.forget(&key);
                }
            }
            Message::Drain(drain) => {
                tracing::info!(reason = %drain.reason, "server draining: reconnecting");
                self.disconnect(None);
            }
            Message::Certificate(certificate) => self.on_certificate(certificate),
        }
    }

    /// Starts an assigned job, or refuses it (shutting down, or beyond capacity). An artifact
    /// grant comes with the stream's connection to fetch with.
    fn on_assign(&mut self, assign: Assign) {
        let Some(job) = assign.job else {
            tracing::warn!("ignoring an Assign without a job");
            return;
        };
        let key = JobKey::new(job.id.clone(), job.attempt);
        let refusal = if self.stopping.is_some() {
            Some(SHUTTING_DOWN)
        } else if self.jobs.contains(&key) {
            tracing::warn!(job = %key, "ignoring a repeated Assign");
            return;
        } else if self.jobs.len() >= self.config.capacity as usize {
            Some("agent at capacity")
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::info!(job = %key, reason, "refusing a job");
            let report = self.jobs.report(&key, Outcome::failure(reason));
            self.outbox.finished(report);
            return;
        }
        tracing::info!(job = %key, kind = %job.kind, "job assigned");
        self.outbox.started(&key);
        let artifacts = match (&self.session, assign.artifact_grant) {
            (Some(session), grant) if !grant.is_empty() => Some(Artifacts {
                grant,
                link: session.link.clone(),
            }),
            (Some(_) | None, _) => None,
        };
        self.jobs.start(key, job, artifacts);
    }

    /// Queues a job's progress, unless the job is being stopped.
    pub(super) fn on_progress(&mut self, progress: JobProgress) {
        let key = JobKey::new(progress.job_id.clone(), progress.attempt);
        if self.jobs.contains(&key) && self.jobs.stop_reason(&key).is_none() {
            self.outbox.progress(progress);
        }
    }

    /// Queues a job's log chunk, unless the attempt is no longer ours.
    pub(super) fn on_log(&mut self, chunk: LogChunk) {
        let key = JobKey::new(chunk.job_id.clone(), chunk.attempt);
        if self.jobs.stop_reason(&key) != Some(Stop::LeaseLost) {
            self.outbox.log(chunk);
        }
    }

    /// Reports a job's end as its stop reason says, and grants its slot again.
    pub(super) fn on_ended(&mut self, key: JobKey, outcome: Outcome) {
        let Some(stop) = self.jobs.ended(&key) else {
            return;
        };
        tracing::info!(job = %key, succeeded = outcome.succeeded, ?stop, "job ended");
        match stop {
            None => self.outbox.finished(self.jobs.report(&key, outcome)),
            Some(Stop::Cancelled | Stop::LeaseLost) => {}
            // Sent while this stream lasts, or after the next `Welcome`; never listed in `Hello`.
            Some(Stop::Abandoned) => {
                // Its earlier reports may reach a server that gave the attempt away: only the
                // abandonment is sent.
                self.outbox.forget(&key);
                if let Some(session) = &mut self.session {
                    session.forget(&key);
                }
                let report = self.jobs.report(&key, Outcome::failure(ABANDONED));
                self.outbox.finished(report);
            }
            Some(Stop::Shutdown) => {
                let report = self.jobs.report(&key, Outcome::failure(SHUTTING_DOWN));
                self.outbox.finished(report);
            }
        }
        if self.stopping.is_none() && self.session.is_some() {
            self.outbox.credits(1);
        }
    }
}
