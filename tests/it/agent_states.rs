//! Agent states as operators see them: a drained agent takes no work until undrained
//! (`TERMINATING`); a deaf one, withholding free slots while work waits, is `DEGRADED`; one
//! whose heartbeats stop is `UNHEALTHY`, then `OFFLINE`. Pools show their agents and work and
//! a scaling signal that follows demand within the operator's bounds. A delayed job reaches an
//! idle agent by its pool's re-check, however busy the bus is with other pools.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::support::{AuthedChannel, Db, Server, send};

/// One-second heartbeats, so states change within a test.
const TIMINGS: [(&str, &str); 2] = [
    ("SWITCHYARD_AGENT_HEARTBEAT_SECONDS", "1"),
    ("SWITCHYARD_AGENT_LEASE_SECONDS", "5"),
];

/// A raw agent stream authenticated by the administrator's token.
struct Stream {
    tx: mpsc::Sender<pb::ConnectRequest>,
    rx: Streaming<pb::ConnectResponse>,
    id: String,
}

impl Stream {
    /// Connects agent `name` of pool `build` with `capacity`, without granting credits.
    async fn open(ch: AuthedChannel, name: &str, capacity: u32) -> Stream {
        let (tx, outbound) = mpsc::channel(16);
        let rx = AgentServiceClient::new(ch)
            .connect(ReceiverStream::new(outbound))
            .await
            .unwrap()
            .into_inner();
        let mut stream = Stream {
            tx,
            rx,
            id: String::new(),
        };
        stream
            .say(pb::connect_request::Body::Hello(pb::Hello {
                name: name.into(),
                pool: "build".into(),
                capacity,
                ..Default::default()
            }))
            .await;
        match stream.next(Duration::from_secs(5)).await {
            Some(pb::connect_response::Body::Welcome(w)) => stream.id = w.agent_id,
            other => panic!("expected Welcome, got {other:?}"),
        }
        stream
    }

    async fn say(&self, body: pb::connect_request::Body) {
        self.tx
            .send(pb::ConnectRequest { body: Some(body) })
            .await
            .unwrap();
    }

    async fn heartbeat(&self) {
        self.say(pb::connect_request::Body::Heartbeat(pb::Heartbeat {}))
            .await;
    }

    /// The next server message within `wait`, if any.
    async fn next(&mut self, wait: Duration) -> Option<pb::connect_response::Body> {
        tokio::time::timeout(wait, self.rx.message())
            .await
            .ok()?
            .unwrap()
            .and_then(|m| m.body)
    }

    /// Heartbeats every 500 ms for `span`; returns the first `Assign` pushed meanwhile.
    async fn beat_for(&mut self, span: Duration) -> Option<pb::Job> {
        let end = Instant::now() + span;
        while Instant::now() < end {
            self.heartbeat().await;
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.next(left).await {
                    Some(pb::connect_response::Body::Assign(a)) => return a.job,
                    Some(_) => {}
                    None => break,
                }
            }
        }
        None
    }
}

async fn status(s: &Server, id: &str) -> Value {
    let (code, body, _) = send(s.client.get(s.url(&format!("/api/agents/{id}")))).await;
    assert_eq!(code, 200, "{body}");
    body["data"]["status"].clone()
}

