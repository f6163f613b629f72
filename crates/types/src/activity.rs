//! Activity: what changed, as live subscribers (`/api/ws`) see it. Every state change of a job,
//! an agent or a deployment is announced as one [`Activity`] on the bus, which numbers it and
//! fans it out to every replica.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Agent, Deployment, Job, JobId, TenantId};

/// What an activity is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// A job: enqueued, claimed, running (with progress), finished, cancelled, redriven.
    Job,
    /// An agent: connected, disconnected, drained, deregistered.
    Agent,
    /// A deployment: every state change.
    Deployment,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::Job, Topic::Agent, Topic::Deployment];

    /// The wire name: `job`, `agent` or `deployment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Job => "job",
            Topic::Agent => "agent",
            Topic::Deployment => "deployment",
        }
    }

    /// Parses a wire name; the plural (`jobs`) is accepted too.
    pub fn parse(s: &str) -> Option<Topic> {
        let singular = s.strip_suffix('s').unwrap_or(s);
        Topic::ALL.into_iter().find(|t| t.as_str() == singular)
    }
}

/// One change, as announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The tenant that owns the subject; only its members see the activity.
    pub tenant: TenantId,
    /// What kind of object changed.
    pub topic: Topic,
    /// The object's id.
    pub subject: String,
    /// Its state after the change (`RUNNING`, `HEALTHY`, `GUARDING`, …).
    pub state: String,
    /// When the change was made (the announcing replica's clock).
    pub at: DateTime<Utc>,
    /// Details of the change, by topic (see the `job`, `agent` and `deployment` constructors).
    pub data: serde_json::Value,
}

impl Activity {
    /// A job's state change: `data` holds `pool`, `kind`, `priority`, `attempt` and, once it
    /// failed, the last `error`.
    pub fn job(job: &Job) -> Self {
        let mut data = json!({
            "pool": job.pool,
            "kind": job.kind,
            "priority": job.priority.as_str(),
            "attempt": job.attempt,
        });
        if let Some(failure) = job.failures.last() {
            data["error"] = json!(failure.error);
        }
        Activity {
            tenant: job.tenant.clone(),
            topic: Topic::Job,
            subject: job.id.to_string(),
            state: job.state.as_str().to_owned(),
            at: Utc::now(),
            data,
        }
    }

    /// A running attempt's progress: state `RUNNING`, `data` `{attempt, progress}` (percent).
    pub fn job_progress(tenant: &TenantId, job: JobId, attempt: u32, percent: u8) -> Self {
        Activity {
            tenant: tenant.clone(),
            topic: Topic::Job,
            subject: job.to_string(),
            state: "RUNNING".to_owned(),
            at: Utc::now(),
            data: json!({ "attempt": attempt, "progress": percent }),
        }
    }

    /// An agent's state change: `data` holds `name`, `pool`, `capacity`, `running` and `draining`.
    pub fn agent(agent: &Agent) -> Self {
        Activity {
            tenant: agent.tenant.clone(),
            topic: Topic::Agent,
            subject: agent.id.to_string(),
            state: agent.status.as_str().to_owned(),
            at: Utc::now(),
            data: json!({
                "name": agent.name,
                "pool": agent.pool,
                "capacity": agent.capacity,
                "running": agent.running,
                "draining": agent.draining,
            }),
        }
    }

    /// A deployment's state change: `data` holds `service`, `version`, `environment` and, when
    /// there is one, the `reason`.
    pub fn deployment(deployment: &Deployment) -> Self {
        let mut data = json!({
            "service": deployment.service,
            "version": deployment.version,
            "environment": deployment.environment,
        });
        if let Some(reason) = &deployment.reason {
            data["reason"] = json!(reason);
        }
        Activity {
            tenant: deployment.tenant.clone(),
            topic: Topic::Deployment,
            subject: deployment.id.to_string(),
            state: deployment.state.as_str().to_owned(),
            at: Utc::now(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_singular_and_plural_and_nothing_else() {
        for topic in Topic::ALL {
            assert_eq!(Topic::parse(topic.as_str()), Some(topic));
            assert_eq!(Topic::parse(&format!("{}s", topic.as_str())), Some(topic));
        }
        assert_eq!(Topic::parse("jobss"), None);
        assert_eq!(Topic::parse("Job"), None);
        assert_eq!(Topic::parse(""), None);
    }

    #[test]
    fn an_activity_round_trips_through_json() {
        let activity = Activity::job_progress(
            &TenantId::parse("acme").expect("tenant"),
            JobId::new(),
            2,
            40,
        );
        let text = serde_json::to_string(&activity).expect("serialize");
        let back: Activity = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, activity);
        assert_eq!(back.data["progress"], 40);
        assert!(text.contains(r#""topic":"job""#), "{text}");
    }
}
