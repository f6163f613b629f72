//! Boots the real binary as a child process and talks to it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Looks with `check` until it answers `Ok`, for at most `limit`, and returns that answer.
/// An `Err` carries what was seen, for the failure message, which names `what`. The looks come
/// 20 ms apart at first, then further apart, at most 200 ms.
pub async fn eventually<T, Seen: std::fmt::Display>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

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
        "SWITCHYARD_ADMIN_EMAIL",
        "SWITCHYARD_ADMIN_PASSWORD",
        "SWITCHYARD_NOTIFY_OUTBOX_DIR",
        "SWITCHYARD_ARTIFACTS_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LOG_LEVEL", "warn");
    cmd
}

/// A fresh outbox directory for a test server's notifications.
/// A fresh directory path under the system's temporary directory.
pub fn temp_path(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(switchyard_testkit::unique(prefix))
}

/// The HMAC secret every test server signs with (tests forge tokens with it).
pub const JWT_SECRET: &str = "it-secret-0123456789abcdef0123456789abcdef";
/// The administrator every test server bootstraps (tenant `default`).
pub const ADMIN_EMAIL: &str = "admin@it.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "it-admin-password-42";

/// A running control plane; killed when dropped.
pub struct Server {
    child: Child,
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// An HTTP client that sends the administrator's access token.
    pub client: reqwest::Client,
    /// An HTTP client without credentials.
    pub anon: reqwest::Client,
    /// The administrator's access token.
    pub token: String,
}

/// A gRPC channel that sends `authorization: Bearer <token>` on every call.
pub type AuthedChannel = InterceptedService<Channel, Bearer>;

