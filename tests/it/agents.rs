//! Agents end to end: real `switchyard agent` processes on the real `Connect` stream.
//!
//! - A shell job enqueued over REST runs on an agent, with its secret injected and masked in its
//!   stored log.
//! - A `kill -9`ed agent's job is requeued within lease + reaper interval and finishes on another
//!   agent.
//! - A frozen agent's late reports change nothing, and it stops its copy.
//! - A cancel stops the running job at once.
//! - SIGTERM of a replica moves its agent to the other replica with the job's lease intact.
//! - A job that ended while the whole control plane was down for longer than its lease is not
//!   run again: restart grace keeps the lease for the agent's late report.
//! - With Redis down jobs still run, and pushes resume when it is back.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Db, Server, binary, client_with, eventually, send};

/// Short stream timings, so lease expiries happen within a test.
const TIMINGS: [(&str, &str); 2] = [
    ("SWITCHYARD_AGENT_HEARTBEAT_SECONDS", "1"),
    ("SWITCHYARD_AGENT_LEASE_SECONDS", "5"),
];

/// A running `switchyard agent`; killed when dropped.
pub(crate) struct Agent {
    child: Child,
}

impl Agent {
    /// Starts agent `name` in pool `build` against `servers`, authenticating with `token`,
    /// with `dir` as its working directory and `dir/secrets.json` as its secrets file.
    pub(crate) fn start(name: &str, servers: &[&Server], token: &str, dir: &Path) -> Agent {
        Self::start_in("build", name, servers, token, dir)
    }

    /// [`Agent::start`] in `pool`.
    pub(crate) fn start_in(
        pool: &str,
        name: &str,
        servers: &[&Server],
        token: &str,
        dir: &Path,
    ) -> Agent {
        let servers: Vec<String> = servers
            .iter()
            .map(|s| format!("http://{}", s.grpc))
            .collect();
        Self::start_at(pool, name, &servers, token, dir)
    }

    /// [`Agent::start_in`] with the servers' addresses given as URLs (a proxy's, say).
    pub(crate) fn start_at(
        pool: &str,
        name: &str,
        servers: &[String],
        token: &str,
        dir: &Path,
    ) -> Agent {
        let child = binary()
            .arg("agent")
            .env("SWITCHYARD_SERVERS", servers.join(","))
            .env("SWITCHYARD_TOKEN", token)
            .env("SWITCHYARD_AGENT_NAME", name)
            .env("SWITCHYARD_POOL", pool)
            .env("SWITCHYARD_WORKDIR", dir)
            .env("SWITCHYARD_SECRETS_FILE", dir.join("secrets.json"))
            .env("SWITCHYARD_SHUTDOWN_GRACE_SECONDS", "2")
            // Jobs must not see the agent's environment (only PATH, HOME and a few more).
            .env("AGENT_PRIVATE", "do-not-pass")
            .spawn()
            .expect("spawn switchyard agent");
        Agent { child }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the agent process.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no goodbye, no report.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh working directory with a secrets file.
pub(crate) fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-agent-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("secrets.json"),
        r#"{"DEPLOY_TOKEN": "s3cret-value-42"}"#,
    )
    .unwrap();
    dir
}

