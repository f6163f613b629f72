//! The vocabulary of Switchyard: ids, priorities, job states, leases, principals and the one
//! error type shared by every crate. This crate does no I/O; every other crate speaks in it.

mod error;
#[macro_use]
mod ids;
mod identity;
#[macro_use]
mod job;
mod principal;
mod validate;

// After `job`, whose `upper_enum!` they use.
mod activity;
mod agent;
mod artifact;
mod deployment;
mod notification;

pub use activity::{Activity, Topic};
pub use agent::{
    Agent, AgentCertificate, AgentHello, AgentId, AgentStatus, Enrollment, NewRegistrationToken,
    Pool, PoolScale, PoolSettings, RegistrationToken, RegistrationTokenId, SpiffeId, is_pool_name,
};
pub use artifact::{
    Artifact, ArtifactFilter, ArtifactGrant, ArtifactId, ArtifactState, INGEST_KIND, IngestState,
    IngestStatus, MAX_ARTIFACT_NAME_BYTES, NewArtifact, is_artifact_name,
};
pub use deployment::{
    Deployment, DeploymentEvent, DeploymentFilter, DeploymentId, DeploymentState, Environment,
    Evaluation, GateResult, GuardSettings, NewDeployment, NewEnvironment, ProbeResult, Signal,
    Stage, StepKind, Summary, Transition, Verdict, VersionFigures, is_service_name, is_version,
};
pub use error::{Error, ErrorKind, FieldViolation, Result};
pub use identity::{
    ApiKey, ApiKeyCredentials, ApiKeyId, NewApiKey, NewRefreshToken, NewUser, Role, Rotation,
    Tenant, User, UserCredentials, UserId, validate_name,
};
pub use job::{
    ClaimRequest, Job, JobFailure, JobFilter, JobId, JobState, Labels, LogAppend, LogChunk,
    MAX_BATCH, MAX_LOG_BYTES_PER_JOB, MAX_LOG_CHUNK_BYTES, MAX_PAYLOAD_BYTES, NewJob, Outcome,
    Page, Priority, QueueStats, ReapReport, TenantId,
};
pub use notification::{
    DeploymentSnapshot, DueNotification, MAX_WEBHOOKS_PER_TENANT, Notification, NotificationState,
    Webhook, WebhookId, WebhookTarget,
};
pub use principal::{Principal, PrincipalKind, Scope, ScopeSet};
pub use validate::Violations;
