//! `switchyard admin …`: tenants, users, roles and API keys, printed as tab-separated tables.

use clap::{Args, Subcommand};
use switchyard_proto::v1 as pb;

use super::client::Authed;
use super::{ConnArgs, read_secret, say, table, when};

/// `switchyard admin`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    /// Server and credentials.
    pub conn: ConnArgs,
    #[command(subcommand)]
    /// What to administer.
    pub command: AdminCommand,
}

/// What to administer.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Tenants: only administrators of the `default` tenant create them or see them all.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Users of your tenant (platform administrators: of any tenant).
    #[command(subcommand)]
    User(UserCommand),
    /// Roles (named sets of scopes) of your tenant.
    #[command(subcommand)]
    Role(RoleCommand),
    /// API keys of your tenant, for CI systems.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
}

/// `admin tenant …`.
#[derive(Debug, Clone, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its id: 1-64 characters of [a-z0-9_-].
        id: String,
        /// Its display name.
        #[arg(long)]
        name: String,
    },
    /// List the tenants.
    List,
}

/// `admin user …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password (12 characters or more) comes from SWITCHYARD_NEW_PASSWORD,
    /// else from one line of stdin: `echo "$PW" | switchyard admin user create --email …`.
    Create {
        /// The email (log-in name), unique across the installation.
        #[arg(long)]
        email: String,
        /// The role: built-in (`admin`, `operator`, `developer`, `viewer`) or your tenant's.
        #[arg(long)]
        role: String,
        /// The tenant [default: yours]; only platform administrators may name another.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List your tenant's users.
    List,
}

/// `admin role …`.
#[derive(Debug, Clone, Subcommand)]
pub enum RoleCommand {
    /// Define or redefine a custom role.
    Put {
        /// Its name: 1-64 characters of [a-z0-9_-], not a built-in name.
        name: String,
        /// Its scopes, comma-separated, e.g. `jobs:read,jobs:write`.
        #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// List the roles: built-in ones, then custom ones.
    List,
}

/// `admin api-key …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key and print it on stdout: it is shown this once and never again.
    Create {
        /// A name, unique among the live keys: 1-64 characters of [a-z0-9_-].
        name: String,
        /// Its scopes, comma-separated, within your own, e.g. `jobs:read,jobs:write`.
        #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Lifetime in seconds [default: no expiry].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_seconds: Option<u64>,
    },
    /// List the API keys (never the keys themselves), newest first.
    List,
    /// Revoke an API key: it stops working at once.
    Revoke {
        /// The key's id (see `api-key list`).
        id: String,
    },
}

/// Runs one `admin` command.
pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let path = args.conn.session.path()?;
    let mut c = Authed::open(args.conn.server.as_deref(), args.conn.token, path).await?;
    match args.command {
        AdminCommand::Tenant(TenantCommand::Create { id, name }) => {
            let req = pb::CreateTenantRequest { id, name };
            let resp = c.call(req, |mut c, r| async move { c.create_tenant(r).await });
            tenants(resp.await?.tenant);
        }
        AdminCommand::Tenant(TenantCommand::List) => {
            let req = pb::ListTenantsRequest {};
            let resp = c.call(req, |mut c, r| async move { c.list_tenants(r).await });
            tenants(resp.await?.tenants);
        }
        AdminCommand::User(UserCommand::Create {
            email,
            role,
            tenant,
        }) => {
            let password = read_secret("SWITCHYARD_NEW_PASSWORD", "New user's password")?;
            let req = pb::CreateUserRequest {
                email,
                password,
                role,
                tenant,
            };
            let resp = c.call(req, |mut c, r| async move { c.create_user(r).await });
            users(resp.await?.user);
        }
        AdminCommand::User(UserCommand::List) => {
            let req = pb::ListUsersRequest {};
            let resp = c.call(req, |mut c, r| async move { c.list_users(r).await });
            users(resp.await?.users);
        }
        AdminCommand::Role(RoleCommand::Put { name, scopes }) => {
            let req = pb::PutRoleRequest { name, scopes };
            let resp = c.call(req, |mut c, r| async move { c.put_role(r).await });
            roles(resp.await?.role);
        }
        AdminCommand::Role(RoleCommand::List) => {
            let req = pb::ListRolesRequest {};
            let resp = c.call(req, |mut c, r| async move { c.list_roles(r).await });
            roles(resp.await?.roles);
        }
        AdminCommand::ApiKey(ApiKeyCommand::Create {
            name,
            scopes,
            ttl_seconds,
        }) => {
            let req = pb::CreateApiKeyRequest {
                name,
                scopes,
                ttl_seconds,
            };
            let resp = c.call(req, |mut c, r| async move { c.create_api_key(r).await });
            let created = resp.await?;
            let (id, name) = created.api_key.map(|k| (k.id, k.name)).unwrap_or_default();
            eprintln!(
                "created API key {id} ({name}); the key below cannot be shown again: store it now"
            );
            say(&created.key);
        }
        AdminCommand::ApiKey(ApiKeyCommand::List) => {
            let req = pb::ListApiKeysRequest {};
            let resp = c.call(req, |mut c, r| async move { c.list_api_keys(r).await });
            api_keys(resp.await?.api_keys);
        }
        AdminCommand::ApiKey(ApiKeyCommand::Revoke { id }) => {
            let req = pb::RevokeApiKeyRequest { id };
            let resp = c.call(req, |mut c, r| async move { c.revoke_api_key(r).await });
            api_keys(resp.await?.api_key);
        }
    }
    Ok(())
}

fn tenants(rows: impl IntoIterator<Item = pb::Tenant>) {
    table(
        &["ID", "NAME", "CREATED"],
        rows.into_iter()
            .map(|t| vec![t.id, t.name, when(t.created_at.as_ref())]),
    );
}

fn users(rows: impl IntoIterator<Item = pb::User>) {
    table(
        &["ID", "EMAIL", "TENANT", "ROLE", "STATUS", "CREATED"],
        rows.into_iter().map(|u| {
            let status = if u.disabled { "disabled" } else { "active" };
            let created = when(u.created_at.as_ref());
            vec![u.id, u.email, u.tenant, u.role, status.to_owned(), created]
        }),
    );
}

fn roles(rows: impl IntoIterator<Item = pb::Role>) {
    table(
        &["NAME", "KIND", "SCOPES"],
        rows.into_iter().map(|r| {
            let kind = if r.builtin { "builtin" } else { "custom" };
            vec![r.name, kind.to_owned(), r.scopes.join(",")]
        }),
    );
}

fn api_keys(rows: impl IntoIterator<Item = pb::ApiKey>) {
    let now = chrono::Utc::now().timestamp();
    table(
        &[
            "ID",
            "NAME",
            "SCOPES",
            "STATUS",
            "CREATED",
            "EXPIRES",
            "REVOKED",
            "CREATED_BY",
        ],
        rows.into_iter().map(|k| {
            let status = match (&k.revoked_at, &k.expires_at) {
                (Some(_), _) => "revoked",
                (None, Some(e)) if e.seconds <= now => "expired",
                (None, _) => "live",
            };
            vec![
                k.id,
                k.name,
                k.scopes.join(","),
                status.to_owned(),
                when(k.created_at.as_ref()),
                when(k.expires_at.as_ref()),
                when(k.revoked_at.as_ref()),
                k.created_by,
            ]
        }),
    );
}
