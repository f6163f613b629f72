//! Live log tails: a job's output reaches a REST server-sent-events client and a gRPC
//! `TailJobLogs` client while the job still runs, in order, and both end when it is over.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::queue_service_client::QueueServiceClient;

use crate::agents::{Agent, agent_key, enqueue_shell, workdir};
use crate::support::{Db, Server};

/// One server-sent event: its name and JSON data.
type SseEvent = (String, Value);

/// Reads `body` as server-sent events until the `end` event; each event with the instant it
/// arrived.
async fn read_events(mut response: reqwest::Response) -> Vec<(Instant, SseEvent)> {
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Some(bytes) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the tail stalled")
        .unwrap()
    {
        buffer.push_str(std::str::from_utf8(&bytes).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name.is_empty() {
                continue; // a keep-alive comment
            }
            let done = name == "end";
            events.push((Instant::now(), (name, serde_json::from_str(&data).unwrap())));
            if done {
                return events;
            }
        }
    }
    events
}

#[tokio::test]
async fn a_running_jobs_log_streams_live_over_rest_and_grpc() {
    let s = Server::start(Db::Postgres, &[("SWITCHYARD_AGENT_HEARTBEAT_SECONDS", "1")]).await;
    let dir = workdir();
    let _agent = Agent::start("tail-agent", &[&s], &agent_key(&s).await, &dir);
    let id = enqueue_shell(
        &s,
        json!({"command": "for i in 1 2 3 4; do echo line-$i; sleep 0.6; done"}),
        1,
    )
    .await;

    let sse = s
        .client
        .get(s.url(&format!("/api/queue/jobs/{id}/logs/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let mut grpc = QueueServiceClient::new(s.grpc_admin().await);
    let mut tail = grpc
        .tail_job_logs(pb::TailJobLogsRequest {
            job_id: id.clone(),
            attempt: None,
        })
        .await
        .unwrap()
        .into_inner();
    let over_grpc = tokio::spawn(async move {
        let mut text = String::new();
        while let Some(message) = tail.message().await.unwrap() {
            text.push_str(&message.chunk.unwrap().data);
        }
        text
    });

    let events = read_events(sse).await;
    let (ended_at, (last, job)) = events.last().cloned().expect("events");
    assert_eq!(last, "end", "{events:?}");
    assert_eq!(job["state"], "COMPLETED", "{job}");
    let chunks: Vec<&(Instant, SseEvent)> =
        events.iter().filter(|(_, (n, _))| n == "chunk").collect();
    let text: String = chunks
        .iter()
        .map(|(_, (_, c))| c["data"].as_str().unwrap())
        .collect();
    assert_eq!(text, "line-1\nline-2\nline-3\nline-4\n", "{events:?}");
    // Live, not at the end: the first line arrived well before the job was over.
    let (first_at, _) = chunks[0];
    assert!(
        ended_at.duration_since(*first_at) > Duration::from_secs(1),
        "the output came only at the end: {events:?}"
    );
    let seqs: Vec<u64> = chunks
        .iter()
        .map(|(_, (_, c))| c["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    let grpc_text = tokio::time::timeout(Duration::from_secs(10), over_grpc)
        .await
        .expect("the gRPC tail ends with the job")
        .unwrap();
    assert_eq!(grpc_text, text);

    // Tailing a job that is already over returns its log and ends at once.
    let again = s
        .client
        .get(s.url(&format!("/api/queue/jobs/{id}/logs/stream?attempt=1")))
        .send()
        .await
        .unwrap();
    let replay = read_events(again).await;
    assert_eq!(replay.len(), chunks.len() + 1);
    // Unknown jobs are a 404 in the envelope, before any stream starts.
    let missing = s
        .client
        .get(s.url(&format!(
            "/api/queue/jobs/{}/logs/stream",
            uuid::Uuid::new_v4()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
