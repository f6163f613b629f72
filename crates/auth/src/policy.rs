//! Who may call what: the one table of every REST route and gRPC method with the access it
//! requires (DESIGN §3.8). The auth layer looks requests up here; `docs/api.md` prints it; a
//! test checks that every route the gateway serves and every RPC the proto declares is in it.

use std::collections::HashMap;
use std::sync::LazyLock;

use switchyard_types::Scope;

/// What a route or RPC requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (probes, docs, log-in itself).
    Public,
    /// Any authenticated caller (routes missing from the table; the router answers 404/405).
    Authenticated,
    /// A caller holding this scope (or `admin`).
    Scope(Scope),
    /// An agent: its client certificate names it; where the gate allows agent tokens, a
    /// caller holding `jobs:write` instead.
    Agent,
}

/// One line of the table: the REST routes (`"METHOD /path"`, paths relative to the `/api`
/// mount unless they start with `/auth` or are `/health` or `/metrics`) and the gRPC methods
/// (`"Service/Method"` in package `switchyard.v1`, or a fully qualified `/pkg.Service/` prefix)
/// that require `access`.
#[derive(Debug)]
pub struct Rule {
    /// The access required.
    pub access: Access,
    /// REST routes, as `METHOD /path/{param}`.
    pub http: &'static [&'static str],
    /// gRPC methods, as `Service/Method`, or `/full.Service/` for a whole service.
    pub rpc: &'static [&'static str],
}

const fn rule(access: Access, http: &'static [&'static str], rpc: &'static [&'static str]) -> Rule {
    Rule { access, http, rpc }
}

use Access::{Agent, Public, Scope as S};
use Scope::{
    Admin, AgentsAdmin, AgentsRead, DeploymentsPromote, DeploymentsRead, DeploymentsWrite,
    IngestWrite, JobsRead, JobsWrite,
};

