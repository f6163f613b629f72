//! Start-up configuration failures of the real binary: named, non-zero, no secrets shown.

use std::process::Output;

use crate::support::binary;

fn serve(env: &[(&str, &str)]) -> Output {
    binary()
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run switchyard")
}

fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("hunter2"), "password shown: {stderr}");
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-strong";

#[test]
fn strict_mode_requires_database_url() {
    let out = serve(&[
        ("ENV", "prod"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", SECRET),
    ]);
    assert_refused(&out, "DATABASE_URL is required");
}

#[test]
fn strict_mode_refuses_sqlite() {
    let out = serve(&[
        ("CI_STRICT", "1"),
        ("DATABASE_URL", "sqlite:///tmp/x.db"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", SECRET),
    ]);
    assert_refused(&out, "needs PostgreSQL");
}

#[test]
fn strict_mode_requires_redis_url() {
    let out = serve(&[
        ("ENV", "staging"),
        ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1/x"),
        ("JWT_SECRET", SECRET),
    ]);
    assert_refused(&out, "REDIS_URL is required");
}

#[test]
fn strict_mode_refuses_a_weak_jwt_secret() {
    let out = serve(&[
        ("ENV", "prod"),
        ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1/x"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "changeme"),
    ]);
    assert_refused(&out, "JWT_SECRET");
}

#[test]
fn an_unreachable_database_fails_with_the_password_masked() {
    let out = serve(&[("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/x")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("app:***@127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn migrate_applies_and_exits() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(switchyard_testkit::postgres_database());
    let out = binary()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Twice is fine.
    let out = binary()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success());
}
