//! `/api/ws` end to end, with a real WebSocket client (tokio-tungstenite) against the real
//! binary: a job's changes in order, resuming after the last event id, tenants and scopes
//! checked on subscribe, events crossing replicas through Redis, and a client too slow to read
//! being dropped without holding anyone else up.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{Db, Server, client_with, send};

/// A client's end of `/api/ws`.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for one frame (long: a debug-built agent hashing 200 MB on a busy
/// machine reports progress slowly).
const FRAME_WAIT: Duration = Duration::from_secs(60);

/// Opens `/api/ws?{query}` on `s` with `token` as the bearer; the handshake's error otherwise.
pub(crate) async fn open(
    s: &Server,
    token: &str,
    query: &str,
) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{}/api/ws?{query}", s.http)
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let hello = frame(&mut socket).await;
    assert_eq!(hello["type"], "subscribed", "{hello}");
    Ok(socket)
}

/// The next JSON frame (pings skipped); panics after [`FRAME_WAIT`] or on anything else.
pub(crate) async fn frame(socket: &mut Socket) -> Value {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a frame in time")
            .expect("an open socket")
            .expect("a readable frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("a JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other @ (Message::Binary(_) | Message::Close(_) | Message::Frame(_)) => {
                panic!("unexpected frame {other:?}")
            }
        }
    }
}

/// Frames until one for `subject` in `state` (inclusive), keeping only `subject`'s.
pub(crate) async fn until_state(socket: &mut Socket, subject: &str, state: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let f = frame(socket).await;
        assert_eq!(f["type"], "event", "{f}");
        if f["subject"] != subject {
            continue;
        }
        let done = f["state"] == state;
        seen.push(f);
        if done {
            return seen;
        }
    }
}

/// The states of `frames`.
fn states(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["state"].as_str().unwrap_or("?"))
        .collect()
}

