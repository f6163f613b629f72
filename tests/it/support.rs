//! Boots the real binary as a child process and talks to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary under test.
pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    // The test runner's own settings must not leak into the child.
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "ENV",
        "CI_STRICT",
        "JWT_SECRET",
        "SWITCHYARD_GRPC_ADDR",
        "SWITCHYARD_HTTP_ADDR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LOG_LEVEL", "warn");
    cmd
}

/// A running control plane; killed when dropped.
pub struct Server {
    child: Child,
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// An HTTP client.
    pub client: reqwest::Client,
}

/// Which database a test server uses.
pub enum Db {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

impl Db {
    /// A fresh, empty database of this kind.
    pub async fn fresh_url(&self) -> String {
        match self {
            Db::Postgres => switchyard_testkit::postgres_database().await,
            Db::Sqlite => {
                let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-"));
                std::fs::create_dir_all(&dir).unwrap();
                format!("sqlite://{}", dir.join("db.sqlite").display())
            }
        }
    }
}

impl Server {
    /// `switchyard serve` on ephemeral ports over a fresh database, with `extra` env vars.
    pub async fn start(db: Db, extra: &[(&str, &str)]) -> Server {
        Self::start_on(&db.fresh_url().await, extra).await
    }

    /// `switchyard serve` on ephemeral ports over the database at `url`.
    pub async fn start_on(url: &str, extra: &[(&str, &str)]) -> Server {
        let mut cmd = binary();
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", url)
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn switchyard");
        let stdout = child.stdout.take().unwrap();
        let (http, grpc) = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.expect("read stdout");
                if let Some(rest) = line.strip_prefix("switchyard listening ") {
                    let mut grpc = None;
                    let mut http = None;
                    for part in rest.split_whitespace() {
                        match part.split_once('=') {
                            Some(("grpc", a)) => grpc = a.parse().ok(),
                            Some(("http", a)) => http = a.parse().ok(),
                            _ => {}
                        }
                    }
                    // Keep draining stdout so the child never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return (http.unwrap(), grpc.unwrap());
                }
            }
            panic!("switchyard exited before listening");
        })
        .await
        .unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Server {
            child,
            http,
            grpc,
            client,
        }
    }

    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Kills the process with SIGKILL: no drain, no goodbye.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit within 25 s of SIGTERM"
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `req` and returns (status, JSON body, headers).
pub async fn send(
    req: reqwest::RequestBuilder,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("JSON body");
    (status, body, headers)
}
