//! Identity end to end over the real binary, REST and gRPC on real sockets (issue 3): the scope
//! matrix from the policy table, tenant isolation, forged tokens, refresh rotation, rate limits,
//! API keys, browser safety, secrets kept out of the log, and `switchyard dev`.

mod browser;
mod dev;
mod jwt;
mod keys;
mod limits;
mod logs;
mod matrix;
mod sessions;
mod tenants;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tonic::Status;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::support::Server;

/// A password every user these tests create logs in with.
const USER_PASSWORD: &str = "it-user-password-42";

/// An answer over REST: status, body (the JSON, or the text as a JSON string when it is not
/// JSON, e.g. the docs page), headers.
struct Reply {
    status: u16,
    body: Value,
    headers: HeaderMap,
}

impl Reply {
    /// The envelope's first error code.
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["code"].as_str()
    }

    /// A header as text, if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req`; any body is accepted.
async fn call(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        headers,
    }
}

/// Asserts `reply` is `status` with envelope code `code`, naming `what` and showing the body.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, Some(code)),
        "{what}: {}",
        reply.body
    );
}

/// Logs in over REST: (access token, refresh token).
async fn session(s: &Server, email: &str, password: &str) -> (String, String) {
    let r = call(
        s.anon
            .post(s.url("/auth/session"))
            .json(&json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(r.status, 200, "log-in as {email}: {}", r.body);
    let data = &r.body["data"];
    assert_eq!(data["token_type"], "Bearer", "{}", r.body);
    (
        data["access_token"].as_str().unwrap().to_owned(),
        data["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// `POST /auth/refresh` with `refresh_token`.
async fn refresh(s: &Server, refresh_token: &str) -> Reply {
    call(
        s.anon
            .post(s.url("/auth/refresh"))
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
}

/// Creates an API key as `client` (which must hold `admin`): (key, id).
async fn create_key(
    s: &Server,
    client: &reqwest::Client,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let r = call(
        client
            .post(s.url("/auth/api-keys"))
            .json(&json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(r.status, 201, "create key {name}: {}", r.body);
    let key = r.body["data"]["key"].as_str().unwrap().to_owned();
    let id = r.body["data"]["api_key"]["id"].as_str().unwrap().to_owned();
    (key, id)
}

/// Creates tenant `id` as the platform administrator.
pub(crate) async fn create_tenant(s: &Server, id: &str) {
    let r = call(
        s.client
            .post(s.url("/api/admin/tenants"))
            .json(&json!({"id": id, "name": format!("Tenant {id}")})),
    )
    .await;
    assert_eq!(r.status, 201, "create tenant {id}: {}", r.body);
}

/// Creates a user with `role` in `tenant` as the platform administrator, logs in as it and
/// returns its access token.
pub(crate) async fn user_token(s: &Server, tenant: &str, email: &str, role: &str) -> String {
    let r = call(s.client.post(s.url("/api/admin/users")).json(&json!({
        "email": email, "password": USER_PASSWORD, "role": role, "tenant": tenant
    })))
    .await;
    assert_eq!(r.status, 201, "create user {email}: {}", r.body);
    assert_eq!(r.body["data"]["tenant"], tenant, "{}", r.body);
    session(s, email, USER_PASSWORD).await.0
}

/// A gRPC channel without credentials.
async fn channel(s: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .expect("connect gRPC")
}

/// Calls the RPC at `path` (`/switchyard.v1.Service/Method`) with an empty message, sending
/// `bearer` when given, and returns its first status. The call is made as server streaming,
/// which carries unary calls too: a refusal arrives at once as the status, while an admitted
/// call sends headers and then, for a watch that stays open, nothing more, so the first answer
/// is awaited for [`FIRST_ANSWER`] only and silence after the headers counts as admitted.
async fn grpc_empty(channel: &Channel, bearer: Option<&str>, path: &str) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    let mut request = tonic::Request::new(());
    if let Some(token) = bearer {
        let value = format!("Bearer {token}").parse().expect("ASCII credential");
        request.metadata_mut().insert("authorization", value);
    }
    let path = PathAndQuery::try_from(path.to_owned()).expect("a gRPC path");
    let mut answers = grpc
        .server_streaming(request, path, tonic_prost::ProstCodec::<(), ()>::default())
        .await?
        .into_inner();
    match tokio::time::timeout(FIRST_ANSWER, answers.message()).await {
        Ok(first) => first.map(|_| ()),
        Err(_still_open) => Ok(()),
    }
}

/// How long [`grpc_empty`] waits for the first message or status after the headers.
const FIRST_ANSWER: Duration = Duration::from_secs(2);

/// Rate limits count in fixed one-minute windows aligned to the clock (shared with Redis), so
/// a test that needs `needed` within one window waits for the next window when the current one
/// ends sooner.
async fn with_room_in_the_window(needed: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_millis(u64::try_from(now.as_millis() % 60_000).unwrap());
    let left = Duration::from_secs(60) - into;
    if left < needed {
        tokio::time::sleep(left + Duration::from_millis(100)).await;
    }
}
