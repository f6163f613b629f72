//! Test kit for Switchyard's own tests: real services, isolated per test. Every test gets its
//! own PostgreSQL database (created from `DATABASE_URL`, default the local server) and its own
//! Redis key prefix (and S3 bucket), so the whole suite runs in parallel against one server of
//! each.
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

/// The S3-compatible server tests use: `S3_ENDPOINT`, else the local default (`moto`, which
/// `scripts/services` starts).
pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned())
}

/// Creates an empty bucket named `sy-test-…` on [`s3_endpoint`] (the test server checks no
/// signature) and returns its name.
pub async fn s3_bucket() -> String {
    let name = unique("sy-test-");
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", s3_endpoint()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("no S3 server at {} (scripts/services): {e}", s3_endpoint()));
    assert!(
        created.status().is_success(),
        "create bucket {name}: {}",
        created.status()
    );
    name
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