/// The table. Order does not matter; every route and method appears once.
pub static RULES: &[Rule] = &[
    // Probes, the API description and server reflection: no credentials.
    rule(
        Public,
        &[
            "GET /health",
            "GET /metrics",
            "GET /ready",
            "GET /version",
            "GET /openapi.json",
            "GET /docs",
        ],
        &[
            "/grpc.health.v1.Health/",
            "/grpc.reflection.v1.ServerReflection/",
            "/grpc.reflection.v1alpha.ServerReflection/",
        ],
    ),
    // Sessions: the credential is in the body (password, refresh token, token to check).
    rule(
        Public,
        &[
            "POST /auth/session",
            "POST /auth/refresh",
            "POST /auth/validate",
            "POST /auth/logout",
        ],
        &[
            "AuthService/Login",
            "AuthService/Refresh",
            "AuthService/Validate",
            "AuthService/Logout",
        ],
    ),
    // Jobs.
    rule(
        S(JobsRead),
        &[
            "GET /queue/jobs",
            "GET /queue/jobs/{id}",
            "GET /queue/jobs/{id}/logs",
            "GET /queue/jobs/{id}/logs/stream",
            "GET /queue/stats",
            "GET /queue/limits",
        ],
        &[
            "QueueService/GetJob",
            "QueueService/GetJobLogs",
            "QueueService/TailJobLogs",
            "QueueService/ListJobs",
            "QueueService/GetStats",
            "QueueService/GetLimits",
        ],
    ),
    rule(
        S(JobsWrite),
        &[
            "POST /queue/jobs",
            "DELETE /queue/jobs/{id}",
            "PATCH /queue/jobs/{id}/start",
            "PATCH /queue/jobs/{id}/extend",
            "PATCH /queue/jobs/{id}/complete",
            "PATCH /queue/jobs/{id}/priority",
            "POST /queue/jobs/{id}/retry",
            "POST /queue/claim",
        ],
        &[
            "QueueService/Enqueue",
            "QueueService/Claim",
            "QueueService/StartJob",
            "QueueService/ExtendLease",
            "QueueService/CompleteJob",
            "QueueService/CancelJob",
            "QueueService/SetPriority",
            "QueueService/RedriveJob",
        ],
    ),
    // Agents: the stream takes the agent's certificate; enrolling, its registration token.
    // Fetching an upload's artifacts also takes the grant of the job's `Assign`.
    rule(
        Agent,
        &["POST /agents/{id}/heartbeat"],
        &[
            "AgentService/Connect",
            "AgentService/Heartbeat",
            "IngestService/FetchArtifact",
        ],
    ),
    rule(Public, &["POST /agents/register"], &["AgentService/Enroll"]),
    rule(
        S(AgentsRead),
        &[
            "GET /agents",
            "GET /agents/{id}",
            "GET /agents/pools",
            "GET /agents/pools/{name}",
        ],
        &[
            "AgentService/ListAgents",
            "AgentService/GetAgent",
            "AgentService/ListPools",
            "AgentService/GetPool",
        ],
    ),
    rule(
        S(AgentsAdmin),
        &[
            "POST /agents/{id}/deregister",
            "POST /agents/{id}/status",
            "POST /agents/pools/{name}/scale",
            "GET /agents/registration-tokens",
            "POST /agents/registration-tokens",
            "DELETE /agents/registration-tokens/{id}",
        ],
        &[
            "AgentService/DeregisterAgent",
            "AgentService/SetAgentStatus",
            "AgentService/ScalePool",
            "AgentService/CreateRegistrationToken",
            "AgentService/ListRegistrationTokens",
            "AgentService/RevokeRegistrationToken",
        ],
    ),
    // Live activity: any caller; each topic needs its read scope, checked when subscribing.
    rule(Access::Authenticated, &["GET /ws"], &[]),
    // Ingest: uploading, and reading uploads' status and artifacts (reads of the tenant's jobs).
    rule(S(IngestWrite), &["POST /ingest"], &["IngestService/Upload"]),
    rule(
        S(JobsRead),
        &[
            "GET /status/{id}",
            "GET /ingest/retention",
            "GET /ingest/artifacts",
            "GET /ingest/artifacts/{id}",
            "GET /ingest/artifacts/{id}/content",
        ],
        &[
            "IngestService/GetStatus",
            "IngestService/GetRetention",
            "IngestService/WatchStatus",
            "IngestService/ListArtifacts",
            "IngestService/DownloadArtifact",
        ],
    ),
    // Deployments: reading, creating and staging (and the tenant's webhooks), and the
    // production levers.
    rule(
        S(DeploymentsRead),
        &[
            "GET /dashboard/summary",
            "GET /dashboard/environments",
            "GET /dashboard/deployments",
            "GET /dashboard/deployments/{id}",
            "GET /dashboard/deployments/{id}/events",
            "GET /dashboard/deployments/{id}/evaluations",
            "GET /dashboard/deployments/{id}/notifications",
            "GET /dashboard/deployments/service/{name}",
            "GET /dashboard/webhooks",
        ],
        &[
            "DeploymentService/ListEnvironments",
            "DeploymentService/GetDeployment",
            "DeploymentService/ListDeployments",
            "DeploymentService/ListEvaluations",
            "DeploymentService/WatchDeployments",
            "DeploymentService/GetSummary",
            "DeploymentService/ListWebhooks",
            "DeploymentService/ListNotifications",
        ],
    ),
    rule(
        S(DeploymentsWrite),
        &[
            "POST /dashboard/environments",
            "POST /dashboard/deployments",
            "POST /dashboard/deployments/{id}/staging",
            "POST /dashboard/signals",
            "POST /dashboard/webhooks",
            "DELETE /dashboard/webhooks/{id}",
        ],
        &[
            "DeploymentService/PutEnvironment",
            "DeploymentService/CreateDeployment",
            "DeploymentService/StageDeployment",
            "DeploymentService/ReportSignal",
            "DeploymentService/CreateWebhook",
            "DeploymentService/DeleteWebhook",
        ],
    ),
    rule(
        S(DeploymentsPromote),
        &[
            "POST /dashboard/deployments/{id}/production",
            "POST /dashboard/deployments/{id}/rollback",
        ],
        &[
            "DeploymentService/PromoteDeployment",
            "DeploymentService/RollbackDeployment",
        ],
    ),
    // Installation-wide levers and identities.
    rule(
        S(Admin),
        &[
            "PUT /queue/limits",
            "PUT /ingest/retention",
            "POST /queue/maintenance/requeue-expired",
            "GET /auth/api-keys",
            "POST /auth/api-keys",
            "DELETE /auth/api-keys/{id}",
            "GET /admin/tenants",
            "POST /admin/tenants",
            "GET /admin/users",
            "POST /admin/users",
            "GET /admin/roles",
            "PUT /admin/roles/{name}",
        ],
        &[
            "QueueService/SetLimits",
            "QueueService/RequeueExpired",
            "IngestService/SetRetention",
            "AuthService/CreateApiKey",
            "AuthService/ListApiKeys",
            "AuthService/RevokeApiKey",
            "AuthService/CreateTenant",
            "AuthService/ListTenants",
            "AuthService/CreateUser",
            "AuthService/ListUsers",
            "AuthService/PutRole",
            "AuthService/ListRoles",
        ],
    ),
];

/// The routes served at the root rather than under the API mount (besides `/auth/*`).
pub const ROOT: [&str; 2] = ["/health", "/metrics"];

/// The gRPC package every `Service/Method` entry lives in.
pub const GRPC_PACKAGE: &str = "switchyard.v1";

