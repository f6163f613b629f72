//! Deployment notifications end to end: the real binary, a real agent running the deploy steps,
//! and a webhook receiver on loopback.
//!
//! - With no webhook, every event of a deployment is written to the outbox directory as a JSON
//!   file, in event order, and recorded delivered.
//! - With a webhook, every state change of a deployment (stage -> STAGED -> promote ->
//!   GUARDING -> SUCCEEDED) is POSTed to it in order, signed with its secret (HMAC-SHA256 over
//!   `"<t>.<body>"`, which the test recomputes); a 500 answer is retried with the same delivery
//!   id and body, and the delivery is then recorded delivered with 2 attempts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;
use switchyard_proto::v1 as pb;

use crate::agents::{Agent, agent_key, workdir};
use crate::deployments::{Client, POOL, create, environments, guard, promote, stage, wait_state};
use crate::support::{Db, Server, eventually, send};

/// The secret the test's webhook signs with.
const SECRET: &str = "it-webhook-secret-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    /// What the receiver answered.
    answered: StatusCode,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

/// A webhook receiver on loopback recording every request; it answers 500 to the first
/// `fail_first` requests, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let record = record.clone();
                async move {
                    let mut got = record.lock().unwrap();
                    let answered = if got.len() < fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    got.push(Received {
                        headers,
                        body: body.to_vec(),
                        answered,
                    });
                    answered
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most 15 s) until `until` holds over what was received.
    async fn wait(&self, what: &str, until: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        eventually(
            &format!("the receiver got {what}"),
            Duration::from_secs(15),
            async || {
                let got = self.got();
                if until(&got) {
                    Ok(got)
                } else {
                    Err(format!(
                        "{:?}",
                        got.iter().map(Received::json).collect::<Vec<_>>()
                    ))
                }
            },
        )
        .await
    }
}

/// Lowercase hex HMAC-SHA256 of `data` keyed by `secret`, computed here, independently of the
/// server's code.
fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `header` (`t=<unix seconds>,v1=<hex>`) signs `body` with `secret`, with a timestamp
/// within five minutes of now.
fn verifies(header: &str, body: &[u8], secret: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let fresh = (chrono::Utc::now().timestamp() - t).abs() <= 300;
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    fresh && hmac_hex(secret, &signed) == v1
}