async fn enqueue(s: &Server) -> String {
    let (code, body, _) = send(
        s.client
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "build", "kind": "noop"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn set_status(s: &Server, id: &str, to: &str) -> Value {
    let (code, body, _) = send(
        s.client
            .post(s.url(&format!("/api/agents/{id}/status")))
            .json(&json!({"status": to})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn a_drained_agent_takes_no_work_until_undrained() {
    let s = Server::start(Db::Sqlite, &TIMINGS).await;
    let mut agent = Stream::open(s.grpc_admin().await, "drained", 1).await;
    agent
        .say(pb::connect_request::Body::Credits(pb::Credits { add: 1 }))
        .await;
    let drained = set_status(&s, &agent.id, "TERMINATING").await;
    assert_eq!(drained["draining"], true, "{drained}");
    // The stream learns of the drain at its next heartbeat.
    assert!(agent.beat_for(Duration::from_millis(1200)).await.is_none());
    assert_eq!(status(&s, &agent.id).await, "TERMINATING");

    let job = enqueue(&s).await;
    assert!(
        agent.beat_for(Duration::from_secs(3)).await.is_none(),
        "a drained agent was given work"
    );
    let bad = send(
        s.client
            .post(s.url(&format!("/api/agents/{}/status", agent.id)))
            .json(&json!({"status": "OFFLINE"})),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);

    set_status(&s, &agent.id, "HEALTHY").await;
    let pushed = agent
        .beat_for(Duration::from_secs(5))
        .await
        .expect("undrained, the agent gets the job");
    assert_eq!(pushed.id, job);
    assert_eq!(status(&s, &agent.id).await, "HEALTHY");
}

#[tokio::test]
async fn a_deaf_agent_is_degraded_until_it_takes_work() {
    let s = Server::start(Db::Sqlite, &TIMINGS).await;
    let mut agent = Stream::open(s.grpc_admin().await, "deaf", 2).await;
    enqueue(&s).await;
    // Two free slots, none offered, work waiting: degraded after three intervals.
    assert!(agent.beat_for(Duration::from_millis(4500)).await.is_none());
    assert_eq!(status(&s, &agent.id).await, "DEGRADED");
    agent
        .say(pb::connect_request::Body::Credits(pb::Credits { add: 2 }))
        .await;
    assert!(agent.beat_for(Duration::from_secs(3)).await.is_some());
    agent.beat_for(Duration::from_millis(1200)).await;
    assert_eq!(status(&s, &agent.id).await, "HEALTHY");
}

#[tokio::test]
async fn a_silent_agent_turns_unhealthy_then_offline() {
    let s = Server::start(Db::Sqlite, &TIMINGS).await;
    let agent = Stream::open(s.grpc_admin().await, "quiet", 1).await;
    // A unary heartbeat (simple clients) also marks it seen.
    let (code, body, _) = send(
        s.client
            .post(s.url(&format!("/api/agents/{}/heartbeat", agent.id))),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["status"], "HEALTHY");
    // Now silence: more than two intervals late is UNHEALTHY, then the stream is closed.
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        let now = status(&s, &agent.id).await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        vec![json!("HEALTHY"), json!("UNHEALTHY"), json!("OFFLINE")],
        "states over the silence"
    );
    drop(agent);
}

#[tokio::test]
async fn pools_report_agents_work_and_a_scaling_signal() {
    let s = Server::start(Db::Sqlite, &TIMINGS).await;
    // One connected agent with two slots that takes nothing: the work stays queued.
    let _agent = Stream::open(s.grpc_admin().await, "p1", 2).await;
    for _ in 0..10 {
        enqueue(&s).await;
    }
    let pool = |name: &'static str| {
        let s = &s;
        async move {
            let (code, body, _) =
                send(s.client.get(s.url(&format!("/api/agents/pools/{name}")))).await;
            assert_eq!(code, 200, "{body}");
            body["data"].clone()
        }
    };
    let build = pool("build").await;
    assert_eq!(
        (
            &build["connected"],
            &build["capacity"],
            &build["queued"],
            &build["desired_agents"]
        ),
        (&json!(1), &json!(2), &json!(10), &json!(5)),
        "10 jobs over agents of 2 slots: {build}"
    );
    let scale = |body: Value| {
        let s = &s;
        async move {
            send(
                s.client
                    .post(s.url("/api/agents/pools/build/scale"))
                    .json(&body),
            )
            .await
        }
    };
    let (_, capped, _) = scale(json!({"max_agents": 3})).await;
    assert_eq!(capped["data"]["desired_agents"], 3, "{capped}");
    let (_, pinned, _) = scale(json!({"target_agents": 2})).await;
    assert_eq!(pinned["data"]["desired_agents"], 2, "{pinned}");
    assert_eq!(pinned["data"]["target_agents"], 2, "{pinned}");
    let (_, freed, _) = scale(json!({"follow_demand": true})).await;
    assert_eq!(freed["data"]["target_agents"], Value::Null, "{freed}");
    assert_eq!(freed["data"]["desired_agents"], 3, "{freed}");
    let (code, bad, _) = scale(json!({"min_agents": 4})).await;
    assert_eq!(code, 400, "min above max: {bad}");
    assert_eq!(bad["errors"][0]["field"], "min_agents", "{bad}");

    // The same over gRPC, and the list names every pool in use.
    let mut grpc = AgentServiceClient::new(s.grpc_admin().await);
    let over_grpc = grpc
        .get_pool(pb::GetPoolRequest {
            name: "build".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    assert_eq!((over_grpc.max_agents, over_grpc.desired_agents), (3, 3));
    let unused = pool("unused").await;
    assert_eq!(
        (&unused["agents"], &unused["desired_agents"]),
        (&json!(0), &json!(0))
    );
    let (_, list, _) = send(s.client.get(s.url("/api/agents/pools"))).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["build"], "{list}");
}

#[tokio::test]
async fn a_delayed_job_reaches_an_idle_agent_while_other_pools_are_busy() {
    let s = Server::start(Db::Sqlite, &TIMINGS).await;
    let mut agent = Stream::open(s.grpc_admin().await, "patient", 1).await;
    agent
        .say(pb::connect_request::Body::Credits(pb::Credits { add: 1 }))
        .await;
    let (code, body, _) = send(
        s.client
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "build", "kind": "noop", "delay_seconds": 1})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let delayed = body["data"]["id"].as_str().unwrap().to_owned();
    // Another pool's enqueues wake the bus every 200 ms; none of them is for this pool, and
    // none may put off its re-check, which finds the delayed job once it is due.
    let busy = {
        let (client, url) = (s.client.clone(), s.url("/api/queue/jobs"));
        tokio::spawn(async move {
            loop {
                let _ = client
                    .post(&url)
                    .json(&json!({"pool": "elsewhere", "kind": "noop"}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // Due after 1 s; the pool is re-checked every 5 s (jittered by up to a fifth).
    let pushed = agent.beat_for(Duration::from_secs(9)).await;
    busy.abort();
    assert_eq!(pushed.expect("the delayed job was pushed").id, delayed);
}
