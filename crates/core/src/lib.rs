//! The domain of Switchyard. [`queue::Queue`] validates requests, decides backoff, turns bus
//! wake-ups into long-polling claims and runs the lease reaper; [`agents::Agents`] serves the
//! agents' streams and the registry, and [`pools`] their pools and scaling signal;
//! [`deployments::Deployments`] runs deployments and their guards ([`guard`] judges the gates)
//! and keeps the tenant's webhooks ([`webhooks`]), to which [`notify::Notifier`] delivers every
//! state change; [`live::Live`] streams the activity feed to watchers; [`health`] answers
//! readiness.
//! It speaks only `switchyard-types`: no tonic, axum or sqlx type crosses this crate.

pub mod agents;
pub mod deployments;
mod dispatch;
pub mod guard;
pub mod health;
pub mod ingest;
pub mod live;
pub mod notify;
mod paging;
pub mod pools;
pub mod queue;
pub mod tail;
mod validate;
pub mod webhooks;

pub use agents::{Agents, AgentsConfig, FromAgent, Hello, ToAgent};
pub use deployments::{
    CreateDeployment, DEPLOYMENTS, Deployments, DeploymentsConfig, GATE_EVALUATIONS, GAUGE_EVERY,
    GuardChange, ListDeployments, Plan, PutEnvironment, ROLLBACKS,
};
pub use health::{Check, Readiness};
pub use ingest::{
    Ingest, IngestConfig, ListArtifacts, MAX_METADATA_BYTES, MAX_RETENTION, MIN_RETENTION,
    OrphanSweep, Retention, UploadPart, Uploaded,
};
pub use live::{Delivery, Ended, Live, Subscription, WatchRequest};
pub use notify::{Notifier, NotifierConfig};
pub use queue::{ClaimJobs, EnqueueJob, ListJobs, Queue, QueueConfig};
/// An entry of the activity feed, as a [`Delivery`] carries it.
pub use switchyard_bus::FeedEntry;
pub use tail::TailEvent;
pub use webhooks::CreatedWebhook;