/// The table compiled for look-ups: O(1) for gRPC, one radix-tree match for REST.
struct Compiled {
    rpc_exact: HashMap<String, Access>,
    rpc_prefix: Vec<(&'static str, Access)>,
    http: HashMap<&'static str, matchit::Router<Access>>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let mut compiled = Compiled {
        rpc_exact: HashMap::new(),
        rpc_prefix: Vec::new(),
        http: HashMap::new(),
    };
    for rule in RULES {
        for rpc in rule.rpc {
            if rpc.starts_with('/') {
                compiled.rpc_prefix.push((rpc, rule.access));
            } else {
                compiled
                    .rpc_exact
                    .insert(format!("/{GRPC_PACKAGE}.{rpc}"), rule.access);
            }
        }
        for route in rule.http {
            let (method, path) = route.split_once(' ').expect("rule is `METHOD /path`");
            compiled
                .http
                .entry(method)
                .or_default()
                .insert(path, rule.access)
                .expect("rule paths are valid and unique");
        }
    }
    compiled
});

/// The access a gRPC call to `path` (`/switchyard.v1.QueueService/Enqueue`) requires; methods
/// not in the table need an authenticated caller (and the server answers `UNIMPLEMENTED`).
pub fn for_rpc(path: &str) -> Access {
    let compiled = &*COMPILED;
    if let Some(access) = compiled.rpc_exact.get(path) {
        return *access;
    }
    compiled
        .rpc_prefix
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(Access::Authenticated, |(_, access)| *access)
}

/// The access a REST request requires. `path` is the request path as received: the `/api/v1`
/// or `/api` mount is stripped before the look-up. Routes not in the table need an
/// authenticated caller (and the router answers 404 or 405).
pub fn for_http(method: &str, path: &str) -> Access {
    let relative = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/api"))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
    let path = match relative {
        // `/api/auth/...` is not a route: auth lives at the root.
        Some(rest) if !rest.starts_with("/auth/") && !ROOT.contains(&rest) => rest,
        Some(_) => return Access::Authenticated,
        None if path.starts_with("/auth/") || ROOT.contains(&path) => path,
        None => return Access::Authenticated,
    };
    COMPILED
        .http
        .get(method)
        .and_then(|router| router.at(path).ok())
        .map_or(Access::Authenticated, |found| *found.value)
}

/// Every `(route or method, access)` pair, for documentation and completeness tests.
pub fn entries() -> impl Iterator<Item = (&'static str, Access)> {
    RULES.iter().flat_map(|rule| {
        rule.http
            .iter()
            .chain(rule.rpc.iter())
            .map(move |name| (*name, rule.access))
    })
}

/// The table as Markdown rows (`| name | access |`), in table order, as docs/api.md shows it.
pub fn markdown_rows() -> String {
    entries()
        .map(|(name, access)| format!("| `{name}` | {} |\n", access.describe()))
        .collect()
}

impl Access {
    /// How docs/api.md names it.
    pub fn describe(self) -> String {
        match self {
            Access::Public => "public".to_owned(),
            Access::Authenticated => "authenticated".to_owned(),
            Access::Scope(scope) => scope.as_str().to_owned(),
            Access::Agent => {
                "agent certificate (or `jobs:write` where agent tokens are allowed)".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_ups_follow_the_table() {
        assert_eq!(for_http("GET", "/api/queue/jobs"), S(JobsRead));
        assert_eq!(for_http("GET", "/api/v1/queue/jobs/0195"), S(JobsRead));
        assert_eq!(for_http("DELETE", "/api/queue/jobs/0195"), S(JobsWrite));
        assert_eq!(for_http("PUT", "/api/queue/limits"), S(Admin));
        assert_eq!(for_http("GET", "/health"), Public);
        assert_eq!(for_http("GET", "/api/ready"), Public);
        assert_eq!(for_http("POST", "/auth/session"), Public);
        assert_eq!(for_http("DELETE", "/auth/api-keys/k1"), S(Admin));
        // Not routes: the mount prefix must be a whole segment, auth is not under /api.
        assert_eq!(for_http("GET", "/apiqueue/jobs"), Access::Authenticated);
        assert_eq!(for_http("POST", "/api/auth/session"), Access::Authenticated);
        assert_eq!(for_http("GET", "/api/nope"), Access::Authenticated);
        assert_eq!(for_http("PATCH", "/api/queue/jobs"), Access::Authenticated);
        assert_eq!(for_rpc("/switchyard.v1.QueueService/Enqueue"), S(JobsWrite));
        assert_eq!(for_rpc("/grpc.health.v1.Health/Check"), Public);
        assert_eq!(
            for_rpc("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Public
        );
        assert_eq!(
            for_rpc("/switchyard.v1.QueueService/Nope"),
            Access::Authenticated
        );
    }

    #[test]
    fn every_entry_appears_once() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in entries() {
            assert!(seen.insert(name), "{name} appears twice");
        }
        // Forces compilation, which panics on a malformed or duplicate route.
        assert!(!COMPILED.http.is_empty());
    }
}
