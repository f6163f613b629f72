//! The log of a server at `debug` after every kind of credential went through it contains none
//! of them: passwords (right and wrong), access and refresh tokens, API keys.

use serde_json::json;
use switchyard_proto::v1 as pb;

use super::{call, create_key, refresh, session};
use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, client_with};

const WRONG_PASSWORD: &str = "Wrong-Pa55word-for-the-log-7781";
const USER_PASSWORD: &str = "user-Pa55word-for-the-log-9932";
const GRPC_WRONG_PASSWORD: &str = "grpc-Wrong-Pa55word-4410";
const GARBAGE_BEARER: &str = "garbage-bearer-credential-5521";

/// Every piece of `token` that could identify it: the whole, and for a JWT its payload and
/// signature (the header is the same for every token of a server).
fn pieces(what: &str, token: &str) -> Vec<(String, String)> {
    let mut out = vec![(what.to_owned(), token.to_owned())];
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 {
        out.push((format!("{what} (payload)"), parts[1].to_owned()));
        out.push((format!("{what} (signature)"), parts[2].to_owned()));
    }
    out
}

#[tokio::test]
async fn no_password_token_or_key_reaches_the_log() {
    let (s, log) = Server::start_logged(Db::Sqlite, &[("LOG_LEVEL", "debug")]).await;
    let mut secrets: Vec<(String, String)> = vec![
        ("admin password".into(), ADMIN_PASSWORD.into()),
        ("wrong password".into(), WRONG_PASSWORD.into()),
        ("user password".into(), USER_PASSWORD.into()),
        ("wrong gRPC password".into(), GRPC_WRONG_PASSWORD.into()),
        ("garbage bearer".into(), GARBAGE_BEARER.into()),
    ];
    secrets.extend(pieces("start-up access token", &s.token));

    let r = call(
        s.anon
            .post(s.url("/auth/session"))
            .json(&json!({"email": ADMIN_EMAIL, "password": WRONG_PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let (access, refresh_token) = session(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    secrets.extend(pieces("access token", &access));
    secrets.push(("refresh token".into(), refresh_token.clone()));
    let r = refresh(&s, &refresh_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access2 = r.body["data"]["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r.body["data"]["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend(pieces("refreshed access token", &access2));
    secrets.push(("refreshed refresh token".into(), refresh2.clone()));

    let r = call(s.client.post(s.url("/api/admin/users")).json(&json!({
        "email": "dev@it.test", "password": USER_PASSWORD, "role": "developer"
    })))
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (user_access, user_refresh) = session(&s, "dev@it.test", USER_PASSWORD).await;
    secrets.extend(pieces("user access token", &user_access));
    secrets.push(("user refresh token".into(), user_refresh));

    let (key, _) = create_key(&s, &s.client, "ci-log", &["jobs:read"]).await;
    secrets.push(("API key".into(), key.clone()));
    secrets.push(("API key secret".into(), key[37..].to_owned()));
    let r = call(client_with(&key).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(&key).await);
    q.get_stats(pb::GetStatsRequest {})
        .await
        .expect("GetStats with the key");

    for token in [&access2, &key] {
        let r = call(
            s.anon
                .post(s.url("/auth/validate"))
                .json(&json!({"token": token})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = call(
        s.anon
            .post(s.url("/auth/logout"))
            .json(&json!({"refresh_token": refresh2})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(client_with(GARBAGE_BEARER).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = call(
        s.anon
            .post(s.url("/auth/validate"))
            .json(&json!({"token": GARBAGE_BEARER})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let mut auth = pb::auth_service_client::AuthServiceClient::new(super::channel(&s).await);
    let err = auth
        .login(pb::LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: GRPC_WRONG_PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(&access2).await);
    q.get_stats(pb::GetStatsRequest {})
        .await
        .expect("GetStats with a token");

    // Off the runtime, so this test's gRPC connections can answer the server's GOAWAY and let
    // it drain at once.
    let status = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 10,
        "the debug log is nearly empty:\n{text}"
    );
    for (what, secret) in &secrets {
        let leaks: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(
            leaks.is_empty(),
            "the {what} is in the log ({}):\n{}",
            log.display(),
            leaks.join("\n")
        );
    }
}