/// Adds a bearer credential to every gRPC call.
#[derive(Clone)]
pub struct Bearer(pub MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// An HTTP client sending `token` as its bearer.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap()
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

    /// Two replicas of `switchyard serve` on one fresh PostgreSQL database and the test Redis
    /// (under a fresh key prefix), with `extra` env vars, both ready.
    pub async fn replicas(extra: &[(&str, &str)]) -> (Server, Server) {
        let url = Db::Postgres.fresh_url().await;
        let prefix = switchyard_testkit::unique("it-replicas:");
        let redis = switchyard_testkit::redis_url();
        let mut env = vec![
            ("REDIS_URL", redis.as_str()),
            ("SWITCHYARD_REDIS_PREFIX", prefix.as_str()),
        ];
        env.extend_from_slice(extra);
        let a = Self::start_on(&url, &env).await;
        let b = Self::start_on(&url, &env).await;
        // Until Redis answers, replicas fall back to their own memory: wait for both.
        a.wait_ready().await;
        b.wait_ready().await;
        (a, b)
    }

    /// `switchyard serve` on ephemeral ports over the database at `url`.
    pub async fn start_on(url: &str, extra: &[(&str, &str)]) -> Server {
        Self::start_serve(url, extra, Stdio::inherit()).await
    }

    /// Like [`Server::start`], with the server's stderr (its log) written to a fresh file,
    /// whose path is returned alongside.
    pub async fn start_logged(db: Db, extra: &[(&str, &str)]) -> (Server, PathBuf) {
        let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-log-"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stderr.log");
        let file = File::create(&path).expect("create the log file");
        let server = Self::start_serve(&db.fresh_url().await, extra, Stdio::from(file)).await;
        (server, path)
    }

    async fn start_serve(url: &str, extra: &[(&str, &str)], stderr: Stdio) -> Server {
        // An ephemeral gRPC port, unless the test names one (a restart on the same address).
        let grpc = extra
            .iter()
            .find(|(name, _)| *name == "SWITCHYARD_GRPC_ADDR")
            .map_or("127.0.0.1:0", |(_, addr)| *addr);
        let mut cmd = binary();
        cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", grpc])
            .env("DATABASE_URL", url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("SWITCHYARD_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("SWITCHYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Notifications of tenants without webhooks and artifacts go here, not into the
            // checkout (a test's `extra` may point replicas at one shared artifact store).
            .env("SWITCHYARD_NOTIFY_OUTBOX_DIR", temp_path("sy-it-outbox-"))
            .env("SWITCHYARD_ARTIFACTS_URL", temp_path("sy-it-artifacts-"))
            .envs(extra.iter().copied())
            .stderr(stderr);
        let (mut child, mut stdout) = spawn(cmd);
        let Some((http, grpc)) = listening(&mut stdout).await else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("switchyard did not announce its ports within 60 s");
        };
        Self::connect(child, http, grpc, ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// `switchyard dev` on ephemeral ports with its data in `data_dir`, logged in as the
    /// administrator `dev` creates (its password read from `data_dir/admin-password`). Also
    /// returns what it printed on stdout, up to the first line for which `until` holds over
    /// the lines so far (or 10 s).
    pub async fn start_dev(
        data_dir: &Path,
        until: impl Fn(&[String]) -> bool,
    ) -> (Server, Vec<String>) {
        let mut cmd = binary();
        cmd.args([
            "dev",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("SWITCHYARD_DATA_DIR", data_dir)
        .stderr(Stdio::inherit());
        let (mut child, mut stdout) = spawn(cmd);
        let mut printed = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut addrs = None;
        while addrs.is_none() || !until(&printed) {
            match tokio::time::timeout_at(deadline, stdout.recv()).await {
                Ok(Some(line)) => {
                    if addrs.is_none() {
                        addrs = parse_listening(&line);
                    }
                    printed.push(line);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let password = std::fs::read_to_string(data_dir.join("admin-password"));
        let (Some((http, grpc)), Ok(password)) = (addrs, password) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dev did not listen or wrote no admin-password; stdout: {printed:?}");
        };
        let server =
            Self::connect(child, http, grpc, "admin@switchyard.local", password.trim()).await;
        (server, printed)
    }

    /// Logs in to a child that listens on `http`/`grpc` and wraps it.
    async fn connect(
        child: Child,
        http: SocketAddr,
        grpc: SocketAddr,
        email: &str,
        password: &str,
    ) -> Server {
        // Owned by the Server from here, so a failing log-in still kills the child.
        let mut server = Server {
            child,
            http,
            grpc,
            client: reqwest::Client::new(),
            anon: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token: String::new(),
        };
        server.token = login(&server.anon, http, email, password).await;
        server.client = client_with(&server.token);
        server
    }

    /// Waits (at most 10 s) until `/api/ready` answers 200, e.g. for Redis to connect.
    pub async fn wait_ready(&self) {
        eventually("ready", Duration::from_secs(10), async || {
            let (status, body, _) = send(self.anon.get(self.url("/api/ready"))).await;
            if status == 200 { Ok(()) } else { Err(body) }
        })
        .await;
    }

    /// A gRPC channel sending `token` as its bearer.
    pub async fn grpc_with(&self, token: &str) -> AuthedChannel {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect gRPC");
        let value = format!("Bearer {token}").parse().expect("ASCII token");
        InterceptedService::new(channel, Bearer(value))
    }

    /// A gRPC channel sending the administrator's token.
    pub async fn grpc_admin(&self) -> AuthedChannel {
        self.grpc_with(&self.token).await
    }

    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The server process's memory in bytes: (resident now, peak resident so far), from
    /// `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or_else(|| panic!("{name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
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

/// Spawns `cmd` with stdout piped; its lines arrive on the receiver. A thread keeps draining
/// stdout after the receiver is dropped, so the child never blocks on a full pipe.
fn spawn(mut cmd: Command) -> (Child, UnboundedReceiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The addresses of the `switchyard listening grpc=… http=…` line, if `line` is it.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("switchyard listening ")?;
    let mut grpc = None;
    let mut http = None;
    for part in rest.split_whitespace() {
        match part.split_once('=') {
            Some(("grpc", a)) => grpc = a.parse().ok(),
            Some(("http", a)) => http = a.parse().ok(),
            _ => {}
        }
    }
    Some((http?, grpc?))
}

/// Waits (at most 60 s) for the listening line on `stdout` and returns (http, grpc); `None`
/// when the child exited or stayed silent.
async fn listening(stdout: &mut UnboundedReceiver<String>) -> Option<(SocketAddr, SocketAddr)> {
    let wait = async {
        while let Some(line) = stdout.recv().await {
            if let Some(addrs) = parse_listening(&line) {
                return Some(addrs);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .ok()
        .flatten()
}

/// Logs in over REST and returns the access token.
pub async fn login(
    client: &reqwest::Client,
    http: SocketAddr,
    email: &str,
    password: &str,
) -> String {
    let (status, body, _) = send(
        client
            .post(format!("http://{http}/auth/session"))
            .json(&serde_json::json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "log-in as {email}: {body}");
    body["data"]["access_token"].as_str().unwrap().to_owned()
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

/// Runs `switchyard <command> <args>` against `s` as the administrator (its token, no saved
/// session) and kills it after `limit`. Returns what it printed, and whether it had to be
/// killed.
pub fn run_cli(
    s: &Server,
    command: &str,
    args: &[&str],
    limit: Duration,
) -> (std::process::Output, bool) {
    let mut cmd = binary();
    for var in [
        "SWITCHYARD_SERVER",
        "SWITCHYARD_TOKEN",
        "SWITCHYARD_CONFIG_DIR",
        "SWITCHYARD_CA_FILE",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .arg(command)
        .args(args)
        .env("SWITCHYARD_SERVER", format!("http://{}", s.grpc))
        .env("SWITCHYARD_TOKEN", &s.token)
        // No saved session may be read, whatever the machine has.
        .env(
            "SWITCHYARD_CONFIG_DIR",
            std::env::temp_dir().join("sy-no-session"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn switchyard {command}: {e}"));
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, killed) = match rx.recv_timeout(limit) {
        Ok(out) => (out, false),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .expect("kill the CLI");
            (rx.recv().expect("the killed child's output"), true)
        }
    };
    (
        out.unwrap_or_else(|e| panic!("wait for switchyard {command}: {e}")),
        killed,
    )
}
