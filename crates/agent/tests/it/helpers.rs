//! The agent under test, and the messages tests expect or send.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use switchyard_agent::{AgentConfig, AgentError, run};
use switchyard_proto::convert::json_to_value;
use switchyard_proto::v1::connect_request::Body as Request;
use switchyard_proto::v1::connect_response::Body as Reply;
use switchyard_proto::v1::{Assign, Credits, Job, JobFinished, JobStarted};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{Conn, PATIENCE};

/// A configuration for `url`: agent `agent-1` of pool `build`, capacity `capacity`, jobs run in
/// `workdir`, one second of shutdown grace.
pub fn config(url: &str, capacity: u32, workdir: &Path) -> AgentConfig {
    AgentConfig {
        servers: vec![url.to_owned()],
        token: None,
        cert_dir: None,
        ca_file: None,
        name: "agent-1".into(),
        pool: "build".into(),
        labels: BTreeMap::from([("os".to_owned(), "linux".to_owned())]),
        capacity,
        secrets_file: None,
        shutdown_grace: Duration::from_secs(1),
        workdir: workdir.to_owned(),
    }
}

/// An agent running in the background.
pub struct Agent {
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Starts `run(config)`.
    pub fn start(config: AgentConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Waits for `run` to return, which it must do in time and with `Ok`.
    pub async fn finish(self) {
        let result = tokio::time::timeout(PATIENCE, self.task).await;
        result
            .expect("stopped in time")
            .expect("no panic")
            .expect("Ok");
    }

    /// Shuts it down while serving `conn` as a server would: answering heartbeats until the
    /// agent ends the stream, then closing its side. The agent must then return.
    pub async fn stop(self, mut conn: Conn) {
        self.shutdown.cancel();
        while conn.next().await.is_some() {}
        drop(conn);
        self.finish().await;
    }
}

/// `Assign` of attempt `attempt` of job `id`.
pub fn assign(id: &str, attempt: u32, kind: &str, payload: serde_json::Value) -> Reply {
    Reply::Assign(Assign {
        job: Some(Job {
            id: id.into(),
            attempt,
            kind: kind.into(),
            payload: Some(json_to_value(payload)),
            ..Job::default()
        }),
        artifact_grant: String::new(),
    })
}

/// `Credits{add}`.
pub fn credits(add: u32) -> Request {
    Request::Credits(Credits { add })
}

/// `JobStarted` of attempt `attempt` of job `id`.
pub fn started(id: &str, attempt: u32) -> Request {
    Request::Started(JobStarted {
        job_id: id.into(),
        attempt,
    })
}

/// Reads messages until a `JobFinished`; returns it and the log text seen on the way (whose
/// sequence numbers must grow by one from `first_seq`).
pub async fn finished(conn: &mut Conn, first_seq: u64) -> (JobFinished, String) {
    let mut text = String::new();
    let mut seq = first_seq;
    loop {
        let message = conn.recv().await;
        if let Request::Finished(report) = message {
            return (report, text);
        }
        let Request::Log(chunk) = message else {
            panic!("expected logs or JobFinished, got {message:?}");
        };
        assert_eq!(chunk.seq, seq, "sequence numbers grow by one");
        seq += 1;
        text.push_str(&chunk.data);
    }
}
