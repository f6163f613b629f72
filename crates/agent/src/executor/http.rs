//! The `http` executor: one request, for health checks and webhooks of services the agent can
//! reach.
//!
//! Payload: `{"url": "…", "method": "GET", "body": …, "expect_status": N}`. A string `body` is
//! sent as is, any other JSON value as JSON. It succeeds when the status is `expect_status`,
//! or any 2xx without one. The status line and the response body go to the job's log.
//!
//! `https://` trusts the machine's root certificates (rustls with the system store; `SSL_CERT_FILE`
//! and `SSL_CERT_DIR` are honoured), as on-prem services often use a private CA.

use switchyard_proto::v1::Job;

use super::{Outcome, payload};
use crate::logs::LogSink;

/// The payload of `http`.
#[derive(serde::Deserialize)]
struct HttpPayload {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    expect_status: Option<u16>,
}

fn get() -> String {
    "GET".to_owned()
}

/// Sends the request and reads the response into the log.
pub(super) async fn run(job: &Job, logs: &mut LogSink) -> Outcome {
    let payload: HttpPayload = match payload(job) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let method = match reqwest::Method::from_bytes(payload.method.to_uppercase().as_bytes()) {
        Ok(method) => method,
        Err(_) => {
            return Outcome::failure(format!(
                "invalid http payload: bad method {:?}",
                payload.method
            ));
        }
    };
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => return Outcome::failure(format!("cannot build an HTTP client: {e}")),
    };
    let mut request = client.request(method.clone(), &payload.url);
    request = match payload.body {
        None => request,
        Some(serde_json::Value::String(text)) => request.body(text),
        Some(json) => request.json(&json),
    };
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Outcome::failure(format!("{method} {} failed: {e}", payload.url)),
    };
    let status = response.status();
    logs.write(format!("{method} {} -> {status}\n", payload.url).as_bytes())
        .await;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => logs.write(&bytes).await,
            Ok(None) => break,
            Err(e) => return Outcome::failure(format!("reading the response failed: {e}")),
        }
    }
    let expected = match payload.expect_status {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if expected {
        Outcome::success()
    } else {
        let wanted = payload
            .expect_status
            .map_or_else(|| "2xx".to_owned(), |code| code.to_string());
        Outcome::failure(format!(
            "{method} {} returned {status}, expected {wanted}",
            payload.url
        ))
    }
}