/// The JSON files in the tenant's outbox directory, by name (so by event), and the names of
/// any other entries (temporary files).
fn outbox(dir: &Path) -> (Vec<(String, Value)>, Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir.join("default")) else {
        return (Vec::new(), Vec::new());
    };
    let mut files = Vec::new();
    let mut other = Vec::new();
    for entry in entries {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with('.') {
            let body = std::fs::read(dir.join("default").join(&name)).unwrap();
            files.push((name, serde_json::from_slice(&body).expect("whole JSON")));
        } else {
            other.push(name);
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    (files, other)
}

async fn notifications(c: &mut Client, id: &str) -> Vec<pb::Notification> {
    c.list_notifications(pb::ListNotificationsRequest {
        deployment_id: id.to_owned(),
    })
    .await
    .expect("list notifications")
    .into_inner()
    .notifications
}

fn state_name(s: pb::DeploymentState) -> String {
    s.as_str_name()
        .trim_start_matches("DEPLOYMENT_STATE_")
        .to_owned()
}

#[tokio::test]
async fn every_state_change_reaches_the_outbox_then_a_signed_retried_webhook() {
    let outbox_dir: PathBuf = workdir().join("outbox");
    let s = Server::start(
        Db::Postgres,
        &[("SWITCHYARD_NOTIFY_OUTBOX_DIR", outbox_dir.to_str().unwrap())],
    )
    .await;
    let dir = workdir();
    let _agent = Agent::start_in(POOL, "it-notify", &[&s], &agent_key(&s).await, &dir);
    let mut c = environments(&s, None).await;
    use pb::DeploymentState as S;

    // No webhook: the outbox.
    let first = create(&mut c, "notify-outbox", "1.0.0", guard(600, 0)).await;
    stage(&mut c, &first).await;
    wait_state(&mut c, &first, S::Staged, Duration::from_secs(20)).await;
    let files = eventually("three outbox files", Duration::from_secs(15), async || {
        let (files, _) = outbox(&outbox_dir);
        if files.len() >= 3 {
            Ok(files)
        } else {
            Err(format!("{files:?}"))
        }
    })
    .await;
    let states: Vec<_> = files
        .iter()
        .map(|(_, b)| b["event"]["state"].clone())
        .collect();
    assert_eq!(states, ["PENDING", "STAGING", "STAGED"], "{files:?}");
    let froms: Vec<_> = files
        .iter()
        .map(|(_, b)| b["event"]["from"].clone())
        .collect();
    assert_eq!(froms, [Value::Null, "PENDING".into(), "STAGING".into()]);
    for (name, body) in &files {
        assert_eq!(body["type"], "deployment.state_changed");
        assert_eq!(body["tenant"], "default");
        assert_eq!(body["deployment"]["id"], first.as_str());
        assert_eq!(body["deployment"]["service"], "notify-outbox");
        assert_eq!(body["deployment"]["state"], body["event"]["state"]);
        let seq = body["event"]["seq"].as_i64().unwrap();
        let id = body["id"].as_str().unwrap();
        assert_eq!(name, &format!("{seq:020}-{id}.json"));
    }
    let listed = notifications(&mut c, &first).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for n in &listed {
        assert_eq!(n.state, pb::NotificationState::Delivered as i32, "{n:?}");
        assert!(
            n.webhook_id.is_empty() && n.url.is_empty(),
            "the outbox: {n:?}"
        );
        assert_eq!(n.attempts, 1);
        assert!(n.delivered_at.is_some());
    }

    // A generated secret is shown once and never listed.
    let generated = c
        .create_webhook(pb::CreateWebhookRequest {
            url: "https://hooks.invalid/elsewhere".to_owned(),
            secret: None,
        })
        .await
        .expect("create a webhook")
        .into_inner();
    assert!(
        generated.secret.starts_with("whsec_") && generated.secret.len() == 70,
        "{}",
        generated.secret
    );
    let (status, listed, _) = send(s.client.get(s.url("/api/dashboard/webhooks"))).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert!(
        !listed.to_string().contains("secret") && !listed.to_string().contains(&generated.secret),
        "{listed}"
    );
    let gone = generated.webhook.unwrap().id;
    c.delete_webhook(pb::DeleteWebhookRequest { id: gone.clone() })
        .await
        .expect("delete the webhook");
    let err = c
        .delete_webhook(pb::DeleteWebhookRequest { id: gone })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A webhook with a known secret; its first delivery is answered 500.
    let receiver = Receiver::start(1).await;
    let hook = c
        .create_webhook(pb::CreateWebhookRequest {
            url: receiver.url.clone(),
            secret: Some(SECRET.to_owned()),
        })
        .await
        .expect("create the webhook")
        .into_inner();
    assert_eq!(hook.secret, SECRET);
    let hook = hook.webhook.unwrap();

    let second = create(&mut c, "notify-hook", "1.0.0", guard(1, 0)).await;
    // The first delivery fails and is retried (with the same delivery id and body) before the
    // deployment moves on, so every delivery that succeeds arrives in event order.
    let got = receiver.wait("the retry", |got| got.len() >= 2).await;
    assert_eq!(got[0].answered, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(got[1].answered, StatusCode::OK);
    assert_eq!(
        got[0].header("x-switchyard-delivery"),
        got[1].header("x-switchyard-delivery")
    );
    assert_eq!(got[0].body, got[1].body, "a retry sends the same body");

    stage(&mut c, &second).await;
    wait_state(&mut c, &second, S::Staged, Duration::from_secs(20)).await;
    let plan = promote(&mut c, &second).await;
    assert!(plan.executed, "{plan:?}");
    wait_state(&mut c, &second, S::Succeeded, Duration::from_secs(30)).await;
    let got = receiver
        .wait("the SUCCEEDED event", |got| {
            got.iter()
                .any(|r| r.answered == StatusCode::OK && r.json()["event"]["state"] == "SUCCEEDED")
        })
        .await;

    for r in &got {
        let body = r.json();
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.header("x-switchyard-event"),
            body["type"].as_str().unwrap()
        );
        assert_eq!(
            r.header("x-switchyard-delivery"),
            body["id"].as_str().unwrap()
        );
        let signature = r.header("x-switchyard-signature");
        assert!(verifies(signature, &r.body, SECRET), "{signature}");
        assert!(
            !verifies(signature, &r.body, "another-secret-0123456789"),
            "a different secret must not verify"
        );
        let mut tampered = r.body.clone();
        tampered.push(b' ');
        assert!(
            !verifies(signature, &tampered, SECRET),
            "a changed body must not verify"
        );
        assert_eq!(body["deployment"]["id"], second.as_str());
    }
    let delivered: Vec<Value> = got
        .iter()
        .filter(|r| r.answered == StatusCode::OK)
        .map(Received::json)
        .collect();
    let states: Vec<_> = delivered
        .iter()
        .map(|b| b["event"]["state"].as_str().unwrap().to_owned())
        .collect();
    let expected = [
        S::Pending,
        S::Staging,
        S::Staged,
        S::Promoting,
        S::Guarding,
        S::Succeeded,
    ]
    .map(state_name);
    assert_eq!(states, expected, "every state change, in order, once");
    let seqs: Vec<i64> = delivered
        .iter()
        .map(|b| b["event"]["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for w in delivered.windows(2) {
        assert_eq!(w[1]["event"]["from"], w[0]["event"]["state"], "{w:?}");
    }
    assert_eq!(delivered[4]["deployment"]["environment"], "production");

    let listed = notifications(&mut c, &second).await;
    assert_eq!(listed.len(), 6, "{listed:?}");
    for (i, n) in listed.iter().enumerate() {
        assert_eq!(n.state, pb::NotificationState::Delivered as i32, "{n:?}");
        assert_eq!(
            (n.webhook_id.as_str(), n.url.as_str()),
            (hook.id.as_str(), receiver.url.as_str())
        );
        assert_eq!(n.id, delivered[i]["id"].as_str().unwrap());
        let attempts = if i == 0 { 2 } else { 1 };
        assert_eq!(n.attempts, attempts, "{n:?}");
    }
    let retried = listed[0].last_error.as_deref().unwrap_or_default();
    assert!(retried.contains("500"), "{retried}");
    let (status, rest, _) = send(s.client.get(s.url(&format!(
        "/api/dashboard/deployments/{second}/notifications"
    ))))
    .await;
    assert_eq!(status, 200, "{rest}");
    let rest = rest["data"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0]["state"], "DELIVERED");
    assert_eq!(rest[0]["attempts"], 2);

    // Nothing of the second deployment went to the outbox, and nothing half-written is left.
    let (files, other) = outbox(&outbox_dir);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(other.is_empty(), "{other:?}");
}
