//! Identity records as `switchyard.v1` messages (domain to wire only: requests carry plain
//! strings, which the services validate).

use switchyard_types::{ApiKey, Role, Tenant, User};

use super::timestamp;
use crate::v1 as pb;

impl From<Tenant> for pb::Tenant {
    fn from(t: Tenant) -> Self {
        pb::Tenant {
            id: t.id.to_string(),
            name: t.name,
            created_at: Some(timestamp(t.created_at)),
        }
    }
}

impl From<User> for pb::User {
    fn from(u: User) -> Self {
        pb::User {
            id: u.id.to_string(),
            tenant: u.tenant.to_string(),
            email: u.email,
            role: u.role,
            disabled: u.disabled,
            created_at: Some(timestamp(u.created_at)),
        }
    }
}

impl From<ApiKey> for pb::ApiKey {
    fn from(k: ApiKey) -> Self {
        pb::ApiKey {
            id: k.id.to_string(),
            name: k.name,
            scopes: k.scopes.names(),
            created_by: k.created_by,
            created_at: Some(timestamp(k.created_at)),
            expires_at: k.expires_at.map(timestamp),
            revoked_at: k.revoked_at.map(timestamp),
        }
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        pb::Role {
            name: r.name,
            scopes: r.scopes.names(),
            builtin: r.builtin,
        }
    }
}
