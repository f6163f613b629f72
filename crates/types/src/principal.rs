//! Who is calling: the tenant and scopes every handler receives from the auth layer.

use crate::TenantId;

/// The authenticated caller. Handlers take one of these and never look at credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every query of this request is scoped to.
    pub tenant: TenantId,
    /// The user, API key or agent id, for audit and logs.
    pub subject: String,
    /// Granted scopes, e.g. `jobs:write`.
    pub scopes: Vec<String>,
}

impl Principal {
    /// The built-in principal used until authentication is configured: the default tenant with
    /// the `admin` scope.
    pub fn dev() -> Self {
        Principal {
            tenant: TenantId::default_tenant(),
            subject: "dev".to_owned(),
            scopes: vec!["admin".to_owned()],
        }
    }
}