/// An API key of the default tenant with `jobs:write`, as agents use.
pub(crate) async fn agent_key(s: &Server) -> String {
    let (status, body, _) =
        send(s.client.post(s.url("/auth/api-keys")).json(
            &json!({"name": switchyard_testkit::unique("agent-"), "scopes": ["jobs:write"]}),
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["key"].as_str().unwrap().to_owned()
}

/// Enqueues a shell job in pool `build`; returns its id.
pub(crate) async fn enqueue_shell(s: &Server, payload: Value, max_attempts: u32) -> String {
    let body =
        json!({"pool": "build", "kind": "shell", "payload": payload, "max_attempts": max_attempts});
    let (status, body, _) = send(s.client.post(s.url("/api/queue/jobs")).json(&body)).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn job(s: &Server, id: &str) -> Value {
    let (status, body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{id}")))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Polls job `id` until `done` holds for it, for at most `limit`; returns the job.
pub(crate) async fn wait_for(
    s: &Server,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("job {id}"), limit, async || {
        let j = job(s, id).await;
        if done(&j) { Ok(j) } else { Err(j) }
    })
    .await
}

pub(crate) fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["state"] == state
}

#[tokio::test]
async fn a_shell_job_enqueued_over_rest_runs_on_a_real_agent() {
    let s = Server::start(Db::Postgres, &TIMINGS).await;
    let dir = workdir();
    let _agent = Agent::start("it-agent-1", &[&s], &agent_key(&s).await, &dir);

    // It runs in the agent's working directory, with the secret it names in its environment and
    // none of the agent's own variables.
    let ok = enqueue_shell(
        &s,
        json!({"command": "test -z \"$AGENT_PRIVATE$SWITCHYARD_TOKEN\" && test -n \"$PATH\" \
                            && test \"$DEPLOY_TOKEN\" = s3cret-value-42 && echo ran > marker \
                            && echo \"token is $DEPLOY_TOKEN\" && echo bye >&2",
               "secrets": ["DEPLOY_TOKEN"]}),
        1,
    )
    .await;
    let done = wait_for(&s, &ok, Duration::from_secs(15), state_is("COMPLETED")).await;
    assert_eq!(done["attempt"], 1, "{done}");
    assert_eq!(done["claimed_by"], "it-agent-1", "{done}");
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(
        std::fs::read_to_string(dir.join("marker")).unwrap().trim(),
        "ran"
    );
    // Its output is readable, with the secret's value masked by the agent.
    let (status, body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{ok}/logs")))).await;
    assert_eq!(status, 200, "{body}");
    let text: String = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["data"].as_str().unwrap())
        .collect();
    assert!(text.contains("token is ***"), "{text:?}");
    assert!(text.contains("bye"), "stderr too: {text:?}");
    assert!(
        !text.contains("s3cret-value-42"),
        "the secret leaked: {text:?}"
    );

    // A failing command fails the attempt with its exit status; its last attempt dead-letters.
    let bad = enqueue_shell(&s, json!({"command": "exit 7"}), 1).await;
    let failed = wait_for(&s, &bad, Duration::from_secs(15), state_is("DEAD_LETTERED")).await;
    assert_eq!(failed["exit_code"], 7, "{failed}");
    assert_eq!(failed["failures"][0]["error"], "exit status 7", "{failed}");

    // The registry shows the agent, connected and idle.
    let (status, body, _) = send(s.client.get(s.url("/api/agents?pool=build"))).await;
    assert_eq!(status, 200, "{body}");
    let agents = body["data"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{body}");
    assert_eq!(agents[0]["name"], "it-agent-1");
    assert_eq!(agents[0]["status"], "HEALTHY");
    let id = agents[0]["id"].as_str().unwrap();
    let (status, one, _) = send(s.client.get(s.url(&format!("/api/agents/{id}")))).await;
    assert_eq!(
        (status, &one["data"]["capacity"]),
        (200, &json!(4)),
        "{one}"
    );

    // Another tenant sees neither the agent nor the job's log.
    crate::auth::create_tenant(&s, "acme").await;
    let acme = client_with(&crate::auth::user_token(&s, "acme", "ops@acme.test", "admin").await);
    for path in [
        format!("/api/agents/{id}"),
        format!("/api/queue/jobs/{ok}/logs"),
    ] {
        let (status, body, _) = send(acme.get(s.url(&path))).await;
        assert_eq!(status, 404, "{path} from another tenant: {body}");
    }
    let (status, body, _) = send(acme.get(s.url("/api/agents"))).await;
    assert_eq!((status, &body["data"]), (200, &json!([])), "{body}");
}

#[tokio::test]
async fn a_killed_agents_job_is_requeued_and_finishes_on_another_agent() {
    let s = Server::start(Db::Postgres, &TIMINGS).await;
    let key = agent_key(&s).await;
    let shared = workdir();
    let marker = shared.join("first-attempt");
    // The first attempt marks itself and hangs; the next one finds the mark and succeeds.
    let command = format!(
        "if [ -e {m} ]; then exit 0; fi; touch {m}; sleep 120",
        m = marker.display()
    );
    let id = enqueue_shell(&s, json!({"command": command}), 3).await;
    let first = Agent::start("it-doomed", &[&s], &key, &workdir());
    wait_for(&s, &id, Duration::from_secs(15), |j| {
        j["state"] == "RUNNING" && marker.exists()
    })
    .await;
    first.kill9();
    let killed = Instant::now();
    let _second = Agent::start("it-survivor", &[&s], &key, &workdir());

    let done = wait_for(&s, &id, Duration::from_secs(30), state_is("COMPLETED")).await;
    // Lease (5 s) + reaper interval (5 s) + 1 s, and the run itself.
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "requeued and run after {took:?}"
    );
    assert_eq!(
        done["attempt"], 2,
        "the expiry counts as an attempt: {done}"
    );
    assert_eq!(done["claimed_by"], "it-survivor", "{done}");
    assert_eq!(done["failures"][0]["attempt"], 1, "{done}");
}

#[tokio::test]
async fn a_frozen_agents_late_reports_are_refused_and_it_stops_its_copy() {
    let s = Server::start(Db::Postgres, &TIMINGS).await;
    let key = agent_key(&s).await;
    let shared = workdir();
    let pidfile = shared.join("first-attempt.pid");
    // The first attempt records its pid and runs long; the next one finds the file and succeeds.
    let command = format!(
        "if [ -e {p} ]; then echo second; exit 0; fi; echo $$ > {p}; sleep 60; echo first-finished",
        p = pidfile.display()
    );
    let id = enqueue_shell(&s, json!({"command": command}), 3).await;
    let frozen = Agent::start("it-frozen", &[&s], &key, &workdir());
    wait_for(&s, &id, Duration::from_secs(15), |j| {
        j["state"] == "RUNNING" && pidfile.exists()
    })
    .await;
    frozen.signal("STOP");
    let _other = Agent::start("it-thawed-out", &[&s], &key, &workdir());
    let done = wait_for(&s, &id, Duration::from_secs(20), state_is("COMPLETED")).await;
    assert_eq!(
        (&done["attempt"], &done["claimed_by"]),
        (&json!(2), &json!("it-thawed-out")),
        "{done}"
    );

    frozen.signal("CONT");
    // The thawed agent finds its lease gone and kills its copy: the first attempt's shell dies.
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    gone(&pid, "the stale copy", Duration::from_secs(15)).await;
    // Whatever it reported late changed nothing: the newer attempt's result stands, and no
    // output of the stale copy was stored after its lease was lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = job(&s, &id).await;
    assert_eq!(
        (
            &after["state"],
            &after["attempt"],
            &after["claimed_by"],
            &after["exit_code"]
        ),
        (
            &json!("COMPLETED"),
            &json!(2),
            &json!("it-thawed-out"),
            &json!(0)
        ),
        "{after}"
    );
    let (_, logs, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{id}/logs")))).await;
    let text = logs["data"].to_string();
    assert!(text.contains("second"), "{logs}");
    assert!(!text.contains("first-finished"), "{logs}");
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_on_its_agent_at_once() {
    // Default timings: a heartbeat every 10 s, so only the pushed `Cancel` can be this quick.
    let s = Server::start(Db::Sqlite, &[]).await;
    let dir = workdir();
    let pidfile = dir.join("job.pid");
    let command = format!("echo $$ > {}; sleep 60", pidfile.display());
    let id = enqueue_shell(&s, json!({"command": command}), 1).await;
    let _agent = Agent::start("it-cancel", &[&s], &agent_key(&s).await, &dir);
    wait_for(&s, &id, Duration::from_secs(15), |j| {
        j["state"] == "RUNNING" && pidfile.exists()
    })
    .await;
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let (status, body, _) = send(s.client.delete(s.url(&format!("/api/queue/jobs/{id}")))).await;
    assert_eq!(
        (status, &body["data"]["state"]),
        (200, &json!("CANCELLED")),
        "{body}"
    );
    gone(&pid, "the cancelled job", Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_cancel_no_event_announced_reaches_the_agent_at_its_next_heartbeat() {
    // Two replicas on one database without Redis: a cancel on A is not announced to B, where
    // the agent is connected; B's heartbeat check finds it.
    let url = Db::Postgres.fresh_url().await;
    let a = Server::start_on(&url, &TIMINGS).await;
    let b = Server::start_on(&url, &TIMINGS).await;
    let dir = workdir();
    let pidfile = dir.join("job.pid");
    let command = format!("echo $$ > {}; sleep 60", pidfile.display());
    let id = enqueue_shell(&a, json!({"command": command}), 1).await;
    let _agent = Agent::start("it-quiet-cancel", &[&b], &agent_key(&a).await, &dir);
    wait_for(&a, &id, Duration::from_secs(15), |j| {
        j["state"] == "RUNNING" && pidfile.exists()
    })
    .await;
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let (status, body, _) = send(a.client.delete(a.url(&format!("/api/queue/jobs/{id}")))).await;
    assert_eq!(status, 200, "{body}");
    // One heartbeat interval (1 s), plus the check and the kill.
    gone(&pid, "the cancelled job", Duration::from_secs(4)).await;
}

/// Waits until process `pid` (`what`) has ended, for at most `limit`.
async fn gone(pid: &str, what: &str, limit: Duration) {
    eventually(&format!("{what} (pid {pid}) ended"), limit, async || {
        let alive = std::process::Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if alive { Err("still running") } else { Ok(()) }
    })
    .await;
}

#[tokio::test]
async fn a_job_that_ended_while_the_control_plane_was_down_is_not_run_again() {
    let url = Db::Postgres.fresh_url().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut env = vec![("SWITCHYARD_GRPC_ADDR", addr.as_str())];
    env.extend(TIMINGS);
    let before = Server::start_on(&url, &env).await;
    let _agent = Agent::start(
        "it-patient",
        &[&before],
        &agent_key(&before).await,
        &workdir(),
    );
    let id = enqueue_shell(&before, json!({"command": "sleep 2"}), 3).await;
    wait_for(&before, &id, Duration::from_secs(10), state_is("RUNNING")).await;

    // The whole control plane is down for longer than the lease (5 s), while the job ends (in
    // time: the agent self-fences only after 2/3 of the lease)...
    before.kill9();
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    // ...and comes back on the same address. Restart grace renewed the expired lease, so the
    // agent's late report is still the current attempt's: no second run.
    let after = Server::start_on(&url, &env).await;
    let done = wait_for(&after, &id, Duration::from_secs(20), |j| {
        j["state"] == "COMPLETED" || j["state"] == "DEAD_LETTERED"
    })
    .await;
    assert_eq!(
        (&done["state"], &done["attempt"]),
        (&json!("COMPLETED"), &json!(1)),
        "the restart cost the finished job its lease: {done}"
    );
}

#[tokio::test]
async fn sigterm_of_a_replica_moves_its_agent_to_another_with_the_job_lease_intact() {
    let (a, b) = Server::replicas(&TIMINGS).await;
    // The agent prefers B, and falls back to A.
    let _agent = Agent::start("it-mover", &[&b, &a], &agent_key(&a).await, &workdir());
    wait_for_agent(&a, "it-mover").await;

    // Enqueued on A, pushed by B (through the Redis wake-up) to its agent.
    let id = enqueue_shell(&a, json!({"command": "sleep 4"}), 1).await;
    wait_for(&a, &id, Duration::from_secs(10), state_is("RUNNING")).await;
    let stopped = Instant::now();
    let status = b.terminate();
    assert!(status.success(), "replica B exited with {status}");
    assert!(
        stopped.elapsed() < Duration::from_secs(25),
        "drain took {:?}",
        stopped.elapsed()
    );

    // The agent went on to A, kept the job (still attempt 1) and completed it there.
    let done = wait_for(&a, &id, Duration::from_secs(20), |j| {
        j["state"] != "RUNNING" && j["state"] != "CLAIMED"
    })
    .await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["attempt"], 1, "no lease was lost: {done}");
}

/// Waits until agent `name` is registered and connected.
async fn wait_for_agent(s: &Server, name: &str) {
    eventually(
        &format!("agent {name} connected"),
        Duration::from_secs(15),
        async || {
            let (_, body, _) = send(s.client.get(s.url("/api/agents"))).await;
            let connected = body["data"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|a| a["name"] == name && a["status"] == "HEALTHY")
            });
            if connected { Ok(()) } else { Err(body) }
        },
    )
    .await;
}

#[tokio::test]
async fn with_redis_down_dispatch_goes_on_and_push_resumes_when_it_is_back() {
    let mut redis =
        switchyard_testkit::TempRedis::new().expect("redis-server is installed (scripts/services)");
    redis.start().await;
    let url = redis.url();
    let mut env = vec![("REDIS_URL", url.as_str())];
    env.extend(TIMINGS);
    let s = Server::start(Db::Postgres, &env).await;
    s.wait_ready().await;
    let _agent = Agent::start("it-redis", &[&s], &agent_key(&s).await, &workdir());
    wait_for_agent(&s, "it-redis").await;
    let run = |what: &'static str| {
        let s = &s;
        async move {
            let id = enqueue_shell(s, json!({"command": format!("echo {what}")}), 1).await;
            let started = Instant::now();
            wait_for(s, &id, Duration::from_secs(10), state_is("COMPLETED")).await;
            started.elapsed()
        }
    };
    // A push takes milliseconds; without one the stream's re-check would take 5-6 s.
    let pushed = run("pushed").await;
    assert!(pushed < Duration::from_secs(2), "pushed in {pushed:?}");

    // Redis gone: the enqueue is still accepted and the job still runs, found by the stream's
    // re-check (every 5 s, jittered by up to a fifth) instead of a push.
    redis.kill();
    let (status, _, _) = send(s.client.get(s.url("/api/ready"))).await;
    assert_eq!(status, 503, "not ready without Redis");
    let polled = run("polled").await;
    assert!(
        polled < Duration::from_secs(8),
        "ran in {polled:?} with Redis down"
    );

    // Redis back: wake-ups push again, once the bus has subscribed anew (readiness checks the
    // command connection only, so the first job may still be found by a re-check).
    redis.start().await;
    s.wait_ready().await;
    let settling = run("after the restart").await;
    assert!(settling < Duration::from_secs(8), "ran in {settling:?}");
    let again = run("pushed again").await;
    assert!(
        again < Duration::from_secs(2),
        "pushed in {again:?} after Redis came back"
    );
}
