//! `switchyard dev`: it creates an administrator, says how to log in (without printing the
//! password), and lets requests without credentials act as it, while still refusing bad
//! credentials.

use switchyard_proto::v1 as pb;

use super::call;
use crate::support::{Server, client_with};

#[tokio::test]
async fn dev_prints_how_to_log_in_and_admits_requests_without_credentials() {
    let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-dev-"));
    let hint = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("admin@switchyard.local") && l.contains("log in"))
    };
    let (s, printed) = Server::start_dev(&dir, |lines| hint(lines)).await;
    let stdout = printed.join("\n");
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("switchyard listening ")),
        "{stdout}"
    );
    assert!(
        hint(&printed),
        "no log-in hint naming the administrator:\n{stdout}"
    );

    // Start-up logged in with the generated password (start_dev read it from the file).
    let password_file = dir.join("admin-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    let password = password.trim();
    assert!(password.len() >= 12, "a weak generated password");
    assert!(
        !stdout.contains(password),
        "the password is printed:\n{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "admin-password is readable by others: {mode:o}"
        );
    }
    let r = call(s.client.get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "with the administrator's token: {}", r.body);

    let r = call(s.anon.get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "without credentials: {}", r.body);
    let r = call(s.anon.get(s.url("/api/admin/users"))).await;
    assert_eq!(
        r.status, 200,
        "dev's anonymous caller is an administrator: {}",
        r.body
    );
    let r = call(client_with("garbage").get(s.url("/api/queue/jobs"))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (401, Some("unauthenticated")),
        "a garbage bearer: {}",
        r.body
    );

    let mut q = pb::queue_service_client::QueueServiceClient::new(super::channel(&s).await);
    q.get_stats(pb::GetStatsRequest {})
        .await
        .expect("gRPC without credentials");
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with("garbage").await);
    let err = q.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
}
