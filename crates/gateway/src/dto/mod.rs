//! The gateway's wire types: request bodies and query strings ([`requests`]) and response data
//! ([`views`]), with their conversions to and from `switchyard-core` / `switchyard-types`. JSON
//! fields are `snake_case`; enums are `UPPER_SNAKE` strings, parsed case-insensitively (by the
//! domain types' own `Deserialize`); timestamps are RFC 3339; ids are strings.

pub mod identity;
pub mod requests;
pub mod views;

use std::borrow::Cow;

use switchyard_types::{JobState, Priority};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

pub use requests::{
    ClaimBody, CompleteBody, EnqueueBatch, EnqueueRequest, ExtendBody, JobSpec, Limits,
    ListJobsQuery, LogsQuery, PriorityBody, StartBody, TailQuery,
};
pub use views::{
    CheckView, FailureView, JobView, LogChunkView, OneOrMany, ReadyView, ReapView, StatsView,
    StatusView,
};

/// Documents a domain enum as a string schema whose values come from the enum itself, so the
/// OpenAPI document cannot drift from the code.
macro_rules! enum_schema {
    ($(#[$meta:meta])* $name:ident for $domain:ty, $schema:literal, $description:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .enum_values(Some(<$domain>::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($schema)
            }
        }
    };
}

enum_schema!(
    /// The OpenAPI schema of [`Priority`].
    PrioritySchema for Priority,
    "Priority",
    "Claim order: CRITICAL > HIGH > NORMAL > LOW, FIFO within one. Case-insensitive on input."
);

enum_schema!(
    /// The OpenAPI schema of [`JobState`].
    JobStateSchema for JobState,
    "JobState",
    "QUEUED -> CLAIMED -> RUNNING -> COMPLETED; DEAD_LETTERED and CANCELLED are terminal too. Case-insensitive on input."
);

// After `enum_schema!`, which they use.
pub mod agents;
pub mod deployments;
pub mod ingest;
pub mod notifications;

pub use agents::{
    AgentStatusBody, AgentView, CertificateView, CreateRegistrationTokenBody,
    CreatedRegistrationTokenView, EnrolledView, ListAgentsQuery, PoolView, RegisterAgentBody,
    RegistrationTokenView, ScalePoolBody,
};
pub use deployments::{
    AcceptedView, CreateDeploymentBody, DeploymentView, EnvironmentView, EvaluationView, EventView,
    EventsQuery, GateView, GuardBody, GuardView, ListDeploymentsQuery, PlanView, PromoteBody,
    PutEnvironmentBody, RollbackBody, ServiceDeploymentsQuery, SignalBody, SummaryView,
};
pub use ingest::{
    ArtifactView, ListArtifactsQuery, RetentionBody, RetentionView, UploadStatusView, UploadView,
};
pub use notifications::{CreateWebhookBody, CreatedWebhookView, NotificationView, WebhookView};

/// The OpenAPI schema of labels: a map from label name to value (both strings).
#[derive(Debug, Clone, Copy)]
pub struct LabelsSchema;

impl utoipa::PartialSchema for LabelsSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("Label name (1-64 of [A-Za-z0-9._-]) to value (at most 255 characters); at most 32."))
            .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl utoipa::ToSchema for LabelsSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Labels")
    }
}
