//! Who is calling: the tenant and scopes every handler receives from the auth layer, and the
//! scopes themselves.

use std::fmt;

use crate::{Error, TenantId};

/// One permission. DESIGN §3.8: `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read jobs, their logs and queue statistics.
    JobsRead,
    /// Enqueue, claim, complete, cancel, reprioritise and redrive jobs.
    JobsWrite,
    /// Read agents and pools.
    AgentsRead,
    /// Register, drain and deregister agents; manage pools and registration tokens.
    AgentsAdmin,
    /// Read deployments and their gate evaluations.
    DeploymentsRead,
    /// Create deployments and run staging.
    DeploymentsWrite,
    /// Promote to production and roll back.
    DeploymentsPromote,
    /// Upload artifacts.
    IngestWrite,
    /// Everything, including users, roles, API keys, limits and maintenance.
    Admin,
}

impl Scope {
    /// Every scope, in declaration order.
    pub const ALL: [Scope; 9] = [
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::AgentsRead,
        Scope::AgentsAdmin,
        Scope::DeploymentsRead,
        Scope::DeploymentsWrite,
        Scope::DeploymentsPromote,
        Scope::IngestWrite,
        Scope::Admin,
    ];

    /// The wire name, e.g. `jobs:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsAdmin => "agents:admin",
            Scope::DeploymentsRead => "deployments:read",
            Scope::DeploymentsWrite => "deployments:write",
            Scope::DeploymentsPromote => "deployments:promote",
            Scope::IngestWrite => "ingest:write",
            Scope::Admin => "admin",
        }
    }

    /// Parses a wire name (exact, lower case).
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, as a bit set: checking a scope on every request costs one AND.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// No scope at all.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// The set holding exactly `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        ScopeSet(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Parses wire names; an unknown name is an `InvalidArgument` on `field`.
    pub fn parse<'a>(field: &str, names: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let mut set = ScopeSet::EMPTY;
        for name in names {
            let scope = Scope::parse(name).ok_or_else(|| {
                Error::invalid(
                    field,
                    format!(
                        "unknown scope {name:?}; known: {}",
                        ScopeSet::of(&Scope::ALL)
                    ),
                )
            })?;
            set = set.with(scope);
        }
        Ok(set)
    }

    /// This set plus `scope`.
    pub fn with(self, scope: Scope) -> Self {
        ScopeSet(self.0 | scope.bit())
    }

    /// Whether `scope` is in the set itself (no `admin` implication).
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set grants `scope`: it holds it, or holds `admin`.
    pub fn grants(self, scope: Scope) -> bool {
        self.contains(scope) || self.contains(Scope::Admin)
    }

    /// Whether every scope of `other` is granted by this set (a key may not outrank its maker).
    pub fn covers(self, other: ScopeSet) -> bool {
        other.iter().all(|scope| self.grants(scope))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The wire names, in declaration order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

impl fmt::Display for ScopeSet {
    /// Space-separated wire names, as in an OAuth `scope` claim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({self})")
    }
}

/// What kind of credential authenticated a [`Principal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user with an access token.
    User,
    /// A CI system with an API key.
    ApiKey,
    /// An agent with a client certificate or agent token.
    Agent,
    /// The anonymous administrator of `switchyard dev` (never outside `dev`).
    Dev,
}

impl PrincipalKind {
    /// The wire name: `USER`, `API_KEY`, `AGENT` or `DEV`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "USER",
            PrincipalKind::ApiKey => "API_KEY",
            PrincipalKind::Agent => "AGENT",
            PrincipalKind::Dev => "DEV",
        }
    }
}

/// The authenticated caller. Handlers take one of these and never look at credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every query of this request is scoped to.
    pub tenant: TenantId,
    /// The user id, API key id or agent id, for audit and logs.
    pub subject: String,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// The credential that authenticated it.
    pub kind: PrincipalKind,
}

impl Principal {
    /// The anonymous principal of `switchyard dev`: the default tenant with the `admin` scope.
    pub fn dev() -> Self {
        Principal {
            tenant: TenantId::default_tenant(),
            subject: "dev".to_owned(),
            scopes: ScopeSet::of(&[Scope::Admin]),
            kind: PrincipalKind::Dev,
        }
    }

    /// Whether the caller holds `scope` (directly or through `admin`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.grants(scope)
    }

    /// `Ok` when the caller holds `scope`, else `PermissionDenied` naming it.
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(Error::new(
                crate::ErrorKind::PermissionDenied,
                format!("this call needs the scope {scope}"),
            ))
        }
    }

    /// Whether the caller administers the whole installation: `admin` in the default tenant.
    pub fn is_platform_admin(&self) -> bool {
        self.tenant == TenantId::default_tenant() && self.allows(Scope::Admin)
    }

    /// `Ok` for a platform administrator, else `PermissionDenied` saying what `action` needs.
    pub fn require_platform_admin(&self, action: &str) -> Result<(), Error> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(Error::new(
                crate::ErrorKind::PermissionDenied,
                format!("only administrators of the default tenant {action}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_and_admin_implies_all() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        let admin = ScopeSet::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.grants(*s)));
        let reader = ScopeSet::parse("scopes", ["jobs:read"]).unwrap();
        assert!(reader.grants(Scope::JobsRead) && !reader.grants(Scope::JobsWrite));
        assert!(admin.covers(reader) && !reader.covers(admin));
        assert_eq!(
            ScopeSet::of(&[Scope::JobsWrite, Scope::JobsRead]).to_string(),
            "jobs:read jobs:write"
        );
        let err = ScopeSet::parse("scopes", ["jobs:delete"]).unwrap_err();
        assert_eq!(err.violations[0].field, "scopes");
    }
}