/// Enqueues a `noop` job in `pool` as `client`; its id.
async fn enqueue(s: &Server, client: &reqwest::Client, pool: &str) -> String {
    let (status, body, _) = send(
        client
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": pool, "kind": "noop"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Claims, starts and completes the one due job of `pool` over REST (as an agent would).
async fn run_one(s: &Server, pool: &str) -> String {
    let c = &s.client;
    let (status, body, _) = send(
        c.post(s.url("/api/queue/claim"))
            .json(&json!({"agent_id": "ws-test", "pool": pool, "max_jobs": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["data"][0]["id"]
        .as_str()
        .expect("a claimed job")
        .to_owned();
    for (path, body) in [
        ("start", json!({"attempt": 1})),
        ("complete", json!({"attempt": 1, "succeeded": true})),
    ] {
        let (status, reply, _) = send(
            c.patch(s.url(&format!("/api/queue/jobs/{id}/{path}")))
                .json(&body),
        )
        .await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    id
}

#[tokio::test]
async fn a_watcher_sees_every_change_of_a_job_in_order_and_resumes_after_its_last_id() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let mut socket = open(&s, &s.token, "topics=jobs").await.expect("subscribe");
    let id = enqueue(&s, &s.client, "ws").await;
    assert_eq!(run_one(&s, "ws").await, id);
    let seen = until_state(&mut socket, &id, "COMPLETED").await;
    assert_eq!(states(&seen), ["QUEUED", "CLAIMED", "RUNNING", "COMPLETED"]);
    let ids: Vec<&str> = seen.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert!(
        seen.windows(2).all(|w| feed_id(&w[0]) < feed_id(&w[1])),
        "ids must increase: {ids:?}"
    );
    assert_eq!(seen[1]["data"]["attempt"], 1, "{}", seen[1]);
    assert_eq!(seen[0]["topic"], "job");

    // A client that saw CLAIMED last gets RUNNING and COMPLETED again, then live events.
    let query = format!("topics=jobs&job_id={id}&last_event_id={}", ids[1]);
    let mut resumed = open(&s, &s.token, &query).await.expect("resume");
    let replayed = until_state(&mut resumed, &id, "COMPLETED").await;
    assert_eq!(states(&replayed), ["RUNNING", "COMPLETED"]);
    assert_eq!(replayed[0]["id"], ids[2]);

    // An id the feed never had: a gap first, so the client knows to reload.
    let mut lost = open(&s, &s.token, "last_event_id=1-0")
        .await
        .expect("resume");
    assert_eq!(frame(&mut lost).await["type"], "gap");

    socket.close(None).await.expect("a clean close");
}

/// `ms-seq` as a pair, for ordering.
fn feed_id(frame: &Value) -> (u64, u64) {
    let (ms, seq) = frame["id"].as_str().unwrap().split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[tokio::test]
async fn tenants_and_scopes_are_checked_on_subscribe() {
    let s = Server::start(Db::Sqlite, &[]).await;
    crate::auth::create_tenant(&s, "ws-b").await;
    let b_token = crate::auth::user_token(&s, "ws-b", "b@ws.example", "admin").await;
    let a_job = enqueue(&s, &s.client, "ws").await;

    // B cannot watch A's job: it does not exist for B.
    let refused = open(&s, &b_token, &format!("job_id={a_job}")).await;
    assert_http_status(refused, 404);
    // A key without jobs:read cannot watch jobs, and asking for nothing it may read is refused.
    let agents_reader = api_key(&s, &["agents:read"]).await;
    assert_http_status(open(&s, &agents_reader, "topics=jobs").await, 403);
    assert_http_status(
        open(&s, &api_key(&s, &["ingest:write"]).await, "").await,
        403,
    );
    // Bad input is a 400 before any upgrade.
    for query in [
        "topics=jobs,planets",
        "job_id=nope",
        "last_event_id=yesterday",
        "what=1",
    ] {
        assert_http_status(open(&s, &s.token, query).await, 400);
    }
    // Without credentials: 401.
    let anonymous = format!("ws://{}/api/ws", s.http)
        .into_client_request()
        .unwrap();
    assert_http_status(
        tokio_tungstenite::connect_async(anonymous)
            .await
            .map(|_| ()),
        401,
    );

    // B's tenant-wide watch sees its own job and never A's, which changed first.
    let mut b = open(&s, &b_token, "").await.expect("B subscribes");
    let mut a = open(&s, &s.token, "topics=jobs")
        .await
        .expect("A subscribes");
    let (status, body, _) = send(s.client.delete(s.url(&format!("/api/queue/jobs/{a_job}")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(until_state(&mut a, &a_job, "CANCELLED").await.len(), 1);
    let b_job = enqueue(&s, &client_with(&b_token), "ws").await;
    let first = frame(&mut b).await;
    assert_eq!(
        first["subject"],
        b_job.as_str(),
        "B saw another tenant's event: {first}"
    );

    // The scopes an agents-only key holds limit a default watch to agents.
    let mut agents_only = open(&s, &agents_reader, "").await.expect("agents only");
    let _ = enqueue(&s, &s.client, "ws").await;
    let agent = crate::agents::Agent::start_in(
        "ws",
        "it-ws-agent",
        &[&s],
        &crate::agents::agent_key(&s).await,
        &crate::agents::workdir(),
    );
    let seen = frame(&mut agents_only).await;
    assert_eq!(
        (&seen["topic"], &seen["state"]),
        (&json!("agent"), &json!("HEALTHY")),
        "{seen}"
    );
    assert_eq!(seen["data"]["name"], "it-ws-agent");
    drop(agent);
}

/// Creates an API key of the default tenant holding `scopes`.
pub(crate) async fn api_key(s: &Server, scopes: &[&str]) -> String {
    let (status, body, _) = send(
        s.client
            .post(s.url("/auth/api-keys"))
            .json(&json!({"name": switchyard_testkit::unique("ws-"), "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["key"].as_str().unwrap().to_owned()
}

/// Asserts the handshake was refused with HTTP `status`.
fn assert_http_status<T: std::fmt::Debug>(result: Result<T, tungstenite::Error>, status: u16) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), status, "{response:?}");
        }
        other => panic!("expected HTTP {status}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_on_replica_a_sees_a_job_processed_through_replica_b() {
    let (a, b) = Server::replicas(&[]).await;
    let mut on_a = open(&a, &a.token, "topics=jobs")
        .await
        .expect("subscribe on A");
    let id = enqueue(&b, &b.client, "ws").await;
    assert_eq!(run_one(&b, "ws").await, id);
    let seen = until_state(&mut on_a, &id, "COMPLETED").await;
    assert_eq!(states(&seen), ["QUEUED", "CLAIMED", "RUNNING", "COMPLETED"]);

    // A client of B resumes after A's CLAIMED: the ids are the same on every replica.
    let query = format!(
        "job_id={id}&last_event_id={}",
        seen[1]["id"].as_str().unwrap()
    );
    let mut on_b = open(&b, &b.token, &query).await.expect("resume on B");
    let replayed = until_state(&mut on_b, &id, "COMPLETED").await;
    assert_eq!(states(&replayed), ["RUNNING", "COMPLETED"]);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_their_pace() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let mut stalled = open(&s, &s.token, "topics=jobs").await.expect("subscribe");
    let mut reader = open(&s, &s.token, "topics=jobs").await.expect("subscribe");
    let reading = tokio::spawn(async move {
        // Drain everything until the marker job completes.
        let mut count = 0usize;
        loop {
            let f = frame(&mut reader).await;
            count += 1;
            if f["state"] == "CANCELLED" {
                return (count, Instant::now());
            }
        }
    });
    // Far more events than the server keeps for a subscriber plus what the loopback socket
    // buffers hold (about 300 bytes each), none read by `stalled`.
    let flood = 50_000;
    let jobs: Vec<Value> = (0..1000)
        .map(|_| json!({"pool": "flood", "kind": "noop"}))
        .collect();
    let batch = json!({ "jobs": jobs });
    for _ in 0..flood / 1000 {
        let (status, body, _) = send(s.client.post(s.url("/api/queue/jobs")).json(&batch)).await;
        assert_eq!(status, 201, "{body}");
    }
    let marker = enqueue(&s, &s.client, "marker").await;
    let (status, body, _) =
        send(s.client.delete(s.url(&format!("/api/queue/jobs/{marker}")))).await;
    assert_eq!(status, 200, "{body}");
    let (read, _) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reading client keeps its pace")
        .expect("the reading task");
    assert!(read > flood, "the reader saw {read} events");

    // The stalled client gets what fit in the buffers, then its connection ends (closed as
    // too slow, or cut when a send timed out), long before it read everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = 0usize;
    let ended = loop {
        assert!(
            Instant::now() < deadline,
            "still open after {events} events"
        );
        match tokio::time::timeout(Duration::from_secs(30), stalled.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => events += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("no frame for 30 s after {events} events"),
        }
    };
    assert!(events < flood, "the stalled client got all {events} events");
    if let Some(code) = ended {
        assert_eq!(code, CloseCode::Again, "closed as too slow");
    }
}

#[tokio::test]
async fn a_lease_the_reaper_takes_back_is_seen_as_queued_again() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let mut socket = open(&s, &s.token, "topics=jobs").await.expect("subscribe");
    let id = enqueue(&s, &s.client, "reaped").await;
    let (status, body, _) =
        send(s.client.post(s.url("/api/queue/claim")).json(
            &json!({"agent_id": "gone", "pool": "reaped", "max_jobs": 1, "lease_seconds": 5}),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    // Nobody renews: the lease ends after 5 s and the reaper (every 5 s) requeues the job.
    let claimed = until_state(&mut socket, &id, "CLAIMED").await;
    assert_eq!(states(&claimed), ["QUEUED", "CLAIMED"]);
    let requeued = frame(&mut socket).await;
    assert_eq!(
        (&requeued["subject"], &requeued["state"]),
        (&json!(id), &json!("QUEUED")),
        "{requeued}"
    );
    assert_eq!(requeued["data"]["error"], "lease expired", "{requeued}");
    assert_eq!(requeued["data"]["attempt"], 1);
}
