//! Test kit for Switchyard's own tests: real services, isolated per test. Every test gets its
//! own PostgreSQL database (created from `DATABASE_URL`, default the local server) and its own
//! Redis key prefix, so the whole suite runs in parallel against one server of each.
//! [`TempRedis`] is a private `redis-server` for tests that stop and restart Redis.

mod redis;

pub use redis::TempRedis;
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

/// Creates an empty database named `sy_test_…` and returns its URL. `scripts/test` drops the
/// ones earlier runs left before it starts.
pub async fn postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = unique("sy_test_");
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to PostgreSQL (is it running? see scripts/services)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}
