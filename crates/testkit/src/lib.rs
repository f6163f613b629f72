//! Test kit for Switchyard's own tests: real services, isolated per test. Every test gets its
//! own PostgreSQL database (created from `DATABASE_URL`, default the local server) and its own
//! Redis key prefix, so the whole suite runs in parallel against one server of each.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The PostgreSQL server tests use: `DATABASE_URL`, else the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis server tests use: `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A unique name fragment, e.g. for a Redis key prefix or a tenant.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Creates an empty database named `sy_test_…` and returns its URL. Databases are dropped by
/// [`drop_test_databases`], which `scripts/test` runs before the suite.
pub async fn postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = unique("sy_test_");
    let mut conn = PgConnection::connect(&admin).await.expect("connect to PostgreSQL (is it running? see scripts/services)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Drops every `sy_test_…` database left by earlier runs; returns how many.
pub async fn drop_test_databases() -> usize {
    let mut conn = PgConnection::connect(&postgres_admin_url()).await.expect("connect to PostgreSQL");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'sy\\_test\\_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list test databases");
    for name in &names {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await
            .expect("drop test database");
    }
    names.len()
}
